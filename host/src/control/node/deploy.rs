//! Deploying a version of an app: the deploy's checks, the snapshot taken at deploy, a
//! precompiled artifact adopted or the component compiled (baseline first for big ones, the
//! optimized code swapped in from the background), persisted, then swapped into the routing
//! table; and the registry pulls that feed it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use sha2::Digest as _;
use tokio::sync::Semaphore;
use wasmtime::component::Component;

use super::Node;
use crate::api::Reuse;
use crate::apps::LoadedApp;
use crate::capabilities::config::{self as app_config, ConfigValues};
use crate::config::AppLimits;
use crate::control::repository::{AppRecord, Grants, SnapshotRecord, SourceRecord, VersionRecord};
use crate::control::validate;
use crate::engine::compile::Tier;
use crate::engine::snapshot;
use crate::error::DeployError;
use crate::names::{normalize_route, validate_app_name};
use crate::oci::{OciRef, Pulled};

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

impl Node {
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
                None => (None, None),
                Some(artifact) => {
                    match node.adopt_precompiled(&version, snapshot_wasm.is_some(), &artifact) {
                        Ok(component) => (Some(Precompiled::Used), Some(component)),
                        Err(why) => (Some(Precompiled::NotUsed(why)), None),
                    }
                }
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
    /// [`Self::compile_and_prepare`] to serve instead of compiling; else why not.
    fn adopt_precompiled(
        &self,
        version: &VersionRecord,
        snapshotted: bool,
        artifact: &[u8],
    ) -> Result<Component, String> {
        if snapshotted {
            return Err(snapshot::ARTIFACT_OF_SNAPSHOTTED_COMPONENT.into());
        }
        self.compiler.adopt(version.served_digest(), artifact)
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
}
