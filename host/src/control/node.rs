//! A node: its engine, its persistent repository and its live routes, and the operations
//! that change them (deploy, remove, rollback, restore at startup).
//!
//! Every change is prepared completely (validated, compiled, persisted) before the routing
//! table is swapped, so a failed deploy leaves the running version serving untouched.
//!
//! Here: the node's parts, opening it, remove and rollback. Deploys are in [`deploy`], making
//! a compiled component ready to serve in [`prepare`], loading the apps at start in
//! [`restore`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio::sync::Mutex;

use crate::apps::LiveRoutes;
use crate::capabilities::kv::KvBackend;
use crate::capabilities::messaging::{Brokers, MessagingMetrics};
use crate::capabilities::nn::{Models, NnMetrics, NnSettings};
use crate::config::NodeConfig;
use crate::control::audit::{AuditEvent, AuditLog};
use crate::control::repository::{AppRecord, Repository};
use crate::disk::DiskGuard;
use crate::engine::NodeEngine;
use crate::engine::compile::CompileCache;
use crate::error::DeployError;
use crate::group_commit::GroupCommit;
use crate::guest_logs::GuestLogs;
use crate::lateness::WakeupLateness;
use crate::metrics::Metrics;
use crate::names::validate_app_name;
use crate::oci::Registries;
use crate::usage::{MemoryBudget, Usage};

mod deploy;
mod prepare;
mod restore;

pub use deploy::{DeployOutcome, DeploySpec, Precompiled};

/// Bounds the threads compiling components (wasmtime compiles functions in parallel on
/// rayon's global pool) so a deploy leaves cores to the data plane: `threads`, or half the
/// cores (at least one) when 0. Only the first call in a process takes effect.
fn bound_compile_threads(threads: usize) {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
        n => n,
    };
    if rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("edge-compile-{i}"))
        .build_global()
        .is_ok()
    {
        tracing::debug!(threads, "compile threads bounded");
    }
}

/// What a remove did.
#[derive(Debug)]
pub struct Removal {
    /// The app's record, `None` when it was already removed (a retried `--delete-data`).
    pub record: Option<AppRecord>,
    /// Buckets of key-value data deleted, when asked to.
    pub deleted_buckets: Option<usize>,
}

pub struct Node {
    pub config: NodeConfig,
    pub engine: NodeEngine,
    compiler: CompileCache,
    pub repo: Arc<Repository>,
    pub routes: LiveRoutes,
    pub metrics: Metrics,
    pub kv: Arc<KvBackend>,
    pub models: Arc<Models>,
    /// Broker links for message triggers and publishing.
    pub brokers: Arc<Brokers>,
    /// Every admin action, hash-chained.
    pub audit: AuditLog,
    /// What apps write to stdout and stderr.
    pub guest_logs: GuestLogs,
    /// What apps consumed.
    pub usage: Usage,
    /// What all guests' linear memory may take together.
    pub memory_budget: Arc<MemoryBudget>,
    /// OCI registries components are pulled from, with the node's cache of pulls.
    pub registries: Registries,
    /// Apps that could not be loaded at start-up, with the reason (shown by `/healthz`);
    /// an app leaves it when it is deployed, rolled back or removed.
    failed: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// False until every deployed app is serving (apps with a model join after start-up).
    restored: AtomicBool,
    /// The model loader and the thread restoring apps with models, joined before the process
    /// exits ([`Node::join_start_up_threads`]).
    start_up_threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Serialises changes (deploy, remove, rollback); requests never take it.
    changes: Mutex<()>,
    /// Digests whose optimized code is being compiled in the background.
    optimizing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// How many data-plane connection threads serve HTTP (0: the shared runtime), read once
    /// at start: apps keep an instance set or idle list per thread.
    pub http_threads: usize,
}

