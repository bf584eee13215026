//! Deploy, serve, redeploy under load, rollback, remove: the happy paths through the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{PATIENCE, TestHost, client, get, guest, variant_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployed_hello_answers_over_http_with_its_path() {
    let host = TestHost::start();
    let deployed = host.deploy("hello", &guest("hello"), &[]);
    assert!(
        deployed
            .stdout
            .contains(&format!("{}/hello", host.data_url)),
        "deploy should end with where the app serves: {}",
        deployed.stdout
    );

    let reply = get(&format!("{}/hello/some/path?q=1", host.data_url)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("hello"), "{}", reply.body);
    assert!(
        reply.body.contains("/hello/some/path?q=1"),
        "{}",
        reply.body
    );

    let listed = host.edge(&["list", "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    let apps: serde_json::Value =
        serde_json::from_str(&listed.stdout).expect("list --json is JSON");
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["route"], "/hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_route_prefix_wins_on_segment_boundaries() {
    let host = TestHost::start();
    let hello = guest("hello");
    host.deploy(
        "outer",
        &hello,
        &["--route", "/api", "--env", "HELLO_VERSION=outer"],
    );
    host.deploy(
        "inner",
        &hello,
        &["--route", "/api/v2", "--env", "HELLO_VERSION=inner"],
    );

    assert!(
        get(&format!("{}/api/v2/x", host.data_url))
            .await
            .body
            .contains("inner")
    );
    assert!(
        get(&format!("{}/api/v2", host.data_url))
            .await
            .body
            .contains("inner")
    );
    assert!(
        get(&format!("{}/api/v20", host.data_url))
            .await
            .body
            .contains("outer")
    );
    assert!(
        get(&format!("{}/api", host.data_url))
            .await
            .body
            .contains("outer")
    );
    assert_eq!(get(&format!("{}/apis", host.data_url)).await.status, 404);
}

/// While a client sends requests continuously, a redeploy loses none: every answer is 200
/// from the old or the new version, and once the deploy returned, only the new one answers.
/// Rollback brings the old version back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_under_load_loses_no_request_and_rollback_restores_old() {
    let host = Arc::new(TestHost::start());
    let temp = tempfile::tempdir().expect("temp dir");
    let v1 = guest("hello");
    let v2 = variant_of(&v1, "v2", temp.path());
    host.deploy("hello", &v1, &["--env", "HELLO_VERSION=v1"]);

    let url = format!("{}/hello/load", host.data_url);
    let deployed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // Answers from the new version seen after the deploy returned, by every worker together.
    let (old_seen, new_seen) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (url, deployed, stop) = (url.clone(), deployed.clone(), stop.clone());
        let (old_seen, new_seen) = (old_seen.clone(), new_seen.clone());
        workers.push(tokio::spawn(async move {
            let http = client();
            let mut after = Vec::new();
            let deadline = Instant::now() + PATIENCE;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let deploy_done = deployed.load(Ordering::SeqCst);
                let response = http.get(&url).send().await.expect("request during deploy");
                let status = response.status().as_u16();
                let body = response.text().await.expect("body during deploy");
                assert_eq!(status, 200, "request failed during redeploy: {body}");
                if body.contains("edge v1:") {
                    old_seen.fetch_add(1, Ordering::SeqCst);
                    if deploy_done {
                        after.push(body);
                    }
                } else if body.contains("edge v2:") {
                    new_seen.fetch_add(1, Ordering::SeqCst);
                } else {
                    panic!("answer from neither version: {body}");
                }
            }
            after
        }));
    }

    // Load is running on v1 before the deploy starts...
    wait_until_count(&old_seen, 8).await;
    let host_for_deploy = host.clone();
    let v2_path = v2.clone();
    let redeploy = tokio::task::spawn_blocking(move || {
        host_for_deploy.deploy("hello", &v2_path, &["--env", "HELLO_VERSION=v2"])
    })
    .await
    .expect("deploy task");
    assert!(
        redeploy.stdout.contains("previous version kept"),
        "{}",
        redeploy.stdout
    );
    deployed.store(true, Ordering::SeqCst);
    // ...and goes on for a while on v2 after it returned.
    let new_at_deploy = new_seen.load(Ordering::SeqCst);
    wait_until_count(&new_seen, new_at_deploy + 8).await;
    stop.store(true, Ordering::SeqCst);

    for worker in workers {
        let after = worker.await.expect("load worker");
        assert!(
            after.is_empty(),
            "old version answered after the deploy returned: {after:?}"
        );
    }

    let rolled = tokio::task::spawn_blocking({
        let host = host.clone();
        move || host.edge(&["rollback", "hello"])
    })
    .await
    .expect("rollback task");
    assert!(rolled.ok, "{}", rolled.stderr);
    let reply = get(&url).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("edge v1:"),
        "rollback should restore v1: {}",
        reply.body
    );
}

/// Waits (up to [`PATIENCE`]) until `counter` reaches `at_least`.
async fn wait_until_count(counter: &AtomicU32, at_least: u32) {
    let deadline = Instant::now() + PATIENCE;
    while counter.load(Ordering::SeqCst) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} answers within {PATIENCE:?}",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_twice_undoes_and_without_previous_is_refused() {
    let host = TestHost::start();
    let hello = guest("hello");
    host.deploy("hello", &hello, &["--env", "HELLO_VERSION=a"]);
    let refused = host.edge(&["rollback", "hello"]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("no previous version"),
        "{}",
        refused.stderr
    );

    host.deploy("hello", &hello, &["--env", "HELLO_VERSION=b"]);
    assert!(host.edge(&["rollback", "hello"]).ok);
    assert!(
        get(&format!("{}/hello", host.data_url))
            .await
            .body
            .contains("edge a:")
    );
    assert!(host.edge(&["rollback", "hello"]).ok);
    assert!(
        get(&format!("{}/hello", host.data_url))
            .await
            .body
            .contains("edge b:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_app_stops_answering_and_leaves_the_list() {
    let host = TestHost::start();
    host.deploy("hello", &guest("hello"), &[]);
    let removed = host.edge(&["remove", "hello"]);
    assert!(removed.ok, "{}", removed.stderr);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 404);
    assert!(host.edge(&["list"]).stdout.contains("no apps deployed"));
    let again = host.edge(&["remove", "hello"]);
    assert!(!again.ok);
    assert!(
        again.stderr.contains("no app named hello"),
        "{}",
        again.stderr
    );
    // Nothing of the app is left in the data folder.
    let leftovers = std::fs::read_dir(host.data_dir.join("components")).expect("components dir");
    assert_eq!(leftovers.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploying_the_running_version_keeps_the_previous_one_for_rollback() {
    let host = TestHost::start();
    let hello = guest("hello");
    host.deploy("hello", &hello, &["--env", "HELLO_VERSION=old"]);
    host.deploy("hello", &hello, &["--env", "HELLO_VERSION=new"]);
    host.deploy("hello", &hello, &["--env", "HELLO_VERSION=new"]);
    assert!(host.edge(&["rollback", "hello"]).ok);
    let reply = get(&format!("{}/hello", host.data_url)).await;
    assert!(reply.body.contains("edge old:"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_host_header_gets_400() {
    use std::io::{Read as _, Write as _};
    let host = TestHost::start();
    host.deploy("hello", &guest("hello"), &[]);
    let addr = host.data_url.trim_start_matches("http://").to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET /hello HTTP/1.0\r\n\r\n")
            .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("raw request");
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
}
