//! `wasi:nn` for guests: the node's model registry, backed by OpenVINO.
//!
//! Models are named in the node config (`[models.NAME]`), read and compiled once at start-up
//! and shared by every instance of every app granted them (`edge deploy --model NAME`).
//! Guests open them with `load-by-name` ([`wasi`] serves the WIT); `load` with guest-supplied
//! bytes is refused, since compiling a model costs host memory and time outside the
//! instance's limits.
//!
//! Requests of apps granted a model run on their own worker threads ([`InferenceWorkers`]):
//! inference is a blocking call, and it must not hold the threads that serve every other app.
//!
//! Capability shape: config sections in [`config`] (`[openvino]`, `[inference]`,
//! `[models.NAME]`), grant `--model NAME` ([`check_imports`], [`Models::grant`]), per-store
//! [`NnView`], [`add_to_linker`].

pub mod config;
mod graph;
pub mod openvino;
mod tensor;
mod wasi;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use self::config::{InferenceConfig, ModelConfig, OpenvinoConfig};
use self::graph::CompiledGraph;
use self::openvino::OpenvinoRuntime;
pub use self::wasi::{NnError, NnView, add_to_linker};
pub use self::workers::InferenceWorkers;
use crate::error::DeployError;

/// Imports of these interfaces need a model grant.
pub const NN_IMPORT_PREFIX: &str = "wasi:nn/";

/// Refuses a component that imports `wasi:nn` when the app was granted no model.
pub fn check_imports(imports: &[String], models: &[String]) -> Result<(), DeployError> {
    match imports.iter().find(|i| i.starts_with(NN_IMPORT_PREFIX)) {
        Some(import) if models.is_empty() => Err(DeployError::MissingGrant(format!(
            "the component imports `{import}` but was deployed without a model; redeploy \
             with --model NAME for each model it opens with load-by-name (see `edge models`)"
        ))),
        _ => Ok(()),
    }
}

/// What the node config says about wasi:nn.
#[derive(Debug, Clone)]
pub struct NnSettings {
    pub openvino: OpenvinoConfig,
    pub inference: InferenceConfig,
    pub models: BTreeMap<String, ModelConfig>,
}

/// The model label of the wasi:nn series (same shape as an app label: `model="NAME"`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

/// The series wasi:nn adds to the node's metrics.
#[derive(Clone)]
pub struct NnMetrics {
    compilations: Family<ModelLabel, Counter>,
    inferences: Family<ModelLabel, Counter>,
    inference_seconds: Family<ModelLabel, Histogram>,
}

impl NnMetrics {
    /// Registers the series in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            compilations: Family::default(),
            inferences: Family::default(),
            inference_seconds: Family::new_with_constructor(crate::metrics::latency_histogram),
        };
        registry.register(
            "edge_model_compilations",
            "Times a model was read and compiled (once per start-up)",
            metrics.compilations.clone(),
        );
        registry.register(
            "edge_inferences",
            "Inferences run, per model",
            metrics.inferences.clone(),
        );
        registry.register(
            "edge_inference_seconds",
            "Time OpenVINO spent in one inference",
            metrics.inference_seconds.clone(),
        );
        metrics
    }

    fn label(model: &str) -> ModelLabel {
        ModelLabel {
            model: model.to_string(),
        }
    }
}

/// The models of this node, loaded in the background at start-up so that apps without a
/// model start serving at once.
pub struct Models {
    state: OnceLock<LoadedModels>,
}

impl Models {
    /// Starts loading the OpenVINO runtime and every configured model on a thread of its own,
    /// and hands back that thread. The process must join it before exiting, not only wait for
    /// the models: after publishing them it still drops its handle (maybe the last one,
    /// tearing OpenVINO down) and runs OpenVINO's thread-exit code, which raced OpenVINO's
    /// static destructors and crashed the process.
    pub fn start(
        settings: NnSettings,
        metrics: NnMetrics,
    ) -> (Arc<Self>, Option<std::thread::JoinHandle<()>>) {
        let models = Arc::new(Self {
            state: OnceLock::new(),
        });
        let loader = models.clone();
        let spawned = std::thread::Builder::new()
            .name("edge-models".into())
            .spawn(move || {
                let _ = loader.state.set(LoadedModels::load(&settings, &metrics));
            });
        match spawned {
            Ok(handle) => (models, Some(handle)),
            Err(err) => {
                let _ = models.state.set(LoadedModels::unavailable(format!(
                    "cannot start the model loader: {err}"
                )));
                (models, None)
            }
        }
    }

    /// The loaded models, waiting for the loader if it is still running (blocks: call it
    /// off the async workers).
    fn ready(&self) -> &LoadedModels {
        self.state.wait()
    }

