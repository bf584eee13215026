//! The `wasi:nn` interfaces as guests call them: `wasi:nn@0.2.0-rc-2024-10-28`, the WIT file
//! wasmtime-wasi-nn 48 ships (vendored as `wit/deps/nn.wit`), over wasmtime-wasi-nn's graph,
//! tensor and execution-context types.
//!
//! The node serves this WIT with its own host functions rather than wasmtime-wasi-nn's, which
//! show guests only "Failed while accessing backend" for every backend error, log a backtrace
//! per guest error, and panic on execution target `tpu`. Here every error a guest causes
//! carries the precise wasi-nn code (`invalid-argument`, `not-found`, `unsupported-operation`,
//! `security`, `runtime-error`) and a message saying what was wrong and what to do, and is
//! logged once, with the app's name.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_nn::backend::{BackendError, NamedTensor};
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use super::AppModels;
use super::graph::InvalidInput;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/deps/nn.wit",
        world: "ml",
        imports: { default: trappable },
        with: {
            "wasi:nn/graph.graph": wasmtime_wasi_nn::Graph,
            "wasi:nn/tensor.tensor": wasmtime_wasi_nn::Tensor,
            "wasi:nn/inference.graph-execution-context": wasmtime_wasi_nn::ExecutionContext,
            "wasi:nn/errors.error": super::NnError,
        },
    });
}

use bindings::wasi::nn::errors::{self, ErrorCode};
use bindings::wasi::nn::graph::{self, ExecutionTarget, GraphBuilder, GraphEncoding};
use bindings::wasi::nn::inference;
use bindings::wasi::nn::tensor::{self, TensorType};

/// A wasi-nn `error` resource: what the guest reads with `code()` and `data()`.
#[derive(Debug)]
pub struct NnError {
    code: ErrorCode,
    message: String,
}

/// The wasi-nn state of one store: its resources live in the store's table.
pub struct NnView<'a> {
    pub table: &'a mut ResourceTable,
    /// The models of the store's app (`None` for apps granted none: they cannot import
    /// wasi:nn, a deploy that does is refused).
    pub models: Option<&'a Arc<AppModels>>,
    /// Counts the app's successful inferences (its usage), when metering is on.
    pub inferences: Option<&'a std::sync::atomic::AtomicU64>,
    /// What this instance holds, checked against its app's [`super::NnLimits`].
    pub held: &'a mut super::NnHeld,
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = NnView<'a>;
}

/// Adds the four `wasi:nn` interfaces to `linker`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    bindings::Ml::add_to_linker::<T, HasNn>(linker, view)
}

type NnResult<T> = wasmtime::Result<Result<T, Resource<NnError>>>;

impl NnView<'_> {
    fn app(&self) -> &str {
        self.models.map_or("?", |m| m.app.as_str())
    }

    /// Logs the refusal and hands the guest an error resource.
    /// Counts `bytes` more tensor data held by this instance; past its limit, a trap naming
    /// the limit ends the instance.
    fn hold_tensor(&mut self, bytes: usize) -> wasmtime::Result<()> {
        let limit = self.models.map_or(usize::MAX, |m| m.limits.tensor_bytes);
        let held = self.held.tensor_bytes.saturating_add(bytes);
        if held > limit {
            wasmtime::bail!(
                "app {} holds {held} bytes of wasi-nn tensors in one instance, over the node's \
                 limit of {limit} ([inference] max_tensor_bytes_per_instance)",
                self.app()
            );
        }
        self.held.tensor_bytes = held;
        Ok(())
    }

    fn fail<T>(&mut self, code: ErrorCode, message: String) -> NnResult<T> {
        tracing::warn!(app = self.app(), ?code, "wasi:nn call refused: {message}");
        let error = self.table.push(NnError { code, message })?;
        Ok(Err(error))
    }

    fn backend_failure<T>(&mut self, err: BackendError) -> NnResult<T> {
        let (code, message) = match err {
            BackendError::BackendAccess(inner) => {
                let code = if inner.downcast_ref::<InvalidInput>().is_some() {
                    ErrorCode::InvalidArgument
                } else {
                    ErrorCode::RuntimeError
                };
                (code, format!("{inner:#}"))
            }
            other => (ErrorCode::RuntimeError, other.to_string()),
        };
        self.fail(code, message)
    }
}

