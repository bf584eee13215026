//! Node counters, rendered in the Prometheus text format on the admin API's `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a data-plane request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    BadRequest,
    NoRoute,
    BodyTooLarge,
    Overloaded,
    Trapped,
    TimedOut,
}

impl Outcome {
    const ALL: [Outcome; 7] = [
        Outcome::Answered,
        Outcome::BadRequest,
        Outcome::NoRoute,
        Outcome::BodyTooLarge,
        Outcome::Overloaded,
        Outcome::Trapped,
        Outcome::TimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::BadRequest => "bad_request",
            Outcome::NoRoute => "no_route",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::Overloaded => "overloaded",
            Outcome::Trapped => "trapped",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0, 2.5, 10.0,
];

/// A Prometheus histogram with fixed buckets, updated lock-free.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        self.render_samples(out, name, "");
    }

    /// The sample lines of this histogram, with `labels` (`key="value",…`) added to each.
    pub fn render_samples(&self, out: &mut String, name: &str, labels: &str) {
        let (braced, prefix) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{{{labels}}}"), format!("{labels},"))
        };
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 7],
    deploys: AtomicU64,
    deploy_failures: AtomicU64,
    /// Creating a guest instance from its pre-instantiated component.
    pub instantiate: Histogram,
    /// From a request's arrival to its response headers (guest or platform answer).
    pub first_byte: Histogram,
    /// Time from process start to serving, set once.
    startup_nanos: AtomicU64,
    /// How long each app took to load at startup (artifact map + pre-instantiation).
    app_startup: Mutex<BTreeMap<String, Duration>>,
}

impl Metrics {
    pub fn request(&self, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[index].fetch_add(1, Ordering::Relaxed);
    }

    pub fn deploy(&self, succeeded: bool) {
        let counter = if succeeded {
            &self.deploys
        } else {
            &self.deploy_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn node_started(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.startup_nanos.store(nanos, Ordering::Relaxed);
    }

    pub fn app_loaded(&self, app: &str, elapsed: Duration) {
        if let Ok(mut map) = self.app_startup.lock() {
            map.insert(app.to_string(), elapsed);
        }
    }

    /// `apps`: name and snapshot size of every app now served.
    pub fn render(&self, apps: &[(String, Option<u64>)]) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE edge_requests_total counter");
        for (outcome, counter) in Outcome::ALL.iter().zip(&self.requests) {
            let _ = writeln!(
                out,
                "edge_requests_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                counter.load(Ordering::Relaxed)
            );
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(out, "# TYPE edge_deploys_total counter");
        let _ = writeln!(out, "edge_deploys_total {}", load(&self.deploys));
        let _ = writeln!(out, "# TYPE edge_deploy_failures_total counter");
        let _ = writeln!(
            out,
            "edge_deploy_failures_total {}",
            load(&self.deploy_failures)
        );
        self.instantiate.render(
            &mut out,
            "edge_instantiate_seconds",
            "Time to create a guest instance for a request.",
        );
        self.first_byte.render(
            &mut out,
            "edge_time_to_first_byte_seconds",
            "Time from a request's arrival to its response headers.",
        );
        let _ = writeln!(out, "# TYPE edge_startup_seconds gauge");
        let _ = writeln!(
            out,
            "edge_startup_seconds {}",
            load(&self.startup_nanos) as f64 / 1e9
        );
        let _ = writeln!(out, "# TYPE edge_apps gauge");
        let _ = writeln!(out, "edge_apps {}", apps.len());
        let startup = self
            .app_startup
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let _ = writeln!(out, "# TYPE edge_app_startup_seconds gauge");
        for (app, elapsed) in &startup {
            let _ = writeln!(
                out,
                "edge_app_startup_seconds{{app=\"{app}\"}} {}",
                elapsed.as_secs_f64()
            );
        }
        let _ = writeln!(out, "# TYPE edge_app_snapshot_bytes gauge");
        for (app, size) in apps {
            if let Some(size) = size {
                let _ = writeln!(out, "edge_app_snapshot_bytes{{app=\"{app}\"}} {size}");
            }
        }
        out
    }
}
