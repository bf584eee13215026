//! Benchmark for `scripts/bench-classify.sh`: image classification through the `classify`
//! component on a running node versus native OpenVINO (the same library, IR, device, hint and
//! input tensor) in this process, in one run.
//!
//!   cargo run --release --example nn_bench -- CLASSIFY_URL IMAGE MODEL_DIR OPENVINO_FOLDER \
//!       SECONDS PRECISION [PAIRED_SECONDS]
//!
//! PRECISION (`f32`, `bf16`, `f16` or `auto`) must be the one the node's model runs with: native
//! OpenVINO is compiled with the same `INFERENCE_PRECISION_HINT`, and the one in force is printed.
//!
//! The input tensor is the one the component makes from IMAGE (`POST …/preprocess`), so both
//! sides infer on identical bytes. Rows: native; the component given that tensor (no decoding);
//! the component given the image (decoding and preprocessing in wasm); and the native image
//! pipeline, the reference for the last: the guest's own decode, crop, resize and normalise
//! code (`guests/classify/src/image_input.rs`, the same `image` crate version) compiled into
//! this process, then the same inference, in process and behind HTTP. Each at concurrency 1
//! (latency percentiles, images/s) and 2 (images/s).
//!
//! The wasi-nn row compares the component's own timing of its wasi-nn calls (load-by-name to
//! reading the logits) with native inference alone, twice: back to back in this process, and
//! timed the same way inside the native HTTP server while it serves the same requests as the
//! component, so both sides infer with the same pause between inferences (OpenVINO's threads
//! go idle in it and take time to wake). Everything else does the whole job on both
//! sides: the native pipeline and the native HTTP server turn the logits into the component's
//! JSON answer with the guest's own code (`guests/classify/src/answer.rs`), and the benchmark
//! first checks that native and component answer the same classes.
//!
//! The last line takes serving out of the comparison: the component runs its wasi-nn calls
//! [`BACK_TO_BACK`] times in one request (`POST …/tensor?repeat=N`) and native OpenVINO runs
//! its inference as many times in a row, the two alternating; each side's mean per inference
//! after its first is compared, pair by pair. What is left between them is what the wasi-nn
//! calls add to an inference, with OpenVINO's threads in the same state on both sides.
//!
//! The two paired lines run for PAIRED_SECONDS each (default SECONDS) and give each median with
//! its 95 % confidence interval ([`median_interval`]): on a shared VM the pairs spread by more
//! than issue 15's margins, so a median without its interval cannot say which side of a goal
//! a run is on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openvino::{Core, DeviceType, InferRequest, PropertyKey, RwPropertyKey};

/// And its answer: softmax, top classes and JSON, so native and component answer alike.
#[path = "../../guests/classify/src/answer.rs"]
mod answer;
/// The classify guest's preprocessing, compiled natively: the reference pipeline runs the very
/// code the component runs in wasm.
#[path = "../../guests/classify/src/image_input.rs"]
mod image_input;
#[path = "../../guests/classify/src/json.rs"]
mod json;

const INPUT: &str = "input";

const ROUNDS: u32 = 3;
const WARM_UP: Duration = Duration::from_millis(500);

