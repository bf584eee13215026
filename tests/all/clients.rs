//! What clients that hold resources cannot do: take one app's instances with slow bodies,
//! exhaust the admin API with idle connections, or keep a stopping node from exiting; and
//! what a client that leaves cannot do: cut its request's guest short.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{TestHost, client, eventually, get, guest, send};

/// Host and port of a `http://host:port` URL.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Opens a connection that sends a POST's headers and one byte of its 1000-byte body.
async fn slow_body_client(addr: String, path: String) -> TcpStream {
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("headers");
    stream.write_all(b"x").await.expect("first byte");
    stream
}

/// Reads what the server sent on `stream` until it closes it or `wait` passes.
async fn read_answer(stream: &mut TcpStream, wait: Duration) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_to_one_app_take_no_instances_from_it_or_another_and_end_in_408() {
    let host = TestHost::start_with_config(
        "[server]\nrequest_body_timeout_ms = 3000\n\n[pool]\nmax_instances = 8\n",
    );
    host.deploy("a", &guest("misbehave"), &["--concurrency", "4"]);
    host.deploy("b", &guest("hello"), &[]);
    let addr = authority(&host.data_url);
    // Twenty clients send one byte of their bodies to `a` and stop: more than the pool and more
    // than `a`'s concurrency.
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(slow_body_client(addr.clone(), "/a/echo-length".into()).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&format!("{}/b/", host.data_url)).await.status, 200);
    let fast = send(
        client()
            .post(format!("{}/a/echo-length", host.data_url))
            .body(vec![b'y'; 5000]),
    )
    .await;
    assert_eq!(fast.status, 200, "{}", fast.body);
    assert_eq!(fast.body, "5000");
    // The slow ones are answered 408 once their time is up.
    let started = Instant::now();
    let answer = read_answer(&mut slow[0], Duration::from_secs(30)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("did not arrive in time"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_caps_connections_per_client_and_closes_idle_ones() {
    let host = TestHost::start();
    let addr = authority(&host.admin_url);
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    // Past the per-client share, connections are closed at once; the others after the
    // header timeout.
    let mut closed_at_once = 0;
    for stream in idle.iter_mut().skip(32) {
        if read_answer(stream, Duration::from_secs(5)).await.is_empty() {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 8);
    let started = Instant::now();
    let answer = read_answer(&mut idle[0], Duration::from_secs(30)).await;
    assert!(started.elapsed() < Duration::from_secs(25), "{answer:?}");
    drop(idle);
    let listed = host.edge(&["list"]);
    assert!(listed.ok, "{}", listed.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_drain_deadline_whatever_clients_do_and_keeps_writes() {
    let temp = tempfile::tempdir().expect("temp");
    let config = temp.path().join("node.toml");
    std::fs::write(
        &config,
        "[server]\ndrain_timeout_ms = 1500\n\n[kv]\ndurability = \"periodic\"\nflush_interval_ms = 60000\n",
    )
    .expect("config");
    let config = config.to_str().expect("utf-8");
    let data = temp.path().join("node");
    let host = TestHost::start_in(&data, &["--config", config]);
    host.deploy("slow", &guest("misbehave"), &["--timeout", "60s"]);
    host.deploy("counter", &guest("counter"), &["--kv"]);
    // A write acknowledged before the signal, not yet flushed (periodic, one minute).
    let stored = send(
        client()
            .put(format!("{}/counter/kv/kept", host.data_url))
            .body("before sigterm"),
    )
    .await;
    assert_eq!(stored.status, 200);
    // A request that would run for 30 s, a client sending its body slowly, an idle admin one.
    let long = tokio::spawn(
        client()
            .get(format!("{}/slow/work?ms=30000", host.data_url))
            .send(),
    );
    let _slow = slow_body_client(authority(&host.data_url), "/slow/echo-length".into()).await;
    let _idle = TcpStream::connect(authority(&host.admin_url))
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = host.stop_timed();
    assert!(took < Duration::from_secs(8), "took {took:?} to stop");
    let _ = long.await;
    let host = TestHost::start_in(&data, &["--config", config]);
    let kept = get(&format!("{}/counter/kv/kept", host.data_url)).await;
    assert_eq!(kept.body, "before sigterm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_leaves_mid_run_still_runs_to_its_end() {
    let host = TestHost::start();
    host.deploy("work", &guest("misbehave"), &[]);
    // A guest that works for 1.5 s; its client sends the request and leaves after 0.3 s.
    const WORK_S: f64 = 1.5;
    let addr = authority(&host.data_url);
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let request = format!(
        "GET /work/work?ms={} HTTP/1.1\r\nhost: {addr}\r\n\r\n",
        (WORK_S * 1e3) as u64
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    // The guest is not cut short where its client left: its metered wall time reaches the
    // whole 1.5 s (a guest stopped at the client's leaving would stay near 0.3 s), just as a
    // guest's kv writes after that point still land.
    let wall = || {
        let usage = host.edge(&["usage", "work", "--json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&usage.stdout).unwrap_or_default();
        rows.first()
            .and_then(|row| row["wall_seconds"].as_f64())
            .unwrap_or_default()
    };
    assert!(
        eventually(|| wall() >= WORK_S),
        "the request was cut short when its client left: {} s of wall time metered",
        wall()
    );
}
