//! `wasi:keyvalue` on sled through the `counter` guest: exactness under concurrency,
//! durability across restarts and `kill -9`, isolation between apps, limits and grants.

use std::sync::Arc;

use crate::harness::{CliResult, Reply, TestHost, client, get, guest, send};

fn deploy_counter(host: &TestHost, name: &str) {
    host.deploy(name, &guest("counter"), &["--kv"]);
}

async fn post(url: String) -> Reply {
    send(client().post(&url)).await
}

/// Sends `total` requests to `url` (POST), `concurrency` at a time; returns the statuses.
async fn hammer(url: &str, total: usize, concurrency: usize) -> Vec<Reply> {
    let url = Arc::new(url.to_string());
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let url = url.clone();
        let share = total / concurrency + usize::from(worker < total % concurrency);
        workers.push(tokio::spawn(async move {
            let http = client();
            let mut replies = Vec::new();
            for _ in 0..share {
                replies.push(send(http.post(url.as_str())).await);
            }
            replies
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_increment_is_exact_under_concurrency() {
    let host = TestHost::start();
    deploy_counter(&host, "counter");
    let replies = hammer(&format!("{}/counter/incr/hits", host.data_url), 1000, 32).await;
    assert!(replies.iter().all(|r| r.status == 200), "a request failed");
    let mut seen: Vec<u64> = replies
        .iter()
        .map(|r| r.body.parse().expect("number"))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<u64>>(),
        "every increment returns a unique value"
    );
    let total = get(&format!("{}/counter/kv/hits", host.data_url)).await;
    assert_eq!(total.body, "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_under_contention_loses_no_update() {
    let host = TestHost::start();
    deploy_counter(&host, "counter");
    let replies = hammer(&format!("{}/counter/cas-incr/n", host.data_url), 300, 16).await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().find(|r| r.status != 200)
    );
    assert_eq!(
        get(&format!("{}/counter/kv/n", host.data_url)).await.body,
        "300"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_survives_clean_restart_and_kill_9() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    deploy_counter(&host, "counter");
    let base = host.data_url.clone();
    assert_eq!(
        send(
            client()
                .put(format!("{base}/counter/kv/clean"))
                .body("before restart")
        )
        .await
        .status,
        200
    );
    host.stop();

    let host = TestHost::start_in(data.path(), &[]);
    let base = host.data_url.clone();
    assert_eq!(
        get(&format!("{base}/counter/kv/clean")).await.body,
        "before restart"
    );
    // Acknowledged writes, then kill -9 at once: nothing acknowledged may be lost.
    for i in 0..20 {
        assert_eq!(
            post(format!("{base}/counter/incr/crash")).await.body,
            (i + 1).to_string()
        );
    }
    assert_eq!(
        send(
            client()
                .put(format!("{base}/counter/kv/last"))
                .body("acked")
        )
        .await
        .status,
        200
    );
    host.kill9();

    let host = TestHost::start_in(data.path(), &[]);
    let base = host.data_url.clone();
    assert_eq!(get(&format!("{base}/counter/kv/crash")).await.body, "20");
    assert_eq!(get(&format!("{base}/counter/kv/last")).await.body, "acked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_cannot_see_each_others_keys_in_the_same_bucket_name() {
    let host = TestHost::start();
    host.deploy("alpha", &guest("counter"), &["--kv"]);
    host.deploy("beta", &guest("counter"), &["--kv"]);
    let base = &host.data_url;
    assert_eq!(
        send(
            client()
                .put(format!("{base}/alpha/kv/secret"))
                .body("alpha's")
        )
        .await
        .status,
        200
    );

    assert_eq!(get(&format!("{base}/beta/kv/secret")).await.status, 404);
    assert_eq!(get(&format!("{base}/beta/keys")).await.body, "");
    assert_eq!(get(&format!("{base}/alpha/keys")).await.body, "secret");
    // A bucket name cannot climb into another namespace either.
    let escape = get(&format!("{base}/beta/kv/secret?bucket=../alpha/default")).await;
    assert_eq!(escape.status, 400);
    assert!(
        escape.body.contains("invalid bucket name"),
        "{}",
        escape.body
    );

    let listed = host.edge(&["kv", "list", "beta", "default"]);
    assert!(listed.ok, "{}", listed.stderr);
    assert_eq!(listed.stdout.trim(), "");
    assert_eq!(
        host.edge(&["kv", "list", "alpha", "default"]).stdout.trim(),
        "secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_keys_and_values_get_clear_errors() {
    let host = TestHost::start();
    deploy_counter(&host, "counter");
    let base = &host.data_url;
    let long_key = "k".repeat(2000);
    let reply = send(
        client()
            .put(format!("{base}/counter/kv/{long_key}"))
            .body("v"),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .body
            .contains("key is 2000 bytes, over the limit of 1024"),
        "{}",
        reply.body
    );

    let big_value = vec![b'x'; 1024 * 1024 + 1];
    let reply = send(
        client()
            .put(format!("{base}/counter/kv/big"))
            .body(big_value),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("over the limit of 1048576"),
        "{}",
        reply.body
    );
    assert_eq!(get(&format!("{base}/counter/kv/big")).await.status, 404);

    let reply = get(&format!("{base}/counter/kv/x?bucket=no%20spaces")).await;
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("invalid bucket name"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_without_kv_grant_is_refused_naming_the_flag() {
    let host = TestHost::start();
    let result = host.edge(&[
        "deploy",
        "counter",
        guest("counter").to_str().expect("path"),
    ]);
    assert!(!result.ok);
    assert!(
        result.stderr.contains("wasi:keyvalue/"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("--kv"), "{}", result.stderr);
    assert_eq!(
        get(&format!("{}/counter/kv/x", host.data_url)).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_outlives_redeploy_and_remove_unless_deleted_explicitly() {
    let host = TestHost::start();
    deploy_counter(&host, "counter");
    let base = host.data_url.clone();
    post(format!("{base}/counter/incr/kept")).await;
    deploy_counter(&host, "counter");
    assert_eq!(get(&format!("{base}/counter/kv/kept")).await.body, "1");

    let removed = host.edge(&["remove", "counter"]);
    assert!(
        removed.stdout.contains("key-value data is kept"),
        "{}",
        removed.stdout
    );
    deploy_counter(&host, "counter");
    assert_eq!(get(&format!("{base}/counter/kv/kept")).await.body, "1");

    let removed: CliResult = host.edge(&["remove", "counter", "--delete-data"]);
    assert!(
        removed.ok && removed.stdout.contains("was deleted"),
        "{}",
        removed.stdout
    );
    deploy_counter(&host, "counter");
    assert_eq!(get(&format!("{base}/counter/kv/kept")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reads_and_writes_app_data_through_the_cli() {
    let host = TestHost::start();
    deploy_counter(&host, "counter");
    assert!(
        host.edge(&[
            "kv",
            "set",
            "counter",
            "default",
            "a/b c",
            "from the operator"
        ])
        .ok
    );
    assert_eq!(
        get(&format!("{}/counter/kv/a%2Fb%20c", host.data_url))
            .await
            .body,
        "from the operator"
    );
    let got = host.edge(&["kv", "get", "counter", "default", "a/b c"]);
    assert_eq!(got.stdout, "from the operator");
    assert!(
        host.edge(&["kv", "delete", "counter", "default", "a/b c"])
            .ok
    );
    let missing = host.edge(&["kv", "get", "counter", "default", "a/b c"]);
    assert!(
        !missing.ok && missing.stderr.contains("404"),
        "{}",
        missing.stderr
    );
}
