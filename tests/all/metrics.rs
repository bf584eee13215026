//! The admin API's Prometheus metrics reflect what the node did.

use crate::harness::{TestHost, client, get, guest, metric, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_instantiation_first_byte_startup_and_snapshot_sizes() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    host.deploy("heavy", &guest("heavy-init"), &[]);
    host.stop();
    let host = TestHost::start_in(data.path(), &[]);
    for _ in 0..5 {
        assert_eq!(
            get(&format!("{}/heavy/primes/10", host.data_url))
                .await
                .status,
            200
        );
    }
    assert_eq!(get(&format!("{}/nowhere", host.data_url)).await.status, 404);

    let url = format!("{}/metrics", host.admin_url);
    let text = send(client().get(&url).bearer_auth(host.token()))
        .await
        .body;
    assert_eq!(metric(&text, "edge_instantiate_seconds_count"), 5.0);
    assert_eq!(metric(&text, "edge_time_to_first_byte_seconds_count"), 6.0);
    assert_eq!(
        metric(&text, "edge_requests_total{outcome=\"answered\"}"),
        5.0
    );
    assert_eq!(
        metric(&text, "edge_requests_total{outcome=\"no_route\"}"),
        1.0
    );
    assert!(metric(&text, "edge_startup_seconds") > 0.0);
    assert!(metric(&text, "edge_app_startup_seconds{app=\"heavy\"}") > 0.0);
    assert!(metric(&text, "edge_app_snapshot_bytes{app=\"heavy\"}") > 1_000_000.0);
    assert_eq!(
        metric(&text, "edge_time_to_first_byte_seconds_bucket{le=\"+Inf\"}"),
        6.0
    );
}
