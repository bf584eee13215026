//! Benchmark for `scripts/bench-classify.sh`: image classification through the `classify`
//! component on a running node versus native OpenVINO (the same library, IR, device, hint and
//! input tensor) in this process, in one run.
//!
//!   cargo run --release --example nn_bench -- CLASSIFY_URL IMAGE MODEL_DIR OPENVINO_FOLDER SECONDS
//!
//! The input tensor is the one the component makes from IMAGE (`POST …/preprocess`), so both
//! sides infer on identical bytes. Rows: native; the component given that tensor (no decoding);
//! the component given the image (decoding and preprocessing in wasm). Each at concurrency 1
//! (latency percentiles, images/s) and 2 (images/s).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openvino::{Core, DeviceType, ElementType, RwPropertyKey, Shape, Tensor};

const INPUT: &str = "input";
const DIMENSIONS: [i64; 4] = [1, 3, 224, 224];

/// Latencies of one measured row.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1e3
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, image, model_dir, openvino_folder, seconds] = args.as_slice() else {
        return Err("usage: nn_bench CLASSIFY_URL IMAGE MODEL_DIR OPENVINO_FOLDER SECONDS".into());
    };
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let image = std::fs::read(image)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let http = reqwest::Client::new();

    let tensor = runtime.block_on(async {
        let response = http
            .post(format!("{url}/preprocess"))
            .body(image.clone())
            .send()
            .await?
            .error_for_status()?;
        response.bytes().await
    })?;
    let tensor = Arc::new(tensor.to_vec());

    let library = edge_host::nn::openvino::find_library(Path::new(openvino_folder))?;
    openvino_sys::library::load_from(library).map_err(|e| format!("loading OpenVINO: {e}"))?;
    let native = Native::new(&PathBuf::from(model_dir))?;

    let tensor_url = format!("{url}/tensor");
    let mut rows: Vec<(&str, Run, Run)> = Vec::new();
    // Warm both sides up before measuring.
    native.run(1, Duration::from_millis(500), &tensor)?;
    runtime.block_on(through_component(
        &http,
        url,
        &image,
        1,
        Duration::from_millis(500),
    ))?;

    let native_1 = native.run(1, duration, &tensor)?;
    let tensor_1 = runtime.block_on(through_component(&http, &tensor_url, &tensor, 1, duration))?;
    let image_1 = runtime.block_on(through_component(&http, url, &image, 1, duration))?;
    let native_2 = native.run(2, duration, &tensor)?;
    let tensor_2 = runtime.block_on(through_component(&http, &tensor_url, &tensor, 2, duration))?;
    let image_2 = runtime.block_on(through_component(&http, url, &image, 2, duration))?;
    rows.push(("native OpenVINO, same tensor", native_1, native_2));
    rows.push(("component, tensor body", tensor_1, tensor_2));
    rows.push(("component, image body (decoding)", image_1, image_2));

    println!(
        "{:<34} {:>8} {:>8} {:>11} {:>11}",
        "", "p50 ms", "p99 ms", "img/s c=1", "img/s c=2"
    );
    for (name, one, two) in &rows {
        println!(
            "{:<34} {:>8.2} {:>8.2} {:>11.1} {:>11.1}",
            name,
            one.percentile(0.5),
            one.percentile(0.99),
            one.per_second(),
            two.per_second()
        );
    }
    let (native_1, native_2) = (&rows[0].1, &rows[0].2);
    let (tensor_1, tensor_2) = (&rows[1].1, &rows[1].2);
    println!(
        "component/native on the same tensor: p50 {:.3}x (overhead {:+.1}%), p99 {:.3}x, \
         images/s c=1 {:.3}x, c=2 {:.3}x",
        tensor_1.percentile(0.5) / native_1.percentile(0.5),
        (tensor_1.percentile(0.5) / native_1.percentile(0.5) - 1.0) * 100.0,
        tensor_1.percentile(0.99) / native_1.percentile(0.99),
        tensor_1.per_second() / native_1.per_second(),
        tensor_2.per_second() / native_2.per_second()
    );
    Ok(())
}

/// POSTs `body` to `url` from `concurrency` clients for `duration`.
async fn through_component(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    concurrency: usize,
    duration: Duration,
) -> Result<Run, Box<dyn std::error::Error>> {
    let body = bytes::Bytes::copy_from_slice(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, body) = (http.clone(), url.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while started.elapsed() < duration {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let answer = response.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                }
                latencies.push(sent.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run {
        latencies,
        elapsed: started.elapsed(),
    })
}

/// The model compiled in this process as the node compiles it.
struct Native {
    compiled: std::sync::Mutex<openvino::CompiledModel>,
}

impl Native {
    fn new(model_dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let mut core = Core::new()?;
        let xml = model_dir.join("model.xml");
        let bin = model_dir.join("model.bin");
        let model = core.read_model_from_file(
            xml.to_str().ok_or("non-UTF-8 path")?,
            bin.to_str().ok_or("non-UTF-8 path")?,
        )?;
        core.set_property(
            &DeviceType::CPU,
            &RwPropertyKey::HintPerformanceMode,
            "LATENCY",
        )?;
        let compiled = core.compile_model(&model, DeviceType::CPU)?;
        Ok(Self {
            compiled: std::sync::Mutex::new(compiled),
        })
    }

    /// Runs inferences on `threads` threads (one inference request each) for `duration`: copy
    /// the tensor in, infer, copy the logits out, as the node does for a guest.
    fn run(
        &self,
        threads: usize,
        duration: Duration,
        tensor: &Arc<Vec<u8>>,
    ) -> Result<Run, Box<dyn std::error::Error>> {
        let mut requests = Vec::new();
        for _ in 0..threads {
            let mut compiled = self.compiled.lock().map_err(|_| "poisoned")?;
            requests.push(compiled.create_infer_request()?);
        }
        let started = Instant::now();
        let latencies = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .into_iter()
                .map(|mut request| {
                    let tensor = tensor.clone();
                    scope.spawn(move || -> Result<Vec<Duration>, String> {
                        let shape = Shape::new(&DIMENSIONS).map_err(|e| e.to_string())?;
                        let mut latencies = Vec::new();
                        while started.elapsed() < duration {
                            let begun = Instant::now();
                            let mut input =
                                Tensor::new(ElementType::F32, &shape).map_err(|e| e.to_string())?;
                            input
                                .get_raw_data_mut()
                                .map_err(|e| e.to_string())?
                                .copy_from_slice(&tensor);
                            request
                                .set_tensor(INPUT, &input)
                                .map_err(|e| e.to_string())?;
                            request.infer().map_err(|e| e.to_string())?;
                            let output = request
                                .get_output_tensor_by_index(0)
                                .map_err(|e| e.to_string())?;
                            let logits = output.get_raw_data().map_err(|e| e.to_string())?.to_vec();
                            std::hint::black_box(logits);
                            latencies.push(begun.elapsed());
                        }
                        Ok(latencies)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for handle in handles {
                all.extend(handle.join().map_err(|_| "native thread panicked")??);
            }
            Ok::<_, String>(all)
        })?;
        Ok(Run {
            latencies,
            elapsed: started.elapsed(),
        })
    }
}