/// Latencies of one measured row.
#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn extend(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
    }

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
    let usage = "usage: nn_bench CLASSIFY_URL IMAGE MODEL_DIR OPENVINO_FOLDER SECONDS PRECISION \
                 [PAIRED_SECONDS]";
    let (fixed, optional) = args.split_at(args.len().min(7));
    let [
        _,
        url,
        image,
        model_dir,
        openvino_folder,
        seconds,
        precision,
    ] = fixed
    else {
        return Err(usage.into());
    };
    let paired_seconds = match optional {
        [] => seconds,
        [paired] => paired,
        _ => return Err(usage.into()),
    };
    let duration = Duration::from_secs_f64(seconds.parse()?);
    let paired_duration = Duration::from_secs_f64(paired_seconds.parse()?);
    let image = std::fs::read(image)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let http = reqwest::Client::new();

    let tensor =
        Arc::new(runtime.block_on(post_once(&http, &format!("{url}/preprocess"), &image))?);
    let native_tensor = image_input::to_tensor(&image)?;
    if native_tensor != *tensor {
        return Err("the native preprocessing made a different tensor from the component's".into());
    }
    let image = Arc::new(image);
    let model = Path::new(model_dir)
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or("the model folder has no UTF-8 name")?
        .to_string();

    let library = edge_host::capabilities::nn::openvino::find_library(Path::new(openvino_folder))?;
    openvino_sys::library::load_from(library).map_err(|e| format!("loading OpenVINO: {e}"))?;
    let native = Arc::new(Native::new(&PathBuf::from(model_dir), &model, precision)?);
    println!(
        "native OpenVINO infers in {} (precision setting {precision})",
        native.precision_in_force
    );
    let native_url = runtime.block_on(serve_native(native.clone()))?;
    let native_image_url = format!("{native_url}image");

    let tensor_url = format!("{url}/tensor");
    let component_answer =
        String::from_utf8(runtime.block_on(post_once(&http, &tensor_url, &tensor))?)?;
    let native_answer = String::from_utf8(native.answer_tensor(&tensor)?.0)?;
    if labels(&native_answer) != labels(&component_answer) {
        return Err(format!(
            "native and component answer different classes:\n  native:    \
             {native_answer}  component: {component_answer}"
        )
        .into());
    }
    // Warm both sides up before measuring.
    native.run(1, WARM_UP, &tensor, Native::infer_once)?;
    runtime.block_on(post_for(&http, url, &image, 1, WARM_UP))?;

    // Rounds alternate between the sides, so drift on a shared machine hits all rows alike.
    let mut rows: [[Run; 2]; 8] = Default::default();
    for _ in 0..ROUNDS {
        for (c, concurrency) in [1, 2].into_iter().enumerate() {
            let cell = duration / ROUNDS;
            rows[0][c].extend(native.run(concurrency, cell, &tensor, Native::infer_once)?);
            rows[5][c].extend(native.run(concurrency, cell, &image, Native::answer_image_only)?);
            let (native_image_http, _) = runtime.block_on(post_for(
                &http,
                &native_image_url,
                &image,
                concurrency,
                cell,
            ))?;
            rows[6][c].extend(native_image_http);
            let (native_http, native_in_server) =
                runtime.block_on(post_for(&http, &native_url, &tensor, concurrency, cell))?;
            rows[4][c].extend(native_http);
            rows[7][c].extend(native_in_server);
            let (http_run, in_guest) =
                runtime.block_on(post_for(&http, &tensor_url, &tensor, concurrency, cell))?;
            rows[1][c].extend(in_guest);
            rows[2][c].extend(http_run);
            let (image_run, _) =
                runtime.block_on(post_for(&http, url, &image, concurrency, cell))?;
            rows[3][c].extend(image_run);
        }
    }
    let names = [
        "native OpenVINO, same tensor",
        "component: its wasi-nn calls",
        "component over HTTP, tensor body",
        "component over HTTP, image body",
        "native OpenVINO over HTTP, tensor",
        "native pipeline, image",
        "native pipeline over HTTP, image",
        "native over HTTP: its inference",
    ];
    println!(
        "{:<34} {:>8} {:>8} {:>11} {:>11}",
        "", "p50 ms", "p99 ms", "img/s c=1", "img/s c=2"
    );
    for row in [0, 7, 1, 4, 2, 5, 6, 3] {
        let [one, two] = &rows[row];
        // In-server timings have latencies only; their requests are the HTTP rows'.
        let rate = |run: &Run| {
            if row == 1 || row == 7 {
                "-".to_string()
            } else {
                format!("{:.1}", run.per_second())
            }
        };
        println!(
            "{:<34} {:>8.2} {:>8.2} {:>11} {:>11}",
            names[row],
            one.percentile(0.5),
            one.percentile(0.99),
            rate(one),
            rate(two)
        );
    }
    // (component row, native row it is compared with)
    for (row, reference) in [(1, 0), (1, 7), (2, 4), (3, 6)] {
        let ([one, two], [ref_one, ref_two]) = (&rows[row], &rows[reference]);
        let mut line = format!(
            "{} vs {}: p50 {:.3}x ({:+.1}%), p99 {:.3}x",
            names[row],
            names[reference],
            one.percentile(0.5) / ref_one.percentile(0.5),
            (one.percentile(0.5) / ref_one.percentile(0.5) - 1.0) * 100.0,
            one.percentile(0.99) / ref_one.percentile(0.99),
        );
        if row != 1 {
            line += &format!(
                ", images/s c=1 {:.3}x, c=2 {:.3}x",
                one.per_second() / ref_one.per_second(),
                two.per_second() / ref_two.per_second()
            );
        }
        println!("{line}");
    }
    // The tensor rows once more with the two servers' requests interleaved one by one, so
    // drift on a shared machine (which moves the ratios above from run to run) hits both alike.
    let paired = runtime.block_on(post_paired(
        &http,
        [&native_url, &tensor_url],
        &tensor,
        paired_duration,
    ))?;
    println!("{}", paired.summary());
    let back_to_back = runtime.block_on(back_to_back_paired(
        &http,
        &format!("{tensor_url}?repeat={BACK_TO_BACK}"),
        &native,
        &tensor,
        paired_duration,
    ))?;
    let differences = median_interval(&back_to_back.differences);
    println!(
        "paired, {} runs of {BACK_TO_BACK} inferences back to back on each side, alternating: \
         component's wasi-nn calls vs native inference, mean per inference after the first, \
         median per pair {:+.3} ms (95 % interval {:+.3} to {:+.3} ms; quartiles {:+.3} to \
         {:+.3} ms), native {:.3} ms",
        back_to_back.differences.len(),
        differences.median,
        differences.low,
        differences.high,
        quantile(&back_to_back.differences, 0.25),
        quantile(&back_to_back.differences, 0.75),
        quantile(&back_to_back.native, 0.5),
    );
    Ok(())
}

