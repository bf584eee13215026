//! Fleets on loopback with real servers: Debian's docker-registry for components, nats-server
//! with JetStream for desired state, and three `edge` nodes with their own data folders.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::brokers::{Broker, Registry};
use crate::harness::{CliResult, EDGE, PATIENCE, TestHost, get, guest, variant_of};

/// Runs an `edge` command that talks to a registry or NATS, not to a node.
fn edge(args: &[&str]) -> CliResult {
    let output = Command::new(EDGE)
        .args(args)
        .env_remove("EDGE_FLEET_NATS")
        .env_remove("EDGE_REGISTRY_USERNAME")
        .env_remove("EDGE_REGISTRY_PASSWORD")
        .output()
        .expect("running edge");
    CliResult::from(output)
}

/// Pushes `wasm` to `reference`; returns the reference pinned to its digest.
fn push(wasm: &Path, reference: &str) -> String {
    let result = edge(&["push", wasm.to_str().expect("utf-8 path"), reference]);
    assert!(result.ok, "push failed: {}", result.stderr);
    let pinned = result
        .stdout
        .lines()
        .last()
        .expect("pinned reference")
        .trim();
    assert!(pinned.contains("@sha256:"), "{}", result.stdout);
    pinned.to_string()
}

/// Pushes hello as `edge/hello:v1` and a variant (another digest) as `:v2`; returns both tags.
fn push_two_versions(registry: &Registry, dir: &Path) -> (String, String) {
    let hello = guest("hello");
    let v1 = format!("oci://{}/edge/hello:v1", registry.host());
    let v2 = format!("oci://{}/edge/hello:v2", registry.host());
    push(&hello, &v1);
    push(&variant_of(&hello, "v2", dir), &v2);
    (v1, v2)
}

/// Waits (async) until `check` holds, up to [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fleet node: its config and data folder outlive restarts.
struct FleetNode {
    id: String,
    dir: tempfile::TempDir,
    host: Option<TestHost>,
}

impl FleetNode {
    fn start(id: &str, nats_url: &str) -> Self {
        Self::start_with(id, nats_url, "")
    }

    /// [`Self::start`] with more `[fleet]` settings.
    fn start_with(id: &str, nats_url: &str, more: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("node.toml"),
            format!(
                "[fleet]\nurl = \"{nats_url}\"\nnode_id = \"{id}\"\ngroups = [\"shop\"]\n\
                 heartbeat_s = 1\nretry_s = 1\n{more}"
            ),
        )
        .expect("writing node.toml");
        let mut node = Self {
            id: id.to_string(),
            dir,
            host: None,
        };
        node.start_again();
        node
    }

    fn start_again(&mut self) {
        let config = self.dir.path().join("node.toml");
        self.host = Some(TestHost::start_in(
            &self.dir.path().join("data"),
            &["--config", config.to_str().expect("utf-8 path")],
        ));
    }

    fn stop(&mut self) {
        if let Some(host) = self.host.take() {
            host.stop();
        }
    }

    fn host(&self) -> &TestHost {
        self.host.as_ref().expect("node running")
    }

    /// The body `GET /hello` answers with, if any.
    async fn hello(&self) -> Option<String> {
        let reply = get(&format!("{}/hello", self.host().data_url)).await;
        (reply.status == 200).then_some(reply.body)
    }
}

/// Waits until `host` answers `GET /hello` with 200, then checks the body is `expected`.
async fn serves_hello(host: &TestHost, expected: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = get(&format!("{}/hello", host.data_url)).await;
        if reply.status == 200 {
            assert_eq!(reply.body, expected);
            break;
        }
        assert!(Instant::now() < deadline, "never converged: {}", host.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that a node the fleet's NATS refused logs `hint`, deployed nothing, and still
/// answers its admin API.
async fn refused_with_hint(refused: &TestHost, hint: &str) {
    assert!(
        refused.wait_for_log(hint),
        "no hint at the credentials: {}",
        refused.log()
    );
    assert_eq!(
        get(&format!("{}/hello", refused.data_url)).await.status,
        404
    );
    assert!(refused.edge(&["list"]).ok);
}

/// A desired-state file deploying `source` (tag or digest) as `hello` to group `shop`.
fn fleet_file(dir: &Path, name: &str, source: &str, version: &str) -> PathBuf {
    fleet_file_with(dir, name, source, version, "")
}

/// [`fleet_file`] with more TOML after the hello entry.
fn fleet_file_with(dir: &Path, name: &str, source: &str, version: &str, more: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[groups.shop.apps.hello]\nsource = \"{source}\"\nroute = \"/hello\"\n\
             env = {{ HELLO_VERSION = \"{version}\" }}\n{more}"
        ),
    )
    .expect("writing the fleet file");
    path
}

