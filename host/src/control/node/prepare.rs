//! Turning a compiled component into an app that serves: its exports, imports and grants
//! checked, pre-instantiated, its capabilities and limits set up, and one trial instance made
//! so that a component that can never run is refused at deploy.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime_wasi_http::handler::ProxyPre as HandlerPre;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

use super::Node;
use crate::api::Reuse;
use crate::apps::LoadedApp;
use crate::capabilities::config as app_config;
use crate::capabilities::kv::KvNamespace;
use crate::capabilities::messaging::{self, AppMessaging, HandlerIndices};
use crate::capabilities::outbound_http::{OutboundCounters, OutboundPolicy};
use crate::control::repository::VersionRecord;
use crate::control::validate;
use crate::error::DeployError;
use crate::metrics::OutboundLabel;
use crate::triggers::http_threads::PerThread;

/// Refuses reuse settings that cannot work: none at all, or concurrency on a 0.2 handler.
fn check_reuse(reuse: &Reuse, p3: bool) -> Result<(), DeployError> {
    if reuse.requests == 0 || reuse.concurrency == 0 {
        return Err(DeployError::InvalidLimits(
            "--reuse and --reuse-concurrency must be at least 1".into(),
        ));
    }
    if reuse.concurrency > 1 && !p3 {
        return Err(DeployError::InvalidLimits(
            "--reuse-concurrency needs a WASI 0.3 component (wasi:http/handler@0.3); a 0.2 \
             instance handles one request at a time"
                .into(),
        ));
    }
    if reuse.concurrency > reuse.requests {
        return Err(DeployError::InvalidLimits(
            "--reuse-concurrency cannot exceed --reuse (requests per instance)".into(),
        ));
    }
    Ok(())
}

impl Node {
    /// The concurrency limit of the app now serving as `name`, shared with its next version
    /// (so requests in flight on the old one count) unless that one asks for another limit.
    pub(super) fn concurrency_of(&self, name: &str) -> Option<Arc<Semaphore>> {
        self.routes
            .current()
            .get(name)
            .map(|app| app.concurrency.clone())
    }

    /// The outgoing-HTTP counters of `app` in the node's metrics.
    fn outbound_counters(&self, app: &str) -> OutboundCounters {
        let counter = |result| {
            self.metrics.outbound.get_or_create_owned(&OutboundLabel {
                app: app.to_string(),
                result,
            })
        };
        OutboundCounters {
            sent: counter("sent"),
            denied: counter("denied"),
            failed: counter("failed"),
        }
    }

