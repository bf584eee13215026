//! A node: its engine, its persistent repository and its live routes, and the operations
//! that change them (deploy, remove, rollback, restore at startup).
//!
//! Every change is prepared completely (validated, compiled, persisted) before the routing
//! table is swapped, so a failed deploy leaves the running version serving untouched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sha2::Digest as _;
use tokio::sync::{Mutex, Semaphore};
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

use crate::api::Reuse;
use crate::apps::{LiveRoutes, LoadedApp, RoutingTable};
use crate::capabilities::config::{self as app_config, ConfigValues};
use crate::capabilities::kv::{KvBackend, KvNamespace};
use crate::capabilities::messaging::{
    self, AppMessaging, Brokers, HandlerIndices, MessagingMetrics,
};
use crate::capabilities::nn::{Models, NnMetrics, NnSettings};
use crate::capabilities::outbound_http::{OutboundCounters, OutboundPolicy};
use crate::config::{AppLimits, NodeConfig};
use crate::control::audit::{AuditEvent, AuditLog};
use crate::control::repository::{
    AppRecord, Grants, Repository, SnapshotRecord, SourceRecord, VersionRecord,
};
use crate::control::validate;
use crate::disk::DiskGuard;
use crate::engine::compile::{CompileCache, Tier};
use crate::engine::{NodeEngine, snapshot};
use crate::error::DeployError;
use crate::group_commit::GroupCommit;
use crate::guest_logs::GuestLogs;
use crate::metrics::{Metrics, OutboundLabel};
use crate::names::{normalize_route, validate_app_name};
use crate::oci::{OciRef, Pulled, Registries};
use crate::triggers::http_threads::PerThread;
use crate::usage::{MemoryBudget, Usage};
use wasmtime_wasi_http::handler::ProxyPre as HandlerPre;

/// What a deploy asks for besides the component bytes.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    /// Route prefix; `/NAME` when absent.
    pub route: Option<String>,
    pub env: Vec<(String, String)>,
    /// wasi:config values.
    pub config: ConfigValues,
    pub grants: Grants,
    /// Run the component's init function at deploy when it exports one (default on).
    pub snapshot: bool,
    /// Limits over the node's defaults (`--memory`, `--timeout`, …).
    pub limits: AppLimits,
    /// Instance reuse (`--reuse`); off by default.
    pub reuse: Reuse,
    /// Set when the bytes were pulled from a registry.
    pub source: Option<SourceRecord>,
    /// An artifact compiled elsewhere for this node's platform, used instead of compiling
    /// when this node's engine can load it (the fleet agent's, `[fleet] accept_precompiled`).
    pub precompiled: Option<Vec<u8>>,
}

impl Default for DeploySpec {
    fn default() -> Self {
        Self {
            route: None,
            env: Vec::new(),
            config: ConfigValues::default(),
            grants: Grants::default(),
            snapshot: true,
            limits: AppLimits::default(),
            reuse: Reuse::default(),
            source: None,
            precompiled: None,
        }
    }
}

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

/// What a successful deploy reports.
#[derive(Debug, Clone)]
pub struct DeployOutcome {
    pub record: AppRecord,
    /// Time spent compiling; zero when an artifact for these bytes already existed.
    pub compile_time: Duration,
    /// What the deployer should know although the deploy succeeded (a broker unreachable).
    pub warnings: Vec<String>,
    /// Whose code served first (baseline: optimized code follows in the background).
    pub tier: Tier,
    /// What became of the artifact compiled elsewhere, when the deploy brought one.
    pub precompiled: Option<Precompiled>,
}

/// What a deploy serves: the component, the snapshot taken of it (served instead), and
/// its code when a precompiled artifact was adopted (nothing to compile then).
struct Sources {
    wasm: Vec<u8>,
    snapshot_wasm: Option<Vec<u8>>,
    adopted: Option<Component>,
}

/// How many times its component's size limit a precompiled artifact may be.
const PRECOMPILED_SIZE_FACTOR: u64 = 8;