impl graph::Host for NnView<'_> {
    fn load(
        &mut self,
        _builder: Vec<GraphBuilder>,
        _encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> NnResult<Resource<Graph>> {
        if target == ExecutionTarget::Tpu {
            return self.fail(
                ErrorCode::UnsupportedOperation,
                "execution target tpu does not exist on this node (OpenVINO runs models on cpu \
                 or gpu); use load-by-name with a model the node serves"
                    .into(),
            );
        }
        self.fail(
            ErrorCode::Security,
            "this node does not compile models sent by guests (it would cost memory and time \
             outside the app's limits); the operator adds models under [models.NAME], deploys \
             the app with --model NAME, and the app opens them with load-by-name"
                .into(),
        )
    }

    fn load_by_name(&mut self, name: String) -> NnResult<Resource<Graph>> {
        let graph = self.models.and_then(|m| m.graphs.get(&name)).cloned();
        match graph {
            Some(graph) => Ok(Ok(self.table.push(graph)?)),
            None => {
                let mut granted: Vec<&str> = self
                    .models
                    .map(|m| m.graphs.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                granted.sort_unstable();
                let message = format!(
                    "model {name:?} is not available to this app (granted: {}); deploy it with \
                     --model {name}",
                    if granted.is_empty() {
                        "none".to_string()
                    } else {
                        granted.join(", ")
                    }
                );
                self.fail(ErrorCode::NotFound, message)
            }
        }
    }
}

impl graph::HostGraph for NnView<'_> {
    fn init_execution_context(
        &mut self,
        graph: Resource<Graph>,
    ) -> NnResult<Resource<ExecutionContext>> {
        if let Some(limit) = self.models.map(|m| m.limits.contexts)
            && self.held.contexts >= limit
        {
            return self.fail(
                ErrorCode::TooLarge,
                format!(
                    "this instance already holds {limit} execution contexts, the node's limit \
                     ([inference] max_contexts_per_instance); drop one or reuse it"
                ),
            );
        }
        let context = self.table.get(&graph)?.init_execution_context();
        match context {
            Ok(context) => {
                self.held.contexts += 1;
                Ok(Ok(self.table.push(context)?))
            }
            Err(err) => self.backend_failure(err),
        }
    }

    fn drop(&mut self, graph: Resource<Graph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::Host for NnView<'_> {}

impl inference::HostGraphExecutionContext for NnView<'_> {
    fn compute(
        &mut self,
        context: Resource<ExecutionContext>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> NnResult<Vec<(String, Resource<Tensor>)>> {
        let mut named = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let tensor = self.table.delete(tensor)?;
            self.held.tensor_bytes = self.held.tensor_bytes.saturating_sub(tensor.data.len());
            named.push(NamedTensor { name, tensor });
        }
        let outputs = self.table.get_mut(&context)?.compute_with_io(named);
        match outputs {
            Ok(outputs) => {
                if let Some(counter) = self.inferences {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let mut results = Vec::new();
                for NamedTensor { name, tensor } in outputs {
                    self.hold_tensor(tensor.data.len())?;
                    results.push((name, self.table.push(tensor)?));
                }
                Ok(Ok(results))
            }
            Err(err) => self.backend_failure(err),
        }
    }

    fn drop(&mut self, context: Resource<ExecutionContext>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        self.held.contexts = self.held.contexts.saturating_sub(1);
        Ok(())
    }
}

impl tensor::Host for NnView<'_> {}

impl tensor::HostTensor for NnView<'_> {
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<Tensor>> {
        // The constructor cannot return an error: past the limit the instance is stopped.
        self.hold_tensor(data.len())?;
        let tensor = Tensor {
            dimensions,
            ty: to_backend_type(ty),
            data,
        };
        Ok(self.table.push(tensor)?)
    }

    fn dimensions(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<TensorType> {
        Ok(from_backend_type(self.table.get(&tensor)?.ty))
    }

    fn data(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<()> {
        let tensor = self.table.delete(tensor)?;
        self.held.tensor_bytes = self.held.tensor_bytes.saturating_sub(tensor.data.len());
        Ok(())
    }
}

impl errors::Host for NnView<'_> {}

impl errors::HostError for NnView<'_> {
    fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&error)?.code)
    }

    fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

fn to_backend_type(ty: TensorType) -> wasmtime_wasi_nn::wit::TensorType {
    use wasmtime_wasi_nn::wit::TensorType as Backend;
    match ty {
        TensorType::Fp16 => Backend::Fp16,
        TensorType::Fp32 => Backend::Fp32,
        TensorType::Fp64 => Backend::Fp64,
        TensorType::Bf16 => Backend::Bf16,
        TensorType::U8 => Backend::U8,
        TensorType::I32 => Backend::I32,
        TensorType::I64 => Backend::I64,
    }
}

fn from_backend_type(ty: wasmtime_wasi_nn::wit::TensorType) -> TensorType {
    use wasmtime_wasi_nn::wit::TensorType as Backend;
    match ty {
        Backend::Fp16 => TensorType::Fp16,
        Backend::Fp32 => TensorType::Fp32,
        Backend::Fp64 => TensorType::Fp64,
        Backend::Bf16 => TensorType::Bf16,
        Backend::U8 => TensorType::U8,
        Backend::I32 => TensorType::I32,
        Backend::I64 => TensorType::I64,
    }
}
