//! Apps as the data plane sees them: a loaded version ready to instantiate, and the routing
//! table that maps path prefixes to apps, replaced atomically on every change.

use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::capabilities::config::Variables;
use crate::capabilities::nn::AppModels;
use crate::capabilities::outbound_http::OutboundPolicy;
use crate::control::repository::VersionRecord;
use crate::host_state::HostState;
use crate::names::route_matches;

/// One app version, compiled and pre-instantiated: a request only creates a store.
pub struct LoadedApp {
    pub name: String,
    pub version: VersionRecord,
    pub pre: ProxyPre<HostState>,
    /// Requests in flight for this app (shared by all its versions).
    pub concurrency: Arc<Semaphore>,
    /// The app's key-value namespace when it was granted `--kv`.
    pub kv_namespace: Option<Arc<str>>,
    /// The models it was granted with `--model`; its requests run on the inference workers.
    pub models: Option<Arc<AppModels>>,
    /// Its wasi:config values, shared by every instance.
    pub config: Variables,
    /// Where it may send HTTP requests (`--allow-outbound`); `None`: nowhere.
    pub outbound: Option<Arc<OutboundPolicy>>,
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

    /// The app owning `path`: the longest route prefix that matches on a segment boundary.
    pub fn lookup(&self, path: &str) -> Option<&Arc<LoadedApp>> {
        self.routes
            .iter()
            .find(|app| route_matches(&app.version.route, path))
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

/// The live routing table. Readers clone an `Arc` under a short read lock; writers build a new
/// table and swap it in, so a request sees either the old or the new table, never a mix, and
/// requests in flight finish on the version they started with.
#[derive(Default)]
pub struct LiveRoutes {
    current: RwLock<Arc<RoutingTable>>,
}

impl LiveRoutes {
    pub fn current(&self) -> Arc<RoutingTable> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, table: RoutingTable) {
        let table = Arc::new(table);
        match self.current.write() {
            Ok(mut guard) => *guard = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}
