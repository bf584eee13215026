//! The HTTP trigger (the data plane): accepts HTTP connections, routes each request to the app owning its path
//! and runs it in a fresh instance with the node's limits.
//!
//! Platform answers (no route, body too large, overloaded, trap, timeout) carry a short fixed
//! text for the client; the full cause goes to the node's log.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use super::body_ahead::{with_body_started, with_body_written_within};
use super::instances::InstanceRequest;
use crate::apps::LoadedApp;
use crate::capabilities::nn::{AppModels, InferenceWorkers};
use crate::connections::ConnectionLimits;
use crate::control::node::Node;
use crate::metrics::Outcome;
use crate::usage::{AppUsage, BudgetShare, CpuTimed, Trigger};

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
        count => match super::http_threads::ConnectionThreads::start(count) {
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
            accepted = connections.accept(&listener) => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!("accepting a data-plane connection: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
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

/// How much of a request body is read before the request takes an instance: all of a body up
/// to this size, the start of a larger one.
const BODY_HEAD_BYTES: usize = 64 * 1024;

/// Why a request body, or its start, could not be read.
enum BodyReadError {
    TimedOut,
    ClientGone,
    /// Past the app's body limit.
    TooLarge,
    /// The node's memory budget for guests had no room for it.
    NoMemory,
}

impl BodyReadError {
    /// The platform answer for it.
    fn outcome(self) -> Outcome {
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
async fn read_body_head(
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
async fn read_body_rest(
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
    let req = Request::from_parts(parts, incoming).map(|inner| LimitedBody {
        head,
        inner: (!ended).then_some(inner),
        remaining: limit,
        limit,
        exceeded: exceeded.clone(),
        usage: app.usage.clone(),
        _buffered: buffered,
    });
    let request_id = super::new_request_id();
    let result = match super::instances::of(node, &app) {
        Some(instances) => {
            let request = InstanceRequest {
                id: request_id.clone(),
                deadline,
            };
            match on_workers {
                Some((models, workers)) => {
                    run_on_instances_on_workers(
                        &app, instances, models, workers, req, permit, request,
                    )
                    .await
                }
                None => run_on_instances(&app, &instances, req, permit, request).await,
            }
        }
        None => {
            let request_id = request_id.clone();
            run_guest(node, &app, req, permit, request_id, deadline, on_workers).await
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
                Some(usage) => response.map(|body| {
                    CountedBody {
                        inner: body,
                        sent: 0,
                        usage: Some(usage.clone()),
                        _permit: None,
                    }
                    .boxed_unsync()
                }),
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

/// Runs the request on a fresh instance of the app (or, with `--reuse`, on an idle one of
/// its [`super::warm`] instances) and calls its `incoming-handler`, answering by `deadline`.
/// An app granted a model (`on_workers`) runs on the inference workers, within its share.
async fn run_guest(
    node: &Arc<Node>,
    app: &Arc<LoadedApp>,
    req: Request<LimitedBody>,
    permit: tokio::sync::OwnedSemaphorePermit,
    request_id: Arc<str>,
    deadline: Instant,
    on_workers: Option<(&Arc<AppModels>, &InferenceWorkers)>,
) -> Result<Response<ServeBody>, Outcome> {
    let Some(indices) = app.http.clone() else {
        return Err(Outcome::NoRoute);
    };
    let warm = app.warm.clone();
    let (mut store, kept) = match warm.as_ref().and_then(|warm| warm.take()) {
        Some(mut instance) => {
            instance
                .store
                .data_mut()
                .begin_request(deadline, request_id, Trigger::Http);
            (instance.store, Some((instance.proxy, instance.served)))
        }
        None => (
            super::new_store(node, app, deadline, request_id, Some(Trigger::Http)),
            None,
        ),
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let prepared = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(sender)?)));
    let (incoming, outparam) = match prepared {
        Ok(pair) => pair,
        Err(err) => {
            tracing::debug!(app = %app.name, "cannot pass the request to the guest: {err:#}");
            return Err(Outcome::BadRequest);
        }
    };

    // On the inference workers: dropped when the guest's handler returns (or fails), before
    // its instance is torn down; the answer waits for that (see `answer_of_task`).
    let (returned, handler_returned) = match on_workers {
        Some(_) => {
            let (returned, handler_returned) = tokio::sync::oneshot::channel::<()>();
            (Some(returned), Some(handler_returned))
        }
        None => (None, None),
    };
    let pre = app.pre.clone();
    let node_for_task = node.clone();
    let run_request = async move {
        // The permit lives as long as the instance, body streaming included.
        let _permit = permit;
        let run = async move {
            let (proxy, served) = match kept {
                Some(kept) => kept,
                None => {
                    let started = Instant::now();
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|err| err.context(InstantiationFailed))?;
                    node_for_task
                        .metrics
                        .instantiate
                        .observe(started.elapsed().as_secs_f64());
                    (indices.load(&mut store, &instance)?, 0)
                }
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await?;
            if let Some(returned) = returned {
                drop(returned);
                // Inference's own threads spin a while after each inference, so every core
                // may be busy now: the connection's thread, woken for this answer, would wait
                // for this one to tear the instance down. It gets the core first.
                std::thread::yield_now();
            }
            Ok::<_, wasmtime::Error>((store, proxy, served))
        };
        // Epoch interruption stops guest code at the deadline; this also ends a guest that is
        // waiting in the host (e.g. for a body that never comes) or streaming past it. Only
        // an instance whose handler returned normally is kept for the next request.
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(Ok((mut store, proxy, served))) => {
                if let Some(warm) = warm {
                    store.data_mut().end_request();
                    warm.put_back(super::warm::WarmInstance::kept(store, proxy, served));
                }
                Ok(())
            }
            Ok(Err(err)) => Err(err),
            Err(_elapsed) => Err(wasmtime::Error::from(wasmtime::Trap::Interrupt)),
        }
    };
    // One future type either way, without boxing: metering on or off.
    let run_request = match &app.usage {
        Some(usage) => {
            futures_util::future::Either::Left(CpuTimed::new(run_request, usage.clone()))
        }
        None => futures_util::future::Either::Right(run_request),
    };
    // Apps granted a model block their thread in inference: keep them off the data plane's,
    // and within the app's share of the inference workers (waiting does not hold a thread).
    if let (Some((models, workers)), Some(handler_returned)) = (on_workers, handler_returned) {
        let share = models.worker_share();
        let task = workers.spawn(async move {
            let _turn = share.acquire_owned().await;
            run_request.await
        });
        return answer_of_task(app, deadline, receiver, handler_returned, task).await;
    }
    let run = RunsToEnd::new(run_request);
    answer_inline(app, deadline, receiver, run).await
}

/// Logs that a request of `app` ran past its time limit, and gives the answer for that.
fn time_limit_exceeded(app: &LoadedApp) -> Outcome {
    let limit = app.limits.timeout;
    tracing::warn!(app = %app.name, "request exceeded the {limit:?} time limit");
    Outcome::TimedOut
}

/// How long the answer of a request on the inference workers waits, once its head is set, for
/// its guest's handler to return, before the head goes out with what there is of the body.
const BODY_FROM_WORKERS_WAIT: Duration = Duration::from_millis(1);

/// The response of a request running in its own `task`, by its `deadline`. Once the head is
/// set, the answer waits up to [`BODY_FROM_WORKERS_WAIT`] for `handler_returned` (dropped when
/// the guest's handler returns) and then reads what there is of the body
/// ([`with_body_written_within`]): a guest that writes its body and returns (most do) wakes
/// this thread once more, with its whole body in the channel, instead of once per frame and
/// once for its end, and its answer leaves in one write with a `content-length`. A guest
/// still running then streams as before, its head held that long at most.
async fn answer_of_task(
    app: &LoadedApp,
    deadline: Instant,
    receiver: ResponseReceiver,
    handler_returned: tokio::sync::oneshot::Receiver<()>,
    task: tokio::task::JoinHandle<wasmtime::Result<()>>,
) -> Result<Response<ServeBody>, Outcome> {
    let name = &*app.name;
    match tokio::time::timeout_at(deadline.into(), receiver).await {
        Ok(Ok(answer)) => {
            let response = guest_answer(name, answer)?;
            let response =
                with_body_written_within(response, handler_returned, BODY_FROM_WORKERS_WAIT).await;
            Ok(response.map(http_body_util::BodyExt::boxed_unsync))
        }
        // The guest ended without calling `response-outparam::set`: find out why.
        Ok(Err(_)) => Err(match task.await {
            Ok(ended) => no_answer(name, ended),
            Err(join) => {
                tracing::error!(app = name, "request task failed: {join}");
                Outcome::Trapped
            }
        }),
        Err(_elapsed) => {
            // Wait for the instance to be gone, so its concurrency slot is free when we answer.
            task.abort();
            let _ = task.await;
            Err(time_limit_exceeded(app))
        }
    }
}

/// The response of a request run in the connection's own task until its response head is
/// ready: a guest that answers and ends in one go (most do) needs no task of its own and no
/// other thread woken. One still running then (streaming its body) goes on in a task of its
/// own, as does one whose client leaves first ([`RunsToEnd`]).
async fn answer_inline<F>(
    app: &LoadedApp,
    deadline: Instant,
    mut receiver: ResponseReceiver,
    mut run: RunsToEnd<F>,
) -> Result<Response<ServeBody>, Outcome>
where
    F: std::future::Future<Output = wasmtime::Result<()>> + Send + 'static,
{
    let name = &*app.name;
    let limit = tokio::time::sleep_until(deadline.into());
    tokio::pin!(limit);
    tokio::select! {
        biased;
        ended = &mut run => match receiver.try_recv() {
            Ok(answer) => guest_answer(name, answer),
            Err(_) => Err(no_answer(name, ended)),
        },
        answer = &mut receiver => {
            match answer {
                Ok(answer) => {
                    run.detach();
                    guest_answer(name, answer)
                }
                // The guest dropped its response without setting it and runs on: its end says
                // why (it ends by its own time limit at the latest).
                Err(_) => Err(no_answer(name, run.await)),
            }
        }
        () = &mut limit => {
            // Dropping the instance now frees its concurrency slot before we answer.
            run.cancel();
            Err(time_limit_exceeded(app))
        }
    }
}

/// What a guest sets its `response-outparam` to: a response, or an error code.
type GuestAnswer = Result<Response<ServeBody>, ErrorCode>;

/// Where a request's [`GuestAnswer`] arrives.
type ResponseReceiver = tokio::sync::oneshot::Receiver<GuestAnswer>;

/// The response a guest set, or the platform answer for the error code it set instead.
fn guest_answer(app: &str, answer: GuestAnswer) -> Result<Response<ServeBody>, Outcome> {
    answer.map_err(|code| {
        tracing::warn!(app, "guest answered with an error code: {code:?}");
        Outcome::Trapped
    })
}

/// Why a guest ended without setting a response.
fn no_answer(app: &str, ended: wasmtime::Result<()>) -> Outcome {
    match ended {
        Ok(()) => {
            tracing::warn!(app, "guest returned without setting a response");
            Outcome::Trapped
        }
        Err(err) => classify_guest_failure(app, &err),
    }
}

/// A request's run, polled in place, that is never cut short by its caller going away: if it
/// is dropped unfinished (the client left), the rest runs in a task of its own, so a guest
/// ends as it would have with the client there (bounded by its time limit). Only
/// [`RunsToEnd::cancel`] stops it.
struct RunsToEnd<F: std::future::Future + Send + 'static> {
    run: Option<Pin<Box<F>>>,
}

impl<F> RunsToEnd<F>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    fn new(run: F) -> Self {
        Self {
            run: Some(Box::pin(run)),
        }
    }

    /// Lets the rest run in a task of its own.
    fn detach(&mut self) {
        if let Some(run) = self.run.take() {
            tokio::spawn(run);
        }
    }

    /// Stops the run, dropping what it holds (its instance) now.
    fn cancel(&mut self) {
        self.run = None;
    }
}

impl<F> std::future::Future for RunsToEnd<F>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(run) = self.run.as_mut() else {
            return Poll::Pending;
        };
        let polled = run.as_mut().poll(cx);
        if polled.is_ready() {
            self.run = None;
        }
        polled
    }
}

impl<F: std::future::Future + Send + 'static> Drop for RunsToEnd<F> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = run.await;
            });
        }
    }
}