fn apply(nats: &str, file: &Path) -> CliResult {
    edge(&[
        "fleet",
        "apply",
        file.to_str().expect("utf-8 path"),
        "--nats",
        nats,
    ])
}

fn status_json(nats: &str) -> serde_json::Value {
    let result = edge(&["fleet", "status", "--json", "--nats", nats]);
    assert!(result.ok, "fleet status failed: {}", result.stderr);
    serde_json::from_str(&result.stdout).expect("status JSON")
}

#[tokio::test]
async fn pushed_components_deploy_by_tag_and_by_digest_from_the_cache_without_the_registry() {
    let mut registry = Registry::start();
    let work = tempfile::tempdir().expect("temp dir");
    let hello = guest("hello");
    let tag = format!("oci://{}/edge/hello:v1", registry.host());
    let pinned = push(&hello, &tag);
    let data = work.path().join("node");
    let node = TestHost::start_in(&data, &[]);

    let deployed = node.edge(&["deploy", "hello", &tag, "--env", "HELLO_VERSION=7"]);
    assert!(deployed.ok, "{}", deployed.stderr);
    assert_eq!(
        get(&format!("{}/hello", node.data_url)).await.body,
        "hello from edge 7: /hello\n"
    );
    let list = node.edge(&["list", "--json"]);
    let apps: serde_json::Value = serde_json::from_str(&list.stdout).expect("list JSON");
    assert_eq!(
        apps[0]["source"],
        pinned.as_str(),
        "the record pins the digest"
    );

    // A second variant by digest, then the registry goes away: both still deploy from the
    // node's cache when named by digest, and a tag says why it cannot.
    let variant = variant_of(&hello, "b", work.path());
    let pinned_b = push(&variant, &format!("oci://{}/edge/hello:b", registry.host()));
    registry.stop();
    let by_digest = node.edge(&["deploy", "hello", &pinned, "--env", "HELLO_VERSION=8"]);
    assert!(by_digest.ok, "cached digest deploy: {}", by_digest.stderr);
    assert_eq!(
        get(&format!("{}/hello", node.data_url)).await.body,
        "hello from edge 8: /hello\n"
    );
    let uncached = node.edge(&["deploy", "other", &pinned_b]);
    assert!(!uncached.ok, "never pulled, registry down");
    assert!(
        uncached.stderr.contains("cannot reach the registry"),
        "{}",
        uncached.stderr
    );
    let by_tag = node.edge(&["deploy", "other", &tag]);
    assert!(!by_tag.ok);
    assert!(by_tag.stderr.contains("by digest"), "{}", by_tag.stderr);

    // Restarted with no registry, the node serves what it pulled.
    node.stop();
    let again = TestHost::start_in(&data, &[]);
    assert_eq!(
        get(&format!("{}/hello", again.data_url)).await.body,
        "hello from edge 8: /hello\n"
    );

    // Pulls take no disk of their own: the cache reads the app's copy of the component, so
    // once the app is removed (and its component collected) the digest needs the registry.
    assert!(
        !data.join("oci/blobs").exists(),
        "no second copy of pulled bytes"
    );
    let removed = again.edge(&["remove", "hello"]);
    assert!(removed.ok, "{}", removed.stderr);
    let collected = again.edge(&["deploy", "hello", &pinned]);
    assert!(
        !collected.ok,
        "deployed a collected component without the registry"
    );
    assert!(
        collected.stderr.contains("cannot reach the registry"),
        "{}",
        collected.stderr
    );
}

