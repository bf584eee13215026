//! WASI 0.3 components (`guests/hello-p3`) beside 0.2 ones, and opt-in instance reuse: what
//! is served, streamed, limited, kept across restart and rollback, and what reuse does (and
//! does not) keep between requests.

use crate::harness::{TestHost, client, get, guest, send, variant_of};

fn count(reply: &crate::harness::Reply) -> u64 {
    reply
        .body
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {} {}", reply.status, reply.body))
}

/// The listed app `name` from `edge list --json`.
fn listed(host: &TestHost, name: &str) -> serde_json::Value {
    let listed = host.edge(&["list", "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    let apps: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("JSON");
    apps.into_iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {}", listed.stdout))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_component_deploys_serves_and_streams_large_bodies_both_ways() {
    let host = TestHost::start();
    host.deploy("p3", &guest("hello-p3"), &[]);
    host.deploy("hello", &guest("hello"), &[]);
    let reply = get(&format!("{}/p3/hi?x=1", host.data_url)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "hello from edge p3: /p3/hi?x=1\n");
    assert_eq!(get(&format!("{}/hello/x", host.data_url)).await.status, 200);
    assert_eq!(listed(&host, "p3")["wasi_http"], "0.3");
    assert_eq!(listed(&host, "hello")["wasi_http"], "0.2");

    // 8 MiB up and back, streamed by the guest as it arrives.
    let upload: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 13) as u8)
        .collect();
    let echoed = client()
        .post(format!("{}/p3/echo", host.data_url))
        .body(upload.clone())
        .send()
        .await
        .expect("echo");
    assert_eq!(echoed.status(), 200);
    let echoed = echoed.bytes().await.expect("echo body");
    assert!(
        echoed.as_ref() == upload.as_slice(),
        "echo differs ({} bytes)",
        echoed.len()
    );

    // 32 MiB down, written in 64 KiB chunks.
    let big = client()
        .get(format!("{}/p3/bytes?n={}", host.data_url, 32 << 20))
        .send()
        .await
        .expect("bytes");
    let big = big.bytes().await.expect("big body");
    assert_eq!(big.len(), 32 << 20);
    assert!(big.iter().all(|b| *b == b'x'));

    // Without reuse every request gets a fresh instance.
    for _ in 0..3 {
        assert_eq!(count(&get(&format!("{}/p3/count", host.data_url)).await), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_component_hits_each_limit_with_the_documented_status() {
    let host = TestHost::start();
    host.deploy(
        "p3",
        &guest("hello-p3"),
        &[
            "--timeout",
            "700ms",
            "--memory",
            "32MiB",
            "--max-body",
            "1MiB",
            "--concurrency",
            "1",
        ],
    );
    let url = |path: &str| format!("{}/p3/{path}", host.data_url);
    assert_eq!(get(&url("trap")).await.status, 500);
    assert_eq!(get(&url("alloc")).await.status, 500);
    let started = std::time::Instant::now();
    assert_eq!(get(&url("loop")).await.status, 504);
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    let too_big = send(client().post(url("echo")).body(vec![0u8; 2 << 20])).await;
    assert_eq!(too_big.status, 413, "{}", too_big.body);

    // At its concurrency limit of 1: a second request while a spinning one runs gets 503.
    // A probe that takes the slot first makes the spinner itself get 503: then start another.
    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    let mut refused = false;
    while !refused && std::time::Instant::now() < deadline {
        let spin_url = url("loop");
        let spinning = tokio::spawn(async move { get(&spin_url).await });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        while !refused && !spinning.is_finished() {
            refused = get(&url("hi")).await.status == 503;
        }
        let spun = spinning.await.expect("spinner").status;
        if refused {
            assert_eq!(spun, 504);
        } else {
            assert_eq!(spun, 503, "the spinner ended without holding the slot");
        }
    }
    assert!(refused, "no 503 while the only slot was busy");
    // The node and the app keep serving.
    assert_eq!(get(&url("hi")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_instances_cpu_time_is_metered() {
    const TIMEOUT_MS: u64 = 600;
    let host = TestHost::start();
    host.deploy(
        "p3",
        &guest("hello-p3"),
        &["--timeout", &format!("{TIMEOUT_MS}ms")],
    );
    // Two requests that spin in guest code until their time limit.
    for _ in 0..2 {
        assert_eq!(get(&format!("{}/p3/loop", host.data_url)).await.status, 504);
    }
    // The instance's CPU lands when the poll that spun returns, which may be just after the
    // 504 went out: wait for it. A busy machine may give the spinner less than the wall time.
    let spun = 2.0 * TIMEOUT_MS as f64 / 1e3;
    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    loop {
        let usage = host.edge(&["usage", "p3", "--json"]);
        assert!(usage.ok, "{}", usage.stderr);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&usage.stdout).expect("usage JSON");
        assert_eq!(rows[0]["invocations_http"], 2.0, "{rows:?}");
        let cpu = rows[0]["cpu_seconds"].as_f64().expect("cpu_seconds");
        if cpu >= spun / 5.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CPU of two {TIMEOUT_MS} ms spins not metered: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_p3_instance_is_not_billed_for_the_time_it_waits_idle() {
    const GAP: std::time::Duration = std::time::Duration::from_secs(2);
    let host = TestHost::start();
    host.deploy(
        "p3",
        &guest("hello-p3"),
        &["--reuse", "8", "--reuse-idle", "4s"],
    );
    let url = format!("{}/p3/count", host.data_url);
    assert_eq!(count(&get(&url).await), 1);
    tokio::time::sleep(GAP).await;
    assert_eq!(
        count(&get(&url).await),
        2,
        "the same instance, idle in between"
    );
    // Idle past --reuse-idle, the instance is retired: a new one answers.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
    while count(&get(&url).await) != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the instance was never retired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The retired instance's usage lands when its store is dropped.
    let wall = || {
        let usage = host.edge(&["usage", "p3", "--json"]);
        assert!(usage.ok, "{}", usage.stderr);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&usage.stdout).expect("usage JSON");
        rows[0]["wall_seconds"].as_f64().expect("wall_seconds")
    };
    while wall() == 0.0 {
        assert!(std::time::Instant::now() < deadline, "no wall time counted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Two short requests: billed for far less than the two idle waits (2 s and 4 s).
    let billed = wall();
    assert!(
        billed < GAP.as_secs_f64(),
        "wall time {billed} s includes idle time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_app_survives_restart_and_rollback() {
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("node");
    let host = TestHost::start_in(&data, &[]);
    host.deploy("app", &guest("hello-p3"), &[]);
    // Replace it by a 0.2 component, then roll back to the 0.3 one.
    let v2 = variant_of(&guest("hello"), "v2", temp.path());
    host.deploy("app", &v2, &["--route", "/app"]);
    let reply = get(&format!("{}/app/x", host.data_url)).await;
    assert!(
        reply.body.starts_with("hello from edge 1"),
        "{}",
        reply.body
    );
    let rolled = host.edge(&["rollback", "app"]);
    assert!(rolled.ok, "{}", rolled.stderr);
    let reply = get(&format!("{}/app/x", host.data_url)).await;
    assert!(
        reply.body.starts_with("hello from edge p3"),
        "{}",
        reply.body
    );

    host.stop();
    let host = TestHost::start_in(&data, &[]);
    let reply = get(&format!("{}/app/after-restart", host.data_url)).await;
    assert_eq!(reply.body, "hello from edge p3: /app/after-restart\n");
    assert!(host.log().contains("restored deployed apps"));
    assert!(!host.log().contains("recompiling"), "recompiled at restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_component_reads_config_and_keeps_kv_state_through_02_imports() {
    let host = TestHost::start();
    let fixture = guest("p3-capabilities");
    // Its kv import needs the grant, as a 0.2 component's does.
    let refused = host.edge(&["deploy", "caps", fixture.to_str().expect("path")]);
    assert!(
        !refused.ok && refused.stderr.contains("--kv"),
        "{}",
        refused.stderr
    );
    host.deploy("caps", &fixture, &["--kv", "--config", "greeting=hello p3"]);
    assert_eq!(listed(&host, "caps")["wasi_http"], "0.3");
    let at = |path: &str| format!("{}/caps/{path}", host.data_url);
    let reply = get(&at("config?key=greeting")).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello p3"));
    assert_eq!(get(&at("config?key=absent")).await.body, "none");
    // Fresh instances each time: the count lives in the node's key-value store.
    assert_eq!(get(&at("incr")).await.body, "1");
    assert_eq!(get(&at("incr")).await.body, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_instance_keeps_memory_across_requests_until_it_traps() {
    let host = TestHost::start();
    host.deploy("reused", &guest("misbehave"), &["--reuse", "100"]);
    host.deploy("fresh", &guest("misbehave"), &[]);
    let counted = |app: &'static str| {
        let url = format!("{}/{app}/count", host.data_url);
        async move { count(&get(&url).await) }
    };
    // Requests are sequential, so one instance serves them all and its counter grows.
    assert_eq!(counted("reused").await, 1);
    assert_eq!(counted("reused").await, 2);
    assert_eq!(counted("reused").await, 3);
    // A trap retires the instance: the next request starts from a fresh one.
    assert_eq!(
        get(&format!("{}/reused/trap", host.data_url)).await.status,
        500
    );
    assert_eq!(counted("reused").await, 1);
    assert_eq!(counted("reused").await, 2);
    // Without --reuse the counter never passes 1.
    for _ in 0..5 {
        assert_eq!(counted("fresh").await, 1);
    }
    // A request over the time limit takes its instance down too.
    host.deploy(
        "slow",
        &guest("misbehave"),
        &["--reuse", "100", "--timeout", "500ms"],
    );
    assert_eq!(counted("slow").await, 1);
    assert_eq!(counted("slow").await, 2);
    assert_eq!(
        get(&format!("{}/slow/loop", host.data_url)).await.status,
        504
    );
    assert_eq!(counted("slow").await, 1);
    // Memory stays bounded by the per-instance limit across reused requests.
    assert_eq!(
        get(&format!("{}/reused/alloc", host.data_url)).await.status,
        500
    );
    assert_eq!(counted("reused").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_instances_meter_and_tag_each_request_and_retire_when_idle() {
    let host = TestHost::start();
    let idle = std::time::Duration::from_millis(300);
    host.deploy(
        "warm",
        &guest("misbehave"),
        &["--reuse", "100", "--reuse-idle", "300ms"],
    );
    let started = std::time::Instant::now();
    // Each request's log lines carry that request's own id, although the instance (and the
    // guest's stdout stream) is the same.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = client()
            .get(format!("{}/warm/print?lines=1", host.data_url))
            .send()
            .await
            .expect("request");
        let id = response.headers()["edge-request-id"]
            .to_str()
            .expect("request id")
            .to_string();
        assert_eq!(response.text().await.expect("body"), "printed");
        ids.push(id);
    }
    const SPINS: u64 = 4;
    const SPIN_MS: u64 = 60;
    for _ in 0..SPINS {
        let reply = get(&format!("{}/warm/work?ms={SPIN_MS}", host.data_url)).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    }
    assert_eq!(
        count(&get(&format!("{}/warm/count", host.data_url)).await),
        7
    );
    let logs = host.edge(&["logs", "warm", "--json"]);
    assert!(logs.ok, "{}", logs.stderr);
    let tagged: Vec<(String, String)> = logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .map(|l| {
            (
                l["request_id"].as_str().unwrap_or_default().into(),
                l["text"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = ids
        .iter()
        .flat_map(|id| {
            [
                (id.clone(), "chatty line 0".to_string()),
                (id.clone(), "chatty stderr line".to_string()),
            ]
        })
        .collect();
    assert_eq!(tagged, expected);

    // Idle past --reuse-idle, the instance is retired: the next request starts afresh.
    tokio::time::sleep(idle * 4).await;
    assert_eq!(
        count(&get(&format!("{}/warm/count", host.data_url)).await),
        1
    );

    // Usage per request: every request counted, CPU measured, and the time the instance
    // waited idle not billed as wall time.
    let usage = host.edge(&["usage", "warm", "--json"]);
    assert!(usage.ok, "{}", usage.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&usage.stdout).expect("usage JSON");
    let number = |key: &str| {
        rows[0][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {rows:?}"))
    };
    assert_eq!(number("invocations_http"), 8.0, "{rows:?}");
    let spin = (SPINS * SPIN_MS) as f64 / 1e3;
    let wall = number("wall_seconds");
    let outside_idle = (started.elapsed() - idle * 4).as_secs_f64();
    assert!(
        wall >= spin && wall <= outside_idle,
        "wall {wall}: at least the {spin} s of spinning, at most the {outside_idle} s not idle"
    );
    assert!(number("cpu_seconds") >= spin / 5.0, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reused_instances_give_their_memory_to_new_requests() {
    // 48 MiB for all guests: new requests stop at 36 MiB held.
    let host = TestHost::start_with_config("[limits]\nnode_memory_mib = 48\n");
    host.deploy(
        "keeper",
        &guest("misbehave"),
        &["--memory", "64MiB", "--reuse", "100"],
    );
    host.deploy("other", &guest("misbehave"), &[]);
    // One request grows the reused instance past 40 MiB; idle, it keeps that memory.
    let grown = get(&format!("{}/keeper/work?ms=1&mib=40", host.data_url)).await;
    assert_eq!(grown.status, 200, "{}", grown.body);
    // Once its request has ended, the instance is parked idle.
    host.wait_for_metric("edge_idle_instances", 1.0).await;
    host.wait_for_metric("edge_guest_memory_bytes", (40 * 1024 * 1024) as f64)
        .await;
    // Another app's request gets that memory instead of a 503: the idle instance is retired.
    let reply = get(&format!("{}/other/fine", host.data_url)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    assert!(host.metrics().await.contains("edge_idle_instances 0"));
    assert_eq!(
        count(&get(&format!("{}/keeper/count", host.data_url)).await),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instances_never_see_an_earlier_requests_scattered_writes() {
    // Each request checks, then writes, every other page of an area from the memory image
    // and of a zeroed one: far more separate dirty regions than one page-map scan batch
    // holds, so the reset that keeps a slot's pages resident resumes across batches
    // (vendor/wasmtime). Whatever the reset keeps, the next instance must see the initial
    // contents.
    let host = TestHost::start();
    host.deploy("scatter", &guest("misbehave"), &[]);
    let url = format!("{}/scatter/scatter", host.data_url);
    // One after the other, so the next instance usually lands in the slot just reset.
    for _ in 0..20 {
        let reply = get(&url).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "pristine"));
    }
    // Many at once, so slots are reset and handed on while other instances run.
    let replies = futures_util::future::join_all((0..48).map(|_| get(&url))).await;
    for reply in replies {
        assert_eq!((reply.status, reply.body.as_str()), (200, "pristine"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_settings_are_checked_and_listed() {
    let host = TestHost::start();
    let refused = host.edge(&[
        "deploy",
        "bad",
        guest("misbehave").to_str().expect("utf-8"),
        "--reuse",
        "4",
        "--reuse-concurrency",
        "2",
    ]);
    assert!(!refused.ok);
    assert!(refused.stderr.contains("WASI 0.3"), "{}", refused.stderr);
    host.deploy(
        "p3",
        &guest("hello-p3"),
        &[
            "--reuse",
            "8",
            "--reuse-concurrency",
            "4",
            "--reuse-idle",
            "2s",
        ],
    );
    let reuse = &listed(&host, "p3")["reuse"];
    assert_eq!(
        (&reuse["requests"], &reuse["concurrency"], &reuse["idle_ms"]),
        (
            &serde_json::json!(8),
            &serde_json::json!(4),
            &serde_json::json!(2000)
        )
    );
    let table = host.edge(&["list"]);
    assert!(table.stdout.contains("8/4 idle 2s"), "{}", table.stdout);
    // Concurrent requests on reused 0.3 instances all answer.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let url = format!("{}/p3/n{i}", host.data_url);
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").status, 200);
    }
}
