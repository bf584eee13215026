//! A compiled model as guests see it through `wasi:nn`: a graph shared by every instance, and
//! the execution contexts created from it for one request.
//!
//! Every guest-supplied tensor is checked against the model's inputs (name, element type,
//! shape, byte length) before it reaches OpenVINO, so a malformed tensor is an error the guest
//! can read, never a panic or a read past a buffer in the host. Inference requests are kept in
//! a small pool and reused, since creating one allocates the model's intermediate buffers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openvino::{CompiledModel, ElementType, InferRequest, Tensor as OvTensor};

use super::openvino::element_size;
use super::tensor::{NnTensor, TensorData};
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

impl PortSpec {
    /// The input's size in bytes (`None` for an element type tensors cannot carry).
    pub fn byte_len(&self) -> Option<usize> {
        self.dimensions
            .iter()
            .try_fold(element_size(self.element_type)?, |acc, &d| {
                acc.checked_mul(d as usize)
            })
    }
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

    fn take_request(&self) -> Result<InferRequest, NnFailure> {
        if let Some(request) = self.idle.lock().map_err(poisoned)?.pop() {
            return Ok(request);
        }
        let mut compiled = self.compiled.lock().map_err(poisoned)?;
        compiled
            .create_infer_request()
            .map_err(|err| NnFailure::Backend(format!("cannot create an inference request: {err}")))
    }

    fn return_request(&self, request: InferRequest) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE_REQUESTS
        {
            idle.push(request);
        }
    }

    /// Checks a guest tensor against the input it names: type, dimensions and byte size.
    fn check_input(&self, name: &str, tensor: &NnTensor) -> Result<(), NnFailure> {
        let port = self.inputs.iter().find(|p| p.name == name).ok_or_else(|| {
            NnFailure::InvalidInput(format!(
                "model {} has no input named {name:?}; its inputs: {}",
                self.name,
                self.describe_inputs()
            ))
        })?;
        if tensor.ty != port.element_type || tensor.dimensions != port.dimensions {
            return Err(NnFailure::InvalidInput(format!(
                "input {:?} of model {} must be {:?} {:?}; the tensor is {:?} {:?}",
                port.name,
                self.name,
                port.element_type,
                port.dimensions,
                tensor.ty,
                tensor.dimensions
            )));
        }
        let expected = port.byte_len().unwrap_or(usize::MAX);
        let len = tensor.len();
        if len != expected {
            return Err(NnFailure::InvalidInput(format!(
                "input {:?} of model {} needs {expected} bytes of data for {:?} {:?}; the \
                 tensor has {len}",
                port.name, self.name, port.element_type, port.dimensions,
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

/// A model as `wasi:nn` guests hold it (the `graph` resource).
pub type ModelGraph = Arc<CompiledGraph>;

/// One guest's execution context: an inference request borrowed from the model's pool.
pub struct Execution {
    graph: Arc<CompiledGraph>,
    /// `None` once an inference failed: such a request is not used or pooled again.
    request: Option<InferRequest>,
    /// The tensor (its rep in the instance's table) whose bytes this context's input buffer
    /// holds for it; see [`super::tensor`].
    pub claimed_by: Option<u32>,
}

impl Drop for Execution {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            self.graph.return_request(request);
        }
    }
}

impl Execution {
    /// A context with an inference request of `graph`'s, pooled or new.
    pub fn new(graph: &Arc<CompiledGraph>) -> Result<Self, NnFailure> {
        Ok(Self {
            graph: graph.clone(),
            request: Some(graph.take_request()?),
            claimed_by: None,
        })
    }

    /// The input buffer of this context's request, when a guest tensor of `dimensions`, `ty`
    /// and `len` bytes can be copied straight into it: the model has that one input, and no
    /// other tensor's bytes are there.
    pub fn free_input_buffer(
        &self,
        dimensions: &[u32],
        ty: ElementType,
        len: usize,
    ) -> Option<OvTensor> {
        let request = self.request.as_ref()?;
        let [port] = self.graph.inputs.as_slice() else {
            return None;
        };
        if self.claimed_by.is_some()
            || port.dimensions != dimensions
            || port.element_type != ty
            || port.byte_len() != Some(len)
        {
            return None;
        }
        request.get_tensor(&port.name).ok()
    }

    /// Runs the model on `inputs`, each named for one of its inputs, and returns its outputs
    /// (named by their index). Each input's bytes are copied into the request's input buffer
    /// unless they are there already. A request that failed is not used or pooled again.
    pub fn compute(&mut self, inputs: &[(String, NnTensor)]) -> Result<Vec<NnTensor>, NnFailure> {
        let result = self.run(inputs);
        if result.is_err() {
            self.request = None;
        }
        result
    }

    fn run(&mut self, inputs: &[(String, NnTensor)]) -> Result<Vec<NnTensor>, NnFailure> {
        let graph = &self.graph;
        let request = self.request.as_mut().ok_or_else(|| {
            NnFailure::InvalidInput(
                "this execution context failed earlier; open another one".into(),
            )
        })?;
        if inputs.len() != graph.inputs.len() {
            return Err(NnFailure::InvalidInput(format!(
                "model {} takes {} input(s) ({}); compute was given {}",
                graph.name,
                graph.inputs.len(),
                graph.describe_inputs(),
                inputs.len()
            )));
        }
        for (name, tensor) in inputs {
            graph.check_input(name, tensor)?;
        }
        // Pooled requests are shared by every app granted the model: each input must be set
        // by this call, so no tensor of an earlier request (maybe another app's) is reused.
        if let Some(port) = graph
            .inputs
            .iter()
            .find(|port| !inputs.iter().any(|(name, _)| *name == port.name))
        {
            return Err(NnFailure::InvalidInput(format!(
                "compute of model {} is missing input {:?}; its inputs: {}",
                graph.name,
                port.name,
                graph.describe_inputs()
            )));
        }
        for (name, tensor) in inputs {
            let mut buffer = request.get_tensor(name).map_err(ov)?;
            let into = buffer.get_raw_data_mut().map_err(ov)?;
            let from = tensor.bytes().map_err(ov)?;
            if !std::ptr::eq(from.as_ptr(), into.as_ptr()) {
                into.copy_from_slice(from);
            }
        }
        let started = Instant::now();
        request.infer().map_err(ov)?;
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
                let ty = output.get_element_type().map_err(ov)?;
                Ok(NnTensor {
                    dimensions,
                    ty,
                    data: TensorData::Host(output.get_raw_data().map_err(ov)?.to_vec()),
                })
            })
            .collect()
    }
}

/// Why a model call failed.
#[derive(Debug)]
pub enum NnFailure {
    /// A guest tensor or call that does not fit the model (a guest sees `invalid-argument`).
    InvalidInput(String),
    /// OpenVINO failed (a guest sees `runtime-error`).
    Backend(String),
}

impl std::fmt::Display for NnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidInput(message) | Self::Backend(message) => f.write_str(message),
        }
    }
}

fn ov(err: openvino::InferenceError) -> NnFailure {
    NnFailure::Backend(format!("OpenVINO: {err}"))
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> NnFailure {
    NnFailure::Backend("model state lock poisoned".into())
}
