//! Running the model through `wasi:nn`: the input tensor in, the logits out.

use crate::wasi::nn::errors::{Error, ErrorCode};
use crate::wasi::nn::graph;
use crate::wasi::nn::tensor::{Tensor, TensorType};

const INPUT_DIMENSIONS: [u32; 4] = [1, 3, crate::image_input::SIDE, crate::image_input::SIDE];

/// A failure to report: HTTP status and message.
pub struct Failure {
    pub status: u16,
    pub message: String,
}

/// Runs model `model` on `tensor` (f32 NCHW bytes) and returns its logits (f32 little-endian
/// bytes).
pub fn infer(model: &str, input: &str, tensor: &[u8]) -> Result<Vec<u8>, Failure> {
    let expected = INPUT_DIMENSIONS.iter().product::<u32>() as usize * 4;
    if tensor.len() != expected {
        return Err(Failure {
            status: 400,
            message: format!(
                "the input tensor has {} bytes; a f32 [1,3,224,224] tensor has {expected}",
                tensor.len()
            ),
        });
    }
    let graph = graph::load_by_name(model).map_err(|err| {
        nn_failure(
            &err,
            &format!("model {model} is not available to this app (deploy it with --model {model})"),
        )
    })?;
    let context = graph
        .init_execution_context()
        .map_err(|err| nn_failure(&err, "cannot start an inference"))?;
    let input_tensor = Tensor::new(&INPUT_DIMENSIONS, TensorType::Fp32, tensor);
    let outputs = context
        .compute(vec![(input.to_string(), input_tensor)])
        .map_err(|err| nn_failure(&err, "inference failed"))?;
    let (_, logits) = outputs.into_iter().next().ok_or_else(|| Failure {
        status: 500,
        message: "the model returned no output".into(),
    })?;
    if logits.ty() != TensorType::Fp32 {
        return Err(Failure {
            status: 500,
            message: "the model's output is not f32 logits".into(),
        });
    }
    Ok(logits.data())
}

fn nn_failure(err: &Error, what: &str) -> Failure {
    let code = err.code();
    let status = match code {
        ErrorCode::NotFound => 503,
        _ => 500,
    };
    Failure {
        status,
        message: format!("{what}: wasi-nn {code:?}: {}", err.data()),
    }
}
