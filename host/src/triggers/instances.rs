//! WASI 0.3 HTTP apps (`wasi:http/handler@0.3`), served through wasmtime-wasi-http's instance
//! handler: their async handler keeps running in its store's event loop while bodies stream,
//! and with `--reuse-concurrency` one instance serves several requests at once. (0.2 apps with
//! `--reuse` take the direct path with [`super::warm`] instances.)
//!
//! Each app version gets one [`ProxyHandler`] per data-plane connection thread, on its first
//! request there (its instances then run on that thread's event loop). It creates instances with
//! the same store, grants and limits as the direct path ([`super::new_store`]) and lets each
//! serve up to `reuse.requests` requests, `reuse.concurrency` at once, retiring it when idle
//! for `reuse.idle_ms`. Per request: the time limit, counted from the request's arrival (the
//! request expires at its deadline, and guest code is interrupted then unless another request
//! in progress on the instance has a later one), the body limit and the concurrency permit;
//! per instance: the memory limit. An instance that traps is dropped, never reused. Usage:
//! invocations per request; CPU time, wall time and memory-seconds per instance (its worker's
//! polls, and its store's life less the time it waited idle for a request), so time an
//! instance spends serving several requests at once is counted once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ShouldAccept,
    TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};

use crate::api::Reuse;
use crate::apps::LoadedApp;
use crate::control::node::Node;
use crate::host_state::HostState;
use crate::metrics::Outcome;
use crate::usage::CpuTimed;

/// The instances of one app version.
pub type AppInstances = ProxyHandler<Instances>;

/// A request handed to an app's instances.
pub struct InstanceRequest {
    /// Its id, which the instance's log lines carry while it runs.
    pub id: Arc<str>,
    /// Its arrival plus the app's time limit: waiting for a turn or an instance counts.
    pub deadline: Instant,
}

/// How the handler makes instances of one app version.
pub struct Instances {
    app: Weak<LoadedApp>,
    node: Weak<Node>,
}

/// The instances of `app` for the calling connection thread, set up at its first request
/// there.
pub fn of(node: &Arc<Node>, app: &Arc<LoadedApp>) -> Option<Arc<AppInstances>> {
    app.handler_pre.as_ref()?;
    let erased = app.instances.current().get_or_init(|| {
        Arc::new(ProxyHandler::new(Instances {
            app: Arc::downgrade(app),
            node: Arc::downgrade(node),
        }))
    });
    erased.clone().downcast::<AppInstances>().ok()
}

/// What became of a request the handler could not answer.
pub fn classify_failure(app: &str, err: &wasmtime::Error) -> Outcome {
    if err.downcast_ref::<InstantiationError<Arc<str>>>().is_some() {
        tracing::warn!(app, "cannot instantiate: {err:#}");
        return Outcome::Overloaded;
    }
    if err.downcast_ref::<ExpirationError>().is_some()
        || matches!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        )
    {
        tracing::warn!(app, "request exceeded its time limit");
        return Outcome::TimedOut;
    }
    if err.downcast_ref::<TrapOrPanicError>().is_some() {
        tracing::warn!(app, "the instance trapped while handling the request");
        return Outcome::Trapped;
    }
    tracing::warn!(app, "guest failed: {err:?}");
    Outcome::Trapped
}

