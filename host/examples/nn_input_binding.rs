//! How an input tensor reaches OpenVINO, measured both ways in one run: copied into the
//! inference request's own buffer (the node before 2026-12-04), or bound in place over the
//! host's copy of the guest's bytes and the request's own buffer bound back after
//! (`capabilities/nn/graph.rs`, `infer_in_place`, today). Both infer the same tensor on the same
//! compiled model, interleaved, so the VM's drift hits both alike.
//!
//!   cargo run --release --example nn_input_binding [ROUNDS=600]
//!
//! Needs `scripts/setup.sh` (the OpenVINO wheel in `.venv`, the default model).

use std::path::Path;
use std::time::{Duration, Instant};

use openvino::{Core, DeviceType, ElementType, InferRequest, RwPropertyKey, Shape, Tensor};

const MODEL: &str = "edge-config/models/efficientnet-lite0";
const INPUT: &str = "input";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: u32 = std::env::args().nth(1).map_or(Ok(600), |n| n.parse())?;
    let library = edge_host::capabilities::nn::openvino::find_library(Path::new(".venv"))?;
    openvino_sys::library::load_from(library)?;
    let mut core = Core::new()?;
    let model =
        core.read_model_from_file(&format!("{MODEL}/model.xml"), &format!("{MODEL}/model.bin"))?;
    core.set_property(
        &DeviceType::CPU,
        &RwPropertyKey::HintPerformanceMode,
        "LATENCY",
    )?;
    core.set_property(
        &DeviceType::CPU,
        &RwPropertyKey::HintInferencePrecision,
        "f32",
    )?;
    let mut compiled = core.compile_model(&model, DeviceType::CPU)?;
    let mut request = compiled.create_infer_request()?;
    let shape = Shape::new(&[1, 3, 224, 224])?;
    let guest_tensor: Vec<u8> = (0..224 * 224 * 3)
        .flat_map(|i| (((i % 251) as f32 - 127.0) / 128.0).to_le_bytes())
        .collect();

    let mut copied = Duration::ZERO;
    let mut bound = Duration::ZERO;
    for round in 0..rounds {
        // The host's copy of the guest's bytes, as lifting the `list<u8>` makes it.
        let lifted = guest_tensor.clone();
        let started = Instant::now();
        if round % 2 == 0 {
            copy_then_infer(&mut request, &lifted)?;
            copied += started.elapsed();
        } else {
            bind_then_infer(&mut request, &shape, &lifted)?;
            bound += started.elapsed();
        }
    }
    let per = |total: Duration| total.as_secs_f64() * 1e3 / f64::from(rounds / 2);
    let (copied, bound) = (per(copied), per(bound));
    println!("copied into the request's buffer: {copied:.3} ms per inference");
    println!("bound in place, then rebound:     {bound:.3} ms per inference");
    println!(
        "bound / copied: {:.3}x ({:+.3} ms), {rounds} rounds interleaved",
        bound / copied,
        bound - copied
    );
    Ok(())
}

fn copy_then_infer(
    request: &mut InferRequest,
    data: &[u8],
) -> Result<(), openvino::InferenceError> {
    let mut own = request.get_tensor(INPUT)?;
    own.get_raw_data_mut()?.copy_from_slice(data);
    request.infer()
}

fn bind_then_infer(
    request: &mut InferRequest,
    shape: &Shape,
    data: &[u8],
) -> Result<(), openvino::InferenceError> {
    let own = request.get_tensor(INPUT)?;
    #[expect(
        unsafe_code,
        reason = "`data` outlives the binding, replaced before returning"
    )]
    // SAFETY: the request reads `data` only during `infer`, and `own` is bound back before
    // this function returns.
    let in_place = unsafe { Tensor::from_host_memory(ElementType::F32, shape, data)? };
    request.set_tensor(INPUT, &in_place)?;
    let inferred = request.infer();
    request.set_tensor(INPUT, &own)?;
    inferred
}
