//! Turning the model's logits into the answer: softmax, the top classes and their JSON. Plain
//! Rust with no wasi imports, so `host/examples/nn_bench.rs` compiles this very code into its
//! native reference and both sides do the same work after the inference.

use super::json::json_string;

/// ImageNet-1k class names in the model's output order, one per line.
const LABELS: &str = include_str!("imagenet_labels.txt");
/// Classes in the answer.
const TOP: usize = 5;

/// One class of the answer.
struct Class {
    index: usize,
    label: &'static str,
    probability: f32,
}

/// The JSON answer for `logits` (f32 little-endian, one per ImageNet-1k class) of `model`:
/// `{"model", "top": [{"label", "index", "probability"}]}`, the top 5 by probability.
pub fn top_classes_json(model: &str, logits: &[u8]) -> Result<String, String> {
    if !logits.len().is_multiple_of(4) {
        return Err(format!(
            "model {model} returned {} bytes, not a whole number of f32 logits",
            logits.len()
        ));
    }
    let logits: Vec<f32> = logits
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if logits.len() != CLASSES {
        return Err(format!(
            "model {model} has {} outputs, but this app knows the {CLASSES} ImageNet-1k classes",
            logits.len()
        ));
    }
    let labelled = label(&top_classes(&softmax(&logits)));
    let entries: Vec<String> = labelled
        .iter()
        .map(|c| {
            format!(
                "{{\"label\":{},\"index\":{},\"probability\":{:.6}}}",
                json_string(c.label),
                c.index,
                c.probability
            )
        })
        .collect();
    Ok(format!(
        "{{\"model\":{},\"top\":[{}]}}\n",
        json_string(model),
        entries.join(",")
    ))
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// The indices and probabilities of the [`TOP`] most probable classes, most probable first
/// (ties: lower index first). A selection, not a sort of all classes.
fn top_classes(probabilities: &[f32]) -> Vec<(usize, f32)> {
    let by_rank = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    if ranked.len() > TOP {
        ranked.select_nth_unstable_by(TOP - 1, by_rank);
        ranked.truncate(TOP);
    }
    ranked.sort_unstable_by(by_rank);
    ranked
}

/// Where each line of [`LABELS`] starts, and how many lines (known classes) there are.
const LINES: ([u16; 1024], usize) = line_starts();
/// The number of known classes: the lines of [`LABELS`], counted when this is compiled.
const CLASSES: usize = LINES.1;

/// Where each line of [`LABELS`] starts (and, after the last, the end of the text), and how
/// many lines there are: computed when this is compiled, so a request finds a label without
/// scanning the list.
const fn line_starts() -> ([u16; 1024], usize) {
    let text = LABELS.as_bytes();
    assert!(text.len() < u16::MAX as usize, "the labels fit u16 offsets");
    let mut starts = [0u16; 1024];
    let mut lines = 0;
    let mut at = 0;
    while at < text.len() {
        if text[at] == b'\n' {
            lines += 1;
            assert!(lines < starts.len(), "at most 1023 labels");
            starts[lines] = (at + 1) as u16;
        }
        at += 1;
    }
    if !text.is_empty() && text[text.len() - 1] != b'\n' {
        lines += 1;
        starts[lines] = (text.len() + 1) as u16;
    }
    (starts, lines)
}

/// Label `index` (below [`CLASSES`]), without its line ending.
fn label_of(index: usize) -> &'static str {
    let starts = &LINES.0;
    let start = usize::from(starts[index]);
    let end = usize::from(starts[index + 1]) - 1;
    LABELS[start..end].trim_end_matches('\r')
}

/// `top` (indices below [`CLASSES`]) with their labels.
fn label(top: &[(usize, f32)]) -> Vec<Class> {
    top.iter()
        .map(|&(index, probability)| Class {
            index,
            label: label_of(index),
            probability,
        })
        .collect()
}
