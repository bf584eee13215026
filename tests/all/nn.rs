//! wasi:nn on OpenVINO: the `classify` guest runs EfficientNet-Lite0 (converted by
//! `scripts/setup.sh`) on real photos over HTTP; the model is compiled once and shared; bad
//! images and misuse of wasi:nn get clear errors and leave the node serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{
    PATIENCE, TestHost, client, get, guest, metric, metric_or_zero, photo, post_chunked, send,
};

const MODEL: &str = "efficientnet-lite0";

fn node_with_classify() -> TestHost {
    let host = TestHost::start();
    host.deploy("classify", &guest("classify"), &["--model", MODEL]);
    host
}

/// POSTs `body` to `path` and returns the status and the JSON answer.
async fn post_json(url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let reply = send(client().post(url).body(body)).await;
    let json = serde_json::from_str(&reply.body)
        .unwrap_or_else(|err| panic!("answer is not JSON ({err}): {}", reply.body));
    (reply.status, json)
}

/// The input tensor `classify` (deployed on `host`) makes of chelsea.png.
async fn chelsea_tensor(host: &TestHost) -> Vec<u8> {
    client()
        .post(format!("{}/classify/preprocess", host.data_url))
        .body(photo("chelsea.png"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("preprocess")
        .bytes()
        .await
        .expect("tensor")
        .to_vec()
}

fn top_labels(answer: &serde_json::Value) -> Vec<(String, f64)> {
    answer["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no top list in {answer}"))
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap_or_default().to_string(),
                c["probability"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_names_chelsea_a_cat_and_coffee_espresso() {
    let host = node_with_classify();
    let url = format!("{}/classify", host.data_url);

    let (status, answer) = post_json(&url, photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model"], MODEL);
    let top = top_labels(&answer);
    assert_eq!(top.len(), 5, "{answer}");
    assert!(
        ["tiger cat", "tabby", "Egyptian cat"].contains(&top[0].0.as_str()),
        "chelsea.png is a cat, got {top:?}"
    );
    let cats: f64 = top
        .iter()
        .filter(|(label, _)| ["tiger cat", "tabby", "Egyptian cat"].contains(&label.as_str()))
        .map(|(_, p)| p)
        .sum();
    assert!(cats > 0.8, "cat classes together {cats}: {top:?}");
    assert!(
        top.windows(2).all(|w| w[0].1 >= w[1].1),
        "not sorted: {top:?}"
    );

    let (status, answer) = post_json(&url, photo("coffee.png")).await;
    assert_eq!(status, 200, "{answer}");
    let top = top_labels(&answer);
    assert_eq!(top[0].0, "espresso", "coffee.png: {top:?}");
    assert!(top[0].1 > 0.8, "espresso probability {}", top[0].1);

    // The same through a JPEG: rocket.jpg decodes and gets an answer.
    let (status, answer) = post_json(&url, photo("rocket.jpg")).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_with_device_and_input_shape() {
    let host = TestHost::start();
    let listed = host.edge(&["models"]);
    assert!(listed.ok, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("OpenVINO 2026.4.1"),
        "{}",
        listed.stdout
    );
    let line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(MODEL))
        .unwrap_or_else(|| panic!("{MODEL} not listed:\n{}", listed.stdout));
    assert!(
        line.contains("CPU") && line.contains("[1, 3, 224, 224]"),
        "{line}"
    );

    let url = format!("{}/v1/models", host.admin_url);
    let reply = send(client().get(&url).bearer_auth(host.token())).await;
    assert_eq!(reply.status, 200);
    let view: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    let model = &view["models"][0];
    assert_eq!(model["name"], MODEL);
    assert_eq!(model["device"], "CPU");
    assert_eq!(
        model["inputs"][0]["shape"],
        serde_json::json!([1, 3, 224, 224])
    );
    assert_eq!(model["outputs"], 1);
}

/// Listing OpenVINO's devices loads every device plugin the runtime ships (NPU, AUTO, HETERO
/// on x86-64); the node unloads them again, so with its model on the CPU it keeps only the
/// CPU plugin (and the auto-batching one a CPU compile loads) in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_its_model_on_the_cpu_keeps_no_other_device_plugin_loaded() {
    let host = node_with_classify();
    let (status, answer) =
        post_json(&format!("{}/classify", host.data_url), photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");

    let maps = std::fs::read_to_string(format!("/proc/{}/maps", host.pid())).expect("maps");
    let plugins: std::collections::BTreeSet<&str> = maps
        .lines()
        .filter_map(|line| line.rsplit('/').next())
        .filter(|file| file.starts_with("libopenvino_") && file.contains("_plugin"))
        .collect();
    assert!(
        plugins.iter().any(|p| p.contains("cpu_plugin")),
        "the CPU plugin is not mapped, so this test is not looking at the right process: \
         {plugins:?}"
    );
    let others: Vec<&&str> = plugins
        .iter()
        .filter(|p| !p.contains("cpu_plugin") && !p.contains("auto_batch_plugin"))
        .collect();
    assert!(
        others.is_empty(),
        "plugins for devices the node's model does not use stay loaded: {others:?}"
    );
}

/// `?repeat=N` (the benchmark's back-to-back runs) really runs N inferences, answers as one
/// does, reports their mean, and is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tensor_request_with_repeat_runs_that_many_inferences_and_no_more_than_64() {
    let host = node_with_classify();
    let base = format!("{}/classify", host.data_url);
    let tensor = chelsea_tensor(&host).await;
    let (status, once) = post_json(&format!("{base}/tensor"), tensor.clone()).await;
    assert_eq!(status, 200, "{once}");
    let inferences = format!("edge_inferences_total{{model=\"{MODEL}\"}}");
    let before = metric(&host.metrics().await, &inferences);

    let response = client()
        .post(format!("{base}/tensor?repeat=5"))
        .body(tensor.clone())
        .send()
        .await
        .expect("repeat request");
    assert_eq!(response.status(), 200);
    let timing = response
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    assert_eq!(top_labels(&answer), top_labels(&once), "{answer}");
    assert!(timing.contains("repeated;dur="), "server-timing: {timing}");
    assert_eq!(
        metric(&host.metrics().await, &inferences) - before,
        5.0,
        "repeat=5 should run five inferences"
    );

    for repeat in ["0", "65", "many"] {
        let url = format!("{base}/tensor?repeat={repeat}");
        let (status, answer) = post_json(&url, tensor.clone()).await;
        assert_eq!(status, 400, "repeat={repeat}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or_default()
                .contains("1 to 64"),
            "{answer}"
        );
    }
    assert_eq!(
        metric(&host.metrics().await, &inferences) - before,
        5.0,
        "a refused repeat ran an inference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_is_compiled_once_for_many_requests_of_many_apps() {
    // The two apps share the model's pooled inference requests, which read each guest's
    // input in place: concurrent requests with different photos must each get their own
    // photo's answer.
    let host = node_with_classify();
    host.deploy(
        "classify-b",
        &guest("classify"),
        &["--model", MODEL, "--route", "/b/classify"],
    );
    let urls = [
        format!("{}/classify", host.data_url),
        format!("{}/b/classify", host.data_url),
    ];
    let photos = [photo("coffee.png"), photo("chelsea.png")];
    let mut alone = Vec::new();
    for (url, image) in urls.iter().zip(&photos) {
        let (status, answer) = post_json(url, image.clone()).await;
        assert_eq!(status, 200, "{answer}");
        alone.push(top_labels(&answer)[0].0.clone());
    }
    assert_ne!(
        alone[0], alone[1],
        "the two photos should differ: {alone:?}"
    );
    let requests: u32 = 12;
    let mut tasks = Vec::new();
    for which in (0..requests).map(|i| i as usize % 2) {
        let (url, body) = (urls[which].clone(), photos[which].clone());
        tasks.push(tokio::spawn(
            async move { (which, post_json(&url, body).await) },
        ));
    }
    for task in tasks {
        let (which, (status, answer)) = task.await.expect("request task");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(top_labels(&answer)[0].0, alone[which], "{answer}");
    }
    let requests = requests + 2;
    let url = format!("{}/metrics", host.admin_url);
    let text = send(client().get(&url).bearer_auth(host.token()))
        .await
        .body;
    let model = format!("{{model=\"{MODEL}\"}}");
    assert_eq!(
        metric(&text, &format!("edge_model_compilations_total{model}")),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("edge_inferences_total{model}")),
        f64::from(requests)
    );
    assert_eq!(
        host.log().matches("model loaded").count(),
        1,
        "the model was loaded more than once:\n{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hello_stays_fast_while_classifications_run() {
    // One inference worker: classifications queue behind each other there, so if they ran on
    // the data plane's threads instead, hello would wait behind them.
    let host = TestHost::start_with_config("[inference]\nworkers = 1\n");
    host.deploy("classify", &guest("classify"), &["--model", MODEL]);
    let url = format!("{}/classify", host.data_url);
    assert_hello_stays_fast_while_posting(&host, &url, photo("chelsea.png"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn p3_component_classifies_through_wasi_nn_on_the_inference_workers() {
    // A WASI 0.3 component importing wasi:nn. Its instances run on the runtime that handed
    // them their first request, so the node hands an app with a model its requests on the
    // inference workers: its blocking compute must leave the data plane's threads to hello.
    let host = TestHost::start_with_config("[inference]\nworkers = 1\n");
    host.deploy("classify", &guest("classify"), &["--model", MODEL]);
    let fixture = guest("p3-nn");
    let no_model = host.edge(&["deploy", "p3-nn", fixture.to_str().expect("utf-8 path")]);
    assert!(
        !no_model.ok,
        "a 0.3 component importing wasi:nn needs --model"
    );
    assert!(no_model.stderr.contains("wasi:nn"), "{}", no_model.stderr);
    host.deploy("p3-nn", &fixture, &["--model", MODEL]);

    let tensor = chelsea_tensor(&host).await;
    let (status, answer) = post_json(
        &format!("{}/classify/tensor", host.data_url),
        tensor.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let expected = answer["top"][0]["index"].to_string();
    let url = format!("{}/p3-nn", host.data_url);
    let reply = send(client().post(&url).body(tensor.clone())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, expected, "the 0.3 component's top class");

    let wrong = send(client().post(&url).body(vec![0u8; 12])).await;
    assert_eq!(wrong.status, 200);
    assert!(
        wrong.body.contains("InvalidArgument") && wrong.body.contains("needs 602112 bytes"),
        "{}",
        wrong.body
    );

    assert_hello_stays_fast_while_posting(&host, &url, tensor, Some(&expected)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn p3_model_app_request_waiting_for_its_turn_ends_and_stops_computing_at_its_time_limit() {
    // One inference worker: the app's share is that worker, so while one request computes
    // forever the next waits for its turn. The wait counts toward its time limit: it ends
    // with 504 one limit after it arrived, not a fresh limit after its turn came, and its
    // guest is interrupted then too, not left computing after the client got its answer.
    const LIMIT: Duration = Duration::from_secs(3);
    let host = TestHost::start_with_config("[inference]\nworkers = 1\n");
    host.deploy(
        "p3-nn",
        &guest("p3-nn"),
        &[
            "--model",
            MODEL,
            "--timeout",
            &format!("{}s", LIMIT.as_secs()),
        ],
    );
    let url = format!("{}/p3-nn/spin", host.data_url);
    let first = tokio::spawn({
        let url = url.clone();
        async move { send(client().post(&url)).await }
    });
    // The first holds the turn once it is counted (on its way to an instance).
    let invocations = "edge_app_invocations_total{app=\"p3-nn\",trigger=\"http\"}";
    host.wait_for_metric(invocations, 1.0).await;
    let started = Instant::now();
    let second = send(client().post(&url)).await;
    let waited = started.elapsed();
    assert_eq!(second.status, 504, "{}", second.body);
    assert!(
        waited < LIMIT * 2 - Duration::from_millis(500),
        "the request waited {waited:?} with a {LIMIT:?} limit"
    );
    assert_eq!(first.await.expect("first request").status, 504);
    // The app's CPU time stops growing once both have ended (each is interrupted at the next
    // epoch tick after its deadline, well within the settling time).
    let cpu = "edge_app_cpu_seconds_total{app=\"p3-nn\"}";
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = metric(&host.metrics().await, cpu);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = metric(&host.metrics().await, cpu);
    assert!(
        later - settled < 0.3,
        "the app's guest computed {:.2}s of CPU in the 1.5s after its requests ended",
        later - settled
    );
}

/// Keeps four clients POSTing `body` to `url` (an app granted the model, on one inference
/// worker) and checks that hello's median latency meanwhile is under a tenth of theirs; with
/// `expected`, every answer must be that text.
async fn assert_hello_stays_fast_while_posting(
    host: &TestHost,
    url: &str,
    body: Vec<u8>,
    expected: Option<&str>,
) {
    host.deploy("hello", &guest("hello"), &[]);
    let hello = format!("{}/hello", host.data_url);
    assert_eq!(get(&hello).await.status, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let classified = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, body) = (url.to_string(), body.clone());
        let expected = expected.map(str::to_string);
        let (stop, classified) = (stop.clone(), classified.clone());
        load.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let reply = send(client().post(&url).body(body.clone())).await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                if let Some(expected) = &expected {
                    assert_eq!(&reply.body, expected);
                }
                latencies.push(started.elapsed());
                classified.fetch_add(1, Ordering::SeqCst);
            }
            latencies
        }));
    }
    // Classifications are queueing on the one inference worker before hello is measured.
    let deadline = Instant::now() + PATIENCE;
    while classified.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut hello_latencies = Vec::new();
    let hello_client = client();
    while (hello_latencies.len() < 40 || classified.load(Ordering::SeqCst) < 12)
        && Instant::now() < deadline
    {
        let started = Instant::now();
        let reply = send(hello_client.get(&hello)).await;
        assert_eq!(reply.status, 200);
        hello_latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut classify_latencies = Vec::new();
    for task in load {
        classify_latencies.extend(task.await.expect("load task"));
    }
    hello_latencies.sort();
    classify_latencies.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    let hello_median = median(&hello_latencies);
    let classify_median = median(&classify_latencies);
    eprintln!(
        "hello median {hello_median:?} (max {:?}, n={}) while classify median {classify_median:?} \
         (n={})",
        hello_latencies.last(),
        hello_latencies.len(),
        classify_latencies.len()
    );
    assert!(
        classify_latencies.len() >= 12,
        "classifications did not run"
    );
    // Measured on an idle machine: hello 0.6 ms with the inference workers, 12.6 ms when
    // classifications ran on the data plane's threads instead. A ratio, not a number of
    // milliseconds, so a machine busy with other work passes too.
    assert!(
        hello_median * 10 < classify_median,
        "hello median {hello_median:?} while classifications take {classify_median:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_get_400_with_a_reason_and_the_node_keeps_classifying() {
    let host = node_with_classify();
    let url = format!("{}/classify", host.data_url);
    let jpeg = photo("rocket.jpg");
    let png = photo("chelsea.png");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("text", b"hello, not an image".to_vec(), "not an image"),
        ("empty", Vec::new(), "not an image"),
        (
            "truncated JPEG",
            jpeg[..jpeg.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "truncated PNG",
            png[..png.len() / 2].to_vec(),
            "cannot be decoded",
        ),
        (
            "20000x20000 PNG header",
            png_header(20_000, 20_000),
            "20000x20000",
        ),
        (
            "GIF",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "send a JPEG or PNG",
        ),
    ];
    for (what, body, reason) in cases {
        // The bomb is refused from its header (the reason names its size): no 1.2 GB
        // allocation, no long decode.
        let (status, answer) = post_json(&url, body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{what}: {error}");
    }
    let (status, answer) = post_json(&url, png).await;
    assert_eq!(status, 200, "{answer}");
}

/// A PNG signature and IHDR chunk announcing `width`x`height` RGB pixels, then a tiny IDAT.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_nn_misuse_gets_errors_and_never_takes_the_node_down() {
    let host = node_with_classify();
    host.deploy(
        "misuse",
        &guest("nn-misuse"),
        &["--model", MODEL, "--route", "/nn"],
    );
    // (route, wasi-nn error code, what the guest and the node's log are told)
    let cases = [
        (
            "load-tpu",
            "UnsupportedOperation",
            "execution target tpu does not exist on this node",
        ),
        (
            "load-bytes",
            "Security",
            "does not compile models sent by guests",
        ),
        (
            "unknown-model",
            "NotFound",
            "model \"no-such-model\" is not available to this app (granted: efficientnet-lite0)",
        ),
        ("short-tensor", "InvalidArgument", "needs 602112 bytes"),
        (
            "wrong-shape",
            "InvalidArgument",
            "must be F32 [1, 3, 224, 224]",
        ),
        (
            "wrong-input",
            "InvalidArgument",
            "has no input named \"nope\"",
        ),
        (
            "many-contexts",
            "TooLarge",
            "already holds 4 execution contexts",
        ),
    ];
    for (route, code, cause) in cases {
        let reply = get(&format!("{}/nn/{route}", host.data_url)).await;
        assert_eq!(reply.status, 200, "{route}: {}", reply.body);
        assert!(
            reply
                .body
                .starts_with(&format!("error ErrorCode::{code}: "))
                && reply.body.contains(cause),
            "{route}: {}",
            reply.body
        );
        assert!(host.wait_for_log(cause), "{route}: no {cause:?} in the log");
    }
    // Holding more tensor data than an instance may ends that instance alone.
    let hoard = get(&format!("{}/nn/huge-tensors", host.data_url)).await;
    assert_eq!(hoard.status, 500, "{}", hoard.body);
    assert!(host.wait_for_log("max_tensor_bytes_per_instance"));
    // A tensor's bytes survive every order of calls: its context dropped or computing on
    // another tensor first, or the tensor computed on another context.
    let orders = get(&format!("{}/nn/tensor-orders", host.data_url)).await;
    assert_eq!((orders.status, orders.body.as_str()), (200, "ok orders"));
    // The node is alive and the model still works, for this app and the others.
    let reply = get(&format!("{}/nn/ok", host.data_url)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok 0[1, 1000]"));
    let (status, _) = post_json(&format!("{}/classify", host.data_url), photo("coffee.png")).await;
    assert_eq!(status, 200);
    assert!(!host.log().contains("panicked"), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn model_app_computing_past_its_time_limit_is_stopped_while_others_classify() {
    // A guest of an app granted a model that computes forever after an inference is stopped
    // at its time limit, and while two such requests are in, another app classifies. The
    // second waits for the app's turn on the workers (its share is one of two, so it has
    // not inferred while the other app did) and reaches its limit there or while it
    // instantiates: 504 as well, not 503.
    let host = TestHost::start_with_config("[inference]\nworkers = 2\n");
    host.deploy("classify", &guest("classify"), &["--model", MODEL]);
    host.deploy(
        "misuse",
        &guest("nn-misuse"),
        &["--model", MODEL, "--route", "/nn", "--timeout", "5s"],
    );
    let inferences = format!("edge_inferences_total{{model=\"{MODEL}\"}}");
    let before = metric_or_zero(&host.metrics().await, &inferences);
    let started = Instant::now();
    let spinning: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{}/nn/spin", host.data_url);
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    // One has inferred: from here on it computes.
    host.wait_for_metric(&inferences, before + 1.0).await;

    let (status, answer) =
        post_json(&format!("{}/classify", host.data_url), photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");
    let cats = ["tiger cat", "tabby", "Egyptian cat"];
    assert!(
        cats.contains(&top_labels(&answer)[0].0.as_str()),
        "{answer}"
    );
    let inferred = metric(&host.metrics().await, &inferences) - before;
    assert!(
        spinning.iter().all(|spin| !spin.is_finished()),
        "the other app's classification waited for the spinning guests"
    );
    assert_eq!(
        inferred, 2.0,
        "one spinning request and the classification infer; the second spinning request \
         waits for its app's share of the workers"
    );

    for spin in spinning {
        let spun = spin.await.expect("spin request");
        assert_eq!(spun.status, 504, "{}", spun.body);
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "stopped before its time limit: {:?}",
        started.elapsed()
    );
    assert!(host.wait_for_log("time limit"), "{}", host.log());
    let reply = get(&format!("{}/nn/ok", host.data_url)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok 0[1, 1000]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_to_a_model_app_holds_none_of_its_turns_on_the_workers_and_ends_in_408() {
    // Two inference workers: the app's share is one. A client sends the start of a photo,
    // past the part every request reads first, and stalls: it holds its connection and a
    // concurrency permit, not the app's turn, so another classification of the same app is
    // answered meanwhile; the stalled one gets 408 at its time limit.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = TestHost::start_with_config("[inference]\nworkers = 2\n");
    host.deploy(
        "classify",
        &guest("classify"),
        &["--model", MODEL, "--timeout", "4s"],
    );
    let photo = photo("chelsea.png");
    let addr = host
        .data_url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /classify HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        photo.len()
    );
    stalled.write_all(head.as_bytes()).await.expect("headers");
    stalled
        .write_all(&photo[..128 * 1024])
        .await
        .expect("start of the body");
    let stalled_at = Instant::now();
    // Time for the node to read that start (on the code before, the request then took the
    // app's turn and waited in the guest for the rest).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, answer) = post_json(&format!("{}/classify", host.data_url), photo.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let mut early = [0u8; 64];
    let unanswered =
        tokio::time::timeout(Duration::from_millis(10), stalled.read(&mut early)).await;
    assert!(
        unanswered.is_err(),
        "the stalled upload was answered before the other classification"
    );

    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive in time"), "{answer}");
    assert!(
        stalled_at.elapsed() >= Duration::from_secs(3),
        "answered before its time limit: {:?}",
        stalled_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_to_a_model_app_gets_413_declared_or_streamed() {
    // A model app's body is read whole before it runs: the body limit is enforced there.
    let host = TestHost::start();
    host.deploy(
        "classify",
        &guest("classify"),
        &["--model", MODEL, "--max-body", "300000"],
    );
    let url = format!("{}/classify", host.data_url);
    let (status, answer) = post_json(&url, photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");

    let declared = send(client().post(&url).body(vec![7u8; 300_001])).await;
    assert_eq!(declared.status, 413, "{}", declared.body);
    // Chunked, no Content-Length: 320 KiB.
    let streamed = post_chunked(&url, 20).await;
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    assert!(streamed.body.contains("larger than"), "{}", streamed.body);

    let (status, answer) = post_json(&url, photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_app_body_read_before_its_turn_takes_its_room_from_the_node_memory_budget() {
    // 48 MiB for all guests, and a model app that accepts 64 MiB bodies: its body is held by
    // the node while the request waits for a turn, so a 50 MiB one is refused as it is read
    // (503) instead of buffered, and its room comes back.
    let host = TestHost::start_with_config("[limits]\nnode_memory_mib = 48\n");
    host.deploy(
        "classify",
        &guest("classify"),
        &["--model", MODEL, "--max-body", "64MiB"],
    );
    let url = format!("{}/classify", host.data_url);
    let refused = post_chunked(&url, 50 * 64).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("memory"), "{}", refused.body);
    assert_eq!(
        metric(&host.metrics().await, "edge_guest_memory_bytes"),
        0.0
    );

    let (status, answer) = post_json(&url, photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_needs_a_grant_for_a_known_model_and_guests_only_see_theirs() {
    let host = TestHost::start();
    let wasm = guest("classify");
    let wasm = wasm.to_str().expect("utf-8");

    let refused = host.edge(&["deploy", "classify", wasm]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("wasi:nn/") && refused.stderr.contains("--model NAME"),
        "{}",
        refused.stderr
    );
    let refused = host.edge(&["deploy", "classify", wasm, "--model", "resnet-9000"]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("no model named resnet-9000") && refused.stderr.contains(MODEL),
        "{}",
        refused.stderr
    );

    // Granted the model, but the guest asks for another one by name.
    host.deploy(
        "classify",
        &guest("classify"),
        &["--model", MODEL, "--env", "MODEL=other"],
    );
    let (status, answer) =
        post_json(&format!("{}/classify", host.data_url), photo("coffee.png")).await;
    assert_eq!(status, 503, "{answer}");
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("--model other"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_without_openvino_serves_other_apps_and_says_how_to_install_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-venv");
    let host = TestHost::start_with_config(&format!(
        "[openvino]\nfolder = {:?}\n",
        missing.to_str().expect("utf-8")
    ));
    host.deploy("hello", &guest("hello"), &[]);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);

    let wasm = guest("classify");
    let refused = host.edge(&[
        "deploy",
        "classify",
        wasm.to_str().expect("utf-8"),
        "--model",
        MODEL,
    ]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("503")
            && refused.stderr.contains("no OpenVINO runtime")
            && refused.stderr.contains("scripts/setup.sh"),
        "{}",
        refused.stderr
    );
    let listed = host.edge(&["models"]);
    assert!(listed.stdout.contains("not loaded"), "{}", listed.stdout);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_with_a_model_is_back_after_a_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    host.deploy("classify", &guest("classify"), &["--model", MODEL]);
    host.deploy("hello", &guest("hello"), &[]);
    host.stop();

    let host = TestHost::start_in(data.path(), &[]);
    // hello serves at once; classify once the model is compiled (in the background).
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
    assert!(
        host.wait_for_log("restored (its models are loaded)"),
        "{}",
        host.log()
    );
    let (status, answer) =
        post_json(&format!("{}/classify", host.data_url), photo("chelsea.png")).await;
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn node_stopped_while_its_model_compiles_exits_cleanly() {
    // SIGTERM right after start-up, while OpenVINO compiles on the loader thread: the node
    // waits for it rather than exiting under it (which crashed in OpenVINO's destructors).
    for _ in 0..3 {
        TestHost::start().stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_and_auto_models_fall_back_to_cpu_with_a_warning_when_there_is_no_gpu() {
    let ir = "edge-config/models/efficientnet-lite0";
    let host = TestHost::start_with_config(&format!(
        "[models.on-gpu]\npath = \"{ir}\"\ndevice = \"GPU\"\n\n\
         [models.on-auto]\npath = \"{ir}\"\ndevice = \"AUTO\"\nhint = \"throughput\"\n"
    ));
    let listed = host.edge(&["models", "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    let view: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    if view["openvino"]["devices"].as_array().is_some_and(|d| {
        d.iter()
            .any(|d| d.as_str().is_some_and(|d| d.starts_with("GPU")))
    }) {
        eprintln!("this machine has a GPU: the fallback is not exercised here");
        return;
    }
    for model in view["models"].as_array().expect("models") {
        assert_eq!(model["device"], "CPU", "{model}");
    }
    assert!(host.wait_for_log("OpenVINO sees no GPU; running it on CPU"));
    host.deploy(
        "classify",
        &guest("classify"),
        &["--model", "on-gpu", "--env", "MODEL=on-gpu"],
    );
    let (status, answer) =
        post_json(&format!("{}/classify", host.data_url), photo("coffee.png")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(top_labels(&answer)[0].0, "espresso");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_matches_native_openvino_with_pil_preprocessing() {
    // The guest decodes and resizes in wasm with its own code; the reference is OpenVINO in
    // Python with PIL (scripts/nn/classify_native.py) on the same IR. Same top 3, same
    // probabilities to within 0.01.
    let root = crate::harness::repo_root();
    let photos = ["chelsea.png", "coffee.png", "rocket.jpg"];
    // Both at the node's default precision, f32, so the comparison holds on every CPU.
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("scripts/nn/classify_native.py"))
        .args(["--precision", "f32"])
        .arg(root.join("edge-config/models/efficientnet-lite0"))
        .args(photos.iter().map(|p| root.join(".cache/photos").join(p)))
        .output()
        .expect("running the native reference (scripts/setup.sh creates .venv)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let native = String::from_utf8_lossy(&output.stdout).into_owned();

    let host = node_with_classify();
    for (photo_name, line) in photos.iter().zip(native.lines()) {
        // A line: chelsea.png [('tiger cat', 0.401), ('Egyptian cat', 0.353), ('tabby', 0.165)]
        let expected: Vec<(String, f64)> = line
            .split("('")
            .skip(1)
            .map(|pair| {
                let (label, rest) = pair.split_once("', ").expect("label, probability");
                let probability = rest.split(')').next().expect("probability");
                (label.to_string(), probability.parse().expect("a number"))
            })
            .collect();
        assert_eq!(expected.len(), 3, "{line}");
        let (status, answer) =
            post_json(&format!("{}/classify", host.data_url), photo(photo_name)).await;
        assert_eq!(status, 200, "{answer}");
        let top = top_labels(&answer);
        for ((label, p), (native_label, native_p)) in top.iter().zip(&expected) {
            assert_eq!(
                label, native_label,
                "{photo_name}: {top:?} vs native {expected:?}"
            );
            assert!(
                (p - native_p).abs() < 0.01,
                "{photo_name}: {top:?} vs native {expected:?}"
            );
        }
    }
}

/// Whether this CPU computes bf16 natively, where OpenVINO's CPU plugin would pick bf16 by
/// itself (AVX512-BF16 or AMX on x86-64).
fn cpu_has_bf16() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
        info.lines().filter(|l| l.starts_with("flags")).any(|l| {
            l.split_whitespace()
                .any(|f| f == "avx512_bf16" || f == "amx_bf16")
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_precision_setting_reaches_openvino_and_is_listed() {
    let ir = "edge-config/models/efficientnet-lite0";
    let host = TestHost::start_with_config(&format!(
        "[models.pinned]\npath = \"{ir}\"\n\n\
         [models.fast]\npath = \"{ir}\"\nprecision = \"bf16\"\n\n\
         [models.device-default]\npath = \"{ir}\"\nprecision = \"auto\"\n"
    ));
    let listed = host.edge(&["models", "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    let view: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    let model = |name: &str| {
        view["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name))
            .unwrap_or_else(|| panic!("{name} not listed: {view}"))
            .clone()
    };
    // Read back from each compiled model: what OpenVINO really runs.
    let bf16_here = if cpu_has_bf16() { "bf16" } else { "f32" };
    eprintln!("this CPU runs bf16 natively: {}", cpu_has_bf16());
    for (name, asked, in_force) in [
        ("pinned", "f32", "f32"),
        ("fast", "bf16", bf16_here),
        ("device-default", "auto", bf16_here),
    ] {
        let model = model(name);
        assert_eq!(model["precision"], asked, "{model}");
        assert_eq!(model["precision_in_force"], in_force, "{model}");
    }
    let table = host.edge(&["models"]);
    let line = table
        .stdout
        .lines()
        .find(|l| l.starts_with("pinned"))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(line.contains(" f32 "), "{line}");
}

#[test]
fn unknown_precision_is_a_config_error_naming_the_allowed_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "[models.x]\npath = \"edge-config/models/efficientnet-lite0\"\nprecision = \"int4\"\n",
    )
    .expect("config");
    let output = std::process::Command::new(crate::harness::EDGE)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("node"))
        .output()
        .expect("running edge serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in ["int4", "f32", "bf16", "f16", "auto"] {
        assert!(stderr.contains(needle), "{needle} missing from: {stderr}");
    }
}
