//! A `wasi:nn` tensor as the node holds it: its bytes either in the node's memory or already in
//! the input buffer of the inference request that will read them.
//!
//! A guest's input tensor crosses one copy on its way to OpenVINO: when the guest creates it
//! while it holds an execution context that can take it (a model of one input of that shape
//! and type, its input not yet taken by another tensor), the constructor copies the bytes out
//! of the guest's memory straight into that context's input buffer, and `compute` infers on
//! them where they are. Otherwise they are copied into the node's memory and, at `compute`,
//! into the request's input buffer. Binding a buffer of the node's over the request's input
//! instead costs OpenVINO's CPU plugin about as much as the copy it saves (docs/benchmarks.md).
//!
//! A tensor whose bytes lie in a context's buffer must never see them change under it: before
//! anything else is written into that buffer (the context computes on another tensor) and
//! before the context's request goes back to the model's pool (the context is dropped), the
//! tensor's bytes are copied out into the node's memory ([`NnTensor::take_out_of_request`]).

use openvino::{ElementType, Tensor as OvTensor};

/// A tensor resource of one instance.
pub struct NnTensor {
    pub dimensions: Vec<u32>,
    pub ty: ElementType,
    pub data: TensorData,
}

/// Where a tensor's bytes are.
pub enum TensorData {
    /// In the node's memory.
    Host(Vec<u8>),
    /// In the input buffer of the inference request held by execution context `context` (its
    /// resource's rep in the instance's table).
    InRequest {
        buffer: OvTensor,
        context: u32,
        len: usize,
    },
}

impl NnTensor {
    /// The tensor's bytes, wherever they are.
    pub fn bytes(&self) -> Result<&[u8], openvino::InferenceError> {
        match &self.data {
            TensorData::Host(bytes) => Ok(bytes),
            TensorData::InRequest { buffer, .. } => buffer.get_raw_data(),
        }
    }

    /// How many bytes the tensor holds.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::Host(bytes) => bytes.len(),
            TensorData::InRequest { len, .. } => *len,
        }
    }

    /// The execution context whose input buffer holds the bytes, if one does.
    pub fn context(&self) -> Option<u32> {
        match self.data {
            TensorData::Host(_) => None,
            TensorData::InRequest { context, .. } => Some(context),
        }
    }

    /// Copies the bytes out of the context's buffer into the node's memory, so the context may
    /// write over that buffer or give its request back.
    pub fn take_out_of_request(&mut self) -> Result<(), openvino::InferenceError> {
        if let TensorData::InRequest { buffer, .. } = &self.data {
            self.data = TensorData::Host(buffer.get_raw_data()?.to_vec());
        }
        Ok(())
    }
}
