//! The start of a response body read before the response goes to hyper, so that the head and a
//! short body leave in one write.
//!
//! A WASI 0.3 guest returns its response head first and writes the body from a task of its
//! own, which runs on the same thread's event loop as the connection. When hyper gets the head
//! the body is usually a turn of that loop away; hyper then finds no body, sends the head alone
//! and the body in a second write: two system calls, and two wake-ups of the client, per request.
//! [`with_body_started`] polls the body first, giving the guest up to [`TURNS`] turns of the
//! loop, and keeps what it read (up to two frames, or a short body whole with its end). A body
//! that has not started by then goes as before, so a streaming guest's head waits at most those
//! turns, never for its data.
//!
//! The guest of an app granted a model runs on an inference worker, another thread: its head
//! wakes the connection's thread and its body follows a few microseconds later. For those,
//! [`with_body_written_within`] waits a short time for the guest's handler to return instead of
//! turns of the loop, and then takes the whole body (1 ms from the data plane: one write per
//! classification instead of a head and then the body or its chunked end, and one wake-up of
//! the connection's thread for the body instead of one per frame; docs/benchmarks.md).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};

/// Turns of the event loop a response waits for its body to start.
const TURNS: usize = 2;

/// Frames read ahead of a body that is not yet long: enough for one write (a short body's data
/// and its trailers or a second chunk), without holding a long body back.
const SHORT_BODY_FRAMES: usize = 2;

/// `response` with the start of its body already read (see the module doc).
pub async fn with_body_started<B>(response: Response<B>) -> Response<BodyAhead<B>>
where
    B: Body<Data = Bytes> + Unpin,
{
    let (parts, mut inner) = response.into_parts();
    let mut ahead = VecDeque::new();
    let mut turns = 0;
    let ended = loop {
        let ended = take_ready(&mut inner, &mut ahead, SHORT_BODY_FRAMES).await;
        if ended || ahead.len() >= SHORT_BODY_FRAMES || turns == TURNS {
            break ended;
        }
        turns += 1;
        tokio::task::yield_now().await;
    };
    Response::from_parts(parts, BodyAhead::new(ahead, ended, inner))
}

/// [`with_body_started`] for a body written from another thread, whose writer tells when it
/// is done: `written` resolves then (the guest of an app granted a model sets its response head
/// on an inference worker, writes its body and returns, while the connection's thread has
/// already woken for the head). Waits up to `wait` for `written`, then reads every frame
/// already there: the whole body, end included, when the writer is done (it cannot have
/// written more than its channel holds), else up to two frames. Either way this thread wakes
/// once for the body, not once per frame; a writer still running streams the rest as before.
pub async fn with_body_written_within<B, W>(
    response: Response<B>,
    written: W,
    wait: Duration,
) -> Response<BodyAhead<B>>
where
    B: Body<Data = Bytes> + Unpin,
    W: std::future::Future,
{
    let done = tokio::time::timeout(wait, written).await.is_ok();
    let (parts, mut inner) = response.into_parts();
    let mut ahead = VecDeque::new();
    let most = if done { usize::MAX } else { SHORT_BODY_FRAMES };
    let ended = take_ready(&mut inner, &mut ahead, most).await;
    Response::from_parts(parts, BodyAhead::new(ahead, ended, inner))
}

/// Moves the frames of `inner` that are ready now into `ahead`, until it holds `most` of them
/// or the body ends, without waiting. Returns whether the body ended.
async fn take_ready<B>(
    inner: &mut B,
    ahead: &mut VecDeque<Result<Frame<Bytes>, B::Error>>,
    most: usize,
) -> bool
where
    B: Body<Data = Bytes> + Unpin,
{
    while ahead.len() < most {
        match futures_util::poll!(inner.frame()) {
            Poll::Ready(Some(frame)) => ahead.push_back(frame),
            Poll::Ready(None) => return true,
            Poll::Pending => break,
        }
    }
    false
}

/// A body whose first frames were read ahead; they are given back first, in order.
pub struct BodyAhead<B: Body> {
    ahead: VecDeque<Result<Frame<Bytes>, B::Error>>,
    /// The end was read ahead too: `inner` is not polled again.
    ended: bool,
    inner: B,
}

impl<B: Body> BodyAhead<B> {
    fn new(ahead: VecDeque<Result<Frame<Bytes>, B::Error>>, ended: bool, inner: B) -> Self {
        Self {
            ahead,
            ended,
            inner,
        }
    }
}

// Nothing in it is pinned structurally: the frames are moved out, `inner` is `Unpin`.
impl<B: Body + Unpin> Unpin for BodyAhead<B> {}