impl Node {
    /// Opens the repository and loads every deployed app from its precompiled artifact.
    pub fn open(config: NodeConfig) -> anyhow::Result<Arc<Self>> {
        bound_compile_threads(config.limits.compile_threads);
        let lateness = WakeupLateness::default();
        let engine = NodeEngine::new(&config.pool, &config.limits, lateness.clone())?;
        crate::auth::create_private_dir(&config.server.data_dir)?;
        let disk = Arc::new(DiskGuard::new(&config.server.data_dir, &config.storage));
        disk.prepare_for_start();
        let repo = Arc::new(Repository::open(
            &config.server.data_dir,
            config.kv.flush_interval_ms,
        )?);
        let audit = AuditLog::open(&config.server.data_dir, &repo.db(), config.audit.clone())?;
        let guest_logs = GuestLogs::new(config.guest_logs.clone(), &config.server.data_dir)?;
        let usage = Usage::open(&repo.db(), config.metering.clone())?;
        let commit = Arc::new(GroupCommit::new(repo.db()));
        let kv = KvBackend::new(repo.db(), config.kv.clone(), commit.clone(), disk);
        let mut metrics = Metrics::new();
        lateness.register(metrics.registry_mut());
        let nn_metrics = NnMetrics::register(metrics.registry_mut());
        let messaging_metrics = MessagingMetrics::register(metrics.registry_mut());
        // Called on a blocking thread of the runtime: connecting happens in the background.
        let brokers = Arc::new(tokio::runtime::Handle::current().block_on(Brokers::start(
            config.messaging.clone(),
            &repo.db(),
            commit,
            messaging_metrics,
        ))?);
        let (models, model_loader) = Models::start(
            NnSettings {
                openvino: config.openvino.clone(),
                inference: config.inference.clone(),
                models: config.models.clone(),
            },
            nn_metrics,
        );
        let kept = repo.clone();
        let registries = Registries::open(
            config.registry.clone(),
            &config.server.data_dir,
            Arc::new(move |hex: &str| kept.component_path(hex)),
        )?;
        let baseline_from = config.limits.baseline_tier_min_bytes();
        let http_threads = config.server.http_thread_count();
        let node = Arc::new(Self {
            http_threads,
            registries,
            kv,
            models,
            brokers,
            audit,
            guest_logs,
            usage,
            memory_budget: MemoryBudget::new(config.limits.node_memory_bytes()),
            failed: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            restored: AtomicBool::new(false),
            start_up_threads: std::sync::Mutex::new(model_loader.into_iter().collect()),
            config,
            compiler: CompileCache::new(engine.clone(), repo.clone(), baseline_from),
            engine,
            repo,
            routes: LiveRoutes::default(),
            metrics,
            changes: Mutex::new(()),
            optimizing: std::sync::Mutex::default(),
        });
        if let Err(err) = node.restore_apps() {
            // The caller will exit: not while OpenVINO is compiling on the loader thread.
            node.join_start_up_threads();
            return Err(err);
        }
        Ok(node)
    }

    /// Appends an admin action to the audit log, off the async workers (it fsyncs). A
    /// failure to write is logged: the action itself already happened.
    pub async fn record_audit(self: &Arc<Self>, event: AuditEvent) {
        let node = self.clone();
        let _ = tokio::task::spawn_blocking(move || node.audit.record_or_log(&event)).await;
    }

