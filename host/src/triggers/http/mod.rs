//! The HTTP trigger (the data plane): accepts HTTP connections, routes each request to the app
//! owning its path, applies the node's limits before the request takes an instance, and hands
//! it to the path its app takes: a fresh (or `--reuse`d) WASI 0.2 instance
//! ([`fresh_instance`]) or the app's WASI 0.3 instances ([`on_instances`]).
//!
//! Platform answers (no route, body too large, overloaded, trap, timeout) carry a short fixed
//! text for the client; the full cause goes to the node's log ([`answers`]).

mod answers;
mod fresh_instance;
mod on_instances;
mod request_body;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt as _, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use self::answers::{CountedBody, platform_answer};
use self::request_body::{
    BodyReadError, LimitedBody, discard_body, read_body_head, read_body_rest,
};
use crate::connections::ConnectionLimits;
use crate::control::node::Node;
use crate::metrics::Outcome;
use crate::triggers::instances::InstanceRequest;

/// Body type of every data-plane response.
pub type ServeBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// How long a client may take to send request headers before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the data plane on `listener` until `shutdown` resolves, then lets requests in
/// flight finish (bounded by the request timeout).
pub async fn serve_data_plane(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let server = &node.config.server;
    let connections =
        ConnectionLimits::new(server.max_connections, server.max_connections_per_client);
    let threads = match node.http_threads {
        0 => None,
        count => match crate::triggers::http_threads::ConnectionThreads::start(count) {
            Ok(threads) => Some(threads),
            Err(err) => {
                tracing::warn!(
                    "serving connections on the shared runtime: cannot start the data-plane threads: {err:#}"
                );
                None
            }
        },
    };
    tracing::debug!(
        threads = threads.as_ref().map_or(0, |t| t.count()),
        "data-plane connection threads"
    );
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer, slot) = tokio::select! {
            accepted = connections.accept_retrying(&listener, "data plane") => accepted,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        let service = hyper::service::service_fn(move |req| {
            let node = node.clone();
            async move { Ok::<_, Infallible>(handle(&node, req).await) }
        });
        let watcher = graceful.watcher();
        let http = http.clone();
        let serve = move |stream| async move {
            let _slot = slot;
            let conn = http.serve_connection(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(conn).await {
                tracing::debug!("data-plane connection ended: {err}");
            }
        };
        match &threads {
            Some(threads) => threads.serve(stream, serve),
            None => drop(tokio::spawn(serve(stream))),
        }
    }
    let drain = Duration::from_millis(node.config.server.drain_timeout_ms);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_ms = node.config.server.drain_timeout_ms,
            "requests still in flight at the drain deadline were cut ([server] drain_timeout_ms)"
        );
    }
    if let Some(threads) = threads {
        let _ = tokio::task::spawn_blocking(move || drop(threads)).await;
    }
}

/// Routes one request and runs it; never fails (errors become platform answers).
pub async fn handle(node: &Arc<Node>, req: Request<Incoming>) -> Response<ServeBody> {
    let arrived = Instant::now();
    let response = route_and_run(node, req).await;
    node.metrics
        .first_byte
        .observe(arrived.elapsed().as_secs_f64());
    response
}

async fn route_and_run(node: &Arc<Node>, req: Request<Incoming>) -> Response<ServeBody> {
    let Some(app) = node.routes.current().lookup(req.uri().path()).cloned() else {
        return platform_answer(node, Outcome::NoRoute);
    };
    let limit = app.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        discard_body(req.into_body()).await;
        return platform_answer(node, Outcome::BodyTooLarge);
    }
    let (parts, mut incoming) = req.into_parts();
    let body_timeout = Duration::from_millis(node.config.server.request_body_timeout_ms);
    let (mut head, mut ended) = match read_body_head(&mut incoming, body_timeout).await {
        Ok(read) => read,
        Err(err) => return platform_answer(node, err.outcome()),
    };
    let Ok(permit) = app.concurrency.clone().try_acquire_owned() else {
        return platform_answer(node, Outcome::Overloaded);
    };
    if !node.memory_budget.has_room() {
        // Idle reused instances hold memory no request is using: give it to this one first.
        for app in node.routes.current().apps() {
            if let Some(warm) = &app.warm {
                warm.retire_all();
            }
        }
        if !node.memory_budget.has_room() {
            return platform_answer(node, Outcome::NoMemory);
        }
    }

    let deadline = Instant::now() + app.limits.timeout;
    let on_workers = match (&app.models, node.models.workers()) {
        (Some(models), Some(workers)) => Some((models, workers)),
        _ => None,
    };
    let mut buffered = None;
    if on_workers.is_some() && !ended {
        let share = buffered.insert(node.memory_budget.share());
        let read = read_body_rest(&mut incoming, &mut head, limit, deadline, share);
        if let Err(err) = read.await {
            // The client is still sending: read some of the rest away so that the answer is
            // not lost to a reset (see `discard_body`).
            if matches!(err, BodyReadError::TooLarge | BodyReadError::NoMemory) {
                tokio::spawn(discard_body(incoming));
            }
            return platform_answer(node, err.outcome());
        }
        ended = true;
    }

    let exceeded = Arc::new(AtomicBool::new(false));
    let req = Request::from_parts(parts, incoming).map(|inner| {
        let rest = (!ended).then_some(inner);
        LimitedBody::new(
            head,
            rest,
            limit,
            exceeded.clone(),
            app.usage.clone(),
            buffered,
        )
    });
    let request_id = crate::triggers::new_request_id();
    let result = match crate::triggers::instances::of(node, &app) {
        Some(instances) => {
            let request = InstanceRequest {
                id: request_id.clone(),
                deadline,
            };
            match on_workers {
                Some((models, workers)) => {
                    on_instances::run_on_workers(
                        &app, instances, models, workers, req, permit, request,
                    )
                    .await
                }
                None => on_instances::run(&app, &instances, req, permit, request).await,
            }
        }
        None => {
            let request_id = request_id.clone();
            fresh_instance::run(node, &app, req, permit, request_id, deadline, on_workers).await
        }
    };
    let outcome = match result {
        Ok(_) if exceeded.load(Ordering::Relaxed) => Err(Outcome::BodyTooLarge),
        other => other,
    };
    let mut response = match outcome {
        Ok(response) => {
            node.metrics.request(Outcome::Answered);
            match &app.usage {
                Some(usage) => {
                    response.map(|body| CountedBody::metered(body, usage.clone()).boxed_unsync())
                }
                None => response,
            }
        }
        Err(outcome) => platform_answer(node, outcome),
    };
    if let Ok(value) = http::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Response header naming the invocation, as its guest's log lines do (`edge logs`).
pub const REQUEST_ID_HEADER: &str = "edge-request-id";
