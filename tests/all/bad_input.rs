//! Bad deploys and bad requests: each gets a clear error, and the node keeps serving the
//! apps it already has.

use std::path::Path;

use crate::harness::{CliResult, TestHost, client, get, guest, send};

/// A node already serving `hello`, to check that a bad deploy harms nothing.
fn node_with_hello() -> TestHost {
    let host = TestHost::start();
    host.deploy("hello", &guest("hello"), &[]);
    host
}

async fn assert_hello_still_serves(host: &TestHost) {
    let reply = get(&format!("{}/hello/still-here", host.data_url)).await;
    assert_eq!(reply.status, 200, "hello stopped serving: {}", reply.body);
    assert!(reply.body.contains("/hello/still-here"));
}

fn deploy_file(host: &TestHost, name: &str, path: &Path) -> CliResult {
    host.edge(&["deploy", name, path.to_str().expect("utf-8 path")])
}

fn deploy_bytes(host: &TestHost, name: &str, bytes: &[u8]) -> CliResult {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("upload.wasm");
    std::fs::write(&path, bytes).expect("writing upload");
    deploy_file(host, name, &path)
}

fn assert_refused(result: &CliResult, expected: &str) {
    assert!(
        !result.ok,
        "deploy unexpectedly succeeded: {}",
        result.stdout
    );
    let lines: Vec<&str> = result
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line: {}", result.stderr);
    assert!(
        lines[0].contains(expected),
        "error should mention {expected:?}: {}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_random_bytes_with_clear_error() {
    let host = node_with_hello();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_refused(&deploy_bytes(&host, "junk", &garbage), "not WebAssembly");
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_empty_body() {
    let host = node_with_hello();
    assert_refused(&deploy_bytes(&host, "empty", b""), "upload is empty");
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_core_module_instead_of_component() {
    let host = node_with_hello();
    // The smallest valid core module: magic and version 1, no sections.
    assert_refused(
        &deploy_bytes(&host, "core", b"\0asm\x01\0\0\0"),
        "core WebAssembly module, not a component",
    );
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_truncated_component() {
    let host = node_with_hello();
    let bytes = std::fs::read(guest("hello")).expect("hello.wasm");
    assert_refused(
        &deploy_bytes(&host, "cut", &bytes[..bytes.len() / 2]),
        "does not validate",
    );
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_component_of_another_world() {
    let host = node_with_hello();
    let result = deploy_file(&host, "tool", &guest("cli-command"));
    assert_refused(&result, "does not export wasi:http/incoming-handler");
    assert!(
        result.stderr.contains("wasi:cli/run"),
        "should say what it exports: {}",
        result.stderr
    );
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_unprovided_import_naming_it() {
    let host = node_with_hello();
    let result = deploy_file(&host, "telemetry", &guest("unknown-import"));
    assert_refused(&result, "edge:fixture/telemetry");
    assert!(
        result.stderr.contains("does not provide"),
        "{}",
        result.stderr
    );
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_app_names_with_slash_or_dotdot() {
    let host = node_with_hello();
    let hello = guest("hello");
    for bad in ["a/b", "..", "../etc", "UPPER"] {
        assert_refused(&deploy_file(&host, bad, &hello), "invalid app name");
    }
    // Straight to the API too, where the CLI's own check cannot help.
    let url = format!("{}/v1/apps/a%2Fb", host.admin_url);
    let reply = send(
        client()
            .put(&url)
            .bearer_auth(host.token())
            .body(std::fs::read(&hello).expect("hello.wasm")),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("invalid app name"), "{}", reply.body);
    assert!(!host.data_dir.join("a").exists());
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_without_or_with_wrong_token_is_401() {
    let host = node_with_hello();
    let body = std::fs::read(guest("hello")).expect("hello.wasm");
    let url = format!("{}/v1/apps/intruder", host.admin_url);

    let anonymous = send(client().put(&url).body(body.clone())).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.body.contains("admin token"), "{}", anonymous.body);

    let wrong = send(client().put(&url).bearer_auth("not-the-token").body(body)).await;
    assert_eq!(wrong.status, 401);

    let cli = host.edge(&[
        "deploy",
        "intruder",
        guest("hello").to_str().expect("path"),
        "--token",
        "wrong",
    ]);
    assert_refused(&cli, "401");

    assert_eq!(
        get(&format!("{}/intruder", host.data_url)).await.status,
        404
    );
    assert_eq!(
        get(&format!("{}/healthz", host.admin_url)).await.status,
        200
    );
    assert_eq!(
        get(&format!("{}/metrics", host.admin_url)).await.status,
        401
    );
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_with_a_plain_reason() {
    let host = node_with_hello();
    let reply = get(&format!("{}/nothing-here", host.data_url)).await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.body.contains("no app is deployed for this path"),
        "{}",
        reply.body
    );
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_on_a_route_owned_by_another_app_is_refused() {
    let host = node_with_hello();
    let result = host.edge(&[
        "deploy",
        "other",
        guest("hello").to_str().expect("path"),
        "--route",
        "/hello",
    ]);
    assert_refused(&result, "already served by app hello");
    assert_hello_still_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_a_running_node_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(crate::harness::EDGE)
        .args([
            "list",
            "--node",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("running edge");
    let result = CliResult::from(output);
    assert!(!result.ok);
    assert!(
        result.stderr.contains("is `edge serve` running"),
        "{}",
        result.stderr
    );
}