/// [`run_on_instances`] for a 0.3 app granted a model. A 0.3 instance runs on the runtime
/// that first handed it a request, so the request is handed over from the inference workers,
/// within the app's share of them: the instance lives there and its blocking `compute` never
/// holds a data-plane thread. Waiting for the app's share counts toward its time limit.
async fn run_on_instances_on_workers(
    app: &Arc<LoadedApp>,
    instances: Arc<super::instances::AppInstances>,
    models: &AppModels,
    workers: &InferenceWorkers,
    req: Request<LimitedBody>,
    permit: tokio::sync::OwnedSemaphorePermit,
    request: InstanceRequest,
) -> Result<Response<ServeBody>, Outcome> {
    let (share, app) = (models.worker_share(), app.clone());
    let on_workers = workers.spawn(async move {
        let turn = tokio::time::timeout_at(request.deadline.into(), share.acquire_owned()).await;
        let Ok(Ok(_turn)) = turn else {
            return Err(time_limit_exceeded(&app));
        };
        run_on_instances(&app, &instances, req, permit, request).await
    });
    on_workers.await.unwrap_or_else(|join| {
        tracing::error!("request task failed: {join}");
        Err(Outcome::Trapped)
    })
}

/// Passes the request to the app's instances (WASI 0.3, or reuse): a new or reused instance
/// answers it by its deadline (the request's arrival plus its time limit); the concurrency
/// permit is held until the response body ends. The start of the body is read before the
/// head goes to hyper ([`with_body_started`]), so they leave together.
async fn run_on_instances(
    app: &Arc<LoadedApp>,
    instances: &super::instances::AppInstances,
    req: Request<LimitedBody>,
    permit: tokio::sync::OwnedSemaphorePermit,
    request: InstanceRequest,
) -> Result<Response<ServeBody>, Outcome> {
    if let Some(usage) = &app.usage {
        usage.count_invocation(Trigger::Http);
    }
    let deadline = request.deadline;
    let req = req.map(http_body_util::BodyExt::boxed_unsync);
    let handled = instances.handle(request, req);
    match tokio::time::timeout_at(deadline.into(), handled).await {
        Ok(Ok(response)) => Ok(with_body_started(response).await.map(|body| {
            CountedBody {
                inner: body,
                sent: 0,
                usage: None,
                _permit: Some(permit),
            }
            .boxed_unsync()
        })),
        // An instance interrupted at the deadline ends as a trap of the whole instance.
        Ok(Err(_)) if Instant::now() >= deadline => Err(time_limit_exceeded(app)),
        Ok(Err(err)) => Err(super::instances::classify_failure(&app.name, &err)),
        Err(_elapsed) => Err(time_limit_exceeded(app)),
    }
}