/// Inferences each side runs in a row in [`back_to_back_paired`]; the first of each run is
/// not counted (the other side's OpenVINO threads may still be winding down during it).
const BACK_TO_BACK: u32 = 16;

/// Per pair: the component's mean per inference less native's (ms), and native's mean.
struct BackToBack {
    differences: Vec<f64>,
    native: Vec<f64>,
}

/// Runs of [`BACK_TO_BACK`] inferences, the component's (`repeat_url`, which reports the mean
/// of its wasi-nn calls after the first as `server-timing: repeated`) and native's alternating
/// for `duration`, the component first in every other pair.
async fn back_to_back_paired(
    http: &reqwest::Client,
    repeat_url: &str,
    native: &Native,
    tensor: &[u8],
    duration: Duration,
) -> Result<BackToBack, Box<dyn std::error::Error>> {
    let body = bytes::Bytes::copy_from_slice(tensor);
    let started = Instant::now();
    let mut pairs = BackToBack {
        differences: Vec::new(),
        native: Vec::new(),
    };
    let mut component_first = false;
    while started.elapsed() < duration {
        let mut means = [0.0; 2];
        let order = if component_first { [1, 0] } else { [0, 1] };
        for side in order {
            means[side] = if side == 0 {
                std::hint::black_box(native.infer_once(tensor)?);
                let begun = Instant::now();
                for _ in 1..BACK_TO_BACK {
                    std::hint::black_box(native.infer_once(tensor)?);
                }
                begun.elapsed().as_secs_f64() * 1e3 / f64::from(BACK_TO_BACK - 1)
            } else {
                let response = http.post(repeat_url).body(body.clone()).send().await?;
                let repeated = server_timing_ms(response.headers(), "repeated");
                response.error_for_status()?.bytes().await?;
                repeated.ok_or("an answer without its `repeated` timing")?
            };
        }
        pairs.differences.push(means[1] - means[0]);
        pairs.native.push(means[0]);
        component_first = !component_first;
    }
    Ok(pairs)
}