#[tokio::test]
async fn bad_registry_references_and_artifacts_are_refused_and_leave_the_app_serving() {
    let registry = Registry::start();
    let hello = guest("hello");
    let base = format!("oci://{}/edge", registry.host());
    let pinned = push(&hello, &format!("{base}/hello:v1"));
    let node = TestHost::start();
    node.deploy("hello", Path::new(&pinned), &[]);

    let digest_of_nothing = format!("{base}/hello@sha256:{}", "0".repeat(64));
    let cases = [
        (format!("{base}/hello:nope"), "does not exist"),
        (format!("{base}/missing:v1"), "does not exist"),
        (digest_of_nothing, "does not exist"),
        (
            "oci://hello:v1".to_string(),
            "oci://REGISTRY/REPOSITORY:TAG",
        ),
        (format!("{base}/hello@sha256:1234"), "64 hex digits"),
    ];
    for (reference, says) in &cases {
        let result = node.edge(&["deploy", "hello", reference]);
        assert!(!result.ok, "{reference} deployed");
        assert!(
            result.stderr.contains(says),
            "{reference}: expected {says:?} in {}",
            result.stderr
        );
    }

    // A non-wasm artifact: a container-image layer under the OCI image config.
    let not_wasm = format!("{}/edge/image:v1", registry.host());
    push_container_layer(&not_wasm).await;
    let result = node.edge(&["deploy", "hello", &format!("oci://{not_wasm}")]);
    assert!(!result.ok);
    assert!(
        result.stderr.contains("not a wasm component"),
        "{}",
        result.stderr
    );

    // A registry that answers garbage, and one that sends other bytes than its digests say.
    let liar = FakeRegistry::start();
    for (repo, says) in [
        ("garbage", "not an OCI response"),
        ("tampered", "digest mismatch"),
    ] {
        let result = node.edge(&["deploy", "hello", &format!("oci://{}/{repo}:v1", liar.host)]);
        assert!(!result.ok, "{repo} deployed");
        assert!(result.stderr.contains(says), "{repo}: {}", result.stderr);
    }

    let list = node.edge(&["list", "--json"]);
    let apps: serde_json::Value = serde_json::from_str(&list.stdout).expect("list JSON");
    assert_eq!(
        apps.as_array().map(Vec::len),
        Some(1),
        "nothing else deployed"
    );
    assert_eq!(apps[0]["source"], pinned.as_str(), "hello untouched");
    assert_eq!(get(&format!("{}/hello", node.data_url)).await.status, 200);
}

/// Pushes a one-layer container image (tar media type) through the registry client.
async fn push_container_layer(reference: &str) {
    use oci_client::client::{Config, ImageLayer};
    let layer = ImageLayer::new(
        b"not a component".to_vec(),
        "application/vnd.oci.image.layer.v1.tar".into(),
        None,
    );
    let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    push_raw(reference, layer, config).await;
}

/// Pushes one layer and its config to `reference` (`HOST/REPO:TAG` on a loopback registry)
/// with a plain OCI client, bypassing `edge push` and its checks.
async fn push_raw(
    reference: &str,
    layer: oci_client::client::ImageLayer,
    config: oci_client::client::Config,
) {
    use oci_client::client::{ClientConfig, ClientProtocol};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    client
        .push(
            &reference.parse().expect("reference"),
            &[layer],
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap_or_else(|err| panic!("pushing {reference}: {err}"));
}

/// A registry on loopback that lies: `garbage` answers HTML to everything, `tampered` has a
/// valid wasm manifest whose layer bytes do not match the layer digest.
/// It runs on a runtime of its own: the test's thread blocks while the CLI runs.
struct FakeRegistry {
    host: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        // Dropped inside the test's runtime, where blocking on a shutdown is not allowed.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl FakeRegistry {
    fn start() -> Self {
        use axum::http::header::CONTENT_TYPE;
        use axum::response::IntoResponse;
        use sha2::Digest as _;
        let sha = |bytes: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let config = br#"{"architecture":"wasm","os":"wasip2","layerDigests":[],"created":"2026-01-01T00:00:00Z"}"#.to_vec();
        let promised = b"\0asm the promised bytes".to_vec();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": sha(&config), "size": config.len()},
            "layers": [{"mediaType": "application/wasm", "digest": sha(&promised), "size": promised.len()}],
        })
        .to_string();
        let manifest_digest = sha(manifest.as_bytes());
        let config_digest = sha(&config);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (manifest, manifest_digest, config, config_digest) = (
                manifest.clone(),
                manifest_digest.clone(),
                config.clone(),
                config_digest.clone(),
            );
            async move {
                let path = uri.path();
                if path == "/v2/" {
                    return "{}".into_response();
                }
                if !path.starts_with("/v2/tampered/") {
                    return ([(CONTENT_TYPE, "text/html")], "<html>welcome</html>").into_response();
                }
                if path.contains("/manifests/") {
                    return (
                        [
                            (
                                CONTENT_TYPE,
                                "application/vnd.oci.image.manifest.v1+json".to_string(),
                            ),
                            (
                                axum::http::HeaderName::from_static("docker-content-digest"),
                                manifest_digest,
                            ),
                        ],
                        manifest,
                    )
                        .into_response();
                }
                if path.ends_with(&config_digest) {
                    return config.into_response();
                }
                // The layer: same length as promised, other bytes.
                b"\0asm the other bytes!!!!".to_vec().into_response()
            }
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake registry");
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fake registry");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let host = listener.local_addr().expect("address").to_string();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        Self {
            host,
            runtime: Some(runtime),
        }
    }
}

