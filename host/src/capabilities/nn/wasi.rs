//! The `wasi:nn` interfaces as guests call them: `wasi:nn@0.2.0-rc-2024-10-28`, the WIT file
//! wasmtime-wasi-nn 48 ships (vendored as `wit/deps/nn.wit`), over the node's own graph
//! ([`ModelGraph`]), execution-context ([`Execution`]) and tensor ([`NnTensor`]) types.
//!
//! The node serves this WIT with its own host functions rather than wasmtime-wasi-nn's (no
//! longer a dependency), which
//! show guests only "Failed while accessing backend" for every backend error, log a backtrace
//! per guest error, and panic on execution target `tpu`. Here every error a guest causes
//! carries the precise wasi-nn code (`invalid-argument`, `not-found`, `unsupported-operation`,
//! `security`, `runtime-error`) and a message saying what was wrong and what to do, and is
//! logged once, with the app's name.
//!
//! The `tensor` constructor is the one host function not served through the generated
//! bindings: they would lift the guest's bytes into a vector of the node's first, and the
//! constructor copies them from the guest's memory straight to where OpenVINO reads them
//! ([`super::tensor`]).

use std::sync::Arc;

use openvino::{ElementType, Tensor as OvTensor};
use wasmtime::StoreContextMut;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, WasmList};

use super::AppModels;
use super::graph::NnFailure;
// Public for the generated bindings, which name them as the resources' types.
pub use super::graph::{Execution, ModelGraph};
pub use super::tensor::NnTensor;
use super::tensor::TensorData;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/deps/nn.wit",
        world: "ml",
        imports: { default: trappable },
        with: {
            "wasi:nn/graph.graph": super::ModelGraph,
            "wasi:nn/tensor.tensor": super::NnTensor,
            "wasi:nn/inference.graph-execution-context": super::Execution,
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

/// The interface whose constructor [`add_to_linker`] serves itself.
const TENSOR_INTERFACE: &str = "wasi:nn/tensor@0.2.0-rc-2024-10-28";

/// Adds the four `wasi:nn` interfaces to `linker`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> NnView<'_>,
) -> wasmtime::Result<()> {
    bindings::Ml::add_to_linker::<T, HasNn>(linker, view)?;
    // The generated constructor (`HostTensor::new`) is replaced by one that reads the guest's
    // list where it lies.
    linker.allow_shadowing(true);
    let replaced = linker.instance(TENSOR_INTERFACE).and_then(|mut tensor| {
        tensor.func_wrap(
            "[constructor]tensor",
            move |mut store: StoreContextMut<'_, T>,
                  (dimensions, ty, data): (Vec<u32>, TensorType, WasmList<u8>)| {
                new_tensor(&mut store, view, dimensions, ty, &data).map(|tensor| (tensor,))
            },
        )
    });
    linker.allow_shadowing(false);
    replaced
}