/// The tensor body posted to native over HTTP and to the component alternately, one request
/// at a time (native first in one pair, the component first in the next).
struct Paired {
    /// Per pair: the component's latency over native's, and the component's wasi-nn calls
    /// less native's inference in its server (ms).
    ratios: Vec<f64>,
    inference_differences: Vec<f64>,
}

impl Paired {
    fn summary(&self) -> String {
        let ratio = median_interval(&self.ratios);
        let inference = median_interval(&self.inference_differences);
        format!(
            "paired, {} requests each alternating (tensor body): component over HTTP vs native \
             over HTTP, median of per-pair ratios {:.3}x (95 % interval {:.3}x to {:.3}x; \
             quartiles {:.3}x to {:.3}x); wasi-nn calls vs native's own timing behind HTTP, \
             median per pair {:+.3} ms (95 % interval {:+.3} to {:+.3} ms)",
            self.ratios.len(),
            ratio.median,
            ratio.low,
            ratio.high,
            quantile(&self.ratios, 0.25),
            quantile(&self.ratios, 0.75),
            inference.median,
            inference.low,
            inference.high,
        )
    }
}

/// A median and the interval that holds the true median with 95 % confidence.
struct MedianInterval {
    median: f64,
    low: f64,
    high: f64,
}

/// The median of `values` with its distribution-free 95 % confidence interval: the order
/// statistics at ranks n/2 ∓ 1.96·√n/2 (the sign test's interval, by the normal
/// approximation to the binomial, rounded outwards), so it assumes nothing about how the
/// pairs spread, only that they are independent. On a VM whose speed drifts, pairs close in
/// time are not quite independent, so runs differ by more than one interval: the interval
/// says how well a run measured its own hour. All NaN for none.
fn median_interval(values: &[f64]) -> MedianInterval {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return MedianInterval {
            median: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        };
    }
    let n = sorted.len() as f64;
    let half_width = 0.98 * n.sqrt();
    // 1-based ranks, then 0-based indices, clamped to the samples there are.
    let low_rank = (n / 2.0 - half_width).floor().max(1.0);
    let high_rank = (n / 2.0 + 1.0 + half_width).ceil().min(n);
    let at = |rank: f64| sorted[rank as usize - 1];
    MedianInterval {
        median: quantile(values, 0.5),
        low: at(low_rank),
        high: at(high_rank),
    }
}

/// The value at fraction `q` of `values` in ascending order (NaN for none).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = (sorted.len() as f64 * q) as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

/// Pairs of requests for `duration` at concurrency 1: `urls[0]` is native, `urls[1]` the
/// component; both must report `server-timing: inference`.
async fn post_paired(
    http: &reqwest::Client,
    urls: [&str; 2],
    body: &[u8],
    duration: Duration,
) -> Result<Paired, Box<dyn std::error::Error>> {
    let body = bytes::Bytes::copy_from_slice(body);
    let started = Instant::now();
    let mut paired = Paired {
        ratios: Vec::new(),
        inference_differences: Vec::new(),
    };
    let mut component_first = false;
    while started.elapsed() < duration {
        let mut timed = [(Duration::ZERO, 0.0); 2];
        let order = if component_first { [1, 0] } else { [0, 1] };
        for side in order {
            let sent = Instant::now();
            let response = http.post(urls[side]).body(body.clone()).send().await?;
            let inference = inference_ms(response.headers());
            let response = response.error_for_status()?;
            response.bytes().await?;
            let inference = inference.ok_or("an answer without its inference timing")?;
            timed[side] = (sent.elapsed(), inference);
        }
        paired
            .ratios
            .push(timed[1].0.as_secs_f64() / timed[0].0.as_secs_f64());
        paired.inference_differences.push(timed[1].1 - timed[0].1);
        component_first = !component_first;
    }
    Ok(paired)
}

