//! Compile tiers: a big component serves first from the baseline compiler's code, then the
//! optimized code replaces it under load without a failed request, and a restart serves the
//! stored optimized artifact. `baseline_tier_min_kib = 0` puts every component on the tier.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use crate::harness::{PATIENCE, TestHost, client, eventually, get, guest, variant_of};

const TIERED: &str = "[limits]\nbaseline_tier_min_kib = 0\n\n[models]\n";

fn tier_of(host: &TestHost, app: &str) -> Option<String> {
    let listed = host.edge(&["list", "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    let apps: serde_json::Value = serde_json::from_str(&listed.stdout).expect("list JSON");
    apps.as_array()?
        .iter()
        .find(|a| a["name"] == app)
        .and_then(|a| a["tier"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_code_serves_first_and_the_optimized_swap_under_load_fails_no_request() {
    let temp = tempfile::tempdir().expect("temp dir");
    let config = temp.path().join("node.toml");
    std::fs::write(&config, TIERED).expect("writing node.toml");
    let data_dir = temp.path().join("node");
    let config_arg = config.to_str().expect("utf-8 path");
    let host = Arc::new(TestHost::start_in(&data_dir, &["--config", config_arg]));

    let v1 = guest("hello");
    let first = host.deploy("hello", &v1, &[]);
    assert!(
        first.stdout.contains("baseline compiler"),
        "{}",
        first.stdout
    );
    assert!(
        eventually(|| tier_of(&host, "hello").as_deref() == Some("optimized")),
        "the optimized code never replaced the baseline's: {}",
        host.log()
    );

    // Load runs on v1 while v2 (other bytes, same behaviour) deploys on the baseline tier
    // and is then swapped to its optimized code.
    let url = format!("{}/hello/tiers", host.data_url);
    let expected = get(&url).await.body;
    assert_eq!(expected, "hello from edge 1: /hello/tiers\n");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU32::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, stop, answered, expected) = (
            url.clone(),
            stop.clone(),
            answered.clone(),
            expected.clone(),
        );
        workers.push(tokio::spawn(async move {
            let http = client();
            let deadline = Instant::now() + PATIENCE;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let response = http
                    .get(&url)
                    .send()
                    .await
                    .expect("request during the swap");
                let status = response.status().as_u16();
                let body = response.text().await.expect("body during the swap");
                assert_eq!(status, 200, "request failed during the swap: {body}");
                assert_eq!(body, expected, "the tiers answered differently");
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let v2 = variant_of(&v1, "v2", temp.path());
    let second = tokio::task::spawn_blocking({
        let host = host.clone();
        move || host.deploy("hello", &v2, &[])
    })
    .await
    .expect("deploy task");
    assert!(
        second.stdout.contains("baseline compiler"),
        "{}",
        second.stdout
    );
    // Another app with the same bytes, deployed while (or after) v2's optimized code
    // compiles, gets that code too.
    let twin = tokio::task::spawn_blocking({
        let host = host.clone();
        let v2 = variant_of(&v1, "v2", temp.path());
        move || host.deploy("twin", &v2, &[])
    })
    .await
    .expect("deploy task");
    assert!(twin.ok, "{}", twin.stderr);
    let optimized = tokio::task::spawn_blocking({
        let host = host.clone();
        move || eventually(|| tier_of(&host, "hello").as_deref() == Some("optimized"))
    })
    .await
    .expect("wait task");
    assert!(optimized, "v2 never got its optimized code: {}", host.log());
    let twin_optimized = tokio::task::spawn_blocking({
        let host = host.clone();
        move || eventually(|| tier_of(&host, "twin").as_deref() == Some("optimized"))
    })
    .await
    .expect("wait task");
    assert!(
        twin_optimized,
        "twin never got the shared optimized code: {}",
        host.log()
    );
    // Requests go on after the swap too.
    let at_swap = answered.load(Ordering::SeqCst);
    assert!(eventually(
        || answered.load(Ordering::SeqCst) >= at_swap + 20
    ));
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("load worker");
    }
    assert!(
        host.log().contains("optimized code now serves"),
        "{}",
        host.log()
    );

    // A restart maps the stored optimized artifact: nothing to compile, optimized at once.
    Arc::into_inner(host).expect("workers done").stop();
    let host = TestHost::start_in(&data_dir, &["--config", config_arg]);
    assert_eq!(tier_of(&host, "hello").as_deref(), Some("optimized"));
    let url = format!("{}/hello/tiers", host.data_url);
    assert_eq!(get(&url).await.body, expected);
    // Redeploying the same bytes takes the stored artifact, not the baseline tier.
    let again = host.deploy("hello", &variant_of(&v1, "v2", temp.path()), &[]);
    assert!(
        again.stdout.contains("already compiled"),
        "{}",
        again.stdout
    );
}
