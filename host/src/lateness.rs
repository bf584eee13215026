//! How late the node's epoch thread wakes up: the one measure of time the node lost without
//! running at all. That thread sleeps one [`EPOCH_TICK`](crate::engine::EPOCH_TICK) at a time;
//! anything past the tick is time the machine did not give it: run-queue delay on a busy
//! machine (milliseconds), CPU-quota throttling of a container (`cpu.max`, up to its period,
//! usually 100 ms) or of a VM by its host, or a process stopped outright (`SIGSTOP`). (A
//! whole machine suspended to RAM is not counted: the monotonic clock stops with it.)
//! Requests in flight on that CPU waited as long, so a p99 spike that lines
//! up with late wake-ups was the machine's, not the guest's or the node's code. It sees the
//! CPU the thread was on; a host that throttles CPUs one by one stops the others at other
//! moments (often at the same one when all are busy; docs/benchmarks.md, "Freezes").
//!
//! Exported as the histogram `edge_wakeup_lateness_seconds`; a wake-up a second or more late
//! is also logged.

use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the buckets, in seconds: scheduling noise (1 ms), run-queue delay on a busy
/// machine (5–20 ms), quota throttling (50–100 ms), and stops (0.25 s and more).
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Lateness logged as a warning: the node stood still long enough for clients to notice.
const LOGGED: Duration = Duration::from_secs(1);

/// The lateness of the epoch thread's wake-ups.
#[derive(Clone)]
pub struct WakeupLateness(Histogram);

impl Default for WakeupLateness {
    fn default() -> Self {
        Self(Histogram::new(BUCKETS))
    }
}

impl WakeupLateness {
    /// Records one wake-up that came `late` after its tick was due.
    pub fn record(&self, late: Duration) {
        self.0.observe(late.as_secs_f64());
        if late >= LOGGED {
            tracing::warn!(
                late_ms = late.as_millis(),
                "the node did not run for {late:.1?}: its machine was stopped, throttled \
                 (a CPU quota) or overloaded; requests in flight waited as long"
            );
        }
    }

    /// Registers the histogram in the node's metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_wakeup_lateness_seconds",
            "How late the node's 10 ms timer thread woke beyond its tick: run-queue delay, CPU \
             quota throttling, or the machine stopped; requests in flight waited as long",
            self.0.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn rendered(lateness: &WakeupLateness) -> String {
        let mut registry = Registry::default();
        lateness.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_throttled_wake_up_lands_in_its_bucket_and_the_sum() {
        let lateness = WakeupLateness::default();
        lateness.record(Duration::from_micros(200));
        lateness.record(Duration::from_millis(100));
        let text = rendered(&lateness);
        assert!(
            text.contains("edge_wakeup_lateness_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("edge_wakeup_lateness_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edge_wakeup_lateness_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("edge_wakeup_lateness_seconds_bucket{le=\"0.1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("edge_wakeup_lateness_seconds_sum 0.1002"),
            "{text}"
        );
    }
}