/// Marks errors raised while creating the instance rather than while running it; with the
/// pooling allocator these mean every slot is taken, which is overload, not a guest bug.
#[derive(Debug)]
struct InstantiationFailed;

impl std::fmt::Display for InstantiationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("instantiation failed")
    }
}

fn classify_guest_failure(app: &str, err: &wasmtime::Error) -> Outcome {
    // First: an instantiation interrupted at the deadline (the request spent its time waiting
    // for a turn on the inference workers) is the request's time limit, not overload.
    if matches!(
        err.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        tracing::warn!(app, "guest interrupted at its time limit");
        return Outcome::TimedOut;
    }
    if err.downcast_ref::<InstantiationFailed>().is_some() {
        tracing::warn!(app, "cannot instantiate: {err:#}");
        return Outcome::Overloaded;
    }
    tracing::warn!(app, "guest trapped: {err:?}");
    Outcome::Trapped
}

/// The fixed answer for a request the platform ends itself.
fn platform_answer(node: &Node, outcome: Outcome) -> Response<ServeBody> {
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

/// How much of a rejected body is read and dropped before answering 413. Closing a socket
/// with unread data makes TCP send a reset that can destroy the 413 before the client reads
/// it; past this much (or [`DISCARD_TIME`]) the connection is closed anyway.
const DISCARD_BYTES: u64 = 8 * 1024 * 1024;
const DISCARD_TIME: Duration = Duration::from_secs(2);

async fn discard_body(mut body: Incoming) {
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
struct LimitedBody {
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

/// A response body that adds the bytes it sent to the app's usage when it ends, and holds
/// the app's concurrency permit while it streams (instances path).
struct CountedBody<B = ServeBody> {
    inner: B,
    sent: u64,
    usage: Option<Arc<AppUsage>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instantiation_interrupted_at_the_deadline_is_a_time_out_not_overload() {
        let interrupted =
            wasmtime::Error::from(wasmtime::Trap::Interrupt).context(InstantiationFailed);
        assert_eq!(
            classify_guest_failure("app", &interrupted),
            Outcome::TimedOut
        );
        let no_slot = wasmtime::Error::msg("no free slot in the pool").context(InstantiationFailed);
        assert_eq!(classify_guest_failure("app", &no_slot), Outcome::Overloaded);
    }
}