    /// Validates exports, imports and grants, pre-instantiates, and sets up the app's
    /// capabilities.
    pub(super) fn prepare(
        &self,
        name: &str,
        version: VersionRecord,
        component: &Component,
        concurrency: Option<Arc<Semaphore>>,
    ) -> Result<LoadedApp, DeployError> {
        let engine = component.engine();
        let limits = self
            .config
            .limits
            .resolve(&version.limits)
            .map_err(DeployError::InvalidLimits)?;
        let handlers = validate::check_exports(engine, component)?;
        let imports = validate::import_names(engine, component);
        validate::check_grants(&imports, &version.grants)?;
        let topics = version.grants.messaging.parse()?;
        messaging::check(&topics, &imports, handlers.messaging, &self.brokers)?;
        let models = if version.grants.models.is_empty() {
            None
        } else {
            Some(self.models.grant(name, &version.grants.models)?)
        };
        let origins = version.grants.outbound.parse()?;
        let outbound = (!origins.is_empty()).then(|| {
            OutboundPolicy::new(
                name,
                origins,
                &self.config.outbound_http,
                self.outbound_counters(name),
            )
        });
        let pre = self.compiler.pre_instantiate(component)?;
        let wrong_world = |err: wasmtime::Error| DeployError::WrongWorld(format!("{err:#}"));
        check_reuse(&version.reuse, handlers.http_p3)?;
        // 0.2 handlers take the direct path (a fresh instance per request, or a warm one
        // with reuse); 0.3 handlers go through wasmtime-wasi-http's handler.
        let through_handler = handlers.http && handlers.http_p3;
        let http = match handlers.http && !through_handler {
            true => Some(ProxyIndices::new(&pre).map_err(wrong_world)?),
            false => None,
        };
        let handler_pre = match through_handler {
            false => None,
            true => Some(HandlerPre::P3(
                wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone())
                    .map_err(wrong_world)?,
            )),
        };
        let warm = (http.is_some() && version.reuse.enabled())
            .then(|| crate::triggers::warm::WarmInstances::new(&version.reuse, self.http_threads));
        let message_handler = match handlers.messaging {
            true => Some(HandlerIndices::new(&pre).map_err(wrong_world)?),
            false => None,
        };
        let messaging = (!topics.publish.is_empty()).then(|| {
            Arc::new(AppMessaging {
                app: Arc::from(name),
                publish: topics.publish,
                brokers: self.brokers.clone(),
                counters: self.brokers.metrics().app(name),
            })
        });
        let concurrency = concurrency
            .filter(|_| self.shares_limit(name, limits.concurrency))
            .unwrap_or_else(|| Arc::new(Semaphore::new(limits.concurrency)));
        Ok(LoadedApp {
            name: name.to_string(),
            kv_namespace: version.grants.kv.then(|| KvNamespace {
                app: Arc::from(name),
                quota: limits.kv,
            }),
            memory_budget: self.memory_budget.clone(),
            models,
            config: app_config::variables(&version.config),
            outbound,
            messaging,
            subscriptions: topics.subscribe,
            version,
            tier: self.compiler.tier_of(component),
            pre,
            http,
            message_handler,
            concurrency,
            limits,
            logs: self.guest_logs.app(name),
            usage: self.usage.app(name),
            handler_pre,
            instances: PerThread::new(self.http_threads, std::sync::OnceLock::new),
            warm,
        })
    }

    /// Whether the app now serving as `name` has the concurrency limit `limit`, so its
    /// semaphore can be shared with the next version.
    fn shares_limit(&self, name: &str, limit: usize) -> bool {
        self.routes
            .current()
            .get(name)
            .is_some_and(|app| app.limits.concurrency == limit)
    }

    /// Brokers this version uses that are unreachable now: the deploy stands (subscriptions
    /// start and the outbox drains once they are back), but the deployer should know.
    pub(super) fn broker_warnings(&self, app: &LoadedApp) -> Vec<String> {
        let published = app.messaging.iter().flat_map(|m| &m.publish);
        let mut used: Vec<_> = app
            .subscriptions
            .iter()
            .chain(published)
            .map(|p| p.broker)
            .collect();
        used.sort();
        used.dedup();
        used.into_iter()
            .filter(|broker| self.brokers.is_connected(*broker) == Some(false))
            .map(|broker| {
                format!(
                    "the {broker} broker is unreachable now; the app's subscriptions start and \
                     what it publishes is sent once it is back (see /healthz)"
                )
            })
            .collect()
    }

    /// Instantiates the prepared app once, in a store with its limits, so a component that can
    /// never run (its initial memory over the app's limit, more tables than a pool slot holds,
    /// a trapping start function) is refused at deploy instead of failing every request.
    /// Called on a blocking thread of the runtime.
    pub(super) fn try_instantiate(&self, app: &LoadedApp) -> Result<(), DeployError> {
        let deadline = Instant::now() + app.limits.timeout;
        let mut store = app.new_store(&self.kv, deadline, Arc::from("deploy-check"), None, false);
        let runtime = tokio::runtime::Handle::current();
        runtime
            .block_on(app.pre.instantiate_async(&mut store))
            .map(drop)
            .map_err(|err| {
                DeployError::CannotInstantiate(format!(
                    "the component compiled but cannot be instantiated with this app's limits \
                     ({err:#}); raise --memory, check the node's [pool] limits, or fix its \
                     start-up code"
                ))
            })
    }
}
