//! Running the node as a platform: named tokens with roles, the audit trail, usage metering,
//! guest logs, per-app limits, JSON logs and admin TLS.

use std::time::Duration;

use crate::harness::{
    EDGE, PATIENCE, TestHost, client, get, guest, make_certificates, metric, repo_root, send,
};

/// Creates a token with `role` through the CLI and returns its secret.
fn create_token(host: &TestHost, name: &str, role: &str) -> String {
    let created = host.edge(&["token", "create", name, "--role", role]);
    assert!(created.ok, "{}", created.stderr);
    let secret = created.stdout.trim().to_string();
    assert_eq!(secret.len(), 64, "{}", created.stdout);
    secret
}

/// One admin route, how to call it on app `app`, and the role it needs.
struct Route {
    method: reqwest::Method,
    path: String,
    /// The route as registered in the admin router (to check the table covers them all).
    pattern: &'static str,
    needs: &'static str,
    body: Option<Vec<u8>>,
}

fn route(method: &str, pattern: &'static str, app: &str, needs: &'static str) -> Route {
    let path = pattern
        .replace("{name}", app)
        .replace("{bucket}", "default")
        .replace("{key}", "k");
    Route {
        method: method.parse().expect("method"),
        path,
        pattern,
        needs,
        body: None,
    }
}

