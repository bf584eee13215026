//! Outgoing HTTP (`wasi:http/outgoing-handler`) by grant: an app may send requests only to the
//! origins it was deployed with (`edge deploy --allow-outbound ORIGIN`). Every other request,
//! including one that follows a redirect to another origin, fails with the wasi:http error
//! `HTTP-request-denied`. Per app, requests in flight and their time are bounded; TLS is rustls
//! with the webpki roots (wasmtime-wasi-http's sender).
//!
//! Capability shape: config section [`OutboundHttpConfig`] (`[outbound_http]`), grant
//! [`OutboundGrant`] (checked by [`OutboundGrant::parse`]), per-store [`OutboundHooks`]
//! (wasmtime-wasi-http's `WasiHttpHooks`, composed into the store's `WasiHttpView`).

mod origin;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

pub use self::origin::{Origin, OriginPattern};
use crate::error::DeployError;

/// The `[outbound_http]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundHttpConfig {
    /// Longest wait, in ms, for each of: connecting, the first response byte, and each later
    /// chunk. A guest asking for longer gets this.
    pub timeout_ms: u64,
    /// Outgoing requests one app may have in flight; more wait (up to `timeout_ms`), then fail
    /// with `connection-limit-reached`.
    pub max_concurrent_per_app: usize,
}

impl Default for OutboundHttpConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 10_000,
            max_concurrent_per_app: 16,
        }
    }
}

impl OutboundHttpConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// The origins an app version was granted, as given at deploy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OutboundGrant(pub Vec<String>);

impl OutboundGrant {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses every origin; the first bad one is a deploy error saying what a good one is.
    pub fn parse(&self) -> Result<Vec<OriginPattern>, DeployError> {
        self.0
            .iter()
            .map(|o| OriginPattern::parse(o).map_err(DeployError::InvalidGrant))
            .collect()
    }
}

/// What becomes of an app's outgoing requests, counted in the node's metrics.
#[derive(Clone, Default)]
pub struct OutboundCounters {
    pub sent: Counter,
    pub denied: Counter,
    pub failed: Counter,
}

/// An app version's outgoing-HTTP policy, shared by all its instances.
pub struct OutboundPolicy {
    app: Arc<str>,
    origins: Vec<OriginPattern>,
    in_flight: Arc<Semaphore>,
    timeout: Duration,
    counters: OutboundCounters,
}

impl OutboundPolicy {
    pub fn new(
        app: &str,
        origins: Vec<OriginPattern>,
        config: &OutboundHttpConfig,
        counters: OutboundCounters,
    ) -> Arc<Self> {
        Arc::new(Self {
            app: Arc::from(app),
            origins,
            in_flight: Arc::new(Semaphore::new(config.max_concurrent_per_app.max(1))),
            timeout: config.timeout(),
            counters,
        })
    }

    fn allows(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|granted| granted.matches(origin))
    }

    /// The guest's timeouts, each capped at the node's.
    fn options(&self, asked: Option<RequestOptions>) -> RequestOptions {
        let cap = |t: Option<Duration>| Some(t.map_or(self.timeout, |t| t.min(self.timeout)));
        let asked = asked.unwrap_or_default();
        RequestOptions {
            connect_timeout: cap(asked.connect_timeout),
            first_byte_timeout: cap(asked.first_byte_timeout),
            between_bytes_timeout: cap(asked.between_bytes_timeout),
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendResult = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

/// The outgoing-HTTP hooks of one store: the app's policy, or none (every request denied).
#[derive(Clone, Default)]
pub struct OutboundHooks(pub Option<Arc<OutboundPolicy>>);

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: IoFuture,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let policy = self.0.clone();
        Box::new(async move {
            let Some(policy) = policy else {
                tracing::debug!("outgoing request denied: the app has no --allow-outbound grant");
                return Err(HttpError::HttpRequestDenied);
            };
            let origin = match Origin::of(request.uri()) {
                Some(origin) if policy.allows(&origin) => origin,
                refused => {
                    policy.counters.denied.inc();
                    // The origin only: a path or query may carry secrets.
                    tracing::warn!(
                        app = %policy.app,
                        origin = %refused.map_or_else(|| "?".into(), |o| o.to_string()),
                        "outgoing request denied: origin not granted (deploy with \
                         --allow-outbound ORIGIN)"
                    );
                    return Err(HttpError::HttpRequestDenied);
                }
            };
            let permit =
                tokio::time::timeout(policy.timeout, policy.in_flight.clone().acquire_owned());
            let Ok(Ok(permit)) = permit.await else {
                policy.counters.failed.inc();
                tracing::warn!(app = %policy.app, "outgoing request refused: too many in flight");
                return Err(HttpError::ConnectionLimitReached);
            };
            let options = policy.options(options);
            match wasmtime_wasi_http::default_send_request(request, Some(options)).await {
                Ok((response, io)) => {
                    policy.counters.sent.inc();
                    // The slot is held while the connection lives (the body is being read).
                    let io: IoFuture = Box::new(async move {
                        let _permit = permit;
                        io.await
                    });
                    Ok((response.map(BodyExt::boxed_unsync), io))
                }
                Err(err) => {
                    policy.counters.failed.inc();
                    tracing::warn!(app = %policy.app, %origin, "outgoing request failed: {err}");
                    Err(err)
                }
            }
        })
    }
}