impl HandlerState for Instances {
    type StoreData = HostState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiry, Worker>> {
        let (Some(app), Some(node)) = (self.app.upgrade(), self.node.upgrade()) else {
            wasmtime::bail!("the app version was replaced");
        };
        let Some(pre) = app.handler_pre.as_ref() else {
            wasmtime::bail!("the app is not served through the instance handler");
        };
        let timeout = app.limits.timeout;
        // Invocations are counted per request by the HTTP trigger, not per instance.
        let mut store = super::new_store(
            &node,
            &app,
            Instant::now() + timeout,
            super::new_request_id(),
            None,
        );
        let proxy = match tokio::time::timeout(timeout, pre.instantiate_async(&mut store)).await {
            Ok(proxy) => proxy?,
            Err(_elapsed) => wasmtime::bail!("instantiation took longer than {timeout:?}"),
        };
        let idle_since = IdleSince::default();
        Ok(Instance {
            store,
            proxy,
            view: HostState::http_view,
            expiration: Expiry {
                idle: Duration::from_millis(app.version.reuse.idle_ms),
                timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::from_secs(86_400))),
                idle_since: idle_since.clone(),
            },
            state: Worker {
                app: Arc::from(app.name.as_str()),
                reuse: app.version.reuse,
                idle_since,
                fresh: AtomicBool::new(true),
            },
        })
    }

    /// Runs the worker (instantiation, then every request the instance serves) with the CPU
    /// time of its polls added to the app's usage, as the direct path does per request.
    fn spawn_worker(&self, worker: impl Future<Output = ()> + Send + 'static) {
        match self.app.upgrade().and_then(|app| app.usage.clone()) {
            Some(usage) => drop(tokio::spawn(CpuTimed::new(worker, usage))),
            None => drop(tokio::spawn(worker)),
        }
    }
}

/// Since when an instance has had no request in flight, as its handler last reported
/// (`None` while it serves). Written by [`Expiry`], which sees the handler's status; read by
/// [`Worker`], which has the store: the idle time is taken out of the instance's wall time
/// and memory-seconds when its next request starts or when it ends.
#[derive(Clone, Default)]
struct IdleSince(Arc<Mutex<Option<Instant>>>);

impl IdleSince {
    fn set(&self, since: Option<Instant>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }

    fn take(&self) -> Option<Instant> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// When an instance ends: idle past `idle`, or busy past the request time limit (a second
/// line of defence behind each request's own expiry).
pub struct Expiry {
    idle: Duration,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    idle_since: IdleSince,
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        state: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let wait = match state {
            WorkerStatus::Idle => self.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.timeout,
        };
        self.idle_since
            .set((state == WorkerStatus::Idle).then_some(start));
        let Some(deadline) = start.checked_add(wait) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// When guest code of an instance starting a request with `deadline` is interrupted: at that
/// deadline on an instance with nothing else in progress (a fresh one, or one that waited
/// idle); on a busy one, at the later of it and the `busy` one, since an interrupt ends every
/// request in progress on the instance and never one before its own deadline. (A request
/// whose deadline passes first still ends then, by its own expiry.)
fn guest_deadline(deadline: Instant, busy: Option<Instant>) -> Instant {
    busy.map_or(deadline, |busy| busy.max(deadline))
}

/// One instance's request accounting.
pub struct Worker {
    app: Arc<str>,
    reuse: Reuse,
    idle_since: IdleSince,
    /// No request has started on the instance yet.
    fresh: AtomicBool,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = InstanceRequest;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.requests as usize {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.concurrency as usize {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        request: InstanceRequest,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + 'static + Send + Sync>> {
        let InstanceRequest { id, deadline } = request;
        tracing::trace!(app = %self.app, request = %id, "request on an instance");
        let data = store.data_mut();
        let idle = self.idle_since.take();
        if let Some(since) = idle {
            data.idle_since(since);
        }
        data.busy_again();
        let first = self.fresh.swap(false, Ordering::Relaxed);
        data.set_deadline(guest_deadline(
            deadline,
            (!first && idle.is_none()).then(|| data.deadline()),
        ));
        // Its log lines name the newest request.
        data.tag_request(id);
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn drop(&self, mut store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(err) = result {
            tracing::warn!(app = %self.app, "instance ended with an error: {err:#}");
        }
        // Retired after waiting idle: that wait is not billed.
        if let Some(since) = self.idle_since.take() {
            store.data_mut().idle_since(since);
        }
        drop(store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_code_stops_at_the_request_deadline_unless_another_request_in_progress_needs_longer() {
        let now = Instant::now();
        let (early, late) = (now + Duration::from_secs(1), now + Duration::from_secs(5));
        // Fresh or idle: the request's own deadline, even one earlier than the last request's.
        assert_eq!(guest_deadline(early, None), early);
        // Busy: never cut short the request already in progress, nor the new one.
        assert_eq!(guest_deadline(early, Some(late)), late);
        assert_eq!(guest_deadline(late, Some(early)), late);
    }
}