impl<B> Body for BodyAhead<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.ahead.pop_front() {
            return Poll::Ready(Some(frame));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && (self.ended || self.inner.is_end_stream())
    }

    /// Exact when the whole body was read ahead (so hyper sends a `content-length` instead
    /// of chunks), unless it holds trailers, which only chunked encoding carries.
    fn size_hint(&self) -> SizeHint {
        let only_data = self
            .ahead
            .iter()
            .all(|frame| frame.as_ref().is_ok_and(Frame::is_data));
        let ahead: u64 = self
            .ahead
            .iter()
            .flatten()
            .filter_map(Frame::data_ref)
            .map(|data| data.len() as u64)
            .sum();
        if self.ended && only_data {
            return SizeHint::with_exact(ahead);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(ahead));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream::{self, BoxStream};
    use http_body_util::StreamBody;
    use std::convert::Infallible;
    use tokio::sync::mpsc;

    type Sent = Result<Frame<Bytes>, Infallible>;

    /// A body whose frames are whatever is sent on the channel, ending when it closes.
    fn channel_body() -> (mpsc::Sender<Sent>, StreamBody<BoxStream<'static, Sent>>) {
        let (tx, rx) = mpsc::channel(4);
        let frames = stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        (tx, StreamBody::new(Box::pin(frames)))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_written_a_turn_later_is_read_ahead_whole_with_its_length() {
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            tx.send(Ok(Frame::data(Bytes::from_static(b"hello\n"))))
                .await
                .unwrap();
        });
        let response = with_body_started(Response::new(body)).await;
        let body = response.into_body();
        assert!(body.ended, "the body was read to its end");
        assert_eq!(body.size_hint().exact(), Some(6));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_not_started_in_time_goes_unread_and_loses_nothing() {
        let (tx, body) = channel_body();
        let response = with_body_started(Response::new(body)).await;
        let body = response.into_body();
        assert!(body.ahead.is_empty(), "nothing was written yet");
        assert_eq!(body.size_hint().exact(), None);
        tokio::spawn(async move {
            for part in ["late ", "body"] {
                tx.send(Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
                    .await
                    .unwrap();
            }
        });
        assert_eq!(body.collect().await.unwrap().to_bytes(), "late body");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_written_in_frames_before_its_writer_returned_is_read_ahead_whole() {
        let (tx, body) = channel_body();
        let (returned, written) = tokio::sync::oneshot::channel::<()>();
        let writer = std::thread::spawn(move || {
            for part in ["{\"top\":", "[1,", "2]}"] {
                tx.blocking_send(Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
                    .unwrap();
            }
            drop(tx);
            drop(returned);
        });
        let response =
            with_body_written_within(Response::new(body), written, Duration::from_secs(5)).await;
        writer.join().unwrap();
        let body = response.into_body();
        assert_eq!(body.ahead.len(), 3, "every frame, not two");
        assert!(body.ended, "the body was read to its end");
        assert_eq!(body.size_hint().exact(), Some(13));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{\"top\":[1,2]}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_still_running_after_the_wait_has_its_head_go_and_loses_nothing() {
        let (tx, body) = channel_body();
        let (returned, written) = tokio::sync::oneshot::channel::<()>();
        tx.send(Ok(Frame::data(Bytes::from_static(b"streamed "))))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let response =
            with_body_written_within(Response::new(body), written, Duration::from_millis(20)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the head waited for a writer that had not returned"
        );
        let body = response.into_body();
        assert_eq!(body.ahead.len(), 1, "what was written by then");
        assert!(!body.ended);
        assert_eq!(body.size_hint().exact(), None);
        let writer = std::thread::spawn(move || {
            tx.blocking_send(Ok(Frame::data(Bytes::from_static(b"later"))))
                .unwrap();
            drop(returned);
        });
        assert_eq!(body.collect().await.unwrap().to_bytes(), "streamed later");
        writer.join().unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_long_body_is_read_ahead_two_frames_at_most_and_keeps_its_order() {
        let (tx, body) = channel_body();
        for part in ["one ", "two ", "three"] {
            tx.send(Ok(Frame::data(Bytes::from_static(part.as_bytes()))))
                .await
                .unwrap();
        }
        let response = with_body_started(Response::new(body)).await;
        let body = response.into_body();
        assert_eq!(
            body.ahead.len(),
            2,
            "a frame, and the next one, not the rest"
        );
        assert!(!body.ended);
        assert_eq!(body.size_hint().exact(), None);
        drop(tx);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "one two three");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn trailers_read_ahead_keep_the_body_chunked() {
        let (tx, body) = channel_body();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("1"));
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        drop(tx);
        let response = with_body_started(Response::new(body)).await;
        let body = response.into_body();
        assert_eq!(
            body.size_hint().exact(),
            None,
            "trailers need chunked encoding"
        );
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-sum"], "1");
    }
}
