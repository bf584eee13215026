//! Guests that trap, loop forever, exhaust memory or get oversized bodies: the platform
//! answers for them and the node keeps serving.

use crate::harness::{TestHost, client, get, guest, metric_or_zero, post_chunked, send};

fn node_with_misbehave() -> TestHost {
    node_with_misbehave_limits("request_timeout_ms = 1000\n")
}

/// A node with the `misbehave` guest deployed as `bad`, small limits, and `limits` (TOML lines
/// of the `[limits]` section) added.
fn node_with_misbehave_limits(limits: &str) -> TestHost {
    let host = TestHost::start_with_config(&format!(
        "[limits]\nmax_body_bytes = 65536\nmemory_mib = 32\n{limits}"
    ));
    host.deploy("bad", &guest("misbehave"), &[]);
    host
}

async fn assert_still_serving(host: &TestHost) {
    let reply = get(&format!("{}/bad/fine", host.data_url)).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trapping_guest_gets_500_and_node_keeps_serving() {
    let host = node_with_misbehave();
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
    let host = node_with_misbehave();
    let started = std::time::Instant::now();
    let reply = get(&format!("{}/bad/loop", host.data_url)).await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.body);
    // Cut by the node, not by the client's 60 s timeout (generous for a busy machine).
    assert!(elapsed.as_secs() < 20, "took {elapsed:?} for a 1 s limit");
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_exhausting_memory_is_contained() {
    let host = node_with_misbehave();
    let reply = get(&format!("{}/bad/alloc", host.data_url)).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_gets_413_declared_or_streamed() {
    let host = node_with_misbehave();
    let url = format!("{}/bad/echo-length", host.data_url);

    let fits = send(client().post(&url).body(vec![7u8; 1000])).await;
    assert_eq!((fits.status, fits.body.as_str()), (200, "1000"));

    let declared = send(client().post(&url).body(vec![7u8; 200_000])).await;
    assert_eq!(declared.status, 413);

    // Chunked, no Content-Length: the limit is enforced while the guest reads.
    let streamed = post_chunked(&url, 20).await;
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    assert_still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_concurrency_limit_get_503_at_once() {
    let host = TestHost::start_with_config(
        "[limits]\nrequest_timeout_ms = 6000\nmax_concurrent_requests_per_app = 1\n",
    );
    host.deploy("bad", &guest("misbehave"), &[]);

    let instances = instances_so_far(&host).await;
    let busy = tokio::spawn(get_owned(format!("{}/bad/loop", host.data_url)));
    // The looping request holds the app's only slot once its instance exists.
    host.wait_for_metric(INSTANCES, instances + 1.0).await;
    let rejected = get(&format!("{}/bad/fine", host.data_url)).await;
    assert_eq!(rejected.status, 503, "{}", rejected.body);
    assert!(
        !busy.is_finished(),
        "the 503 came only after the busy request ended: it waited for the slot"
    );
    assert_eq!(busy.await.expect("busy request").status, 504);
    assert_still_serving(&host).await;
}

/// Guest instances created so far (counted once each is running).
const INSTANCES: &str = "edge_instantiate_seconds_count";

async fn instances_so_far(host: &TestHost) -> f64 {
    metric_or_zero(&host.metrics().await, INSTANCES)
}

async fn get_owned(url: String) -> crate::harness::Reply {
    get(&url).await
}

/// Guests spinning on every core must not starve other apps: a running guest yields its worker
/// thread at every epoch tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_do_not_starve_other_apps() {
    spinners_leave_room_for_hello("").await;
}

/// With one data-plane thread, the spinners' connections and hello's share its event loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_on_the_one_connection_thread_do_not_starve_its_other_connections() {
    spinners_leave_room_for_hello("[server]\nhttp_threads = 1\n").await;
}

/// Connections served on the node's shared runtime instead of connection threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_on_the_shared_runtime_do_not_starve_other_apps() {
    spinners_leave_room_for_hello("[server]\nhttp_threads = 0\n").await;
}

/// Four guests spin until their 6 s limit on a node configured with `server` (TOML lines);
/// hello must answer while they still spin.
async fn spinners_leave_room_for_hello(server: &str) {
    let host = TestHost::start_with_config(&format!(
        "{server}[limits]\nmax_body_bytes = 65536\nmemory_mib = 32\nrequest_timeout_ms = 6000\n"
    ));
    host.deploy("bad", &guest("misbehave"), &[]);
    host.deploy("hello", &guest("hello"), &[]);
    let instances = instances_so_far(&host).await;
    let spinners: Vec<_> = (0..4)
        .map(|_| tokio::spawn(get_owned(format!("{}/bad/loop", host.data_url))))
        .collect();
    host.wait_for_metric(INSTANCES, instances + 4.0).await;

    let reply = get(&format!("{}/hello/responsive", host.data_url)).await;
    assert_eq!(reply.status, 200);
    assert!(
        spinners.iter().all(|s| !s.is_finished()),
        "hello answered only after a spinner hit its time limit: it was starved"
    );
    for spinner in spinners {
        assert_eq!(spinner.await.expect("spinner").status, 504);
    }
}
