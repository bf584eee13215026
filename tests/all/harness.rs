//! Test helpers: building the guest components once, starting a real node on port 0 with a
//! temporary data folder, running the `edge` CLI against it, and plain HTTP calls.
//!
//! A node's log is printed when the test using it fails.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `edge` binary built by cargo for these tests.
pub const EDGE: &str = env!("CARGO_BIN_EXE_edge");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Path of a guest component, building all of `guests/` for wasm32-wasip2 on first use.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let guests = repo_root().join("guests");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(guests.join("Cargo.toml"))
            .status()
            .expect("running cargo to build the guests");
        assert!(
            status.success(),
            "building guests/ for wasm32-wasip2 failed"
        );
        guests.join("target/wasm32-wasip2/release")
    });
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    let path = if path.exists() {
        path
    } else {
        dir.join(format!("{name}.wasm"))
    };
    assert!(
        path.exists(),
        "guest {name} not built at {}",
        path.display()
    );
    path
}

/// A test photo from the scikit-image wheel, unpacked by `scripts/setup.sh`.
pub fn photo(name: &str) -> Vec<u8> {
    let path = repo_root().join(".cache/photos").join(name);
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "test photo {} missing ({err}); run scripts/setup.sh, which unpacks it",
            path.display()
        )
    })
}

/// A running `edge serve`, killed on drop; its log is printed if the test panicked.
pub struct TestHost {
    child: Child,
    pub data_url: String,
    pub admin_url: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestHost {
    /// Starts a node with a fresh temporary data folder.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::start_in(temp.path(), &[]);
        host._temp = Some(temp);
        host
    }

