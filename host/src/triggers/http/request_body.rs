//! A request's body on its way to the guest: the start of it (or all of a model app's) read
//! before the request takes an instance, then the rest as the guest reads it, stopped at the
//! app's body limit; and a rejected body read away so that the answer reaches the client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming};

use crate::metrics::Outcome;
use crate::usage::{AppUsage, BudgetShare};

/// How much of a request body is read before the request takes an instance: all of a body up
/// to this size, the start of a larger one.
const BODY_HEAD_BYTES: usize = 64 * 1024;

/// Why a request body, or its start, could not be read.
pub(super) enum BodyReadError {
    TimedOut,
    ClientGone,
    /// Past the app's body limit.
    TooLarge,
    /// The node's memory budget for guests had no room for it.
    NoMemory,
}

impl BodyReadError {
    /// The platform answer for it.
    pub(super) fn outcome(self) -> Outcome {
        match self {
            Self::TimedOut => Outcome::BodyTimedOut,
            Self::ClientGone => Outcome::BadRequest,
            Self::TooLarge => Outcome::BodyTooLarge,
            Self::NoMemory => Outcome::NoMemory,
        }
    }
}

/// Reads the start of the request body (up to [`BODY_HEAD_BYTES`], or all of a smaller one)
/// within `timeout`, so a client sending its body slowly holds only its connection, not one
/// of the app's instances. Returns the frames read and whether the body ended.
pub(super) async fn read_body_head(
    body: &mut Incoming,
    timeout: Duration,
) -> Result<(VecDeque<Frame<Bytes>>, bool), BodyReadError> {
    let mut frames = VecDeque::new();
    let read = read_frames(body, &mut frames, BODY_HEAD_BYTES, None);
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(ended)) => Ok((frames, ended)),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(BodyReadError::TimedOut),
    }
}

/// Reads the rest of a body whose start is in `frames`, by `deadline` and up to `limit` bytes
/// in all (the app's body limit), for an app that waits for a turn on the inference workers:
/// a client uploading slowly then holds its connection and concurrency permit, never one of
/// the app's turns, and the guest reads its body from memory instead of waking this
/// connection's thread for each frame. What is read takes its room from `budget` (the node's
/// memory for guests), so bodies waiting for a turn cannot take more than guests may.
pub(super) async fn read_body_rest(
    body: &mut Incoming,
    frames: &mut VecDeque<Frame<Bytes>>,
    limit: u64,
    deadline: Instant,
    budget: &mut BudgetShare,
) -> Result<(), BodyReadError> {
    if !budget.take(data_bytes(frames) as u64) {
        return Err(BodyReadError::NoMemory);
    }
    let enough = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let read = read_frames(body, frames, enough, Some(budget));
    match tokio::time::timeout_at(deadline.into(), read).await {
        // Stopped past the limit, or ended with a last frame that went past it.
        Ok(Ok(_)) if data_bytes(frames) as u64 > limit => Err(BodyReadError::TooLarge),
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(BodyReadError::TooLarge),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(BodyReadError::TimedOut),
    }
}

/// Reads frames of `body` into `frames` until they hold `enough` data bytes or the body
/// ends, each frame's bytes taken from `budget` when given. Returns whether it ended.
async fn read_frames(
    body: &mut Incoming,
    frames: &mut VecDeque<Frame<Bytes>>,
    enough: usize,
    mut budget: Option<&mut BudgetShare>,
) -> Result<bool, BodyReadError> {
    if body.is_end_stream() {
        return Ok(true);
    }
    let mut bytes = data_bytes(frames);
    while bytes < enough {
        match body.frame().await {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, Bytes::len);
                if let Some(budget) = budget.as_deref_mut()
                    && !budget.take(len as u64)
                {
                    return Err(BodyReadError::NoMemory);
                }
                bytes += len;
                frames.push_back(frame);
            }
            Some(Err(_)) => return Err(BodyReadError::ClientGone),
            None => return Ok(true),
        }
    }
    Ok(body.is_end_stream())
}

/// The data bytes `frames` hold.
fn data_bytes(frames: &VecDeque<Frame<Bytes>>) -> usize {
    frames
        .iter()
        .map(|frame| frame.data_ref().map_or(0, Bytes::len))
        .sum()
}

/// How much of a rejected body is read and dropped before answering 413. Closing a socket
/// with unread data makes TCP send a reset that can destroy the 413 before the client reads
/// it; past this much (or [`DISCARD_TIME`]) the connection is closed anyway.
const DISCARD_BYTES: u64 = 8 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(2);

pub(super) async fn discard_body(mut body: Incoming) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_TIME, drain).await;
}

/// The request body as the guest reads it: stops with an error past the node's body limit
/// and remembers that it did, so the client gets 413 whatever the guest makes of the error.
pub(super) struct LimitedBody {
    /// What was read before the request took an instance, passed on first.
    head: VecDeque<Frame<Bytes>>,
    /// The rest of the body; `None` when it ended within the head, or once the limit was hit
    /// (the rest is then being discarded in the background).
    inner: Option<Incoming>,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
    /// Counts the bytes the guest read (its usage), when metering is on.
    usage: Option<Arc<AppUsage>>,
    /// The node's memory budget held for a body read whole before the request ran.
    _buffered: Option<BudgetShare>,
}

impl LimitedBody {
    /// The body of a request whose first frames are `head` and whose `rest` (if it did not
    /// end within them) is still to come, `limit` bytes at most; `exceeded` is set when the
    /// limit is hit, `usage` counts the bytes read, `buffered` is the budget held for a body
    /// read whole.
    pub(super) fn new(
        head: VecDeque<Frame<Bytes>>,
        rest: Option<Incoming>,
        limit: u64,
        exceeded: Arc<AtomicBool>,
        usage: Option<Arc<AppUsage>>,
        buffered: Option<BudgetShare>,
    ) -> Self {
        Self {
            head,
            inner: rest,
            remaining: limit,
            limit,
            exceeded,
            usage,
            _buffered: buffered,
        }
    }

    fn too_large(&self) -> wasmtime_wasi_http::Error {
        wasmtime_wasi_http::Error::HttpRequestBodySize(Some(self.limit))
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = match this.head.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None if this.exceeded.load(Ordering::Relaxed) => {
                return Poll::Ready(Some(Err(this.too_large())));
            }
            None => match this.inner.as_mut() {
                Some(inner) => Pin::new(inner).poll_frame(cx),
                None => Poll::Ready(None),
            },
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    this.exceeded.store(true, Ordering::Relaxed);
                    this.head.clear();
                    if let Some(rest) = this.inner.take() {
                        tokio::spawn(discard_body(rest));
                    }
                    return Poll::Ready(Some(Err(this.too_large())));
                }
                this.remaining -= len;
                if let Some(usage) = &this.usage {
                    usage.bytes_in.fetch_add(len, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::Hyper(err))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty()
            && !self.exceeded.load(Ordering::Relaxed)
            && self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let head: u64 = self
            .head
            .iter()
            .map(|f| f.data_ref().map_or(0, |d| d.len() as u64))
            .sum();
        let rest = self
            .inner
            .as_ref()
            .map_or_else(|| hyper::body::SizeHint::with_exact(0), Body::size_hint);
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(rest.lower() + head);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + head);
        }
        hint
    }
}