/// What became of an artifact compiled elsewhere that came with a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precompiled {
    /// The node serves its code; nothing was compiled here.
    Used,
    /// Why not: the node compiled the component itself.
    NotUsed(String),
}

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
        let engine = NodeEngine::new(&config.pool, &config.limits)?;
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

    /// Loads every deployed app. Apps granted a model are loaded once the models are (on a
    /// thread of their own), so the others serve without waiting for OpenVINO.
    fn restore_apps(self: &Arc<Self>) -> anyhow::Result<()> {
        let started = Instant::now();
        let (records, damaged) = self.repo.list_apps_lenient()?;
        for (name, reason) in damaged {
            tracing::error!(app = %name, "cannot load app: {reason}");
            self.set_failed(&name, Some(reason));
        }
        let (with_models, records): (Vec<AppRecord>, Vec<AppRecord>) = records
            .into_iter()
            .partition(|record| !record.current.grants.models.is_empty());
        let loaded: Vec<Arc<LoadedApp>> = records
            .iter()
            .filter_map(|record| self.restore_app(record))
            .collect();
        tracing::info!(
            apps = loaded.len(),
            waiting_for_models = with_models.len(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "restored deployed apps"
        );
        self.routes.replace(RoutingTable::new(loaded));
        if with_models.is_empty() {
            self.restored.store(true, Ordering::Release);
        } else {
            let node = self.clone();
            let restorer = std::thread::Builder::new()
                .name("edge-restore-nn".into())
                .spawn(move || node.restore_apps_with_models(with_models))
                .context("starting the thread that restores apps with models")?;
            self.start_up_threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(restorer);
        }
        Ok(())
    }

    fn restore_app(&self, record: &AppRecord) -> Option<Arc<LoadedApp>> {
        let app_started = Instant::now();
        match self.load_version(&record.name, &record.current, None) {
            Ok(app) => {
                self.metrics.app_loaded(&record.name, app_started.elapsed());
                Some(Arc::new(app))
            }
            // One broken app must not keep the others from serving.
            Err(err) => {
                tracing::error!(app = %record.name, "cannot load app: {err:#}");
                self.set_failed(&record.name, Some(format!("{err:#}")));
                None
            }
        }
    }

    /// Adds the apps granted a model once the models are loaded, unless a deploy, rollback
    /// or remove got to them first.
    fn restore_apps_with_models(&self, records: Vec<AppRecord>) {
        self.models.wait_until_loaded();
        for record in records {
            let _change = self.changes.blocking_lock();
            let still_current = matches!(
                self.repo.get_app(&record.name),
                Ok(Some(now)) if now == record
            );
            if !still_current || self.routes.current().get(&record.name).is_some() {
                continue;
            }
            if let Some(app) = self.restore_app(&record) {
                let table = self.routes.current().with(app);
                self.routes.replace(table);
                tracing::info!(app = %record.name, "restored (its models are loaded)");
            }
        }
        self.restored.store(true, Ordering::Release);
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

    /// Loads a stored version: maps its artifact, or recompiles it from the stored original
    /// when the artifact is missing or was made by an incompatible engine.
    fn load_version(
        &self,
        name: &str,
        version: &VersionRecord,
        concurrency: Option<Arc<Semaphore>>,
    ) -> Result<LoadedApp, DeployError> {
        let component = self.compiler.stored(name, version.served_digest())?;
        self.prepare(name, version.clone(), &component, concurrency)
    }

    /// The concurrency limit of the app now serving as `name`, shared with its next version
    /// (so requests in flight on the old one count) unless that one asks for another limit.
    fn concurrency_of(&self, name: &str) -> Option<Arc<Semaphore>> {
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
    fn prepare(
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

    /// Fetches the component `reference` names (`oci://…`) within the node's size limit,
    /// verified and cached; deploy it with [`Node::deploy`].
    pub async fn pull(&self, reference: &str) -> Result<Pulled, DeployError> {
        let reference = OciRef::parse(reference)?;
        Ok(self
            .registries
            .pull(&reference, self.config.limits.max_component_bytes)
            .await?)
    }

    /// Fetches the precompiled artifact `reference` (pinned by digest) of the component
    /// `component` (`sha256:…`). Artifacts run to a few times their component's size, so
    /// the bound is [`PRECOMPILED_SIZE_FACTOR`] times `[limits] max_component_bytes`.
    pub async fn pull_precompiled(
        &self,
        reference: &str,
        component: &str,
    ) -> Result<Vec<u8>, DeployError> {
        let reference = OciRef::parse(reference)?;
        let limit = self
            .config
            .limits
            .max_component_bytes
            .saturating_mul(PRECOMPILED_SIZE_FACTOR);
        Ok(self
            .registries
            .pull_precompiled(&reference, component, limit)
            .await?)
    }

    /// Validates, compiles, persists and swaps in a new version of `name`.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
        spec: DeploySpec,
    ) -> Result<DeployOutcome, DeployError> {
        let result = self.deploy_inner(name, wasm, spec).await;
        self.metrics.deploy(result.is_ok());
        result
    }

    async fn deploy_inner(
        self: &Arc<Self>,
        name: &str,
        wasm: Vec<u8>,
        spec: DeploySpec,
    ) -> Result<DeployOutcome, DeployError> {
        validate_app_name(name).map_err(DeployError::InvalidName)?;
        let route = normalize_route(spec.route.as_deref().unwrap_or(&format!("/{name}")))
            .map_err(DeployError::InvalidRoute)?;
        let limit = self.config.limits.max_component_bytes;
        let size = wasm.len() as u64;
        if size > limit {
            return Err(DeployError::TooLarge { limit });
        }
        validate::check_binary_kind(&wasm)?;
        app_config::check_values(&spec.config, &self.config.app_config)?;
        let limits = self
            .config
            .limits
            .resolve(&spec.limits)
            .map_err(DeployError::InvalidLimits)?;

        let _change = self.changes.lock().await;
        if let Some(owner) = self.route_owner(&route, name)? {
            return Err(DeployError::RouteConflict { route, owner });
        }
        let previous = self.repo.get_app(name)?;
        if spec.snapshot && snapshot::exports_init(&wasm) && snapshot::exports_p3_handler(&wasm) {
            return Err(DeployError::InitFailed(
                "this WASI 0.3 component exports wizer-initialize, but deploy-time snapshots \
                 are only taken of WASI 0.2 components: wasmtime-wizer 48 cannot run an async \
                 component's init with its event loop. Deploy with --no-snapshot (the init \
                 function then runs in no instance: call it from the handler if needed)"
                    .into(),
            ));
        }
        let snapshot = if snapshot::taken_at_deploy(spec.snapshot, &wasm) {
            Some(self.pre_initialise(&wasm, limits.memory_bytes).await?)
        } else {
            None
        };
        let version = VersionRecord {
            digest: hex::encode(sha2::Sha256::digest(&wasm)),
            size,
            route,
            env: spec.env,
            config: spec.config,
            grants: spec.grants,
            snapshot: snapshot.as_ref().map(|(record, _)| record.clone()),
            limits: spec.limits,
            reuse: spec.reuse,
            source: spec.source,
            deployed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        };
        let concurrency = self.concurrency_of(name);

        // Compilation is CPU-bound: keep it off the async workers.
        let node = self.clone();
        let app_name = name.to_string();
        let snapshot_wasm = snapshot.map(|(_, bytes)| bytes);
        let foreign = spec.precompiled;
        let prepared = tokio::task::spawn_blocking(move || {
            let (precompiled, adopted) = match foreign {
                Some(artifact) => {
                    let (state, adopted) =
                        node.adopt_precompiled(&version, snapshot_wasm.is_some(), &artifact);
                    (Some(state), adopted)
                }
                None => (None, None),
            };
            let sources = Sources {
                wasm,
                snapshot_wasm,
                adopted,
            };
            node.compile_and_prepare(&app_name, version, sources, concurrency)
                .map(|(loaded, compile_time)| (loaded, compile_time, precompiled))
        })
        .await
        .context("compile task failed")??;
        let (loaded, compile_time, precompiled) = prepared;

        // Redeploying exactly what runs (same bytes and settings) keeps the previous version
        // reachable by rollback instead of replacing it with a copy of the current one.
        let previous = previous.and_then(|p| {
            if p.current.same_deployment(&loaded.version) {
                p.previous
            } else {
                Some(p.current)
            }
        });
        let record = AppRecord {
            name: name.to_string(),
            current: loaded.version.clone(),
            previous,
        };
        self.repo.put_app(&record)?;
        let warnings = self.broker_warnings(&loaded);
        let tier = loaded.tier;
        let table = self.routes.current().with(Arc::new(loaded));
        self.routes.replace(table);
        if tier == Tier::Baseline {
            self.optimize_in_background(name, record.current.served_digest());
        }
        self.set_failed(name, None);
        tracing::info!(
            app = name,
            digest = %record.current.digest,
            route = %record.current.route,
            compile_ms = compile_time.as_secs_f64() * 1e3,
            "deployed"
        );
        Ok(DeployOutcome {
            record,
            compile_time,
            warnings,
            tier,
            precompiled,
        })
    }

    /// Compiles the optimized code of the app `name` (now serving baseline code of `digest`)
    /// on a blocking thread, then swaps it in: the same version loaded from the new artifact
    /// replaces the baseline one in the routing table, so requests in flight finish on the
    /// baseline code and new ones get the optimized. Nothing is swapped if the app changed
    /// meanwhile; every app deployed with the same bytes while this runs shares it.
    fn optimize_in_background(self: &Arc<Self>, name: &str, digest: &str) {
        {
            let mut optimizing = self.optimizing.lock().unwrap_or_else(|e| e.into_inner());
            if !optimizing.insert(digest.to_string()) {
                return;
            }
        }
        let node = self.clone();
        let name = name.to_string();
        let digest = digest.to_string();
        tokio::spawn(async move {
            let compiling = node.clone();
            let of = digest.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                let wasm = compiling.repo.read_component(&of)?;
                compiling
                    .compiler
                    .optimize(&of, &wasm)
                    .map(|(_, time)| time)
            })
            .await;
            node.optimizing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&digest);
            let compile_time = match compiled {
                Ok(Ok(time)) => time,
                Ok(Err(err)) => {
                    tracing::warn!(app = %name, "optimized compile failed; the app keeps serving baseline code: {err}");
                    return;
                }
                Err(join) => {
                    tracing::warn!(app = %name, "optimized compile task failed: {join}");
                    return;
                }
            };
            let _change = node.changes.lock().await;
            // Every app still serving baseline code of these bytes: the one deployed, and any
            // deployed with the same bytes while this compile ran (they share it).
            let waiting: Vec<Arc<LoadedApp>> = node
                .routes
                .current()
                .apps()
                .filter(|app| app.tier == Tier::Baseline && app.version.served_digest() == digest)
                .cloned()
                .collect();
            for current in waiting {
                let app = current.name.clone();
                let loading = node.clone();
                let version = current.version.clone();
                let concurrency = Some(current.concurrency.clone());
                let loaded = tokio::task::spawn_blocking(move || {
                    loading.load_version(&current.name, &version, concurrency)
                })
                .await;
                match loaded {
                    Ok(Ok(optimized)) => {
                        let table = node.routes.current().with(Arc::new(optimized));
                        node.routes.replace(table);
                        tracing::info!(
                            app = %app,
                            compile_ms = compile_time.as_secs_f64() * 1e3,
                            "optimized code now serves (was baseline)"
                        );
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(app = %app, "the app keeps serving baseline code: {err}");
                    }
                    Err(join) => {
                        tracing::warn!(app = %app, "loading optimized code failed: {join}");
                    }
                }
            }
        });
    }

    /// Brokers this version uses that are unreachable now: the deploy stands (subscriptions
    /// start and the outbox drains once they are back), but the deployer should know.
    fn broker_warnings(&self, app: &LoadedApp) -> Vec<String> {
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

    /// Runs the init function under wizer (on a blocking thread: it compiles) within the app's
    /// memory limit, and returns the snapshot's record and bytes. The snapshot's memory counts
    /// against that limit again when the deploy's trial instantiation runs it.
    async fn pre_initialise(
        &self,
        wasm: &[u8],
        memory: usize,
    ) -> Result<(SnapshotRecord, Vec<u8>), DeployError> {
        let engine = self.engine.engine.clone();
        let wasm = wasm.to_vec();
        let runtime = tokio::runtime::Handle::current();
        let snap = tokio::task::spawn_blocking(move || {
            runtime.block_on(snapshot::snapshot(&engine, &wasm, memory))
        })
        .await
        .context("snapshot task failed")??;
        let record = SnapshotRecord {
            digest: hex::encode(sha2::Sha256::digest(&snap.wasm)),
            size: snap.wasm.len() as u64,
            init_ms: snap.init_time.as_secs_f64() * 1e3,
        };
        Ok((record, snap.wasm))
    }

    /// Stores an artifact compiled elsewhere as the code of `version` where this node can
    /// load it (restarts map it from there) and returns it loaded, for
    /// [`Self::compile_and_prepare`] to serve instead of compiling.
    fn adopt_precompiled(
        &self,
        version: &VersionRecord,
        snapshotted: bool,
        artifact: &[u8],
    ) -> (Precompiled, Option<Component>) {
        if snapshotted {
            let why = snapshot::ARTIFACT_OF_SNAPSHOTTED_COMPONENT.into();
            return (Precompiled::NotUsed(why), None);
        }
        match self.compiler.adopt(version.served_digest(), artifact) {
            Ok(component) => (Precompiled::Used, Some(component)),
            Err(why) => (Precompiled::NotUsed(why), None),
        }
    }

    fn compile_and_prepare(
        &self,
        name: &str,
        version: VersionRecord,
        sources: Sources,
        concurrency: Option<Arc<Semaphore>>,
    ) -> Result<(LoadedApp, Duration), DeployError> {
        let Sources {
            wasm,
            snapshot_wasm,
            adopted,
        } = sources;
        let served = snapshot_wasm.as_deref().unwrap_or(&wasm);
        let (component, compile_time) = match adopted {
            Some(component) => (component, Duration::ZERO),
            None => {
                let (component, compile_time, _tier) =
                    self.compiler.component(version.served_digest(), served)?;
                (component, compile_time)
            }
        };
        let prepared = self.prepare(name, version.clone(), &component, concurrency);
        if prepared.is_err() {
            // Nothing refers to this artifact; drop it (best effort) so junk does not pile up.
            if let Err(err) = self.repo.collect_garbage() {
                tracing::warn!("cleaning up after a failed deploy: {err:#}");
            }
        }
        let loaded = prepared?;
        if let Err(err) = self.try_instantiate(&loaded) {
            if let Err(gc) = self.repo.collect_garbage() {
                tracing::warn!("cleaning up after a failed deploy: {gc:#}");
            }
            return Err(err);
        }
        self.repo.store_component(&version.digest, &wasm)?;
        if let (Some(record), Some(bytes)) = (&version.snapshot, &snapshot_wasm) {
            self.repo.store_component(&record.digest, bytes)?;
        }
        Ok((loaded, compile_time))
    }

    /// Instantiates the prepared app once, in a store with its limits, so a component that can
    /// never run (its initial memory over the app's limit, more tables than a pool slot holds,
    /// a trapping start function) is refused at deploy instead of failing every request.
    /// Called on a blocking thread of the runtime.
    fn try_instantiate(&self, app: &LoadedApp) -> Result<(), DeployError> {
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
