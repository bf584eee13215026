//! The OpenVINO runtime: finding its C library in the configured folder, loading it once per
//! process, and compiling a model's IR for a device.
//!
//! The `openvino` PyPI wheel ships the C API only under a versioned name
//! (`libopenvino_c.so.2641`) inside `site-packages/openvino/libs`, next to the plugins it loads,
//! so the library is opened where it lies rather than searched for on the system paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use openvino::{Core, DeviceType, ElementType, PropertyKey, RwPropertyKey};

use super::config::{ModelConfig, ModelDevice, PerformanceHint};
use super::graph::{CompiledGraph, GraphMetrics, PortSpec, Precision};

const LIBRARY_STEM: &str = "libopenvino_c.so";

/// A loaded OpenVINO runtime.
pub struct OpenvinoRuntime {
    /// The core, with the inference precision each device reported before this node set any
    /// (what `precision = "auto"` restores). Device properties are per core, so they are set
    /// and the model compiled under one lock.
    core: Mutex<(Core, HashMap<&'static str, String>)>,
    pub library: PathBuf,
    pub version: String,
    /// Devices OpenVINO reports, such as `CPU` or `GPU.0`.
    pub devices: Vec<String>,
}

impl OpenvinoRuntime {
    /// Loads the C library found in `folder` and creates the OpenVINO core.
    pub fn load(folder: &Path) -> Result<Self, String> {
        let library = find_library(folder)?;
        openvino_sys::library::load_from(library.clone())
            .map_err(|err| format!("cannot load {}: {err}", library.display()))?;
        let version = openvino::version();
        let devices = list_devices()?;
        let core = Core::new().map_err(|err| format!("cannot start OpenVINO: {err}"))?;
        Ok(Self {
            core: Mutex::new((core, HashMap::new())),
            library,
            version: version.build_number,
            devices,
        })
    }

    fn has_gpu(&self) -> bool {
        self.devices.iter().any(|d| d.starts_with("GPU"))
    }

    /// The device a model configured for `requested` runs on here.
    pub fn resolve_device(&self, model: &str, requested: ModelDevice) -> &'static str {
        match requested {
            ModelDevice::Cpu => "CPU",
            ModelDevice::Gpu | ModelDevice::Auto if !self.has_gpu() => {
                tracing::warn!(
                    model,
                    devices = ?self.devices,
                    "model configured for {requested:?} but OpenVINO sees no GPU; running it on \
                     CPU (a GPU needs its driver and OpenCL runtime installed)"
                );
                "CPU"
            }
            ModelDevice::Gpu => "GPU",
            ModelDevice::Auto => "AUTO",
        }
    }