/// POSTs `body` to `url` once and returns the answer, which must be a success.
async fn post_once(http: &reqwest::Client, url: &str, body: &[u8]) -> reqwest::Result<Vec<u8>> {
    let response = http.post(url).body(body.to_vec()).send().await?;
    Ok(response.error_for_status()?.bytes().await?.to_vec())
}

/// POSTs `body` to `url` (the component, or the native server) from `concurrency` clients for
/// `duration`: the request latencies, and the server's own `server-timing` inference times.
async fn post_for(
    http: &reqwest::Client,
    url: &str,
    body: &[u8],
    concurrency: usize,
    duration: Duration,
) -> Result<(Run, Run), Box<dyn std::error::Error>> {
    let body = bytes::Bytes::copy_from_slice(body);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, body) = (http.clone(), url.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut in_guest) = (Vec::new(), Vec::new());
            while started.elapsed() < duration {
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                if let Some(ms) = inference_ms(response.headers()) {
                    in_guest.push(Duration::from_secs_f64(ms / 1e3));
                }
                let answer = response.bytes().await.map_err(|e| e.to_string())?;
                if !status.is_success() {
                    return Err(format!("{status}: {}", String::from_utf8_lossy(&answer)));
                }
                latencies.push(sent.elapsed());
            }
            Ok::<_, String>((latencies, in_guest))
        }));
    }
    let (mut latencies, mut in_guest) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, g) = task.await??;
        latencies.extend(l);
        in_guest.extend(g);
    }
    let elapsed = started.elapsed();
    Ok((
        Run { latencies, elapsed },
        Run {
            latencies: in_guest,
            elapsed,
        },
    ))
}

/// The `inference;dur=` entry of a `server-timing` header, in ms.
fn inference_ms(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    server_timing_ms(headers, "inference")
}

/// The `NAME;dur=` entry of a `server-timing` header, in ms.
fn server_timing_ms(headers: &reqwest::header::HeaderMap, name: &str) -> Option<f64> {
    let timing = headers.get("server-timing")?.to_str().ok()?;
    timing
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix(name)?.strip_prefix(";dur="))
        .find_map(|ms| ms.parse().ok())
}

/// The class labels of a JSON answer, in order.
fn labels(answer: &str) -> Vec<&str> {
    answer
        .split("\"label\":")
        .skip(1)
        .filter_map(|rest| rest.split(',').next())
        .collect()
}

/// An answer and how long its inference took.
type Answered = Result<(Vec<u8>, Duration), String>;

/// The model compiled in this process as the node compiles it.
struct Native {
    /// The model's name in answers (its folder's name, as the node names it).
    model: String,
    /// `INFERENCE_PRECISION_HINT` read back from the compiled model.
    precision_in_force: String,
    compiled: std::sync::Mutex<openvino::CompiledModel>,
    idle: std::sync::Mutex<Vec<InferRequest>>,
}

