//! Node metrics on the admin API's `/metrics`, in the OpenMetrics text format, through
//! `prometheus-client`. The node's own series are registered here; a capability with series of
//! its own (wasi:nn) registers them in the same [`Registry`] at start-up.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a data-plane request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    BadRequest,
    NoRoute,
    BodyTooLarge,
    /// The start of the body did not arrive within `request_body_timeout_ms`, or, for an app
    /// granted a model (whose body is read whole before it runs), all of it by its deadline.
    BodyTimedOut,
    Overloaded,
    /// The node's memory budget for guests is spent.
    NoMemory,
    Trapped,
    TimedOut,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Answered,
        Outcome::BadRequest,
        Outcome::NoRoute,
        Outcome::BodyTooLarge,
        Outcome::BodyTimedOut,
        Outcome::Overloaded,
        Outcome::NoMemory,
        Outcome::Trapped,
        Outcome::TimedOut,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::BadRequest => "bad_request",
            Outcome::NoRoute => "no_route",
            Outcome::BodyTooLarge => "body_too_large",
            Outcome::BodyTimedOut => "body_timed_out",
            Outcome::Overloaded => "overloaded",
            Outcome::NoMemory => "no_memory",
            Outcome::Trapped => "trapped",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// Upper bounds of the latency histogram buckets, in seconds: 25 µs (an instantiation) to 10 s
/// (a request at its time limit).
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0, 2.5, 10.0,
];

/// A histogram of durations with the node's latency buckets.
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A gauge holding a float (seconds).
pub type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The label of per-app series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub app: String,
}

/// The labels of outgoing-HTTP counters: the app and what became of the request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboundLabel {
    pub app: String,
    /// `sent`, `denied` (origin not granted) or `failed` (connect, TLS, timeout).
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// One counter per [`Outcome`], in [`Outcome::ALL`]'s order (no label lookup per request).
    requests: [Counter; Outcome::ALL.len()],
    deploys: Counter,
    deploy_failures: Counter,
    /// Creating a guest instance from its pre-instantiated component.
    pub instantiate: Histogram,
    /// From a request's arrival to its response headers (guest or platform answer).
    pub first_byte: Histogram,
    startup: FloatGauge,
    apps: Gauge,
    /// Linear memory all guests hold now, and the budget for it.
    pub guest_memory: Gauge,
    pub guest_memory_budget: Gauge,
    /// Reused instances waiting idle for their app's next request.
    pub idle_instances: Gauge,
    /// How long each app took to load at startup (artifact map + pre-instantiation).
    app_startup: Family<AppLabel, FloatGauge>,
    app_snapshot_bytes: Family<AppLabel, Gauge>,
    /// Outgoing HTTP requests of guests, per app and result.
    pub outbound: Family<OutboundLabel, Counter>,
    /// Usage per app, set from the usage totals at each render.
    usage: UsageFamilies,
    /// Renders one at a time: the usage families are rebuilt during a render.
    rendering: std::sync::Mutex<()>,
}

/// The label of usage series split by trigger.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabel {
    pub app: String,
    pub trigger: &'static str,
}

/// The label of byte counters: the app and the direction.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub app: String,
    pub direction: &'static str,
}

type FloatCounter = Counter<f64, AtomicU64>;

#[derive(Default)]
struct UsageFamilies {
    invocations: Family<TriggerLabel, Counter>,
    wall: Family<AppLabel, FloatCounter>,
    cpu: Family<AppLabel, FloatCounter>,
    memory: Family<AppLabel, FloatCounter>,
    bytes: Family<DirectionLabel, Counter>,
    inferences: Family<AppLabel, Counter>,
    memory_growths: Family<AppLabel, Counter>,
}