/// Every admin route with the role it needs; the order keeps the removals last.
fn route_table(app: &str, token_to_revoke: &str, hello: &[u8]) -> Vec<Route> {
    let mut deploy = route("PUT", "/v1/apps/{name}", app, "deploy");
    deploy.body = Some(hello.to_vec());
    let mut kv_set = route("PUT", "/v1/apps/{name}/kv/{bucket}/{key}", app, "admin");
    kv_set.body = Some(b"v".to_vec());
    let mut token_create = route("POST", "/v1/tokens", app, "admin");
    token_create.body = Some(format!(r#"{{"name":"made-by-{app}","role":"read"}}"#).into_bytes());
    let mut revoke = route("DELETE", "/v1/tokens/{name}", token_to_revoke, "admin");
    revoke.pattern = "/v1/tokens/{name}";
    vec![
        route("GET", "/v1/apps", app, "read"),
        route("GET", "/v1/apps/{name}", app, "read"),
        route("GET", "/v1/models", app, "read"),
        route("GET", "/metrics", app, "read"),
        route("GET", "/v1/usage", app, "read"),
        route("GET", "/v1/apps/{name}/logs", app, "read"),
        deploy,
        route("POST", "/v1/apps/{name}/rollback", app, "deploy"),
        route("GET", "/v1/apps/{name}/kv/{bucket}", app, "admin"),
        kv_set,
        route("GET", "/v1/apps/{name}/kv/{bucket}/{key}", app, "admin"),
        route("DELETE", "/v1/apps/{name}/kv/{bucket}/{key}", app, "admin"),
        route("GET", "/v1/tokens", app, "admin"),
        token_create,
        revoke,
        route("GET", "/v1/audit", app, "admin"),
        route("GET", "/v1/audit/verify", app, "admin"),
        {
            let mut r = route("DELETE", "/v1/apps/{name}", app, "admin");
            r.path.push_str("?delete_data=true");
            r
        },
        route("DELETE", "/v1/apps/{name}", app, "deploy"),
    ]
}

fn rank(role: &str) -> u8 {
    match role {
        "read" => 0,
        "deploy" => 1,
        _ => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_allows_exactly_the_roles_it_should() {
    let host = TestHost::start();
    let hello = std::fs::read(guest("hello")).expect("hello");
    let http = client();

    // The table must cover every route the admin router registers.
    let source =
        std::fs::read_to_string(repo_root().join("host/src/control/admin.rs")).expect("admin.rs");
    let registered: std::collections::BTreeSet<&str> = source
        .match_indices(".route(\"")
        .map(|(at, _)| {
            let rest = &source[at + ".route(\"".len()..];
            &rest[..rest.find('"').expect("closing quote")]
        })
        .collect();
    let covered: std::collections::BTreeSet<&str> = route_table("x", "y", &hello)
        .iter()
        .map(|r| r.pattern)
        .collect();
    let missing: Vec<_> = registered
        .difference(&covered)
        .filter(|route| **route != "/healthz")
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the table: {missing:?}"
    );

    for role in ["read", "deploy", "admin"] {
        let secret = create_token(&host, &format!("t-{role}"), role);
        let victim = format!("victim-{role}");
        create_token(&host, &victim, "read");
        let app = format!("app-{role}");
        host.deploy(&app, &guest("hello"), &["--kv"]);
        for route in route_table(&app, &victim, &hello) {
            let mut request = http
                .request(
                    route.method.clone(),
                    format!("{}{}", host.admin_url, route.path),
                )
                .bearer_auth(&secret);
            if let Some(body) = &route.body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            let reply = send(request).await;
            let allowed = rank(role) >= rank(route.needs);
            let what = format!("{role} token on {} {}", route.method, route.path);
            if allowed {
                assert!(
                    reply.status != 401 && reply.status != 403,
                    "{what}: should be allowed, got {} {}",
                    reply.status,
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.status, 403,
                    "{what}: should be refused: {}",
                    reply.body
                );
                assert!(
                    reply.body.contains(&format!("needs role {}", route.needs)),
                    "{what}: {}",
                    reply.body
                );
            }
        }
    }
    // Refused changes are in the audit log, under the token's name.
    let audit = host.edge(&["audit", "--json", "--limit", "1000"]);
    assert!(audit.ok, "{}", audit.stderr);
    assert!(
        audit
            .stdout
            .lines()
            .any(|l| l.contains("\"token\":\"t-read\"") && l.contains("\"forbidden\"")),
        "{}",
        audit.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refused_at_once_and_secrets_are_never_listed() {
    let host = TestHost::start();
    let secret = create_token(&host, "ci", "deploy");
    let list = |token: &str| {
        client()
            .get(format!("{}/v1/apps", host.admin_url))
            .bearer_auth(token.to_string())
    };
    assert_eq!(send(list(&secret)).await.status, 200);
    let listed = host.edge(&["token", "list"]);
    assert!(
        listed.ok && listed.stdout.contains("ci"),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains(&secret), "secret listed");
    let revoked = host.edge(&["token", "revoke", "ci"]);
    assert!(revoked.ok, "{}", revoked.stderr);
    let reply = send(list(&secret)).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    // The node keeps only a digest: the secret is nowhere in its data folder or log.
    for entry in walk(&host.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "secret stored in {}",
            entry.display()
        );
    }
    assert!(!host.log().contains(&secret));
    let again = host.edge(&["token", "revoke", "ci"]);
    assert!(
        !again.ok && again.stderr.contains("no token named"),
        "{}",
        again.stderr
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chain_verifies_then_fails_after_a_line_is_edited() {
    let host = TestHost::start();
    let secret = create_token(&host, "ci", "deploy");
    host.deploy("counter", &guest("counter"), &["--kv"]);
    let by_ci = host.edge(&[
        "deploy",
        "hello",
        guest("hello").to_str().expect("utf-8"),
        "--token",
        &secret,
    ]);
    assert!(by_ci.ok, "{}", by_ci.stderr);
    assert!(
        host.edge(&["kv", "set", "counter", "default", "visits", "7"])
            .ok
    );
    assert!(host.edge(&["remove", "hello"]).ok);
    let refused = host.edge(&["rollback", "counter"]);
    assert!(!refused.ok);

    let audit = host.edge(&["audit", "--json"]);
    assert!(audit.ok, "{}", audit.stderr);
    let entries: Vec<serde_json::Value> = audit
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let summary: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["token"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
                e["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let has = |token: &str, action: &str, ok: bool| {
        summary
            .iter()
            .any(|(t, a, r)| t == token && a == action && (r == "ok") == ok)
    };
    assert!(has("admin", "token.create", true), "{summary:?}");
    assert!(has("admin", "deploy", true), "{summary:?}");
    assert!(has("ci", "deploy", true), "{summary:?}");
    assert!(has("admin", "kv.set", true), "{summary:?}");
    assert!(has("admin", "remove", true), "{summary:?}");
    assert!(has("admin", "rollback", false), "{summary:?}");
    let deploy = entries
        .iter()
        .find(|e| e["token"] == "ci")
        .expect("ci's deploy");
    assert_eq!(deploy["app"], "hello");
    assert_eq!(deploy["digest"].as_str().map(str::len), Some(64));
    assert!(!audit.stdout.contains(&secret), "a secret in the audit log");

    let verified = host.edge(&["audit", "verify"]);
    assert!(verified.ok, "{} {}", verified.stdout, verified.stderr);
    assert!(verified.stdout.contains("intact"), "{}", verified.stdout);

    let path = host.data_dir.join("audit/audit.log");
    let text = std::fs::read_to_string(&path).expect("audit log");
    std::fs::write(&path, text.replacen("\"kv.set\"", "\"kv.delete\"", 1)).expect("edit");
    let damaged = host.edge(&["audit", "verify"]);
    assert!(!damaged.ok, "an edited log verified: {}", damaged.stdout);
    assert!(
        damaged.stderr.contains("edited") && damaged.stderr.contains("line"),
        "{}",
        damaged.stderr
    );

    // Put it back, then cut the last line: truncation is found too.
    std::fs::write(&path, &text).expect("restore");
    assert!(host.edge(&["audit", "verify"]).ok);
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&path, format!("{}\n", kept[..kept.len() - 1].join("\n"))).expect("cut");
    let truncated = host.edge(&["audit", "verify"]);
    assert!(
        !truncated.ok && truncated.stderr.contains("truncated"),
        "{}",
        truncated.stderr
    );
}

/// `edge usage NAME --json` parsed: the app's one row.
fn usage_of(host: &TestHost, app: &str) -> serde_json::Value {
    let usage = host.edge(&["usage", app, "--json"]);
    assert!(usage.ok, "{}", usage.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&usage.stdout).expect("usage JSON");
    assert_eq!(rows.len(), 1, "{}", usage.stdout);
    rows[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_of_a_known_workload_is_metered_and_survives_restart() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("node");
    let host = TestHost::start_in(&data, &[]);
    host.deploy("work", &guest("misbehave"), &[]);
    host.deploy("hello", &guest("hello"), &[]);
    // N requests that each grow memory by K MiB and spin M ms; then 3 bodies of 1000 bytes.
    const N: u64 = 12;
    const M_MS: u64 = 60;
    const K_MIB: u64 = 16;
    for _ in 0..N {
        let reply = get(&format!(
            "{}/work/work?ms={M_MS}&mib={K_MIB}",
            host.data_url
        ))
        .await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    }
    for _ in 0..3 {
        let reply = send(
            client()
                .post(format!("{}/work/echo-length", host.data_url))
                .body(vec![7u8; 1000]),
        )
        .await;
        assert_eq!(reply.body, "1000");
    }

    let usage = usage_of(&host, "work");
    let number = |key: &str| {
        usage[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {usage}"))
    };
    // Exact: counts and bytes.
    assert_eq!(number("invocations"), (N + 3) as f64, "{usage}");
    assert_eq!(number("invocations_http"), (N + 3) as f64);
    assert_eq!(number("bytes_in"), 3000.0, "{usage}");
    assert_eq!(number("bytes_out"), (N * 2 + 3 * 4) as f64, "{usage}");
    assert_eq!(number("inferences"), 0.0);
    // Each request's fresh instance grew its memory at least once; hello's never grow (the
    // memory an instance starts with is not a growth).
    assert!(number("memory_growths") >= N as f64, "{usage}");
    for _ in 0..3 {
        assert_eq!(get(&format!("{}/hello/", host.data_url)).await.status, 200);
    }
    let hello = usage_of(&host, "hello");
    assert_eq!(hello["invocations"], 3, "{hello}");
    assert_eq!(hello["memory_growths"], 0, "{hello}");
    // Tolerances: wall time covers at least the spinning; CPU is at least a fifth of it (the
    // machine may be busy: the guest can spin on wall time while descheduled) and never more
    // than the wall time plus scheduling slack; memory is at least K MiB for M ms per request
    // and at most K MiB plus the guest's own heap (under 16 MiB) for the whole wall time.
    let spin = (N * M_MS) as f64 / 1e3;
    let wall = number("wall_seconds");
    let cpu = number("cpu_seconds");
    let gb_s = number("gb_seconds");
    assert!(
        wall >= spin && wall < spin + 30.0,
        "wall {wall} for {spin} s of spinning"
    );
    assert!(
        cpu >= spin / 5.0 && cpu <= wall * 1.1 + 0.5,
        "cpu {cpu}, wall {wall}"
    );
    let mib = 1024.0 * 1024.0 / 1e9;
    let least = N as f64 * K_MIB as f64 * mib * M_MS as f64 / 1e3;
    let most = (K_MIB + 16) as f64 * mib * wall;
    assert!(
        gb_s >= least && gb_s <= most,
        "GB-s {gb_s} not in [{least}, {most}]"
    );

    let metrics = host.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "edge_app_invocations_total{app=\"work\",trigger=\"http\"}"
        ),
        (N + 3) as f64
    );
    assert!(metric(&metrics, "edge_app_memory_gb_seconds_total{app=\"work\"}") >= least);
    assert_eq!(
        metric(&metrics, "edge_app_memory_growths_total{app=\"work\"}"),
        number("memory_growths")
    );

    let bill = host.edge(&[
        "usage",
        "--cost",
        "--prices",
        repo_root()
            .join("edge-config/prices.toml")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(
        bill.ok && bill.stdout.contains("total:"),
        "{} {}",
        bill.stdout,
        bill.stderr
    );

    // A clean stop writes the counters; the restarted node reports the same.
    host.stop();
    let host = TestHost::start_in(&data, &[]);
    let after = usage_of(&host, "work");
    for key in ["invocations", "bytes_in", "bytes_out", "memory_growths"] {
        assert_eq!(after[key], usage[key], "{key}: {after} vs {usage}");
    }
    assert!((after["gb_seconds"].as_f64().unwrap_or_default() - gb_s).abs() < 1e-6);
    let future = host.edge(&["usage", "work", "--since", "2099-01-01T00:00:00Z", "--json"]);
    assert!(
        future.ok && future.stdout.trim() == "[]",
        "{}",
        future.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatty_guest_output_is_logged_with_request_ids_and_rate_limited() {
    let host = TestHost::start_with_config(
        "[guest_logs]\nlines_per_second = 5\nburst_lines = 40\nring_lines = 200\nfile = true\n",
    );
    host.deploy("chatty", &guest("misbehave"), &[]);
    host.deploy("hello", &guest("hello"), &[]);

    let response = client()
        .get(format!("{}/chatty/print?lines=3", host.data_url))
        .send()
        .await
        .expect("request");
    let request_id = response
        .headers()
        .get("edge-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("edge-request-id header")
        .to_string();
    assert_eq!(response.text().await.expect("body"), "printed");
    let logs = host.edge(&["logs", "chatty", "--json"]);
    assert!(logs.ok, "{}", logs.stderr);
    let lines: Vec<serde_json::Value> = logs
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let texts: Vec<&str> = lines.iter().filter_map(|l| l["text"].as_str()).collect();
    assert_eq!(
        texts,
        [
            "chatty line 0",
            "chatty line 1",
            "chatty line 2",
            "chatty stderr line"
        ]
    );
    assert!(lines.iter().all(|l| l["request_id"] == request_id.as_str()));
    assert_eq!(lines[3]["stream"], "stderr");

    // Many chatty requests at once: the rate limit drops lines instead of slowing anyone,
    // and hello keeps answering meanwhile.
    let chatty: Vec<_> = (0..8)
        .map(|_| {
            let url = format!("{}/chatty/print?lines=5000", host.data_url);
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for _ in 0..20 {
        let reply = get(&format!("{}/hello/x", host.data_url)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    for task in chatty {
        let reply = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("chatty requests finish")
            .expect("task");
        assert_eq!(reply.body, "printed");
    }
    let page = send(
        client()
            .get(format!(
                "{}/v1/apps/chatty/logs?limit=10000",
                host.admin_url
            ))
            .bearer_auth(host.token()),
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&page.body).expect("page");
    let kept = page["lines"].as_array().map_or(0, Vec::len);
    assert!(kept <= 200, "ring holds {kept}");
    assert!(
        page["dropped"].as_u64().unwrap_or_default() >= 30_000,
        "{}",
        page["dropped"]
    );
    // The guest's output never reaches the node's own log.
    assert!(
        !host.log().contains("chatty line"),
        "guest output in the node log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_lines_as_they_come() {
    let host = TestHost::start();
    host.deploy("chatty", &guest("misbehave"), &[]);
    let mut follower = std::process::Command::new(EDGE)
        .args([
            "logs",
            "chatty",
            "--follow",
            "--node",
            &host.admin_url,
            "--data-dir",
        ])
        .arg(&host.data_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("edge logs --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Lines written after the follower started reach it.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = false;
    while !seen && std::time::Instant::now() < deadline {
        get(&format!("{}/chatty/print?lines=1", host.data_url)).await;
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen = line.contains("chatty line 0");
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(seen, "edge logs --follow printed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_app_limits_override_node_defaults_within_its_maximums() {
    let host = TestHost::start();
    host.deploy(
        "tight",
        &guest("misbehave"),
        &[
            "--memory",
            "24MiB",
            "--timeout",
            "400ms",
            "--max-body",
            "1KiB",
            "--concurrency",
            "3",
        ],
    );
    host.deploy("loose", &guest("misbehave"), &[]);
    let listed = host.edge(&["list", "--json"]);
    let apps: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("JSON");
    let limits = |name: &str| {
        apps.iter()
            .find(|a| a["name"] == name)
            .map(|a| a["limits"].clone())
            .expect("app listed")
    };
    let tight = limits("tight");
    assert_eq!(
        (
            &tight["memory_mib"],
            &tight["timeout_ms"],
            &tight["max_body_bytes"],
            &tight["concurrency"]
        ),
        (
            &serde_json::json!(24),
            &serde_json::json!(400),
            &serde_json::json!(1024),
            &serde_json::json!(3)
        )
    );
    assert_eq!(tight["overridden"].as_array().map(Vec::len), Some(4));
    assert_eq!(limits("loose")["timeout_ms"], 10_000);
    let table = host.edge(&["list"]);
    assert!(table.stdout.contains("mem 24MiB*"), "{}", table.stdout);

    // Each limit applies to its app only.
    let started = std::time::Instant::now();
    assert_eq!(
        get(&format!("{}/tight/loop", host.data_url)).await.status,
        504
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    let big = || vec![1u8; 4096];
    let post = |app: &str| {
        client()
            .post(format!("{}/{app}/echo-length", host.data_url))
            .body(big())
    };
    assert_eq!(send(post("tight")).await.status, 413);
    assert_eq!(send(post("loose")).await.body, "4096");
    assert_eq!(
        get(&format!("{}/tight/work?mib=32", host.data_url))
            .await
            .status,
        500
    );
    assert_eq!(
        get(&format!("{}/loose/work?mib=32", host.data_url))
            .await
            .body,
        "ok"
    );

    // Past the node's maximum: refused, naming the setting.
    let refused = host.edge(&[
        "deploy",
        "greedy",
        guest("misbehave").to_str().expect("utf-8"),
        "--memory",
        "4GiB",
    ]);
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("max_app_memory_mib"),
        "{}",
        refused.stderr
    );
    let refused = host.edge(&[
        "deploy",
        "greedy",
        guest("misbehave").to_str().expect("utf-8"),
        "--timeout",
        "1h",
    ]);
    assert!(
        refused.stderr.contains("max_app_request_timeout_ms"),
        "{}",
        refused.stderr
    );
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let host = TestHost::start_in(
        &tempfile::tempdir().expect("temp").keep(),
        &["--log-format", "json"],
    );
    let log = host.log();
    let ready = log
        .lines()
        .find(|l| l.contains("edge node ready"))
        .expect("ready line");
    let parsed: serde_json::Value = serde_json::from_str(ready).expect("a JSON object");
    assert_eq!(parsed["level"], "INFO");
    assert!(parsed["data_plane"].as_str().is_some(), "{ready}");
}

#[test]
fn non_loopback_cleartext_admin_is_refused_unless_explicitly_insecure() {
    let temp = tempfile::tempdir().expect("temp");
    let output = std::process::Command::new(EDGE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .arg("--data-dir")
        .arg(temp.path())
        .current_dir(repo_root())
        .output()
        .expect("edge serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without TLS") && stderr.contains("--insecure-cleartext-admin"),
        "{stderr}"
    );
    let config = temp.path().join("node.toml");
    std::fs::write(&config, "[server]\nadmin_listen = \"0.0.0.0:0\"\n").expect("config");
    let mut command = std::process::Command::new(EDGE);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--insecure-cleartext-admin",
            "--config",
        ])
        .arg(&config)
        .arg("--data-dir")
        .arg(temp.path().join("data"));
    let host = TestHost::spawn_command(command, &temp.path().join("data"));
    assert!(
        host.admin_url.starts_with("http://0.0.0.0:"),
        "{}",
        host.admin_url
    );
    host.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_admin_works_with_the_cli_and_refuses_plain_http() {
    let temp = tempfile::tempdir().expect("temp");
    let (ca, cert, key) = make_certificates(temp.path());
    let host = TestHost::start_with_config(&format!(
        "[server]\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.to_str().expect("utf-8"),
        key.to_str().expect("utf-8")
    ));
    assert!(
        host.admin_url.starts_with("https://127.0.0.1:"),
        "{}",
        host.admin_url
    );
    let ca_arg = ca.to_str().expect("utf-8");
    let deployed = host.edge(&[
        "deploy",
        "hello",
        guest("hello").to_str().expect("utf-8"),
        "--ca-file",
        ca_arg,
    ]);
    assert!(deployed.ok, "{}", deployed.stderr);
    let listed = host.edge(&["list", "--ca-file", ca_arg]);
    assert!(
        listed.ok && listed.stdout.contains("hello"),
        "{}",
        listed.stderr
    );
    // Without the CA the certificate is not trusted, and the error says what to pass.
    let untrusted = host.edge(&["list"]);
    assert!(!untrusted.ok);
    assert!(
        untrusted.stderr.contains("--ca-file"),
        "{}",
        untrusted.stderr
    );
    // Plain HTTP on the TLS port: a 400 saying to use https.
    let plain = host.admin_url.replacen("https://", "http://", 1);
    let reply = send(
        client()
            .get(format!("{plain}/v1/apps"))
            .bearer_auth(host.token()),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("requires TLS"), "{}", reply.body);
    assert_eq!(get(&format!("{}/hello/x", host.data_url)).await.status, 200);
}
