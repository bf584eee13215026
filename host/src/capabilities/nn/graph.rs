//! A compiled model as guests see it through `wasi:nn`: a graph shared by every instance, and
//! the execution contexts created from it for one request.
//!
//! Every guest-supplied tensor is checked against the model's inputs (name, element type,
//! shape, byte length) before it reaches OpenVINO, so a malformed tensor is an error the guest
//! can read, never a panic or a read past a buffer in the host. Inference requests are kept in
//! a small pool and reused, since creating one allocates the model's intermediate buffers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openvino::{CompiledModel, ElementType, InferRequest, Shape, Tensor as OvTensor};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendGraph, Id, NamedTensor,
};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{ExecutionContext, Graph, Tensor};

use super::openvino::element_size;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::config::InferencePrecision;

/// Idle inference requests kept per model for reuse.
const MAX_IDLE_REQUESTS: usize = 16;

/// One input of a model.
#[derive(Debug, Clone)]
pub struct PortSpec {
    pub name: String,
    pub dimensions: Vec<u32>,
    pub element_type: ElementType,
}

/// The precision a model was configured with and the one its device runs.
#[derive(Debug, Clone)]
pub struct Precision {
    pub requested: InferencePrecision,
    /// Read back from the compiled model (`INFERENCE_PRECISION_HINT`); `None` when the device
    /// does not report it.
    pub in_force: Option<String>,
}

/// A model compiled for a device, shared by all instances of all apps granted it.
pub struct CompiledGraph {
    pub name: String,
    pub device: &'static str,
    pub precision: Precision,
    pub inputs: Vec<PortSpec>,
    pub outputs: usize,
    pub compile_time: Duration,
    compiled: Mutex<CompiledModel>,
    idle: Mutex<Vec<InferRequest>>,
    pub metrics: GraphMetrics,
}

/// The model's series in the node's metrics.
pub struct GraphMetrics {
    pub inferences: Counter,
    pub inference_seconds: Histogram,
}

impl CompiledGraph {
    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor call, in openvino.rs, reading each from the compiled model"
    )]
    pub fn new(
        name: &str,
        device: &'static str,
        compiled: CompiledModel,
        inputs: Vec<PortSpec>,
        outputs: usize,
        precision: Precision,
        compile_time: Duration,
        metrics: GraphMetrics,
    ) -> Self {
        Self {
            name: name.to_string(),
            device,
            precision,
            inputs,
            outputs,
            compile_time,
            compiled: Mutex::new(compiled),
            idle: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The `wasi:nn` graph handed to guests.
    pub fn wasi_graph(self: &Arc<Self>) -> Graph {
        let graph: Box<dyn BackendGraph> = Box::new(SharedGraph(self.clone()));
        graph.into()
    }

    fn take_request(&self) -> Result<InferRequest, BackendError> {
        if let Some(request) = self.idle.lock().map_err(poisoned)?.pop() {
            return Ok(request);
        }
        let mut compiled = self.compiled.lock().map_err(poisoned)?;
        compiled
            .create_infer_request()
            .map_err(|err| backend_error(format!("cannot create an inference request: {err}")))
    }

    fn return_request(&self, request: InferRequest) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_REQUESTS
        {
            idle.push(request);
        }
    }

    /// Checks a guest tensor against the input it names: type, dimensions and byte size.
    fn check_input(&self, input: &NamedTensor) -> Result<(), BackendError> {
        let port = self
            .inputs
            .iter()
            .find(|p| p.name == input.name)
            .ok_or_else(|| {
                invalid_input(format!(
                    "model {} has no input named {:?}; its inputs: {}",
                    self.name,
                    input.name,
                    self.describe_inputs()
                ))
            })?;
        let tensor = &input.tensor;
        let ty = element_type(tensor.ty);
        if ty != port.element_type || tensor.dimensions != port.dimensions {
            return Err(invalid_input(format!(
                "input {:?} of model {} must be {:?} {:?}; the tensor is {:?} {:?}",
                port.name, self.name, port.element_type, port.dimensions, ty, tensor.dimensions
            )));
        }
        let expected = port
            .dimensions
            .iter()
            .try_fold(element_size(ty).unwrap_or(0), |acc, &d| {
                acc.checked_mul(d as usize)
            })
            .unwrap_or(usize::MAX);
        if tensor.data.len() != expected {
            return Err(invalid_input(format!(
                "input {:?} of model {} needs {expected} bytes of data for {:?} {:?}; the \
                 tensor has {}",
                port.name,
                self.name,
                ty,
                port.dimensions,
                tensor.data.len()
            )));
        }
        Ok(())
    }

    /// The inputs as `"name" Type [dims]`, for messages.
    pub fn describe_inputs(&self) -> String {
        self.inputs
            .iter()
            .map(|p| format!("{:?} {:?} {:?}", p.name, p.element_type, p.dimensions))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

struct SharedGraph(Arc<CompiledGraph>);

impl BackendGraph for SharedGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let request = self.0.take_request()?;
        let context: Box<dyn BackendExecutionContext> = Box::new(Execution {
            graph: self.0.clone(),
            request: Some(request),
        });
        Ok(context.into())
    }
}

/// One guest's execution context: an inference request borrowed from the model's pool.
struct Execution {
    graph: Arc<CompiledGraph>,
    request: Option<InferRequest>,
}

impl Drop for Execution {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.graph.return_request(request);
        }
    }
}

