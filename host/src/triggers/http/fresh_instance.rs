//! A request of a WASI 0.2 app on a fresh instance (or, with `--reuse`, an idle one of its
//! [`crate::triggers::warm`] instances): the run of its `incoming-handler`, polled in the
//! connection's task or, for an app granted a model, on the inference workers, and the
//! guest's answer by the request's deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use super::ServeBody;
use super::answers::time_limit_exceeded;
use super::request_body::LimitedBody;
use crate::apps::LoadedApp;
use crate::capabilities::nn::{AppModels, InferenceWorkers};
use crate::control::node::Node;
use crate::metrics::Outcome;
use crate::triggers::body_ahead::with_body_written_within;
use crate::usage::{CpuTimed, Trigger};

/// Runs the request on a fresh instance of the app (or, with `--reuse`, on an idle one of
/// its warm instances) and calls its `incoming-handler`, answering by `deadline`.
/// An app granted a model (`on_workers`) runs on the inference workers, within its share.
pub(super) async fn run(
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
            crate::triggers::new_store(node, app, deadline, request_id, Some(Trigger::Http)),
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
                    warm.put_back(crate::triggers::warm::WarmInstance::kept(
                        store, proxy, served,
                    ));
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
