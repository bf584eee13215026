//! Instance reuse for WASI 0.2 HTTP apps deployed with `--reuse N`: the instances of one app
//! version that no request is using, kept for the next request.
//!
//! A 0.2 instance serves one request at a time, so reuse needs no event loop or hand-off: a
//! request takes an idle instance (or makes one) and runs it on its own task exactly as a
//! fresh instance runs, with the same time limit, CPU, wall-time and memory metering and log
//! tagging per request. Only an instance whose handler returned normally comes back; one that
//! trapped, overran its time limit or ran out of memory is dropped with its store. An instance
//! is retired after `requests` requests or `idle_ms` unused (idle ones are swept by a task
//! that ends with the app version), and every idle one is dropped when the node's memory
//! budget for guests runs short. Idle instances are kept per data-plane connection thread and
//! taken by their own thread first.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

use super::http_threads::PerThread;
use crate::api::Reuse;
use crate::host_state::HostState;

/// An instance between requests.
pub struct WarmInstance {
    pub store: Store<HostState>,
    pub proxy: Proxy,
    /// Requests it has answered so far.
    pub served: u32,
    parked: Instant,
}

impl WarmInstance {
    /// An instance that has answered a request after `served` earlier ones.
    pub fn kept(store: Store<HostState>, proxy: Proxy, served: u32) -> Self {
        Self {
            store,
            proxy,
            served,
            parked: Instant::now(),
        }
    }
}

/// The idle instances of one app version: one list per data-plane connection thread, so a
/// request first takes an instance its own thread parked (its pages are likeliest in that
/// core's caches) and only then one from another thread's list.
pub struct WarmInstances {
    idle: PerThread<Mutex<Vec<WarmInstance>>>,
    requests: u32,
    idle_for: Duration,
    sweeper: OnceLock<()>,
}

impl WarmInstances {
    /// Idle lists for `threads` connection threads (at least one).
    pub fn new(reuse: &Reuse, threads: usize) -> Arc<Self> {
        Arc::new(Self {
            idle: PerThread::new(threads, || Mutex::new(Vec::new())),
            requests: reuse.requests,
            idle_for: Duration::from_millis(reuse.idle_ms),
            sweeper: OnceLock::new(),
        })
    }

    /// The most recently parked idle instance of the caller's thread that has not expired,
    /// else one of another thread's, or `None` when there is none.
    pub fn take(&self) -> Option<WarmInstance> {
        self.idle.current_first().find_map(|list| {
            let (expired, taken) = {
                let mut idle = lock(list);
                (self.split_off_expired(&mut idle), idle.pop())
            };
            drop(expired);
            taken
        })
    }

    /// Gives back an instance whose request was answered: kept for the next request unless
    /// it has served its `--reuse` count.
    pub fn put_back(self: &Arc<Self>, mut instance: WarmInstance) {
        instance.served += 1;
        if instance.served >= self.requests {
            return;
        }
        instance.parked = Instant::now();
        lock(self.idle.current()).push(instance);
        self.sweeper
            .get_or_init(|| start_sweeper(Arc::downgrade(self)));
    }

    /// Drops every idle instance (the node's memory for guests is short).
    pub fn retire_all(&self) {
        for list in self.idle.iter() {
            let idle = std::mem::take(&mut *lock(list));
            drop(idle);
        }
    }

    /// How many instances are idle now.
    pub fn idle_count(&self) -> usize {
        self.idle.iter().map(|list| lock(list).len()).sum()
    }

    /// Drops the instances idle for `idle_ms` or longer; their stores (and pool slots)
    /// go after the lock is released.
    fn sweep(&self) {
        for list in self.idle.iter() {
            let expired = self.split_off_expired(&mut lock(list));
            drop(expired);
        }
    }

    /// Removes the expired instances from `idle`. Instances are pushed as they are parked,
    /// so the expired ones are a prefix.
    fn split_off_expired(&self, idle: &mut Vec<WarmInstance>) -> Vec<WarmInstance> {
        let expired = idle.partition_point(|instance| instance.parked.elapsed() >= self.idle_for);
        idle.drain(..expired).collect()
    }
}

fn lock(list: &Mutex<Vec<WarmInstance>>) -> std::sync::MutexGuard<'_, Vec<WarmInstance>> {
    // A panic while holding the lock leaves a plain list of instances: still usable.
    list.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sweeps `instances` a few times per idle period until the app version is gone.
fn start_sweeper(instances: Weak<WarmInstances>) {
    let Some(period) = instances.upgrade().map(|instances| {
        (instances.idle_for / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match instances.upgrade() {
                Some(instances) => instances.sweep(),
                None => break,
            }
        }
    });
}