    /// Starts a node with a fresh temporary data folder and `node_toml` as its config file.
    pub fn start_with_config(node_toml: &str) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let config = temp.path().join("node.toml");
        std::fs::write(&config, node_toml).expect("writing node.toml");
        let mut host = Self::start_in(
            &temp.path().join("node"),
            &["--config", config.to_str().expect("utf-8 path")],
        );
        host._temp = Some(temp);
        host
    }

    /// Starts a node on `data_dir` (kept by the caller, e.g. across restarts), with extra
    /// arguments to `edge serve`.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(EDGE);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra);
        Self::spawn(command, data_dir)
    }

    /// Starts a node through `sh -c "<prefix> exec edge serve ..."`, e.g. to set a ulimit.
    pub fn start_wrapped(data_dir: &Path, shell_prefix: &str) -> Self {
        let script = format!(
            "{shell_prefix} exec \"$0\" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
             --data-dir \"$1\""
        );
        let mut command = Command::new("sh");
        command.arg("-c").arg(script).arg(EDGE).arg(data_dir);
        Self::spawn(command, data_dir)
    }

    /// Starts a node from a prepared `edge serve` command (its own flags), with `data_dir` as
    /// its data folder.
    pub fn spawn_command(command: Command, data_dir: &Path) -> Self {
        Self::spawn(command, data_dir)
    }

    fn spawn(mut command: Command, data_dir: &Path) -> Self {
        // From the repository root, as in the quick start: the default [openvino] folder
        // (.venv) and model path (edge-config/models/) are relative to it.
        let mut child = command
            .current_dir(repo_root())
            .env("EDGE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning edge serve");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut data_url, mut admin_url) = (None, None);
        let deadline = Instant::now() + PATIENCE;
        while data_url.is_none() || admin_url.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "edge serve did not report its addresses; log:\n{}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                );
            };
            if let Some(url) = line.strip_prefix("edge: data plane listening on ") {
                data_url = Some(url.to_string());
            } else if let Some(url) = line.strip_prefix("edge: admin API listening on ") {
                admin_url = Some(url.to_string());
            }
        }
        let host = Self {
            child,
            data_url: data_url.unwrap_or_default(),
            admin_url: admin_url.unwrap_or_default(),
            data_dir: data_dir.to_path_buf(),
            log,
            _temp: None,
        };
        // The addresses come on stdout, the log on stderr, read by another thread: wait for
        // the line logged just before the addresses, so everything start-up logs is there.
        assert!(
            host.wait_for_log("edge node ready"),
            "no 'edge node ready' in the log:\n{}",
            host.log()
        );
        host
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits (up to [`PATIENCE`]) until the node's log contains `needle`; returns whether
    /// it did.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        eventually(|| self.log().contains(needle))
    }

    /// The admin API's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.admin_url);
        send(client().get(&url).bearer_auth(self.token()))
            .await
            .body
    }

    /// Waits (up to [`PATIENCE`]) until the metric sample `name` is at least `at_least`.
    pub async fn wait_for_metric(&self, name: &str, at_least: f64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.metrics().await;
            if metric_or_zero(&text, name) >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not reach {at_least} within {PATIENCE:?}:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs an `edge` client command against this node (token from its data folder).
    pub fn edge(&self, args: &[&str]) -> CliResult {
        let output = Command::new(EDGE)
            .args(args)
            .arg("--node")
            .arg(&self.admin_url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env_remove("EDGE_TOKEN")
            .output()
            .expect("running edge");
        CliResult::from(output)
    }

    /// Deploys a guest through the CLI and asserts it succeeded.
    pub fn deploy(&self, name: &str, wasm: &Path, extra: &[&str]) -> CliResult {
        let mut args = vec!["deploy", name, wasm.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let result = self.edge(&args);
        assert!(result.ok, "deploy of {name} failed: {}", result.stderr);
        result
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin token file")
            .trim()
            .to_string()
    }

    /// The node's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the node with SIGTERM and waits for a clean exit.
    pub fn stop(self) {
        self.stop_timed();
    }

    /// Stops the node with SIGTERM, waits for a clean exit and says how long it took.
    pub fn stop_timed(mut self) -> Duration {
        let pid = self.child.id().to_string();
        let sent = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(30));
        let took = sent.elapsed();
        assert!(
            status.is_some_and(|s| s.success()),
            "node did not stop cleanly ({status:?}); log:\n{}",
            self.log()
        );
        took
    }

    /// Kills the node with SIGKILL, as a crash or power cut would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- edge node log ----\n{}-----------------------",
                self.log()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Outcome of one CLI run.
#[derive(Debug)]
pub struct CliResult {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CliResult {
    fn from(output: Output) -> Self {
        Self {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A status and body from a plain HTTP call.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub async fn get(url: &str) -> Reply {
    send(client().get(url)).await
}

/// POSTs `chunks` chunks of 16 KiB to `url` as a chunked body (no `content-length`).
pub async fn post_chunked(url: &str, chunks: usize) -> Reply {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..chunks).map(|_| Ok(vec![1u8; 16 * 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    send(client().post(url).body(body)).await
}

pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    let body = response.text().await.expect("HTTP body");
    Reply { status, body }
}

/// The value of the sample `name` (labels included) in Prometheus text `text`.
pub fn metric(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or_else(|| panic!("metric {name} missing in:\n{text}"))
}

/// Like [`metric`], with 0 for a sample not written yet (a counter nothing has touched).
pub fn metric_or_zero(text: &str, name: &str) -> f64 {
    sample(text, name).unwrap_or(0.0)
}

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// How long a test waits for something it needs (a log line, a metric, a process): generous,
/// so a machine busy with other work still passes; the wait ends as soon as the thing is there.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `condition` until it holds (true) or [`PATIENCE`] runs out (false).
pub fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client for the calling test's runtime (clients are not shared across test runtimes).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// The same component with a different digest: an extra custom section changes the bytes,
/// not the behaviour (the `--env` the test passes tells versions apart).
pub fn variant_of(wasm: &Path, tag: &str, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(wasm).expect("reading component");
    let name = b"edge-test-variant";
    let mut payload = vec![u8::try_from(name.len()).expect("short name")];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0); // custom section id
    bytes.push(u8::try_from(payload.len()).expect("short section"));
    bytes.extend_from_slice(&payload);
    let path = dir.join(format!("variant-{tag}.wasm"));
    std::fs::write(&path, bytes).expect("writing variant");
    path
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
pub fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("ca.pem");
    std::fs::write(&paths.1, cert.pem()).expect("cert.pem");
    std::fs::write(&paths.2, key.serialize_pem()).expect("key.pem");
    paths
}
