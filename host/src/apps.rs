//! Apps as the data plane sees them: a loaded version ready to instantiate, and the routing
//! table that maps path prefixes to apps, replaced atomically on every change.

use std::sync::{Arc, OnceLock};

use tokio::sync::{Semaphore, watch};
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

use crate::capabilities::config::Variables;
use crate::capabilities::messaging::{AppMessaging, HandlerIndices, TopicPattern};
use crate::capabilities::nn::AppModels;
use crate::capabilities::outbound_http::OutboundPolicy;
use crate::config::ResolvedLimits;
use crate::control::repository::VersionRecord;
use crate::guest_logs::AppLog;
use crate::host_state::HostState;
use crate::names::route_matches;
use crate::triggers::http_threads::PerThread;
use crate::usage::AppUsage;

/// One app version, compiled and pre-instantiated: a request only creates a store.
pub struct LoadedApp {
    pub name: String,
    pub version: VersionRecord,
    pub pre: InstancePre<HostState>,
    /// Whose code it runs: the baseline compiler's until the optimized code replaces it.
    pub tier: crate::engine::compile::Tier,
    /// Where its `wasi:http/incoming-handler` is, when it exports one (HTTP-triggered).
    pub http: Option<ProxyIndices>,
    /// Where its `wasi:messaging/incoming-handler` is, when it exports one.
    pub message_handler: Option<HandlerIndices>,
    /// Requests in flight for this app (shared by its versions while their limit is equal).
    pub concurrency: Arc<Semaphore>,
    /// Memory, time, body and concurrency limits: the node's defaults or the deploy's own.
    pub limits: ResolvedLimits,
    /// The app's key-value namespace when it was granted `--kv`.
    pub kv_namespace: Option<crate::capabilities::kv::KvNamespace>,
    /// The node's budget for all guests' linear memory.
    pub memory_budget: Arc<crate::usage::MemoryBudget>,
    /// The models it was granted with `--model`; its requests run on the inference workers.
    pub models: Option<Arc<AppModels>>,
    /// Its wasi:config values, shared by every instance.
    pub config: Variables,
    /// Where it may send HTTP requests (`--allow-outbound`); `None`: nowhere.
    pub outbound: Option<Arc<OutboundPolicy>>,
    /// What it may publish (`--publish`); `None`: nothing.
    pub messaging: Option<Arc<AppMessaging>>,
    /// The topics it is triggered by (`--subscribe`).
    pub subscriptions: Vec<TopicPattern>,
    /// Where its guests' stdout and stderr lines go (shared by its versions).
    pub logs: Arc<AppLog>,
    /// Its usage counters (shared by its versions); `None` when metering is off.
    pub usage: Option<Arc<AppUsage>>,
    /// For a WASI 0.3 HTTP handler: the handler pre-instance, served through
    /// [`crate::triggers::instances`].
    pub handler_pre: Option<wasmtime_wasi_http::handler::ProxyPre<HostState>>,
    /// Its instances, set up by the HTTP trigger at the first request (see `handler_pre`):
    /// one set per data-plane connection thread, so an instance serves the connections of the
    /// thread it runs on and no request wakes another thread. Type-erased so this table does
    /// not depend on the triggers.
    pub instances: PerThread<OnceLock<Arc<dyn std::any::Any + Send + Sync>>>,
    /// For a WASI 0.2 HTTP handler deployed with `--reuse`: its idle instances.
    pub warm: Option<Arc<crate::triggers::warm::WarmInstances>>,
}