impl Execution {
    fn run(&mut self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
        let graph = &self.graph;
        let request = self
            .request
            .as_mut()
            .ok_or_else(|| invalid_input("execution context already failed".into()))?;
        if inputs.len() != graph.inputs.len() {
            return Err(invalid_input(format!(
                "model {} takes {} input(s) ({}); compute was given {}",
                graph.name,
                graph.inputs.len(),
                graph.describe_inputs(),
                inputs.len()
            )));
        }
        for input in &inputs {
            graph.check_input(input)?;
        }
        // Pooled requests are shared by every app granted the model: each input must be set
        // by this call, so no tensor of an earlier request (maybe another app's) is reused.
        if let Some(port) = graph
            .inputs
            .iter()
            .find(|port| !inputs.iter().any(|input| input.name == port.name))
        {
            return Err(invalid_input(format!(
                "compute of model {} is missing input {:?}; its inputs: {}",
                graph.name,
                port.name,
                graph.describe_inputs()
            )));
        }
        let started = Instant::now();
        infer_in_place(request, &inputs)?;
        graph
            .metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());
        graph.metrics.inferences.inc();

        (0..graph.outputs)
            .map(|i| {
                let output = request.get_output_tensor_by_index(i).map_err(ov)?;
                let dimensions = output
                    .get_shape()
                    .map_err(ov)?
                    .get_dimensions()
                    .iter()
                    .map(|&d| u32::try_from(d).unwrap_or(u32::MAX))
                    .collect();
                let ty = tensor_type(output.get_element_type().map_err(ov)?)?;
                let data = output.get_raw_data().map_err(ov)?.to_vec();
                Ok(NamedTensor {
                    name: i.to_string(),
                    tensor: Tensor {
                        dimensions,
                        ty,
                        data,
                    },
                })
            })
            .collect()
    }
}

impl BackendExecutionContext for Execution {
    fn set_input(&mut self, _id: Id, _tensor: &Tensor) -> Result<(), BackendError> {
        Err(witx_only())
    }

    fn get_output(&mut self, _id: Id) -> Result<Tensor, BackendError> {
        Err(witx_only())
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let inputs = inputs.ok_or_else(witx_only)?;
        let result = self.run(inputs);
        if result.is_err() {
            // A request that failed mid-way may hold a guest's tensors: do not reuse it.
            self.request = None;
        }
        result.map(Some)
    }
}

/// Runs `request` on checked guest tensors read where they lie: each is bound to the
/// request as an OpenVINO tensor over the host's copy of the guest's bytes (the one copy,
/// made when the guest created the tensor), then the request's own input buffers are bound
/// back, whatever happened, so a pooled request never points at memory it does not own.
/// A request whose buffers could not be bound back fails, and is not pooled again.
fn infer_in_place(request: &mut InferRequest, inputs: &[NamedTensor]) -> Result<(), BackendError> {
    let own = inputs
        .iter()
        .map(|input| request.get_tensor(&input.name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ov)?;
    let inferred = bind_in_place(request, inputs).and_then(|()| request.infer());
    let restored = inputs
        .iter()
        .zip(&own)
        .try_for_each(|(input, own)| request.set_tensor(&input.name, own));
    inferred.map_err(ov)?;
    restored.map_err(|err| backend_error(format!("OpenVINO: rebinding an input: {err}")))
}

/// Sets each of `inputs` on `request` as a tensor over its bytes, not a copy of them.
/// The caller keeps `inputs` alive until it has bound other tensors in their place.
fn bind_in_place(
    request: &mut InferRequest,
    inputs: &[NamedTensor],
) -> Result<(), openvino::InferenceError> {
    for input in inputs {
        let tensor = &input.tensor;
        let dims: Vec<i64> = tensor.dimensions.iter().map(|&d| i64::from(d)).collect();
        let shape = Shape::new(&dims)?;
        #[expect(
            unsafe_code,
            reason = "OpenVINO reads the guest tensor's bytes in place: they outlive the \
                      binding, which infer_in_place replaces before they can go away"
        )]
        // SAFETY: `tensor.data` is borrowed for this whole call and by `infer_in_place`, which
        // binds the request's own buffers back before it returns; the request never writes
        // an input it was given (OpenVINO's CPU plugin checks that before reading in place,
        // and copies otherwise).
        let bound =
            unsafe { OvTensor::from_host_memory(element_type(tensor.ty), &shape, &tensor.data)? };
        request.set_tensor(&input.name, &bound)?;
    }
    Ok(())
}

fn witx_only() -> BackendError {
    backend_error("only the WIT interface of wasi-nn is served".into())
}

fn element_type(ty: TensorType) -> ElementType {
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

fn tensor_type(ty: ElementType) -> Result<TensorType, BackendError> {
    Ok(match ty {
        ElementType::F16 => TensorType::Fp16,
        ElementType::F32 => TensorType::Fp32,
        ElementType::F64 => TensorType::Fp64,
        ElementType::Bf16 => TensorType::Bf16,
        ElementType::U8 => TensorType::U8,
        ElementType::I32 => TensorType::I32,
        ElementType::I64 => TensorType::I64,
        other => {
            return Err(backend_error(format!(
                "the model produces {other:?} tensors, which wasi-nn cannot carry"
            )));
        }
    })
}

/// A failure of the backend (a guest sees `runtime-error`).
fn backend_error(message: String) -> BackendError {
    BackendError::BackendAccess(wasmtime::Error::msg(message))
}

/// A guest tensor or call that does not fit the model (a guest sees `invalid-argument`).
#[derive(Debug)]
pub struct InvalidInput(String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

fn invalid_input(message: String) -> BackendError {
    BackendError::BackendAccess(wasmtime::Error::new(InvalidInput(message)))
}

fn ov(err: openvino::InferenceError) -> BackendError {
    backend_error(format!("OpenVINO: {err}"))
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> BackendError {
    backend_error("model state lock poisoned".into())
}