    /// Waits until every model is loaded or has failed.
    pub fn wait_until_loaded(&self) {
        self.ready();
    }

    /// The graphs app `app`, deployed with `--model` for each of `names`, may load. Blocks
    /// while the models are still loading.
    pub fn grant(&self, app: &str, names: &[String]) -> Result<Arc<AppModels>, DeployError> {
        self.ready().grant(app, names)
    }

    /// Where requests of apps granted a model run.
    pub fn workers(&self) -> Option<&InferenceWorkers> {
        self.state.get().and_then(|m| m.workers.as_ref())
    }

    /// What `GET /v1/models` shows, once loading is over (blocks until then).
    pub fn view_when_loaded(&self) -> ModelsView {
        self.ready().view()
    }

    /// What `GET /v1/models` shows, right now.
    pub fn view(&self) -> ModelsView {
        match self.state.get() {
            Some(models) => models.view(),
            None => ModelsView {
                openvino: RuntimeView {
                    version: None,
                    devices: Vec::new(),
                    error: Some("still loading; try again in a moment".into()),
                },
                models: Vec::new(),
            },
        }
    }
}

/// The outcome of loading: the runtime and the models that compiled.
struct LoadedModels {
    runtime: Result<OpenvinoRuntime, String>,
    loaded: BTreeMap<String, Arc<CompiledGraph>>,
    /// Configured models that could not be loaded, with the reason.
    failed: BTreeMap<String, String>,
    workers: Option<InferenceWorkers>,
    /// What one app's instances may hold and occupy.
    inference: InferenceConfig,
}

impl LoadedModels {
    fn unavailable(reason: String) -> Self {
        Self {
            runtime: Err(reason),
            loaded: BTreeMap::new(),
            failed: BTreeMap::new(),
            workers: None,
            inference: InferenceConfig::default(),
        }
    }

    /// Loads the OpenVINO runtime and compiles every configured model. Never fails: a node
    /// without OpenVINO or with a broken model still serves every other app, and the reason is
    /// logged and kept for the deploys that ask for the model.
    fn load(config: &NnSettings, metrics: &NnMetrics) -> Self {
        if config.models.is_empty() {
            return Self::unavailable("no models are configured".into());
        }
        let runtime = OpenvinoRuntime::load(&config.openvino.folder);
        let mut loaded = BTreeMap::new();
        let mut failed = BTreeMap::new();
        match &runtime {
            Ok(runtime) => {
                tracing::info!(
                    version = %runtime.version,
                    devices = ?runtime.devices,
                    library = %runtime.library.display(),
                    "OpenVINO runtime loaded"
                );
                for (name, model) in &config.models {
                    let device = runtime.resolve_device(name, model.device);
                    let label = NnMetrics::label(name);
                    let counters = graph::GraphMetrics {
                        inferences: metrics.inferences.get_or_create_owned(&label),
                        inference_seconds: metrics.inference_seconds.get_or_create_owned(&label),
                    };
                    match runtime.compile(name, model, device, counters) {
                        Ok(graph) => {
                            metrics.compilations.get_or_create(&label).inc();
                            tracing::info!(
                                model = %name,
                                device,
                                precision = graph.precision.in_force.as_deref().unwrap_or("?"),
                                inputs = %graph.describe_inputs(),
                                compile_ms = graph.compile_time.as_secs_f64() * 1e3,
                                "model loaded"
                            );
                            loaded.insert(name.clone(), Arc::new(graph));
                        }
                        Err(reason) => {
                            tracing::error!(model = %name, "model not loaded: {reason}");
                            failed.insert(name.clone(), reason);
                        }
                    }
                }
            }
            Err(reason) => {
                tracing::warn!("wasi:nn unavailable, apps granted a model will not run: {reason}");
                for name in config.models.keys() {
                    failed.insert(name.clone(), reason.clone());
                }
            }
        }
        let workers = if loaded.is_empty() {
            None
        } else {
            match InferenceWorkers::new(config.inference.worker_threads()) {
                Ok(workers) => Some(workers),
                Err(err) => {
                    tracing::error!("cannot start the inference workers: {err}");
                    for name in std::mem::take(&mut loaded).into_keys() {
                        failed.insert(name, format!("no inference workers: {err}"));
                    }
                    None
                }
            }
        };
        Self {
            runtime,
            loaded,
            failed,
            workers,
            inference: config.inference.clone(),
        }
    }