impl LoadedApp {
    /// A fresh store for one invocation (or one reused instance) of this app, with its grants
    /// and limits; see [`crate::triggers::new_store`]. `metered`: whether its wall time and
    /// memory count as the app's usage (not for the node's own deploy-time check).
    pub fn new_store(
        &self,
        kv: &Arc<crate::capabilities::kv::KvBackend>,
        deadline: std::time::Instant,
        request_id: Arc<str>,
        trigger: Option<crate::usage::Trigger>,
        metered: bool,
    ) -> wasmtime::Store<HostState> {
        use crate::capabilities::kv::KvCtx;
        use crate::capabilities::messaging::MessagingCtx;
        use crate::capabilities::outbound_http::OutboundHooks;
        let settings = crate::host_state::StoreSettings {
            kv: KvCtx::new(kv.clone(), self.kv_namespace.clone()),
            models: self.models.as_ref(),
            config: &self.config,
            outbound: OutboundHooks(self.outbound.clone()),
            messaging: MessagingCtx(self.messaging.clone()),
            env: &self.version.env,
            memory_bytes: self.limits.memory_bytes,
            memory_budget: self.memory_budget.clone(),
            deadline,
            logs: &self.logs,
            request_id,
            usage: self.usage.clone().filter(|_| metered),
            trigger,
        };
        // The engine its code was compiled by (the node's, or the baseline tier's).
        HostState::new_store(self.pre.component().engine(), settings)
    }

    /// Whether it answers HTTP requests.
    pub fn serves_http(&self) -> bool {
        self.http.is_some() || self.handler_pre.is_some()
    }

    /// `0.2` or `0.3`: the WASI version of its HTTP handler.
    pub fn wasi_http_version(&self) -> Option<&'static str> {
        match &self.handler_pre {
            Some(wasmtime_wasi_http::handler::ProxyPre::P3(_)) => Some("0.3"),
            Some(_) => Some("0.2"),
            None => self.http.as_ref().map(|_| "0.2"),
        }
    }
}

/// Prefix routes, longest first, so the first match is the longest.
#[derive(Default)]
pub struct RoutingTable {
    routes: Vec<Arc<LoadedApp>>,
}

impl RoutingTable {
    pub fn new(mut apps: Vec<Arc<LoadedApp>>) -> Self {
        apps.sort_by(|a, b| {
            b.version
                .route
                .len()
                .cmp(&a.version.route.len())
                .then_with(|| a.name.cmp(&b.name))
        });
        Self { routes: apps }
    }

    /// The HTTP app owning `path`: the longest route prefix that matches on a segment
    /// boundary. Apps that only handle messages are not routed.
    pub fn lookup(&self, path: &str) -> Option<&Arc<LoadedApp>> {
        self.routes
            .iter()
            .find(|app| app.serves_http() && route_matches(&app.version.route, path))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<LoadedApp>> {
        self.routes.iter().find(|app| app.name == name)
    }

    /// The app other than `except` already serving exactly `route`.
    pub fn route_owner(&self, route: &str, except: &str) -> Option<&Arc<LoadedApp>> {
        self.routes
            .iter()
            .find(|app| app.version.route == route && app.name != except)
    }

    /// A copy of this table with `app` added or replacing the app of the same name.
    pub fn with(&self, app: Arc<LoadedApp>) -> Self {
        let mut routes: Vec<_> = self
            .routes
            .iter()
            .filter(|a| a.name != app.name)
            .cloned()
            .collect();
        routes.push(app);
        Self::new(routes)
    }

    /// A copy of this table without the app called `name`.
    pub fn without(&self, name: &str) -> Self {
        Self::new(
            self.routes
                .iter()
                .filter(|a| a.name != name)
                .cloned()
                .collect(),
        )
    }

    pub fn apps(&self) -> impl Iterator<Item = &Arc<LoadedApp>> {
        self.routes.iter()
    }
}

/// The live routing table. Readers clone an `Arc`; writers build a new table and swap it in,
/// so a request sees either the old or the new table, never a mix, and requests in flight
/// finish on the version they started with. Triggers other than HTTP watch it for changes.
pub struct LiveRoutes {
    current: watch::Sender<Arc<RoutingTable>>,
}

impl Default for LiveRoutes {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(Arc::new(RoutingTable::default())),
        }
    }
}

impl LiveRoutes {
    pub fn current(&self) -> Arc<RoutingTable> {
        self.current.borrow().clone()
    }

    pub fn replace(&self, table: RoutingTable) {
        self.current.send_replace(Arc::new(table));
    }

    /// A receiver that sees every replaced table.
    pub fn watch(&self) -> watch::Receiver<Arc<RoutingTable>> {
        self.current.subscribe()
    }
}
