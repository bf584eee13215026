//! What the data plane answers besides the guest's own response: the fixed platform answers
//! (with the request's outcome counted), and the response body that counts the bytes a guest
//! sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame};

use super::ServeBody;
use crate::apps::LoadedApp;
use crate::control::node::Node;
use crate::metrics::Outcome;
use crate::usage::AppUsage;

/// Logs that a request of `app` ran past its time limit, and gives the answer for that.
pub(super) fn time_limit_exceeded(app: &LoadedApp) -> Outcome {
    let limit = app.limits.timeout;
    tracing::warn!(app = %app.name, "request exceeded the {limit:?} time limit");
    Outcome::TimedOut
}

/// The fixed answer for a request the platform ends itself.
pub(super) fn platform_answer(node: &Node, outcome: Outcome) -> Response<ServeBody> {
    node.metrics.request(outcome);
    let (status, text) = match outcome {
        Outcome::NoRoute => (StatusCode::NOT_FOUND, "no app is deployed for this path"),
        Outcome::BadRequest => (
            StatusCode::BAD_REQUEST,
            "the request cannot be passed to an app (is the Host header missing?)",
        ),
        Outcome::BodyTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than this node accepts",
        ),
        Outcome::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the app is at its concurrency limit; retry shortly",
        ),
        Outcome::BodyTimedOut => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        ),
        Outcome::NoMemory => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the node's memory for apps is in use; retry shortly",
        ),
        Outcome::Trapped => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the app failed while handling this request",
        ),
        Outcome::TimedOut => (
            StatusCode::GATEWAY_TIMEOUT,
            "the app did not answer within its time limit",
        ),
        Outcome::Answered => (StatusCode::OK, ""),
    };
    let body = Full::new(Bytes::from(format!("{} {text}\n", status.as_u16())))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A response body that adds the bytes it sent to the app's usage when it ends, and holds
/// the app's concurrency permit while it streams (instances path).
pub(super) struct CountedBody<B = ServeBody> {
    inner: B,
    sent: u64,
    usage: Option<Arc<AppUsage>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<B> CountedBody<B> {
    /// Counts what `inner` sends as the app's usage.
    pub(super) fn metered(inner: B, usage: Arc<AppUsage>) -> Self {
        Self {
            inner,
            sent: 0,
            usage: Some(usage),
            _permit: None,
        }
    }

    /// Holds the app's concurrency `permit` until `inner` has been sent.
    pub(super) fn holding(inner: B, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            sent: 0,
            usage: None,
            _permit: Some(permit),
        }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            self.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if let Some(usage) = &self.usage {
            usage.bytes_out.fetch_add(self.sent, Ordering::Relaxed);
        }
    }
}