    /// Reads `model.xml`/`model.bin` from the model's folder and compiles them for `device`.
    pub fn compile(
        &self,
        name: &str,
        config: &ModelConfig,
        device: &'static str,
        metrics: GraphMetrics,
    ) -> Result<CompiledGraph, String> {
        let started = Instant::now();
        let xml = config.path.join("model.xml");
        let bin = config.path.join("model.bin");
        for file in [&xml, &bin] {
            if !file.is_file() {
                return Err(format!(
                    "{} is missing; run scripts/setup.sh to convert the default model, or point \
                     [models.{name}] path at a folder with an OpenVINO IR (model.xml, model.bin)",
                    file.display()
                ));
            }
        }
        let utf8 = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("model path {} is not UTF-8", p.display()))
        };
        let (xml, bin) = (utf8(&xml)?, utf8(&bin)?);
        let ov_err = |what: &str| {
            let what = what.to_string();
            move |err: openvino::InferenceError| format!("{what}: {err}")
        };
        let mut guard = self
            .core
            .lock()
            .map_err(|_| "OpenVINO core lock poisoned".to_string())?;
        let (core, device_defaults) = &mut *guard;
        let model = core
            .read_model_from_file(&xml, &bin)
            .map_err(ov_err(&format!(
                "cannot read the IR in {}",
                config.path.display()
            )))?;
        let device_type = DeviceType::from(device);
        let hint = match config.hint {
            PerformanceHint::Latency => "LATENCY",
            PerformanceHint::Throughput => "THROUGHPUT",
        };
        core.set_property(&device_type, &RwPropertyKey::HintPerformanceMode, hint)
            .map_err(ov_err("cannot set the performance hint"))?;
        let precision_key = RwPropertyKey::HintInferencePrecision;
        if !device_defaults.contains_key(device) {
            // Unsupported on some virtual devices (AUTO): then `auto` sets nothing.
            if let Ok(default) =
                core.get_property(&device_type, &PropertyKey::Rw(precision_key.clone()))
            {
                device_defaults.insert(device, default);
            }
        }
        let precision = config
            .precision
            .openvino_hint()
            .or(device_defaults.get(device).map(String::as_str));
        if let Some(precision) = precision {
            core.set_property(&device_type, &precision_key, precision)
                .map_err(ov_err(&format!(
                    "cannot set inference precision {precision} on {device}"
                )))?;
        }
        let compiled = core
            .compile_model(&model, device_type)
            .map_err(ov_err(&format!("cannot compile the model for {device}")))?;
        drop(guard);
        // What the device actually runs in: a device without bf16 or f16 support runs f32.
        let precision_in_force = compiled
            .get_property(&PropertyKey::Rw(precision_key.clone()))
            .map(|p| p.into_owned())
            .ok();

        let inputs = (0..compiled.get_input_size().map_err(ov_err("model inputs"))?)
            .map(|i| {
                let port = compiled
                    .get_input_by_index(i)
                    .map_err(ov_err("model input"))?;
                let name = port.get_name().map_err(ov_err("input name"))?;
                let element_type = port.get_element_type().map_err(ov_err("input type"))?;
                let shape = port.get_shape().map_err(|_| {
                    format!(
                        "input {name:?} has a dynamic shape; convert the model with a static \
                         input shape"
                    )
                })?;
                let dimensions = shape
                    .get_dimensions()
                    .iter()
                    .map(|&d| u32::try_from(d).map_err(|_| format!("input {name:?}: bad size {d}")))
                    .collect::<Result<Vec<u32>, String>>()?;
                Ok(PortSpec {
                    name,
                    dimensions,
                    element_type,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let outputs = compiled
            .get_output_size()
            .map_err(ov_err("model outputs"))?;
        Ok(CompiledGraph::new(
            name,
            device,
            compiled,
            inputs,
            outputs,
            Precision {
                requested: config.precision,
                in_force: precision_in_force,
            },
            started.elapsed(),
            metrics,
        ))
    }
}

/// The devices OpenVINO reports, listed through a core of their own. Listing loads every device
/// plugin the runtime ships (NPU, AUTO, HETERO, and GPU where a driver answers), and a core keeps
/// what it loaded until it is dropped; dropping this one unloads them, so the node's core loads
/// only the plugins its models compile for (4.3 MiB less resident with the default model on a
/// CPU; docs/benchmarks.md, "Idle memory").
fn list_devices() -> Result<Vec<String>, String> {
    let core = Core::new().map_err(|err| format!("cannot start OpenVINO: {err}"))?;
    let devices = core
        .available_devices()
        .map_err(|err| format!("cannot list OpenVINO devices: {err}"))?;
    Ok(devices.iter().map(ToString::to_string).collect())
}

/// The C library inside `folder`: a virtual environment, its `openvino` package, or the folder
/// holding the library itself.
pub fn find_library(folder: &Path) -> Result<PathBuf, String> {
    let not_found = || {
        format!(
            "no OpenVINO runtime ({LIBRARY_STEM}*) in {}; run scripts/setup.sh to install the \
             openvino==2026.4.1 wheel into .venv, or set [openvino] folder to a virtual \
             environment or folder that has it",
            folder.display()
        )
    };
    if !folder.exists() {
        return Err(not_found());
    }
    let mut candidates = vec![folder.to_path_buf(), folder.join("libs")];
    for lib in ["lib", "lib64"] {
        if let Ok(entries) = std::fs::read_dir(folder.join(lib)) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("python3") {
                    candidates.push(entry.path().join("site-packages/openvino/libs"));
                }
            }
        }
    }
    candidates
        .iter()
        .find_map(|dir| library_in(dir))
        .ok_or_else(not_found)
}

/// `libopenvino_c.so` or, failing that, the newest versioned `libopenvino_c.so.N` in `dir`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(LIBRARY_STEM);
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{LIBRARY_STEM}.")))
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

/// Size in bytes of one element of `ty`, for the types tensors can carry.
pub fn element_size(ty: ElementType) -> Option<usize> {
    Some(match ty {
        ElementType::U8 | ElementType::I8 | ElementType::Boolean => 1,
        ElementType::F16 | ElementType::Bf16 | ElementType::I16 | ElementType::U16 => 2,
        ElementType::F32 | ElementType::I32 | ElementType::U32 => 4,
        ElementType::F64 | ElementType::I64 | ElementType::U64 => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_is_found_in_a_venv_layout_and_missing_one_says_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_library(dir.path()).unwrap_err();
        assert!(err.contains("scripts/setup.sh"), "{err}");
        let libs = dir
            .path()
            .join("lib/python3.11/site-packages/openvino/libs");
        std::fs::create_dir_all(&libs).unwrap();
        std::fs::write(libs.join("libopenvino_c.so.2541"), b"").unwrap();
        std::fs::write(libs.join("libopenvino_c.so.2641"), b"").unwrap();
        assert_eq!(
            find_library(dir.path()).unwrap(),
            libs.join("libopenvino_c.so.2641")
        );
        assert_eq!(
            find_library(&libs).unwrap(),
            libs.join("libopenvino_c.so.2641")
        );
    }
}
