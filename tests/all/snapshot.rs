//! Deploy-time snapshots (wasmtime-wizer): state built once at deploy, served to every request.

use crate::harness::{TestHost, get, guest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshotted_app_answers_from_initialised_state_without_rerunning_init() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    let deployed = host.deploy("heavy", &guest("heavy-init"), &[]);
    assert!(
        deployed.stdout.contains("snapshot of"),
        "{}",
        deployed.stdout
    );
    let listed: serde_json::Value =
        serde_json::from_str(&host.edge(&["list", "--json"]).stdout).expect("json");
    assert!(
        listed[0]["snapshot"]["size"]
            .as_u64()
            .expect("snapshot size")
            > 1_000_000
    );

    for n in [100, 1_000_000, 7_919] {
        let reply = get(&format!("{}/heavy/primes/{n}", host.data_url)).await;
        assert_eq!(reply.status, 200);
        // The structure was in memory when the request began, built by the one init at deploy.
        assert!(
            reply.body.contains("init_calls=1 state=snapshot"),
            "{}",
            reply.body
        );
    }
    let reply = get(&format!("{}/heavy/primes/1000000", host.data_url)).await;
    assert!(
        reply.body.starts_with("pi(1000000)=78498 prime=false"),
        "{}",
        reply.body
    );
    let reply = get(&format!("{}/heavy/primes/7919", host.data_url)).await;
    assert!(
        reply.body.starts_with("pi(7919)=1000 prime=true"),
        "{}",
        reply.body
    );

    // The snapshot is what restarts load: still initialised, nothing recompiled.
    host.stop();
    let host = TestHost::start_in(data.path(), &[]);
    let reply = get(&format!("{}/heavy/primes/100", host.data_url)).await;
    assert!(
        reply.body.contains("pi(100)=25") && reply.body.contains("state=snapshot"),
        "{}",
        reply.body
    );
    assert!(!host.log().contains("recompiling"), "{}", host.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_snapshot_flag_serves_a_fresh_uninitialised_instance_per_request() {
    let host = TestHost::start();
    let deployed = host.deploy("heavy", &guest("heavy-init"), &["--no-snapshot"]);
    assert!(!deployed.stdout.contains("snapshot"), "{}", deployed.stdout);
    // Every request is a fresh instance: state built by one request (in a reused, resident
    // memory slot) must never be visible to the next.
    for _ in 0..5 {
        let reply = get(&format!("{}/heavy/primes/100", host.data_url)).await;
        assert!(
            reply
                .body
                .contains("pi(100)=25 prime=false init_calls=1 state=request"),
            "{}",
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_calling_an_import_fails_the_deploy_naming_it() {
    let host = TestHost::start();
    host.deploy("hello", &guest("hello"), &[]);
    let result = host.edge(&[
        "deploy",
        "clock",
        guest("init-calls-import").to_str().expect("path"),
    ]);
    assert!(!result.ok, "{}", result.stdout);
    assert!(
        result.stderr.contains("wizer-initialize"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("`wasi:clocks/wall-clock@"),
        "should name the import: {}",
        result.stderr
    );
    assert_eq!(get(&format!("{}/clock", host.data_url)).await.status, 404);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
}
