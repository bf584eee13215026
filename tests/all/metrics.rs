//! The admin API's Prometheus metrics reflect what the node did.

use std::time::Duration;

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

/// Observations of `edge_wakeup_lateness_seconds` over one second late, and their sum.
fn late_wake_ups(text: &str) -> (f64, f64) {
    let bucket = |le: &str| {
        metric(
            text,
            &format!("edge_wakeup_lateness_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    (
        bucket("+Inf") - bucket("1.0"),
        metric(text, "edge_wakeup_lateness_seconds_sum"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_by_its_machine_reports_the_time_it_lost() {
    let host = TestHost::start();
    let (late_before, sum_before) = late_wake_ups(&host.metrics().await);

    // What a host that stops its VM, or a container's CPU quota, does to the whole process.
    let pid = host.pid().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());
    std::thread::sleep(Duration::from_millis(1_500));
    let resumed = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill -CONT");
    assert!(resumed.success());

    // The epoch thread wakes as soon as the process runs again; wait for the metric anyway:
    // the wake-up due during the stop came at least the stop less one tick late.
    host.wait_for_metric("edge_wakeup_lateness_seconds_sum", sum_before + 1.4)
        .await;
    let (late_after, sum_after) = late_wake_ups(&host.metrics().await);
    assert!(
        late_after > late_before,
        "no wake-up over a second late after a 1.5 s stop"
    );
    assert!(sum_after - sum_before >= 1.4, "{sum_before} -> {sum_after}");
    assert!(
        host.wait_for_log("the node did not run for"),
        "{}",
        host.log()
    );
}
