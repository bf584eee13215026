//! Restarts: deployed apps come back from their precompiled artifacts.

use crate::harness::{TestHost, get, guest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_answers_after_restart_without_redeploy_or_recompile() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    host.deploy(
        "hello",
        &guest("hello"),
        &["--env", "HELLO_VERSION=persisted"],
    );
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
    host.stop();

    let host = TestHost::start_in(data.path(), &[]);
    let reply = get(&format!("{}/hello/again", host.data_url)).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("edge persisted: /hello/again"),
        "{}",
        reply.body
    );
    assert!(
        !host.log().contains("recompiling"),
        "restart recompiled:\n{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_survives_kill_9_right_after_deploy() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    host.deploy("hello", &guest("hello"), &[]);
    host.kill9();

    let host = TestHost::start_in(data.path(), &[]);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_artifact_is_recompiled_from_the_stored_original() {
    let data = tempfile::tempdir().expect("temp dir");
    let host = TestHost::start_in(data.path(), &[]);
    host.deploy("hello", &guest("hello"), &[]);
    host.stop();
    // Simulate an engine upgrade: the old artifact is unusable.
    for entry in std::fs::read_dir(data.path().join("artifacts")).expect("artifacts dir") {
        let path = entry.expect("entry").path();
        std::fs::write(&path, b"not an artifact").expect("corrupting artifact");
    }

    let host = TestHost::start_in(data.path(), &[]);
    assert_eq!(get(&format!("{}/hello", host.data_url)).await.status, 200);
    assert!(host.wait_for_log("recompiling"), "{}", host.log());
}
