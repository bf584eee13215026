//! Running the model through `wasi:nn` and turning its logits into the top classes.

use crate::wasi::nn::errors::{Error, ErrorCode};
use crate::wasi::nn::graph;
use crate::wasi::nn::tensor::{Tensor, TensorType};

/// ImageNet-1k class names in the model's output order.
const LABELS: &str = include_str!("imagenet_labels.txt");
/// Classes in the answer.
const TOP: usize = 5;
const INPUT_DIMENSIONS: [u32; 4] = [1, 3, crate::image_input::SIDE, crate::image_input::SIDE];

/// A failure to report: HTTP status and message.
pub struct Failure {
    pub status: u16,
    pub message: String,
}

/// One class of the answer.
pub struct Class {
    pub index: usize,
    pub label: &'static str,
    pub probability: f32,
}

/// Runs model `model` on `tensor` (f32 NCHW bytes) and returns the top classes.
pub fn classify(model: &str, input: &str, tensor: &[u8]) -> Result<Vec<Class>, Failure> {
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
    let logits: Vec<f32> = logits
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let labels: Vec<&'static str> = LABELS.lines().collect();
    if logits.len() != labels.len() {
        return Err(Failure {
            status: 500,
            message: format!(
                "model {model} has {} outputs, but this app knows the {} ImageNet-1k classes",
                logits.len(),
                labels.len()
            ),
        });
    }
    Ok(top_classes(&softmax(&logits), &labels))
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

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn top_classes(probabilities: &[f32], labels: &[&'static str]) -> Vec<Class> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(TOP)
        .map(|index| Class {
            index,
            label: labels[index],
            probability: probabilities[index],
        })
        .collect()
}

/// The JSON answer.
pub fn top_json(model: &str, top: &[Class]) -> String {
    let classes: Vec<String> = top
        .iter()
        .map(|c| {
            format!(
                "{{\"label\":{},\"index\":{},\"probability\":{:.6}}}",
                crate::json_string(c.label),
                c.index,
                c.probability
            )
        })
        .collect();
    format!(
        "{{\"model\":{},\"top\":[{}]}}\n",
        crate::json_string(model),
        classes.join(",")
    )
}
