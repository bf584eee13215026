//! Measuring one invocation: its wall time and linear memory over time (through the store's
//! resource limiter, which also enforces the app's memory limit and the node's
//! [`MemoryBudget`]), and the CPU time of the thread while the invocation's future is polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use super::AppUsage;

/// What triggered an invocation (usage is counted per trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Http,
    Message,
}

/// Most instances one store may create (a component and its nested core instances).
const MAX_INSTANCES: usize = 64;

/// The node-wide budget for guests' linear memory (`[limits] node_memory_mib`): every store's
/// memories count against it from creation to drop. A growth past it fails (the guest sees an
/// allocation failure, as past its app's own limit), and new invocations are refused (503)
/// once guests hold three quarters of it, so those in flight keep room to grow.
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// Whether a new invocation may start: guests hold under three quarters of the budget.
    pub fn has_room(&self) -> bool {
        self.used.load(Ordering::Relaxed) < self.limit / 4 * 3
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// A share of this budget for request bodies the node holds on a guest's behalf (a model
    /// app's body, read whole before the request runs): empty until it takes bytes, given
    /// back when dropped.
    pub fn share(self: &Arc<Self>) -> BudgetShare {
        BudgetShare {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::SeqCst);
        if before.saturating_add(bytes) > self.limit {
            self.give_back(bytes);
            return false;
        }
        true
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// Bytes taken from a [`MemoryBudget`] outside any store, given back on drop.
pub struct BudgetShare {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl BudgetShare {
    /// Takes `bytes` more; false (taking nothing) past the budget's limit.
    pub fn take(&mut self, bytes: u64) -> bool {
        if !self.budget.take(bytes) {
            return false;
        }
        self.bytes += bytes;
        true
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

/// The store's resource limiter and usage meter. Memory-seconds integrate the instance's
/// total linear memory (all its memories) over the invocation's life: every growth is
/// stamped, and the integral closes when the store is dropped, however the invocation ended
/// (answered, trapped, timed out, cancelled). A reused instance closes it at the end of each
/// request ([`Self::pause`]) and opens it again at the next ([`Self::resume`]), so the time it
/// waits idle between requests is not counted.
pub struct InvocationMeter {
    memory_limit: usize,
    budget: Arc<MemoryBudget>,
    /// Bytes taken from the budget (given back on drop).
    held: u64,
    usage: Option<Arc<AppUsage>>,
    /// When the current request's window opened; `None` while paused between requests.
    started: Option<Instant>,
    /// Linear memory bytes now, and since when.
    bytes: u64,
    since: Instant,
    /// Integral of memory over time so far, in byte-nanoseconds.
    byte_nanos: u128,
}

impl InvocationMeter {
    /// A meter for one instance of the app whose usage is `usage` (`None`: metering off,
    /// only the memory limit applies), counting one invocation of `trigger` when given.
    pub fn new(
        memory_limit: usize,
        budget: Arc<MemoryBudget>,
        usage: Option<Arc<AppUsage>>,
        trigger: Option<Trigger>,
    ) -> Self {
        if let (Some(usage), Some(trigger)) = (&usage, trigger) {
            usage.count_invocation(trigger);
        }
        let now = Instant::now();
        Self {
            memory_limit,
            budget,
            held: 0,
            usage,
            started: Some(now),
            bytes: 0,
            since: now,
            byte_nanos: 0,
        }
    }

    /// The app's usage counters, when metering is on.
    pub fn usage(&self) -> Option<&Arc<AppUsage>> {
        self.usage.as_ref()
    }

    /// Closes the current request's window: its wall time and memory-time go to the usage.
    pub fn pause(&mut self) {
        self.close_window(Instant::now());
    }

    /// Closes the window at `at`, a moment already past (when the instance went idle):
    /// the time since is not counted.
    pub fn pause_since(&mut self, at: Instant) {
        self.close_window(at.min(Instant::now()));
    }

    /// Opens the window of the next request on a reused instance, counting one invocation
    /// of `trigger` when given (`None`: the trigger counts its invocations itself).
    pub fn resume(&mut self, trigger: Option<Trigger>) {
        if let (Some(usage), Some(trigger)) = (&self.usage, trigger) {
            usage.count_invocation(trigger);
        }
        if self.started.is_some() {
            return;
        }
        let now = Instant::now();
        self.started = Some(now);
        self.since = now;
    }

    fn close_window(&mut self, now: Instant) {
        let Some(started) = self.started.take() else {
            return;
        };
        self.advance(now);
        let byte_nanos = std::mem::take(&mut self.byte_nanos);
        let Some(usage) = &self.usage else {
            return;
        };
        let wall = now.saturating_duration_since(started).as_nanos();
        usage
            .wall_nanos
            .fetch_add(u64::try_from(wall).unwrap_or(u64::MAX), Ordering::Relaxed);
        // KiB-milliseconds: a 128 MiB instance for 10 s is 1.3e9, so u64 holds ~1e10 of them.
        let kib_ms = byte_nanos / (1024 * 1_000_000);
        usage
            .memory_kib_ms
            .fetch_add(u64::try_from(kib_ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since).as_nanos();
        self.byte_nanos += u128::from(self.bytes) * elapsed;
        self.since = now;
    }
}

impl wasmtime::ResourceLimiter for InvocationMeter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Ok(false);
        }
        let grown = desired.saturating_sub(current) as u64;
        if !self.budget.take(grown) {
            tracing::warn!(
                used_mib = self.budget.used() / (1024 * 1024),
                "a guest's memory growth was refused: the node's memory budget for guests is spent"
            );
            return Ok(false);
        }
        self.held += grown;
        if let Some(usage) = &self.usage {
            // Instantiation creates each memory from nothing; growing one that had pages is
            // what the guest asked for while it ran.
            if current > 0 {
                usage.memory_growths.fetch_add(1, Ordering::Relaxed);
            }
            self.advance(Instant::now());
            self.bytes += desired.saturating_sub(current) as u64;
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Bounded by the pool's (or the module's) table limits.
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }
}

impl Drop for InvocationMeter {
    fn drop(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.held));
        self.close_window(Instant::now());
    }
}

pin_project_lite::pin_project! {
    /// A future whose polls' thread CPU time is added to an app's usage: the guest's code and
    /// the host calls it makes, as they run on the polling thread (inference on the workers
    /// included, as it runs inside the poll). No allocation: the inner future is pinned in
    /// place.
    pub struct CpuTimed<F> {
        #[pin]
        inner: F,
        usage: Arc<AppUsage>,
    }
}

impl<F> CpuTimed<F> {
    pub fn new(inner: F, usage: Arc<AppUsage>) -> Self {
        Self { inner, usage }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let before = thread_cpu_nanos();
        let result = this.inner.poll(cx);
        let spent = thread_cpu_nanos().saturating_sub(before);
        this.usage.cpu_nanos.fetch_add(spent, Ordering::Relaxed);
        result
    }
}

/// CPU time the calling thread has used, in nanoseconds.
fn thread_cpu_nanos() -> u64 {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(time.tv_sec)
        .unwrap_or_default()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(time.tv_nsec).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn memory_seconds_integrate_growth_over_time_and_the_limit_holds() {
        let usage = Arc::new(AppUsage::default());
        {
            let budget = MemoryBudget::new(u64::MAX);
            let mut meter =
                InvocationMeter::new(64 << 20, budget, Some(usage.clone()), Some(Trigger::Http));
            assert!(meter.memory_growing(0, 32 << 20, None).unwrap());
            assert!(!meter.memory_growing(32 << 20, 65 << 20, None).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let kib_ms = usage.memory_kib_ms.load(Ordering::Relaxed);
        // 32 MiB for at least 50 ms: 32768 KiB x 50 ms.
        assert!(kib_ms >= 32768 * 50, "{kib_ms}");
        assert_eq!(usage.invocations_http.load(Ordering::Relaxed), 1);
        assert!(usage.wall_nanos.load(Ordering::Relaxed) >= 50_000_000);
    }

    #[test]
    fn a_budget_share_takes_what_fits_and_gives_it_all_back_when_dropped() {
        let budget = MemoryBudget::new(10);
        {
            let mut share = budget.share();
            assert!(share.take(6));
            assert!(!share.take(5), "past the limit");
            assert!(share.take(4));
            assert_eq!(budget.used(), 10);
        }
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn only_granted_growths_of_a_memory_with_pages_count_as_growths() {
        let usage = Arc::new(AppUsage::default());
        let mut meter = InvocationMeter::new(
            64 << 20,
            MemoryBudget::new(u64::MAX),
            Some(usage.clone()),
            None,
        );
        let growths = || usage.memory_growths.load(Ordering::Relaxed);
        // Instantiation creates the memory: not a growth.
        assert!(meter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(growths(), 0);
        assert!(meter.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(growths(), 1);
        // Refused (over the instance's limit): not a growth.
        assert!(!meter.memory_growing(2 << 20, 65 << 20, None).unwrap());
        assert_eq!(growths(), 1);
    }

    #[test]
    fn a_paused_meter_does_not_count_the_idle_time_between_requests() {
        let usage = Arc::new(AppUsage::default());
        let whole = Instant::now();
        let idle = std::time::Duration::from_millis(500);
        {
            let mut meter = InvocationMeter::new(
                64 << 20,
                MemoryBudget::new(u64::MAX),
                Some(usage.clone()),
                None,
            );
            assert!(meter.memory_growing(0, 32 << 20, None).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
            meter.pause();
            let first = usage.wall_nanos.load(Ordering::Relaxed);
            assert!(first >= 20_000_000, "{first}");
            std::thread::sleep(idle);
            meter.resume(Some(Trigger::Http));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Both windows counted, the idle gap between them not: whatever the machine's speed,
        // the windows fit in the whole time less the gap.
        let wall = usage.wall_nanos.load(Ordering::Relaxed);
        let outside_gap = (whole.elapsed() - idle).as_nanos() as u64;
        assert!(
            wall >= 40_000_000 && wall <= outside_gap,
            "{wall} of {outside_gap}"
        );
        let kib_ms = usage.memory_kib_ms.load(Ordering::Relaxed);
        assert!(
            kib_ms >= 32768 * 40 && kib_ms <= 32768 * outside_gap.div_ceil(1_000_000),
            "{kib_ms}"
        );
    }

    #[test]
    fn an_idle_stretch_already_past_is_taken_out_of_the_window() {
        let usage = Arc::new(AppUsage::default());
        let whole = Instant::now();
        let idle = std::time::Duration::from_millis(400);
        {
            let mut meter = InvocationMeter::new(
                64 << 20,
                MemoryBudget::new(u64::MAX),
                Some(usage.clone()),
                None,
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
            let idle_from = Instant::now();
            std::thread::sleep(idle);
            meter.pause_since(idle_from);
            meter.resume(None);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let wall = usage.wall_nanos.load(Ordering::Relaxed);
        let outside_idle = (whole.elapsed() - idle).as_nanos() as u64;
        assert!(
            wall >= 40_000_000 && wall <= outside_idle,
            "{wall} of {outside_idle}"
        );
        assert_eq!(usage.invocations_http.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_node_budget_refuses_growth_past_it_and_gets_everything_back_on_drop() {
        let budget = MemoryBudget::new(40 << 20);
        let mut first = InvocationMeter::new(64 << 20, budget.clone(), None, None);
        assert!(first.memory_growing(0, 25 << 20, None).unwrap());
        assert!(budget.has_room(), "25 of 40 MiB held: under three quarters");
        let mut second = InvocationMeter::new(64 << 20, budget.clone(), None, None);
        assert!(second.memory_growing(0, 10 << 20, None).unwrap());
        assert!(!budget.has_room(), "35 of 40 MiB held");
        assert!(!second.memory_growing(10 << 20, 20 << 20, None).unwrap());
        assert_eq!(budget.used(), 35 << 20, "a refused growth takes nothing");
        drop(first);
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn cpu_time_of_a_busy_future_is_counted() {
        let usage = Arc::new(AppUsage::default());
        // Spins until the thread used 30 ms of CPU, however busy the machine is.
        let busy = CpuTimed::new(
            async {
                let started = thread_cpu_nanos();
                let mut x = 0u64;
                while thread_cpu_nanos() - started < 30_000_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            },
            usage.clone(),
        );
        futures_util::FutureExt::now_or_never(busy).unwrap();
        let cpu = usage.cpu_nanos.load(Ordering::Relaxed);
        assert!((30_000_000..1_000_000_000).contains(&cpu), "{cpu}");
    }
}