/// The `tensor` constructor: the guest's bytes copied once, into the input buffer of an
/// execution context of the instance that can take them, or else into the node's memory.
fn new_tensor<T: 'static>(
    store: &mut StoreContextMut<'_, T>,
    view: fn(&mut T) -> NnView<'_>,
    dimensions: Vec<u32>,
    ty: TensorType,
    data: &WasmList<u8>,
) -> wasmtime::Result<Resource<NnTensor>> {
    let ty = to_element_type(ty);
    let len = data.len();
    // The constructor cannot return an error: past the limit the instance is stopped.
    let buffer = {
        let mut nn = view(store.data_mut());
        nn.hold_tensor(len)?;
        nn.free_input_buffer(&dimensions, ty, len)
    };
    let in_request = buffer.and_then(|(context, mut buffer)| {
        let into = buffer
            .get_raw_data_mut()
            .ok()
            .filter(|into| into.len() == len)?;
        into.copy_from_slice(data.as_le_slice(&*store));
        Some(TensorData::InRequest {
            buffer,
            context,
            len,
        })
    });
    let data = in_request.unwrap_or_else(|| TensorData::Host(data.as_le_slice(&*store).to_vec()));
    view(store.data_mut()).push_tensor(NnTensor {
        dimensions,
        ty,
        data,
    })
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

    fn model_failure<T>(&mut self, err: NnFailure) -> NnResult<T> {
        match err {
            NnFailure::InvalidInput(message) => self.fail(ErrorCode::InvalidArgument, message),
            NnFailure::Backend(message) => self.fail(ErrorCode::RuntimeError, message),
        }
    }

    /// An open execution context of this instance whose input buffer can take a tensor of
    /// `dimensions`, `ty` and `len` bytes as it is created, and that buffer.
    fn free_input_buffer(
        &self,
        dimensions: &[u32],
        ty: ElementType,
        len: usize,
    ) -> Option<(u32, OvTensor)> {
        self.held.contexts.iter().rev().find_map(|&rep| {
            let context = self
                .table
                .get(&Resource::<Execution>::new_borrow(rep))
                .ok()?;
            Some((rep, context.free_input_buffer(dimensions, ty, len)?))
        })
    }

    /// Adds a tensor already counted by [`Self::hold_tensor`] to the table; one whose bytes
    /// lie in a context's input buffer takes that buffer.
    fn push_tensor(&mut self, tensor: NnTensor) -> wasmtime::Result<Resource<NnTensor>> {
        let context = tensor.context();
        let tensor = self.table.push(tensor)?;
        if let Some(context) = context {
            self.context_mut(context)?.claimed_by = Some(tensor.rep());
        }
        Ok(tensor)
    }

    fn context_mut(&mut self, rep: u32) -> wasmtime::Result<&mut Execution> {
        Ok(self
            .table
            .get_mut(&Resource::<Execution>::new_borrow(rep))?)
    }

    /// Copies the bytes of tensor `rep` out of the context's buffer they lie in, before that
    /// buffer is written over or given back.
    fn take_out_of_request(&mut self, rep: u32) -> wasmtime::Result<()> {
        self.table
            .get_mut(&Resource::<NnTensor>::new_borrow(rep))?
            .take_out_of_request()
            .map_err(|err| {
                wasmtime::format_err!("OpenVINO: reading a tensor's input buffer: {err}")
            })
    }

    /// Frees the input buffer a dropped or consumed tensor held in context `rep`, if that
    /// context is still open.
    fn release_buffer(&mut self, context: u32) {
        if let Ok(context) = self.context_mut(context) {
            context.claimed_by = None;
        }
    }
}