    /// Records (or clears, with `None`) why an app could not be loaded.
    fn set_failed(&self, name: &str, reason: Option<String>) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        match reason {
            Some(reason) => {
                failed.insert(name.to_string(), reason);
            }
            None => {
                failed.remove(name);
            }
        }
    }

    /// Apps that could not be loaded, with the reason.
    pub fn failed_apps(&self) -> Vec<(String, String)> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, reason)| (name.clone(), reason.clone()))
            .collect()
    }

    /// The app other than `name` that owns `route`: serving, or stored but not loaded (failed,
    /// or waiting for its model), so such an app keeps its route.
    fn route_owner(&self, route: &str, name: &str) -> anyhow::Result<Option<String>> {
        if let Some(owner) = self.routes.current().route_owner(route, name) {
            return Ok(Some(owner.name.clone()));
        }
        let (records, _) = self.repo.list_apps_lenient()?;
        Ok(records
            .into_iter()
            .find(|record| record.name != name && record.current.route == route)
            .map(|record| record.name))
    }

    /// Waits until the start-up threads (the model loader and the restore of apps with
    /// models) have ended. A process must not exit while one of them is inside OpenVINO,
    /// including the moment after it finished, when it drops its handles (maybe the last
    /// ones) and runs OpenVINO's thread-exit code: that raced OpenVINO's static destructors
    /// and crashed the process. Blocks, as long as a model takes to compile.
    pub fn join_start_up_threads(&self) {
        let threads = std::mem::take(
            &mut *self
                .start_up_threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Whether every deployed app has been loaded (or failed to load) since start-up.
    pub fn is_restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// Stops serving `name` and forgets it (both versions). Its key-value data stays (a
    /// redeploy finds it again) unless `delete_data` is set. With `delete_data` it is
    /// idempotent and retryable: the data goes before the record, so a failure leaves the app
    /// deployed for a retry, and an app already removed only has its data deleted.
    pub async fn remove(&self, name: &str, delete_data: bool) -> Result<Removal, DeployError> {
        validate_app_name(name).map_err(DeployError::InvalidName)?;
        let _change = self.changes.lock().await;
        let stored = self.repo.get_app(name)?;
        if stored.is_none() && !delete_data {
            return Err(DeployError::NotFound(name.to_string()));
        }
        let serving = self.routes.current().get(name).cloned();
        self.routes.replace(self.routes.current().without(name));
        let deleted_buckets = if delete_data {
            match self.kv.delete_app_data(name) {
                Ok(buckets) => {
                    tracing::info!(app = name, buckets, "deleted key-value data");
                    Some(buckets)
                }
                Err(err) => {
                    if let Some(serving) = serving {
                        self.routes.replace(self.routes.current().with(serving));
                    }
                    return Err(anyhow::anyhow!(
                        "deleting key-value data of {name}: {err}; the app is still deployed, \
                         retry the remove"
                    )
                    .into());
                }
            }
        } else {
            None
        };
        let record = self.repo.remove_app(name)?;
        self.set_failed(name, None);
        if let Some(record) = &record {
            if let Err(err) = self.repo.collect_garbage() {
                tracing::warn!("removing unused files of {name}: {err:#}");
            }
            if let Ok(topics) = record.current.grants.messaging.parse() {
                self.brokers.forget(name, &topics.subscribe).await;
            }
            self.guest_logs.forget(name);
            self.usage.forget(name);
            tracing::info!(app = name, "removed");
        }
        Ok(Removal {
            record,
            deleted_buckets,
        })
    }

    /// Makes the previous version current again; the replaced one becomes the previous, so a
    /// second rollback undoes the first.
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<AppRecord, DeployError> {
        validate_app_name(name).map_err(DeployError::InvalidName)?;
        let _change = self.changes.lock().await;
        let record = self
            .repo
            .get_app(name)?
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        let previous = record
            .previous
            .clone()
            .ok_or_else(|| DeployError::NoPreviousVersion(name.to_string()))?;
        if let Some(owner) = self.route_owner(&previous.route, name)? {
            return Err(DeployError::RouteConflict {
                route: previous.route,
                owner,
            });
        }
        let concurrency = self.concurrency_of(name);
        let node = self.clone();
        let app_name = name.to_string();
        let loaded = tokio::task::spawn_blocking(move || {
            node.load_version(&app_name, &previous, concurrency)
        })
        .await
        .context("load task failed")??;
        let rolled = AppRecord {
            name: name.to_string(),
            current: loaded.version.clone(),
            previous: Some(record.current),
        };
        self.repo.put_app(&rolled)?;
        self.routes
            .replace(self.routes.current().with(Arc::new(loaded)));
        self.set_failed(name, None);
        tracing::info!(app = name, digest = %rolled.current.digest, "rolled back");
        Ok(rolled)
    }
}
