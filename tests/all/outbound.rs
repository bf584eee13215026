//! wasi:config and granted outgoing HTTP: the `forward` guest reads its upstream from its
//! config and POSTs to it; only granted origins are reachable, redirects included; values never
//! show in listings, the log or the metrics; an upstream that never answers is a timeout.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::harness::{TestHost, client, get as http_get, guest, send};

const SECRET: &str = "s3cr3t-value-never-shown";

/// An upstream on loopback recording the bodies POSTed to `/ingest`; `/redirect` sends the
/// caller to `redirect_to`.
async fn upstream(redirect_to: Option<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = Router::new()
        .route(
            "/ingest",
            post(move |body: String| async move {
                sink.lock().expect("lock").push(body);
                StatusCode::CREATED
            }),
        )
        .route(
            "/redirect",
            post(move || async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, redirect_to.unwrap_or_default())],
                )
                    .into_response()
            }),
        )
        .route("/", get(|| async { "upstream" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, received)
}

fn deploy_forward(host: &TestHost, name: &str, extra: &[&str]) {
    host.deploy(name, &guest("forward"), extra);
}

async fn post_reading(host: &TestHost, name: &str, body: &str) -> crate::harness::Reply {
    send(
        client()
            .post(format!("{}/{name}", host.data_url))
            .body(body.to_string()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_reads_its_config_and_reaches_a_granted_origin_without_showing_values() {
    let (origin, received) = upstream(None).await;
    let host = TestHost::start();
    let upstream_url = format!("{origin}/ingest");
    deploy_forward(
        &host,
        "fwd",
        &[
            "--config",
            &format!("upstream={upstream_url}"),
            "--config",
            &format!("api_key={SECRET}"),
            "--allow-outbound",
            &origin,
        ],
    );
    let reply = http_get(&format!("{}/fwd", host.data_url)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains(&upstream_url), "{}", reply.body);

    let reply = post_reading(&host, "fwd", "{\"sensor\":\"s1\",\"celsius\":21.5}").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (201, "upstream answered 201\n")
    );
    assert_eq!(
        received.lock().expect("lock").as_slice(),
        ["{\"sensor\":\"s1\",\"celsius\":21.5}"]
    );

    // Keys are shown, values never: not in the listing, the log or the metrics.
    let listed = host.edge(&["list", "--json"]);
    assert!(listed.ok, "{}", listed.stderr);
    assert!(listed.stdout.contains("api_key"), "{}", listed.stdout);
    assert!(listed.stdout.contains(&origin), "{}", listed.stdout);
    let table = host.edge(&["list"]);
    assert!(table.stdout.contains(&origin), "{}", table.stdout);
    let metrics = host.metrics().await;
    assert!(
        metrics.contains("edge_outbound_requests_total{app=\"fwd\",result=\"sent\"} 1"),
        "{metrics}"
    );
    for (what, text) in [
        ("list --json", listed.stdout.as_str()),
        ("list", table.stdout.as_str()),
        ("metrics", metrics.as_str()),
        ("log", host.log().as_str()),
    ] {
        assert!(
            !text.contains(SECRET),
            "{what} shows a config value:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_key_reads_as_none() {
    let host = TestHost::start();
    deploy_forward(&host, "fwd", &[]);
    let reply = http_get(&format!("{}/fwd", host.data_url)).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.body.contains("`upstream` is none"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_ungranted_origins_directly_or_by_redirect_are_denied() {
    let (other, other_received) = upstream(None).await;
    let (granted, granted_received) = upstream(Some(format!("{other}/ingest"))).await;
    let host = TestHost::start();
    // Its config points at an origin it was not granted.
    deploy_forward(
        &host,
        "direct",
        &[
            "--config",
            &format!("upstream={other}/ingest"),
            "--allow-outbound",
            &granted,
        ],
    );
    // Granted, but the upstream redirects elsewhere.
    deploy_forward(
        &host,
        "redirected",
        &[
            "--config",
            &format!("upstream={granted}/redirect"),
            "--allow-outbound",
            &granted,
        ],
    );
    // Another app's grant is not its own.
    deploy_forward(
        &host,
        "ungranted",
        &["--config", &format!("upstream={granted}/ingest")],
    );
    for app in ["direct", "redirected", "ungranted"] {
        let reply = post_reading(&host, app, "reading").await;
        assert_eq!(reply.status, 502, "{app}: {}", reply.body);
        assert!(
            reply.body.contains("HttpRequestDenied"),
            "{app}: {}",
            reply.body
        );
    }
    assert!(other_received.lock().expect("lock").is_empty());
    assert!(granted_received.lock().expect("lock").is_empty());
    assert!(host.wait_for_log("origin not granted"), "{}", host.log());
    // A malformed grant is refused at deploy, saying what an origin looks like.
    let refused = host.edge(&[
        "deploy",
        "bad",
        guest("forward").to_str().expect("utf-8"),
        "--allow-outbound",
        "api.example.com/path",
    ]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("https://api.example.com"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_is_a_timeout_and_the_node_keeps_serving() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = format!("http://{}", silent.local_addr().expect("addr"));
    let host = TestHost::start_with_config("[outbound_http]\ntimeout_ms = 500\n");
    deploy_forward(
        &host,
        "fwd",
        &[
            "--config",
            &format!("upstream={origin}/ingest"),
            "--allow-outbound",
            &origin,
        ],
    );
    host.deploy("hello", &guest("hello"), &[]);
    let reply = post_reading(&host, "fwd", "reading").await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(reply.body.contains("Timeout"), "{}", reply.body);
    assert_eq!(
        http_get(&format!("{}/hello", host.data_url)).await.status,
        200
    );
    drop(silent);
}
