//! Guests that trap, loop forever, exhaust memory or get oversized bodies: the platform
//! answers for them and the node keeps serving.

use crate::harness::{TestHost, client, get, guest, send};

fn node_with_misbehave(extra: &[&str]) -> (TestHost, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let config = data.path().join("node.toml");
    std::fs::write(
        &config,
        "[limits]\nrequest_timeout_ms = 1000\nmax_body_bytes = 65536\nmemory_mib = 32\n",
    )
    .expect("writing config");
    let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let host = TestHost::start_in(&data.path().join("node"), &args);
    host.deploy("bad", &guest("misbehave"), &[]);
    (host, data)
}

async fn assert_still_serving(host: &TestHost) {
    let reply = get(&format!("{}/bad/fine", host.data_url)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_guest_gets_500_and_node_keeps_serving() {
    let (host, _data) = node_with_misbehave(&[]);
    let reply = get(&format!("{}/bad/trap", host.data_url)).await;
    assert_eq!(reply.status, 500);
    assert!(
        reply.body.contains("failed while handling"),
        "{}",
        reply.body
    );
    assert!(
        !reply.body.contains("panicked"),
        "internals leaked: {}",
        reply.body
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_is_cut_at_the_time_limit_with_504() {
    let (host, _data) = node_with_misbehave(&[]);
    let started = std::time::Instant::now();
    let reply = get(&format!("{}/bad/loop", host.data_url)).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(
        elapsed.as_millis() < 5000,
        "took {elapsed:?} for a 1 s limit"
    );
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_exhausting_memory_is_contained() {
    let (host, _data) = node_with_misbehave(&[]);
    let reply = get(&format!("{}/bad/alloc", host.data_url)).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_gets_413_declared_or_streamed() {
    let (host, _data) = node_with_misbehave(&[]);
    let url = format!("{}/bad/echo-length", host.data_url);

    let fits = send(client().post(&url).body(vec![7u8; 1000])).await;
    assert_eq!((fits.status, fits.body.as_str()), (200, "1000"));

    let declared = send(client().post(&url).body(vec![7u8; 200_000])).await;
    assert_eq!(declared.status, 413);

    // Chunked, no Content-Length: the limit is enforced while the guest reads.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![1u8; 16 * 1024])).collect();
    let streamed = send(client().post(&url).body(reqwest::Body::wrap_stream(
        futures_util::stream::iter(chunks),
    )))
    .await;
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_limit_get_503_at_once() {
    let data = tempfile::tempdir().expect("temp dir");
    let config = data.path().join("node.toml");
    std::fs::write(
        &config,
        "[limits]\nrequest_timeout_ms = 1500\nmax_concurrent_requests_per_app = 1\n",
    )
    .expect("writing config");
    let host = TestHost::start_in(
        &data.path().join("node"),
        &["--config", config.to_str().expect("utf-8 path")],
    );
    host.deploy("bad", &guest("misbehave"), &[]);

    let busy = tokio::spawn(get_owned(format!("{}/bad/loop", host.data_url)));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let rejected = get(&format!("{}/bad/fine", host.data_url)).await;
    assert_eq!(rejected.status, 503, "{}", rejected.body);
    assert!(
        started.elapsed().as_millis() < 1000,
        "503 should not wait for the busy request"
    );
    assert_eq!(busy.await.expect("busy request").status, 504);
    assert_still_serving(&host).await;
}

async fn get_owned(url: String) -> crate::harness::Reply {
    get(&url).await
}

/// Guests spinning on every core must not starve other apps: a running guest yields its worker
/// thread at every epoch tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_do_not_starve_other_apps() {
    let (host, _data) = node_with_misbehave(&[]);
    host.deploy("hello", &guest("hello"), &[]);
    let spinners: Vec<_> = (0..4)
        .map(|_| tokio::spawn(get_owned(format!("{}/bad/loop", host.data_url))))
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    let reply = get(&format!("{}/hello/responsive", host.data_url)).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200);
    assert!(
        elapsed.as_millis() < 500,
        "hello took {elapsed:?} while guests spun (the spinners run for 1 s)"
    );
    for spinner in spinners {
        assert_eq!(spinner.await.expect("spinner").status, 504);
    }
}
