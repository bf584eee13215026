//! Node counters, rendered in the Prometheus text format on the admin API's `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a data-plane request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    NoRoute,
    BodyTooLarge,
    Overloaded,
    Trapped,
    TimedOut,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Answered,
        Outcome::NoRoute,
        Outcome::BodyTooLarge,
        Outcome::Overloaded,
        Outcome::Trapped,
        Outcome::TimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoRoute => "no_route",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::Overloaded => "overloaded",
            Outcome::Trapped => "trapped",
            Outcome::TimedOut => "timed_out",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: [AtomicU64; 6],
    deploys: AtomicU64,
    deploy_failures: AtomicU64,
    instantiate_nanos: AtomicU64,
    instantiations: AtomicU64,
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

    pub fn instantiated(&self, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.instantiate_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.instantiations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, apps: usize) -> String {
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
        let _ = writeln!(out, "# TYPE edge_instantiate_seconds summary");
        let _ = writeln!(
            out,
            "edge_instantiate_seconds_sum {}",
            load(&self.instantiate_nanos) as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "edge_instantiate_seconds_count {}",
            load(&self.instantiations)
        );
        let _ = writeln!(out, "# TYPE edge_apps gauge");
        let _ = writeln!(out, "edge_apps {apps}");
        out
    }
}