    fn grant(&self, app: &str, names: &[String]) -> Result<Arc<AppModels>, DeployError> {
        let mut graphs = HashMap::new();
        for name in names {
            if let Some(graph) = self.loaded.get(name) {
                graphs.insert(name.clone(), graph.clone());
            } else if let Some(reason) = self.failed.get(name) {
                return Err(DeployError::ModelUnavailable(format!(
                    "model {name} is configured but not loaded on this node: {reason}"
                )));
            } else {
                let known: Vec<&str> = self
                    .loaded
                    .keys()
                    .chain(self.failed.keys())
                    .map(String::as_str)
                    .collect();
                return Err(DeployError::UnknownModel(format!(
                    "this node has no model named {name} (configured: {}); add it under \
                     [models.{name}] in the node config or pick one from `edge models`",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        Ok(Arc::new(AppModels {
            app: app.to_string(),
            graphs,
            limits: NnLimits {
                tensor_bytes: self.inference.max_tensor_bytes_per_instance,
                contexts: self.inference.max_contexts_per_instance,
            },
            worker_share: Arc::new(tokio::sync::Semaphore::new(self.inference.worker_share())),
        }))
    }

    fn view(&self) -> ModelsView {
        let mut models: Vec<ModelView> = self
            .loaded
            .values()
            .map(|graph| ModelView {
                name: graph.name.clone(),
                loaded: true,
                device: Some(graph.device.to_string()),
                precision: Some(graph.precision.requested.as_str().to_string()),
                precision_in_force: graph.precision.in_force.clone(),
                inputs: graph
                    .inputs
                    .iter()
                    .map(|p| InputView {
                        name: p.name.clone(),
                        shape: p.dimensions.clone(),
                        element_type: format!("{:?}", p.element_type).to_lowercase(),
                    })
                    .collect(),
                outputs: graph.outputs,
                compile_ms: Some(graph.compile_time.as_secs_f64() * 1e3),
                inferences: graph.metrics.inferences.get(),
                error: None,
            })
            .collect();
        models.extend(self.failed.iter().map(|(name, reason)| ModelView {
            name: name.clone(),
            loaded: false,
            device: None,
            precision: None,
            precision_in_force: None,
            inputs: Vec::new(),
            outputs: 0,
            compile_ms: None,
            inferences: 0,
            error: Some(reason.clone()),
        }));
        models.sort_by(|a, b| a.name.cmp(&b.name));
        let runtime = match &self.runtime {
            Ok(rt) => RuntimeView {
                version: Some(rt.version.clone()),
                devices: rt.devices.clone(),
                error: None,
            },
            Err(reason) => RuntimeView {
                version: None,
                devices: Vec::new(),
                error: Some(reason.clone()),
            },
        };
        ModelsView {
            openvino: runtime,
            models,
        }
    }
}

/// The models one app was granted, shared by all its instances.
pub struct AppModels {
    /// The app's name, for the log.
    app: String,
    graphs: HashMap<String, Arc<CompiledGraph>>,
    limits: NnLimits,
    /// The inference workers its requests may occupy at once.
    worker_share: Arc<tokio::sync::Semaphore>,
}

impl AppModels {
    /// Taken by each of the app's requests before it runs on the inference workers, so one
    /// app's burst waits for its own turns instead of occupying every worker.
    pub fn worker_share(&self) -> Arc<tokio::sync::Semaphore> {
        self.worker_share.clone()
    }
}

/// What one instance may hold in wasi-nn resources (`[inference]`).
#[derive(Debug, Clone, Copy)]
pub struct NnLimits {
    pub tensor_bytes: usize,
    pub contexts: usize,
}

/// What one instance holds now in wasi-nn resources.
#[derive(Debug, Default)]
pub struct NnHeld {
    pub tensor_bytes: usize,
    /// The execution contexts open, by their rep in the instance's table.
    pub contexts: Vec<u32>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelsView {
    pub openvino: RuntimeView,
    pub models: Vec<ModelView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeView {
    pub version: Option<String>,
    pub devices: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelView {
    pub name: String,
    pub loaded: bool,
    /// The device it runs on (after any fallback to CPU).
    pub device: Option<String>,
    /// The configured precision: `f32`, `bf16`, `f16` or `auto`.
    #[serde(default)]
    pub precision: Option<String>,
    /// The precision the device runs, read back from the compiled model (`f32` where a
    /// requested `bf16` or `f16` is not supported).
    #[serde(default)]
    pub precision_in_force: Option<String>,
    pub inputs: Vec<InputView>,
    pub outputs: usize,
    pub compile_ms: Option<f64>,
    pub inferences: u64,
    /// Why it is not loaded.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputView {
    pub name: String,
    pub shape: Vec<u32>,
    pub element_type: String,
}