impl graph::Host for NnView<'_> {
    fn load(
        &mut self,
        _builder: Vec<GraphBuilder>,
        _encoding: GraphEncoding,
        target: ExecutionTarget,
    ) -> NnResult<Resource<ModelGraph>> {
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

    fn load_by_name(&mut self, name: String) -> NnResult<Resource<ModelGraph>> {
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
        graph: Resource<ModelGraph>,
    ) -> NnResult<Resource<Execution>> {
        if let Some(limit) = self.models.map(|m| m.limits.contexts)
            && self.held.contexts.len() >= limit
        {
            return self.fail(
                ErrorCode::TooLarge,
                format!(
                    "this instance already holds {limit} execution contexts, the node's limit \
                     ([inference] max_contexts_per_instance); drop one or reuse it"
                ),
            );
        }
        match Execution::new(self.table.get(&graph)?) {
            Ok(context) => {
                let context = self.table.push(context)?;
                self.held.contexts.push(context.rep());
                Ok(Ok(context))
            }
            Err(err) => self.model_failure(err),
        }
    }

    fn drop(&mut self, graph: Resource<ModelGraph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::Host for NnView<'_> {}

impl inference::HostGraphExecutionContext for NnView<'_> {
    fn compute(
        &mut self,
        context: Resource<Execution>,
        inputs: Vec<(String, Resource<NnTensor>)>,
    ) -> NnResult<Vec<(String, Resource<NnTensor>)>> {
        let this = context.rep();
        let mut named = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let tensor = self.table.delete(tensor)?;
            self.held.tensor_bytes = self.held.tensor_bytes.saturating_sub(tensor.len());
            named.push((name, tensor));
        }
        // A tensor of the guest's still waiting in this context's input buffer, and not given
        // here, keeps its bytes: they are copied out before this call writes over them.
        if let Some(waiting) = self.table.get_mut(&context)?.claimed_by.take()
            && !named
                .iter()
                .any(|(_, tensor)| tensor.context() == Some(this))
        {
            self.take_out_of_request(waiting)?;
        }
        let outputs = self.table.get_mut(&context)?.compute(&named);
        // The tensors given here that lay in other contexts' buffers are consumed.
        for (_, tensor) in &named {
            if let Some(other) = tensor.context().filter(|&other| other != this) {
                self.release_buffer(other);
            }
        }
        let outputs = match outputs {
            Ok(outputs) => outputs,
            Err(err) => return self.model_failure(err),
        };
        if let Some(ty) = outputs
            .iter()
            .map(|output| output.ty)
            .find(|&ty| to_tensor_type(ty).is_none())
        {
            return self.fail(
                ErrorCode::RuntimeError,
                format!("the model produces {ty:?} tensors, which wasi-nn cannot carry"),
            );
        }
        if let Some(counter) = self.inferences {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut results = Vec::with_capacity(outputs.len());
        for (index, output) in outputs.into_iter().enumerate() {
            self.hold_tensor(output.len())?;
            results.push((index.to_string(), self.table.push(output)?));
        }
        Ok(Ok(results))
    }

    fn drop(&mut self, context: Resource<Execution>) -> wasmtime::Result<()> {
        // Its request goes back to the model's pool: a tensor waiting in its input buffer
        // takes its bytes out first.
        if let Some(waiting) = self.table.get(&context)?.claimed_by {
            self.take_out_of_request(waiting)?;
        }
        let rep = context.rep();
        self.table.delete(context)?;
        self.held.contexts.retain(|&open| open != rep);
        Ok(())
    }
}

impl tensor::Host for NnView<'_> {}

impl tensor::HostTensor for NnView<'_> {
    /// Not reached: [`add_to_linker`] serves the constructor with [`new_tensor`], which copies
    /// the guest's list once instead of lifting it into `data` first. The same tensor, here
    /// in the node's memory.
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<NnTensor>> {
        self.hold_tensor(data.len())?;
        self.push_tensor(NnTensor {
            dimensions,
            ty: to_element_type(ty),
            data: TensorData::Host(data),
        })
    }

    fn dimensions(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<TensorType> {
        let ty = self.table.get(&tensor)?.ty;
        to_tensor_type(ty).ok_or_else(|| wasmtime::format_err!("a {ty:?} tensor in wasi-nn"))
    }

    fn data(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<Vec<u8>> {
        let tensor = self.table.get(&tensor)?;
        let bytes = tensor
            .bytes()
            .map_err(|err| wasmtime::format_err!("OpenVINO: reading a tensor: {err}"))?;
        Ok(bytes.to_vec())
    }

    fn drop(&mut self, tensor: Resource<NnTensor>) -> wasmtime::Result<()> {
        let tensor = self.table.delete(tensor)?;
        self.held.tensor_bytes = self.held.tensor_bytes.saturating_sub(tensor.len());
        if let Some(context) = tensor.context() {
            self.release_buffer(context);
        }
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

fn to_element_type(ty: TensorType) -> ElementType {
    match ty {
        TensorType::Fp16 => ElementType::F16,
        TensorType::Fp32 => ElementType::F32,
        TensorType::Fp64 => ElementType::F64,
        TensorType::Bf16 => ElementType::Bf16,
        TensorType::U8 => ElementType::U8,
        TensorType::I32 => ElementType::I32,
        TensorType::I64 => ElementType::I64,
    }
}

/// The wasi-nn type of an OpenVINO element type, for those wasi-nn has.
fn to_tensor_type(ty: ElementType) -> Option<TensorType> {
    Some(match ty {
        ElementType::F16 => TensorType::Fp16,
        ElementType::F32 => TensorType::Fp32,
        ElementType::F64 => TensorType::Fp64,
        ElementType::Bf16 => TensorType::Bf16,
        ElementType::U8 => TensorType::U8,
        ElementType::I32 => TensorType::I32,
        ElementType::I64 => TensorType::I64,
        _ => return None,
    })
}
