//! What a damaged data folder or an unrunnable component cannot do: keep the other apps from
//! starting, steal a route, or deploy something that answers 503 forever.

use crate::harness::{TestHost, client, eventually, get, guest, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_that_cannot_instantiate_within_its_limits_is_refused_at_deploy() {
    let host = TestHost::start();
    // Its initial linear memory (over 1 MiB) does not fit the app's memory limit.
    let refused = host.edge(&[
        "deploy",
        "tiny",
        guest("misbehave").to_str().expect("utf-8"),
        "--memory",
        "1MiB",
    ]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("422") && refused.stderr.contains("cannot be instantiated"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--memory"), "{}", refused.stderr);
    let listed = host.edge(&["list", "--json"]);
    assert_eq!(listed.stdout.trim(), "[]", "a refused app was kept");
    // The same component with room to run deploys and serves.
    host.deploy("tiny", &guest("misbehave"), &["--memory", "8MiB"]);
    assert_eq!(
        get(&format!("{}/tiny/fine", host.data_url)).await.body,
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_apps_do_not_stop_the_others_keep_their_routes_and_show_in_healthz() {
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("node");
    let host = TestHost::start_in(&data, &[]);
    host.deploy("good", &guest("hello"), &[]);
    host.deploy("lost", &guest("misbehave"), &[]);
    host.stop();

    // `lost` loses its stored component and artifact; a third record does not even decode.
    for folder in ["components", "artifacts"] {
        for entry in std::fs::read_dir(data.join(folder))
            .expect("folder")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let misbehave = std::fs::read(guest("misbehave")).expect("misbehave");
            let digest = sha256_hex(&misbehave);
            if name.starts_with(&digest) {
                std::fs::remove_file(entry.path()).expect("remove");
            }
        }
    }
    {
        let db = sled::open(data.join("db")).expect("db");
        db.open_tree("apps")
            .expect("apps tree")
            .insert("ghost", b"{not json".to_vec())
            .expect("insert");
        db.flush().expect("flush");
    }

    let host = TestHost::start_in(&data, &[]);
    assert_eq!(get(&format!("{}/good/x", host.data_url)).await.status, 200);
    let health = get(&format!("{}/healthz", host.admin_url)).await;
    assert_eq!(health.status, 200, "{}", health.body);
    assert!(
        health.body.contains("app lost: failed to load"),
        "{}",
        health.body
    );
    assert!(
        health.body.contains("app ghost: failed to load"),
        "{}",
        health.body
    );
    // A failed app keeps its route: another app cannot take it.
    let taken = host.edge(&[
        "deploy",
        "thief",
        guest("hello").to_str().expect("utf-8"),
        "--route",
        "/lost",
    ]);
    assert!(
        !taken.ok && taken.stderr.contains("lost"),
        "{}",
        taken.stderr
    );
    // Redeploying the failed app itself repairs it, and healthz forgets the failure.
    host.deploy("lost", &guest("misbehave"), &[]);
    assert_eq!(
        get(&format!("{}/lost/fine", host.data_url)).await.body,
        "ok"
    );
    let health = send(client().get(format!("{}/healthz", host.admin_url))).await;
    assert!(!health.body.contains("app lost"), "{}", health.body);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_node_memory_budget_new_requests_get_503_and_the_node_stays_up() {
    // 48 MiB for all guests: new requests stop at 36 MiB held.
    let host = TestHost::start_with_config("[limits]\nnode_memory_mib = 48\n");
    host.deploy("hungry", &guest("misbehave"), &["--memory", "64MiB"]);
    let hog = tokio::spawn(get_owned(format!(
        "{}/hungry/work?ms=4000&mib=40",
        host.data_url
    )));
    host.wait_for_metric("edge_guest_memory_bytes", (40 * 1024 * 1024) as f64)
        .await;
    let fine = format!("{}/hungry/fine", host.data_url);
    let refused = get(&fine).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("memory"), "{}", refused.body);
    // A guest growing past the whole budget fails alone.
    let greedy = get(&format!("{}/hungry/work?ms=1&mib=60", host.data_url)).await;
    assert_ne!(greedy.status, 200, "{}", greedy.body);
    assert_eq!(hog.await.expect("hog").status, 200);
    // The memory came back: requests run again.
    let after = get(&fine).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert!(
        host.metrics()
            .await
            .contains("edge_guest_memory_budget_bytes 50331648")
    );
}

async fn get_owned(url: String) -> crate::harness::Reply {
    get(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_client_goes_away_mid_compile_completes_and_its_files_survive() {
    let temp = tempfile::tempdir().expect("temp");
    let data = temp.path().join("node");
    let host = TestHost::start_in(&data, &[]);
    let wasm = std::fs::read(guest("heavy-init")).expect("heavy-init");
    // Snapshotting and compiling take far longer than the client waits.
    let cut = client()
        .put(format!("{}/v1/apps/heavy", host.admin_url))
        .bearer_auth(host.token())
        .body(wasm)
        .timeout(std::time::Duration::from_millis(100))
        .send()
        .await;
    assert!(cut.is_err(), "the deploy answered within 100 ms: {cut:?}");
    assert!(
        eventually(|| host.edge(&["list", "--json"]).stdout.contains("\"heavy\"")),
        "the deploy did not complete after its client left:\n{}",
        host.log()
    );
    // The next change collects garbage: the completed deploy's files are not garbage.
    host.deploy("hello", &guest("hello"), &[]);
    let audit = host.edge(&["audit", "--json"]);
    assert!(audit.stdout.contains("\"heavy\""), "{}", audit.stdout);
    host.stop();
    let host = TestHost::start_in(&data, &[]);
    let primes = get(&format!("{}/heavy/primes/100", host.data_url)).await;
    assert_eq!(primes.status, 200, "{}", primes.body);
    assert!(primes.body.contains("pi(100)=25"), "{}", primes.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_with_delete_data_is_idempotent_and_reaches_data_an_earlier_remove_kept() {
    let host = TestHost::start();
    host.deploy("counter", &guest("counter"), &["--kv"]);
    let base = host.data_url.clone();
    let stored = send(client().put(format!("{base}/counter/kv/k")).body("v")).await;
    assert_eq!(stored.status, 200);
    // A plain remove keeps the data; a later remove --delete-data still deletes it.
    assert!(host.edge(&["remove", "counter"]).ok);
    let deleted = host.edge(&["remove", "counter", "--delete-data"]);
    assert!(deleted.ok, "{}", deleted.stderr);
    assert!(
        deleted.stdout.contains("not deployed") && deleted.stdout.contains("(1 buckets)"),
        "{}",
        deleted.stdout
    );
    // Again: nothing left, still a success.
    let again = host.edge(&["remove", "counter", "--delete-data"]);
    assert!(
        again.ok && again.stdout.contains("(0 buckets)"),
        "{}",
        again.stdout
    );
    // Without --delete-data a missing app is still an error.
    let missing = host.edge(&["remove", "counter"]);
    assert!(!missing.ok && missing.stderr.contains("no app named counter"));
    host.deploy("counter", &guest("counter"), &["--kv"]);
    assert_eq!(get(&format!("{base}/counter/kv/k")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_compile_on_the_bounded_threads_and_snapshot_within_the_app_memory_limit() {
    let host = TestHost::start_with_config("[limits]\ncompile_threads = 1\n");
    host.deploy("heavy", &guest("heavy-init"), &[]);
    let compile_threads = std::fs::read_dir(format!("/proc/{}/task", host.pid()))
        .expect("task list")
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("edge-compile-"))
        })
        .count();
    assert_eq!(compile_threads, 1);
    // The init function builds a 2.4 MiB table: it does not fit an app limited to 2 MiB.
    let refused = host.edge(&[
        "deploy",
        "tight",
        guest("heavy-init").to_str().expect("utf-8"),
        "--memory",
        "2MiB",
    ]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(refused.stderr.contains("422"), "{}", refused.stderr);
    assert!(!host.edge(&["list"]).stdout.contains("tight"));
}