impl Native {
    fn new(
        model_dir: &Path,
        name: &str,
        precision: &str,
    ) -> Result<Self, Box<dyn std::error::Error>> {
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
        if precision != "auto" {
            core.set_property(
                &DeviceType::CPU,
                &RwPropertyKey::HintInferencePrecision,
                precision,
            )?;
        }
        let compiled = core.compile_model(&model, DeviceType::CPU)?;
        let precision_in_force = compiled
            .get_property(&PropertyKey::Rw(RwPropertyKey::HintInferencePrecision))?
            .into_owned();
        Ok(Self {
            model: name.to_string(),
            precision_in_force,
            compiled: std::sync::Mutex::new(compiled),
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// One inference as the node runs one for a guest: copy the tensor into the request's input
    /// buffer, infer, copy the logits out, with an inference request from a pool.
    fn infer_once(&self, tensor: &[u8]) -> Result<Vec<u8>, String> {
        let pooled = self.idle.lock().map_err(|_| "poisoned")?.pop();
        let mut request = match pooled {
            Some(request) => request,
            None => self
                .compiled
                .lock()
                .map_err(|_| "poisoned")?
                .create_infer_request()
                .map_err(|e| e.to_string())?,
        };
        // Straight into the request's own input buffer, as the node does.
        let mut input = request.get_tensor(INPUT).map_err(|e| e.to_string())?;
        let data = input.get_raw_data_mut().map_err(|e| e.to_string())?;
        if data.len() != tensor.len() {
            return Err(format!(
                "tensor of {} bytes, expected {}",
                tensor.len(),
                data.len()
            ));
        }
        data.copy_from_slice(tensor);
        request.infer().map_err(|e| e.to_string())?;
        let logits = request
            .get_output_tensor_by_index(0)
            .map_err(|e| e.to_string())?
            .get_raw_data()
            .map_err(|e| e.to_string())?
            .to_vec();
        self.idle.lock().map_err(|_| "poisoned")?.push(request);
        Ok(logits)
    }

    /// The component's whole job on a tensor: [`Native::infer_once`], then the guest's own
    /// code for the JSON answer. Also returns how long the inference took, which the HTTP
    /// server reports as the component does (`server-timing: inference`).
    fn answer_tensor(&self, tensor: &[u8]) -> Answered {
        let started = Instant::now();
        let logits = self.infer_once(tensor)?;
        let inference = started.elapsed();
        let json = answer::top_classes_json(&self.model, &logits)?;
        Ok((json.into_bytes(), inference))
    }

    /// The native image pipeline: the guest's preprocessing, then [`Native::answer_tensor`].
    fn answer_image(&self, image: &[u8]) -> Answered {
        self.answer_tensor(&image_input::to_tensor(image)?)
    }

    /// [`Native::answer_image`] without the timing, for the in-process rows.
    fn answer_image_only(&self, image: &[u8]) -> Result<Vec<u8>, String> {
        Ok(self.answer_image(image)?.0)
    }

    /// Runs `step` (an inference, or the image pipeline) on `input` back to back on `threads`
    /// threads for `duration`.
    fn run(
        &self,
        threads: usize,
        duration: Duration,
        input: &Arc<Vec<u8>>,
        step: fn(&Self, &[u8]) -> Result<Vec<u8>, String>,
    ) -> Result<Run, Box<dyn std::error::Error>> {
        let started = Instant::now();
        let latencies = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> Result<Vec<Duration>, String> {
                        let mut latencies = Vec::new();
                        while started.elapsed() < duration {
                            let begun = Instant::now();
                            std::hint::black_box(step(self, input)?);
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

/// Native inference behind HTTP, for the same transport as the component: `POST /` with the
/// tensor answers what the component answers, `POST /image` with an image runs the native
/// pipeline. The work
/// runs on the blocking pool, as it would in a native service built on tokio.
async fn serve_native(native: Arc<Native>) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/", native_route(native.clone(), Native::answer_tensor))
        .route("/image", native_route(native, Native::answer_image));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// A POST route running `step` on the body on the blocking pool; the answer carries
/// `server-timing: inference` as the component's does.
fn native_route(
    native: Arc<Native>,
    step: fn(&Native, &[u8]) -> Answered,
) -> axum::routing::MethodRouter {
    use axum::http::{StatusCode, header::HeaderName};
    axum::routing::post(move |body: bytes::Bytes| {
        let native = native.clone();
        async move {
            let timing = HeaderName::from_static("server-timing");
            match tokio::task::spawn_blocking(move || step(&native, &body)).await {
                Ok(Ok((answer, inference))) => {
                    let value = format!("inference;dur={:.3}", inference.as_secs_f64() * 1e3);
                    (StatusCode::OK, [(timing, value)], answer)
                }
                Ok(Err(err)) => (
                    StatusCode::BAD_REQUEST,
                    [(timing, String::new())],
                    err.into_bytes(),
                ),
                Err(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(timing, String::new())],
                    Vec::new(),
                ),
            }
        }
    })
}