#[tokio::test]
async fn a_group_deploy_reaches_three_nodes_a_stopped_one_catches_up_and_a_rollback_reaches_all() {
    let registry = Registry::start();
    let nats = Broker::nats();
    let work = tempfile::tempdir().expect("temp dir");
    let (v1, v2) = push_two_versions(&registry, work.path());
    let mut nodes: Vec<FleetNode> = ["gw-1", "gw-2", "gw-3"]
        .into_iter()
        .map(|id| FleetNode::start(id, &nats.url()))
        .collect();

    let applied = apply(&nats.url(), &fleet_file(work.path(), "one", &v1, "1"));
    assert!(applied.ok, "apply: {}", applied.stderr);
    for node in &nodes {
        until(&format!("{} serves v1", node.id), || async {
            node.hello().await.as_deref() == Some("hello from edge 1: /hello\n")
        })
        .await;
    }
    until("three nodes report converged", || async {
        let statuses = status_json(&nats.url());
        statuses.as_array().is_some_and(|all| {
            all.len() == 3 && all.iter().all(|s| s["apps"]["hello"]["state"] == "running")
        })
    })
    .await;

    // gw-3 is off while the group moves to v2; it catches up when it starts.
    nodes[2].stop();
    let applied = apply(&nats.url(), &fleet_file(work.path(), "two", &v2, "2"));
    assert!(applied.ok, "apply: {}", applied.stderr);
    for node in &nodes[..2] {
        until(&format!("{} serves v2", node.id), || async {
            node.hello().await.as_deref() == Some("hello from edge 2: /hello\n")
        })
        .await;
    }
    nodes[2].start_again();
    until("gw-3 catches up after restart", || async {
        nodes[2].hello().await.as_deref() == Some("hello from edge 2: /hello\n")
    })
    .await;

    let rolled = edge(&[
        "fleet",
        "rollback",
        "--group",
        "shop",
        "--nats",
        &nats.url(),
    ]);
    assert!(rolled.ok, "rollback: {}", rolled.stderr);
    for node in &nodes {
        until(&format!("{} back on v1", node.id), || async {
            node.hello().await.as_deref() == Some("hello from edge 1: /hello\n")
        })
        .await;
    }
    let table = edge(&["fleet", "status", "--nats", &nats.url()]);
    assert!(table.ok, "{}", table.stderr);
    for id in ["gw-1", "gw-2", "gw-3"] {
        assert!(table.stdout.contains(id), "{}", table.stdout);
    }
}

