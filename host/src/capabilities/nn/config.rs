//! The node config sections of `wasi:nn`: where the OpenVINO runtime is (`[openvino]`), the
//! threads that run apps granted a model (`[inference]`) and the model registry
//! (`[models.NAME]`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the OpenVINO runtime is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenvinoConfig {
    /// A Python virtual environment with the `openvino` wheel, its `site-packages/openvino`
    /// folder, or a folder holding `libopenvino_c.so`.
    pub folder: PathBuf,
}

impl Default for OpenvinoConfig {
    fn default() -> Self {
        Self {
            folder: PathBuf::from(".venv"),
        }
    }
}

/// The threads that run requests of apps granted a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// Worker threads for apps granted a model (decoding, inference), apart from the ones
    /// serving every other app. 0: one per CPU core.
    pub workers: usize,
    /// Tensor bytes one instance may hold at once; past it the instance is stopped (500).
    pub max_tensor_bytes_per_instance: usize,
    /// Execution contexts one instance may hold at once; more get an error.
    pub max_contexts_per_instance: usize,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            max_tensor_bytes_per_instance: 64 * 1024 * 1024,
            max_contexts_per_instance: 4,
        }
    }
}

impl InferenceConfig {
    /// Inference workers one app may occupy at once: all but one (at least one), so an app
    /// with a burst of requests cannot make the other apps using a model wait behind it.
    pub fn worker_share(&self) -> usize {
        self.worker_threads().saturating_sub(1).max(1)
    }

    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// One model of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Folder with the OpenVINO IR: `model.xml` and `model.bin`.
    pub path: PathBuf,
    /// Where it runs. `GPU` and `AUTO` fall back to `CPU` with a warning when OpenVINO sees
    /// no GPU.
    #[serde(default)]
    pub device: ModelDevice,
    /// What OpenVINO optimises for.
    #[serde(default)]
    pub hint: PerformanceHint,
    /// The numeric precision inference runs in. The default, `f32`, gives the same answers on
    /// every CPU; `auto` lets the device pick (bf16 on CPUs with AVX512-BF16 or AMX).
    #[serde(default)]
    pub precision: InferencePrecision,
}

/// The precision OpenVINO computes in (its `INFERENCE_PRECISION_HINT`).
///
/// OpenVINO's CPU plugin picks bf16 by itself on CPUs that have AVX512-BF16 or AMX, and f32
/// elsewhere, so without a setting the same photo gets different probabilities on different
/// gateways (measured: up to 0.014 apart on EfficientNet-Lite0). Pinning it makes the answer a
/// property of the model, not of the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InferencePrecision {
    /// 32-bit floats: the same answers on every x86-64 and ARM CPU (the default).
    #[default]
    F32,
    /// bfloat16 where the device supports it (f32 elsewhere): faster on CPUs with
    /// AVX512-BF16 or AMX, at some precision (see docs/benchmarks.md).
    Bf16,
    /// 16-bit floats where the device supports it (ARM CPUs, GPUs; f32 elsewhere).
    F16,
    /// Whatever the device prefers: answers may differ from one CPU to another.
    Auto,
}

impl InferencePrecision {
    /// The value OpenVINO's `INFERENCE_PRECISION_HINT` takes, `None` for the device default.
    pub fn openvino_hint(self) -> Option<&'static str> {
        match self {
            Self::F32 => Some("f32"),
            Self::Bf16 => Some("bf16"),
            Self::F16 => Some("f16"),
            Self::Auto => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.openvino_hint().unwrap_or("auto")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ModelDevice {
    #[default]
    #[serde(rename = "CPU")]
    Cpu,
    #[serde(rename = "GPU")]
    Gpu,
    #[serde(rename = "AUTO")]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PerformanceHint {
    /// Each inference as fast as possible (all cores on one request).
    #[default]
    Latency,
    /// Most inferences per second when many run at once (cores split between requests).
    Throughput,
}

/// The model the node ships with when no `[models]` are configured: written by
/// `scripts/setup.sh`.
pub const DEFAULT_MODEL: &str = "efficientnet-lite0";

pub fn default_models() -> BTreeMap<String, ModelConfig> {
    BTreeMap::from([(
        DEFAULT_MODEL.to_string(),
        ModelConfig {
            path: PathBuf::from("edge-config/models/efficientnet-lite0"),
            device: ModelDevice::Cpu,
            hint: PerformanceHint::Latency,
            precision: InferencePrecision::F32,
        },
    )])
}