impl UsageFamilies {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_app_invocations",
            "Invocations per app and trigger (usage, persisted across restarts)",
            self.invocations.clone(),
        );
        registry.register(
            "edge_app_wall_seconds",
            "Wall time of invocations per app",
            self.wall.clone(),
        );
        registry.register(
            "edge_app_cpu_seconds",
            "CPU time of invocations per app (guest code and its host calls)",
            self.cpu.clone(),
        );
        registry.register(
            "edge_app_memory_gb_seconds",
            "Linear memory integrated over invocations, in GB-s, per app",
            self.memory.clone(),
        );
        registry.register(
            "edge_app_bytes",
            "Request/message bytes in and response bytes out per app",
            self.bytes.clone(),
        );
        registry.register(
            "edge_app_inferences",
            "wasi-nn inferences per app",
            self.inferences.clone(),
        );
        registry.register(
            "edge_app_memory_growths",
            "Times an app's instances grew a linear memory while they ran (about one per \
             invocation: the app would serve faster from a larger initial memory)",
            self.memory_growths.clone(),
        );
    }

    fn set(&self, totals: &std::collections::BTreeMap<String, crate::usage::UsageCounters>) {
        self.invocations.clear();
        self.wall.clear();
        self.cpu.clear();
        self.memory.clear();
        self.bytes.clear();
        self.inferences.clear();
        self.memory_growths.clear();
        for (app, usage) in totals {
            let label = AppLabel { app: app.clone() };
            for (trigger, count) in [
                ("http", usage.invocations_http),
                ("message", usage.invocations_message),
            ] {
                self.invocations
                    .get_or_create(&TriggerLabel {
                        app: app.clone(),
                        trigger,
                    })
                    .inc_by(count);
            }
            self.wall.get_or_create(&label).inc_by(usage.wall_seconds);
            self.cpu.get_or_create(&label).inc_by(usage.cpu_seconds);
            self.memory.get_or_create(&label).inc_by(usage.gb_seconds);
            for (direction, count) in [("in", usage.bytes_in), ("out", usage.bytes_out)] {
                self.bytes
                    .get_or_create(&DirectionLabel {
                        app: app.clone(),
                        direction,
                    })
                    .inc_by(count);
            }
            self.inferences
                .get_or_create(&label)
                .inc_by(usage.inferences);
            self.memory_growths
                .get_or_create(&label)
                .inc_by(usage.memory_growths);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "edge_requests",
            "Data-plane requests, by how they ended",
            requests.clone(),
        );
        // Every outcome is listed from the start, so a rate over it never starts from nothing.
        let requests = Outcome::ALL.map(|outcome| {
            requests.get_or_create_owned(&OutcomeLabel {
                outcome: outcome.label(),
            })
        });
        let deploys = Counter::default();
        registry.register("edge_deploys", "Deploys that succeeded", deploys.clone());
        let deploy_failures = Counter::default();
        registry.register(
            "edge_deploy_failures",
            "Deploys that were refused or failed",
            deploy_failures.clone(),
        );
        let instantiate = latency_histogram();
        registry.register(
            "edge_instantiate_seconds",
            "Time to create a guest instance for a request",
            instantiate.clone(),
        );
        let first_byte = latency_histogram();
        registry.register(
            "edge_time_to_first_byte_seconds",
            "Time from a request's arrival to its response headers",
            first_byte.clone(),
        );
        let startup = FloatGauge::default();
        registry.register(
            "edge_startup_seconds",
            "Time from process start to serving",
            startup.clone(),
        );
        let apps = Gauge::default();
        registry.register("edge_apps", "Apps being served", apps.clone());
        let guest_memory = Gauge::default();
        registry.register(
            "edge_guest_memory_bytes",
            "Linear memory all guest instances hold now",
            guest_memory.clone(),
        );
        let idle_instances = Gauge::default();
        registry.register(
            "edge_idle_instances",
            "Instances of WASI 0.2 apps deployed with --reuse kept idle for their next request",
            idle_instances.clone(),
        );
        let guest_memory_budget = Gauge::default();
        registry.register(
            "edge_guest_memory_budget_bytes",
            "What all guests' linear memory may take together ([limits] node_memory_mib)",
            guest_memory_budget.clone(),
        );
        let app_startup = Family::<AppLabel, FloatGauge>::default();
        registry.register(
            "edge_app_startup_seconds",
            "Time an app took to load at start-up",
            app_startup.clone(),
        );
        let app_snapshot_bytes = Family::<AppLabel, Gauge>::default();
        registry.register(
            "edge_app_snapshot_bytes",
            "Size of the deploy-time snapshot an app is served from",
            app_snapshot_bytes.clone(),
        );
        let outbound = Family::<OutboundLabel, Counter>::default();
        registry.register(
            "edge_outbound_requests",
            "Outgoing HTTP requests of guests, by app and result",
            outbound.clone(),
        );
        let usage = UsageFamilies::default();
        usage.register(&mut registry);
        Self {
            usage,
            rendering: std::sync::Mutex::new(()),
            registry,
            requests,
            deploys,
            deploy_failures,
            instantiate,
            first_byte,
            startup,
            apps,
            guest_memory,
            guest_memory_budget,
            idle_instances,
            app_startup,
            app_snapshot_bytes,
            outbound,
        }
    }

    /// The registry, for capabilities to register their own series at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn request(&self, outcome: Outcome) {
        let index = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[index].inc();
    }

    pub fn deploy(&self, succeeded: bool) {
        if succeeded {
            self.deploys.inc();
        } else {
            self.deploy_failures.inc();
        }
    }

    pub fn node_started(&self, elapsed: Duration) {
        self.startup.set(elapsed.as_secs_f64());
    }

    pub fn app_loaded(&self, app: &str, elapsed: Duration) {
        self.app_startup
            .get_or_create(&AppLabel {
                app: app.to_string(),
            })
            .set(elapsed.as_secs_f64());
    }

    /// The exposition text. `apps`: name and snapshot size of every app now served;
    /// `usage`: every app's usage totals.
    pub fn render(
        &self,
        apps: &[(String, Option<u64>)],
        usage: &std::collections::BTreeMap<String, crate::usage::UsageCounters>,
    ) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        self.usage.set(usage);
        self.apps.set(i64::try_from(apps.len()).unwrap_or(i64::MAX));
        self.app_snapshot_bytes.clear();
        for (app, size) in apps {
            if let Some(size) = size {
                self.app_snapshot_bytes
                    .get_or_create(&AppLabel { app: app.clone() })
                    .set(i64::try_from(*size).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {err}");
        }
        out
    }
}