#[tokio::test]
async fn a_node_cut_from_nats_keeps_serving_and_converges_and_failures_are_reported_not_hot_looped()
{
    let registry = Registry::start();
    let mut nats = Broker::nats();
    let work = tempfile::tempdir().expect("temp dir");
    let (v1, v2) = push_two_versions(&registry, work.path());
    let node = FleetNode::start("gw-1", &nats.url());
    assert!(apply(&nats.url(), &fleet_file(work.path(), "one", &v1, "1")).ok);
    until("gw-1 serves v1", || async {
        node.hello().await.as_deref() == Some("hello from edge 1: /hello\n")
    })
    .await;

    // An unknown reference writes nothing: the node stays on v1.
    let unknown = format!("oci://{}/edge/hello:nope", registry.host());
    let refused = apply(&nats.url(), &fleet_file(work.path(), "bad", &unknown, "9"));
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("does not exist") && refused.stderr.contains("nothing was applied"),
        "{}",
        refused.stderr
    );

    // NATS goes down: the node keeps serving, and an apply says it cannot reach NATS.
    nats.stop();
    let during = apply(&nats.url(), &fleet_file(work.path(), "two", &v2, "2"));
    assert!(!during.ok);
    assert!(
        during.stderr.contains("cannot reach NATS")
            && during.stderr.contains("nothing was changed"),
        "{}",
        during.stderr
    );
    for _ in 0..10 {
        assert_eq!(
            node.hello().await.as_deref(),
            Some("hello from edge 1: /hello\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    nats.start_again();
    assert!(apply(&nats.url(), &fleet_file(work.path(), "two", &v2, "2")).ok);
    until("gw-1 converges to v2 after the outage", || async {
        node.hello().await.as_deref() == Some("hello from edge 2: /hello\n")
    })
    .await;

    // A desired app the node cannot run (a component with no HTTP handler) is reported as
    // failed, retried with backoff, and the other app keeps running.
    let not_http = format!("oci://{}/edge/alert:v1", registry.host());
    push(&guest("sensor-alert"), &not_http);
    let file = fleet_file_with(
        work.path(),
        "mixed",
        &v2,
        "2",
        &format!("[groups.shop.apps.alert]\nsource = \"{not_http}\"\n"),
    );
    assert!(apply(&nats.url(), &file).ok);
    until("the failure is reported", || async {
        let statuses = status_json(&nats.url());
        statuses[0]["apps"]["alert"]["state"] == "failed"
            && statuses[0]["apps"]["hello"]["state"] == "running"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let statuses = status_json(&nats.url());
    let alert = &statuses[0]["apps"]["alert"];
    let attempts = alert["attempts"].as_u64().expect("attempts");
    assert!(
        (1..=4).contains(&attempts),
        "retried with backoff, not in a loop: {attempts} attempts in ~5 s"
    );
    assert!(
        alert["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{alert}"
    );
    assert_eq!(
        node.hello().await.as_deref(),
        Some("hello from edge 2: /hello\n")
    );
}

#[tokio::test]
async fn a_node_reaches_a_tls_nats_with_a_password_and_a_wrong_password_is_refused_unshown() {
    const PASSWORD: &str = "fleet-secret-4242";
    const WRONG: &str = "not-the-secret-1717";
    let temp = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = crate::harness::make_certificates(temp.path());
    let nats = Broker::nats_secured(&cert, &key, "gw", PASSWORD);
    let registry = Registry::start();
    let pinned = push(
        &guest("hello"),
        &format!("oci://{}/edge/hello:v1", registry.host()),
    );
    let fleet_toml = |node: &str, password: &str| {
        format!(
            "[fleet]\nurl = \"{}\"\nnode_id = \"{node}\"\ngroups = [\"shop\"]\nheartbeat_s = 1\n\
             retry_s = 1\nusername = \"gw\"\npassword = \"{password}\"\nca_file = \"{}\"\n",
            nats.url(),
            ca.display()
        )
    };
    let good = TestHost::start_with_config(&fleet_toml("gw-1", PASSWORD));
    let refused = TestHost::start_with_config(&fleet_toml("gw-2", WRONG));

    // The CLI reaches the same server with the same settings; the password from the
    // environment. Without the CA it refuses the server's certificate.
    let file = fleet_file(temp.path(), "desired", &pinned, "5");
    let apply = |ca_file: Option<&Path>| {
        let mut command = Command::new(EDGE);
        command
            .args(["fleet", "apply"])
            .arg(&file)
            .args(["--nats", &nats.url(), "--nats-user", "gw"])
            .env("EDGE_FLEET_NATS_PASSWORD", PASSWORD)
            .env_remove("EDGE_FLEET_NATS");
        if let Some(ca_file) = ca_file {
            command.arg("--nats-ca-file").arg(ca_file);
        }
        CliResult::from(command.output().expect("running edge"))
    };
    let untrusted = apply(None);
    assert!(!untrusted.ok, "applied over TLS without trusting the CA");
    assert!(!untrusted.stderr.contains(PASSWORD), "{}", untrusted.stderr);
    let applied = apply(Some(&ca));
    assert!(applied.ok, "{}", applied.stderr);

    // The node with the password converges over TLS.
    serves_hello(&good, "hello from edge 5: /hello\n").await;

    // The one with a wrong password is refused, says so, keeps serving its admin API, and
    // never shows either password.
    refused_with_hint(&refused, "check [fleet] username and password").await;
    for log in [good.log(), refused.log()] {
        assert!(!log.contains(PASSWORD) && !log.contains(WRONG), "{log}");
    }
}

#[tokio::test]
async fn a_node_reaches_nats_with_a_creds_file_and_a_stranger_account_is_refused_unshown() {
    let temp = tempfile::tempdir().expect("temp dir");
    let accounts = crate::brokers::NatsAccounts::create(temp.path());
    let nats = Broker::nats_with_accounts(&accounts);
    let registry = Registry::start();
    let pinned = push(
        &guest("hello"),
        &format!("oci://{}/edge/hello:v1", registry.host()),
    );
    let fleet_toml = |node: &str, creds: &Path| {
        format!(
            "[fleet]\nurl = \"{}\"\nnode_id = \"{node}\"\ngroups = [\"shop\"]\nheartbeat_s = 1\n\
             retry_s = 1\ncredentials_file = \"{}\"\n",
            nats.url(),
            creds.display()
        )
    };
    let good = TestHost::start_with_config(&fleet_toml("gw-1", &accounts.creds));
    let refused = TestHost::start_with_config(&fleet_toml("gw-2", &accounts.stranger_creds));

    // The CLI applies with the same kind of file; a stranger's file is refused.
    let file = fleet_file(temp.path(), "desired", &pinned, "6");
    let apply = |creds: &Path| {
        let mut command = Command::new(EDGE);
        command
            .args(["fleet", "apply"])
            .arg(&file)
            .args(["--nats", &nats.url(), "--nats-creds"])
            .arg(creds)
            .env_remove("EDGE_FLEET_NATS");
        CliResult::from(command.output().expect("running edge"))
    };
    let stranger = apply(&accounts.stranger_creds);
    assert!(!stranger.ok, "applied as a user of an untrusted account");
    let applied = apply(&accounts.creds);
    assert!(applied.ok, "{}", applied.stderr);

    // The node with the trusted account's creds converges.
    serves_hello(&good, "hello from edge 6: /hello\n").await;

    // The stranger is refused, told what to check, keeps its admin API; no seed is shown.
    refused_with_hint(
        &refused,
        "check [fleet] username and password, token or credentials_file",
    )
    .await;
    for text in [good.log(), refused.log(), stranger.stderr, applied.stderr] {
        for seed in &accounts.seeds {
            assert!(!text.contains(seed.as_str()), "{text}");
        }
    }
}

/// Pushes `bytes` as a precompiled artifact of `component` for platform `key`, the way
/// `edge push --precompile` tags and describes one.
async fn push_precompiled_artifact(repository: &str, component: &str, key: &str, bytes: Vec<u8>) {
    use oci_client::client::{Config, ImageLayer};
    let reference = format!(
        "{repository}:aot-{key}-{}",
        component.trim_start_matches("sha256:")
    );
    let layer = ImageLayer::new(bytes, "application/vnd.edge.precompiled.v1".into(), None);
    let config = serde_json::json!({
        "component": component, "key": key, "target": "x86_64-unknown-linux-gnu", "edge": "0.1.0",
    });
    let config = Config::new(
        config.to_string().into_bytes(),
        "application/vnd.edge.precompiled.config.v1+json".into(),
        None,
    );
    push_raw(&reference, layer, config).await;
}

/// What `edge fleet status --json` says of `node`'s hello about its precompiled artifact.
fn precompiled_state(nats: &str, node: &str) -> Option<String> {
    let statuses = status_json(nats);
    statuses.as_array()?.iter().find(|s| s["node"] == node)?["apps"]["hello"]["precompiled"]
        .as_str()
        .map(str::to_string)
}

/// Pushes `wasm` to `edge/hello:TAG` and `artifact` as its precompiled artifact for platform
/// `key`; returns the component's reference.
async fn push_with_artifact(
    registry: &Registry,
    wasm: &Path,
    tag: &str,
    key: &str,
    artifact: Vec<u8>,
) -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(wasm).expect("reading the component");
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    let reference = format!("oci://{}/edge/hello:{tag}", registry.host());
    push(wasm, &reference);
    push_precompiled_artifact(
        &format!("{}/edge/hello", registry.host()),
        &digest,
        key,
        artifact,
    )
    .await;
    reference
}

/// gw-1's `[limits] max_component_bytes`: it downloads artifacts of at most 8 times this.
const GW1_MAX_COMPONENT_BYTES: u64 = 1 << 20;

#[tokio::test]
async fn precompiled_artifacts_serve_where_accepted_and_a_bad_one_falls_back_to_compiling() {
    let registry = Registry::start();
    let nats = Broker::nats();
    let work = tempfile::tempdir().expect("temp dir");
    let hello = guest("hello");
    let v1 = format!("oci://{}/edge/hello:v1", registry.host());
    let pushed = edge(&[
        "push",
        hello.to_str().expect("utf-8 path"),
        &v1,
        "--precompile",
    ]);
    assert!(pushed.ok, "push --precompile: {}", pushed.stderr);
    let key = pushed
        .stdout
        .split("(platform ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("the platform key is printed: {}", pushed.stdout))
        .to_string();
    let accepting = FleetNode::start_with(
        "gw-1",
        &nats.url(),
        &format!(
            "accept_precompiled = true\n[limits]\nmax_component_bytes = {GW1_MAX_COMPONENT_BYTES}\n"
        ),
    );
    let default = FleetNode::start("gw-2", &nats.url());

    let applied = apply(&nats.url(), &fleet_file(work.path(), "one", &v1, "1"));
    assert!(applied.ok, "apply: {}", applied.stderr);
    assert!(
        applied.stdout.contains(&format!(
            "shop/hello: precompiled artifact for platform {key}"
        )),
        "{}",
        applied.stdout
    );
    serves_hello(accepting.host(), "hello from edge 1: /hello\n").await;
    serves_hello(default.host(), "hello from edge 1: /hello\n").await;
    until("gw-1 reports the artifact used", || async {
        precompiled_state(&nats.url(), "gw-1").as_deref() == Some("used")
    })
    .await;
    until("gw-2 reports it compiled, and why", || async {
        precompiled_state(&nats.url(), "gw-2")
            .is_some_and(|s| s.contains("[fleet] accept_precompiled is off"))
    })
    .await;

    // v2's artifact under the right tag is not a wasmtime artifact: the node says so,
    // compiles v2 itself and serves it.
    let v2_wasm = variant_of(&hello, "v2", work.path());
    let v2 = push_with_artifact(
        &registry,
        &v2_wasm,
        "v2",
        &key,
        b"\x7fELF not really an artifact".to_vec(),
    )
    .await;
    let applied = apply(&nats.url(), &fleet_file(work.path(), "two", &v2, "2"));
    assert!(applied.ok, "apply: {}", applied.stderr);
    until("gw-1 serves v2", || async {
        accepting.hello().await.as_deref() == Some("hello from edge 2: /hello\n")
    })
    .await;
    until("gw-1 reports the artifact unusable", || async {
        precompiled_state(&nats.url(), "gw-1")
            .is_some_and(|s| s.starts_with("not used: this node cannot load it"))
    })
    .await;

    // A component the node snapshots at deploy (it exports wizer-initialize) serves the
    // snapshot's code: its artifact is not even pulled, and the node says why. The artifact
    // is over gw-1's download limit, so a pull would have been reported as that instead.
    let oversized = vec![0u8; (GW1_MAX_COMPONENT_BYTES * 8 + 1) as usize];
    let v3 = push_with_artifact(&registry, &guest("heavy-init"), "v3", &key, oversized).await;
    let applied = apply(&nats.url(), &fleet_file(work.path(), "three", &v3, "3"));
    assert!(applied.ok, "apply: {}", applied.stderr);
    until(
        "gw-1 reports the snapshot's code serving instead",
        || async {
            precompiled_state(&nats.url(), "gw-1")
                .is_some_and(|s| s.starts_with("not used: the node snapshots this component"))
        },
    )
    .await;
    let log = accepting.host().log();
    assert!(!log.contains("panicked"), "{log}");
}
