//! Real brokers for the messaging and fleet tests: Debian's `mosquitto` and `nats-server`
//! (JetStream), and its `docker-registry` (CNCF distribution) for the registry tests,
//! installed by `scripts/setup.sh`, each started on a free loopback port with a data folder
//! of its own (so a restart keeps what it stored), stopped on drop. Plus small test clients
//! that publish with confirmation and collect what arrives.

use std::ffi::{OsStr, OsString};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

use crate::harness::{PATIENCE, eventually};

/// A free loopback port (bound, then released for the broker to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn program(name: &str, debian_path: &str) -> PathBuf {
    let path = PathBuf::from(debian_path);
    assert!(
        path.exists(),
        "{name} is not installed at {debian_path}; run scripts/setup.sh (it installs Debian's \
         mosquitto, nats-server and docker-registry)"
    );
    path
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A broker process that can be stopped and started again on the same port and data.
struct Server {
    command: Box<dyn Fn() -> Command + Send + Sync>,
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `program` with `args`, waiting until it listens on `port`; its data lives in
    /// `dir`, removed with it.
    fn started(program: PathBuf, args: Vec<OsString>, port: u16, dir: tempfile::TempDir) -> Self {
        let mut server = Self {
            command: Box::new(move || {
                let mut command = Command::new(&program);
                command.args(&args);
                command
            }),
            child: None,
            port,
            _dir: dir,
        };
        server.start();
        server
    }

    fn start(&mut self) {
        let child = (self.command)()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the broker");
        self.child = Some(child);
        let port = self.port;
        assert!(
            eventually(|| listening(port)),
            "broker did not listen on {port}"
        );
    }

    /// Stops the broker cleanly (SIGTERM: it saves what it holds) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A broker on a free loopback port, stopped and started again on the same port and data.
pub struct Broker {
    server: Server,
    scheme: &'static str,
}

impl Broker {
    /// A mosquitto broker with persistence (what it queues survives a restart).
    pub fn mosquitto() -> Self {
        let port = free_port();
        let listener = format!("listener {port} 127.0.0.1\nallow_anonymous true\n");
        Self::mosquitto_server("mqtt", port, listener)
    }

    /// A mosquitto broker whose listener named by [`Broker::url`] (`mqtts://`) only speaks
    /// TLS (`cert` and `key`, PEM) and only lets `user` with `password` in; a plain anonymous
    /// listener on the returned port serves the test's own clients.
    pub fn mosquitto_secured(cert: &Path, key: &Path, user: &str, password: &str) -> (Self, u16) {
        let passwords = cert.with_file_name("mosquitto.passwd");
        let made = Command::new(program("mosquitto_passwd", "/usr/bin/mosquitto_passwd"))
            .args(["-b", "-c"])
            .arg(&passwords)
            .args([user, password])
            .status()
            .expect("running mosquitto_passwd");
        assert!(made.success(), "mosquitto_passwd failed");
        let (tls_port, plain_port) = (free_port(), free_port());
        let listeners = format!(
            "per_listener_settings true\nlistener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
             allow_anonymous false\npassword_file {}\nlistener {plain_port} 127.0.0.1\n\
             allow_anonymous true\n",
            cert.display(),
            key.display(),
            passwords.display()
        );
        (
            Self::mosquitto_server("mqtts", tls_port, listeners),
            plain_port,
        )
    }

    /// A mosquitto broker with `listeners` (its config's listener lines), waited for on
    /// `port`; its URLs use `scheme`.
    fn mosquitto_server(scheme: &'static str, port: u16, listeners: String) -> Self {
        let program = program("mosquitto", "/usr/sbin/mosquitto");
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "{listeners}persistence true\npersistence_location {}/\n\
                 max_queued_messages 100000\nset_tcp_nodelay true\nuser root\n",
                dir.path().display()
            ),
        )
        .expect("writing mosquitto.conf");
        let server = Server::started(program, vec!["-c".into(), conf.into()], port, dir);
        Self { server, scheme }
    }

    /// A nats-server with JetStream, storing streams in its own folder.
    pub fn nats() -> Self {
        Self::nats_server("nats", Vec::new())
    }

    /// A nats-server with JetStream that only speaks TLS (`cert` and `key`, PEM) and only
    /// lets `user` with `password` in.
    pub fn nats_secured(cert: &Path, key: &Path, user: &str, password: &str) -> Self {
        let args = [
            OsStr::new("--tls"),
            OsStr::new("--tlscert"),
            cert.as_os_str(),
            OsStr::new("--tlskey"),
            key.as_os_str(),
            OsStr::new("--user"),
            OsStr::new(user),
            OsStr::new("--pass"),
            OsStr::new(password),
        ];
        Self::nats_server("tls", args.iter().map(|a| a.to_os_string()).collect())
    }

    /// A nats-server with JetStream in operator mode (decentralized auth): it trusts the
    /// operator and the one account of `accounts`, so only that account's users get in.
    pub fn nats_with_accounts(accounts: &NatsAccounts) -> Self {
        let args = [OsStr::new("-c"), accounts.server_config.as_os_str()];
        Self::nats_server("nats", args.iter().map(|a| a.to_os_string()).collect())
    }

    /// A nats-server with JetStream on a free port, with `extra` arguments; its URLs use
    /// `scheme`.
    fn nats_server(scheme: &'static str, extra: Vec<OsString>) -> Self {
        let program = program("nats-server", "/usr/sbin/nats-server");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut args: Vec<OsString> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]
            .iter()
            .map(OsString::from)
            .collect();
        args.push(dir.path().join("jetstream").into());
        args.extend(extra);
        let server = Server::started(program, args, port, dir);
        Self { server, scheme }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `mqtt://`, `mqtts://`, `nats://` or `tls://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.server.port)
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub fn start_again(&mut self) {
        self.server.start();
    }
}

/// An OCI registry (Debian's docker-registry, CNCF distribution 2.8) on a free loopback port,
/// storing blobs in its own folder.
pub struct Registry {
    server: Server,
}

impl Registry {
    pub fn start() -> Self {
        let program = program("docker-registry", "/usr/bin/docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("writing the registry config");
        let server = Server::started(program, vec!["serve".into(), config.into()], port, dir);
        Self { server }
    }

    /// `127.0.0.1:PORT`, as written in `oci://` references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// A test's own MQTT client: subscribes (persistent session, QoS 1), publishes with
/// confirmation and collects what arrives.
pub struct MqttProbe {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Publish>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MqttProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MqttProbe {
    /// Connects as `id` and subscribes to `filters`, returning once the broker confirmed.
    pub async fn connect(port: u16, id: &str, filters: &[&str]) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let (tx, received) = mpsc::unbounded_channel();
        let acked = Arc::new(AtomicUsize::new(0));
        let subscribed = Arc::new(AtomicUsize::new(0));
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let want = filters.len();
        let task = {
            let (client, acked, subscribed) = (client.clone(), acked.clone(), subscribed.clone());
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            for filter in &filters {
                                let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(_))) => {
                            subscribed.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Event::Incoming(Packet::Publish(publish))) => {
                            let _ = tx.send(publish);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let probe = Self {
            client,
            received,
            acked,
            task,
        };
        let deadline = Instant::now() + PATIENCE;
        while subscribed.load(Ordering::SeqCst) < want {
            assert!(
                Instant::now() < deadline,
                "probe {id} was not subscribed in time"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        probe
    }

    /// Publishes at QoS 1 and waits for the broker's acknowledgement.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        let before = self.acked.load(Ordering::SeqCst);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("queueing a publish");
        let deadline = Instant::now() + PATIENCE;
        while self.acked.load(Ordering::SeqCst) <= before {
            assert!(
                Instant::now() < deadline,
                "the broker did not acknowledge a publish to {topic}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The next message, or `None` after `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Publish> {
        tokio::time::timeout(wait, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// Collects messages until `done` holds for what was collected (or [`PATIENCE`] ends).
    pub async fn collect_until(
        &mut self,
        mut done: impl FnMut(&[Publish]) -> bool,
    ) -> Vec<Publish> {
        let deadline = Instant::now() + PATIENCE;
        let mut all = Vec::new();
        while !done(&all) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Some(publish) => all.push(publish),
                None => break,
            }
        }
        all
    }
}

/// NATS decentralized auth for a test, made with NKeys as `nsc` would make it: an operator,
/// an account it trusts (JetStream allowed), a user of that account in `creds` (a `.creds`
/// file: the user's JWT and NKey seed), and a user of an account the operator never signed
/// in `stranger_creds`.
pub struct NatsAccounts {
    /// nats-server config naming the operator and preloading the account (MEMORY resolver).
    pub server_config: PathBuf,
    pub creds: PathBuf,
    pub stranger_creds: PathBuf,
    /// The two users' NKey seeds, which must never be shown.
    pub seeds: [String; 2],
}

impl NatsAccounts {
    pub fn create(dir: &Path) -> Self {
        use nkeys::KeyPair;
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let stranger = KeyPair::new_account();
        let operator_jwt = nats_jwt(
            &operator,
            &operator.public_key(),
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
            "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
        });
        let account_jwt = nats_jwt(
            &operator,
            &account.public_key(),
            serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
        );
        // JetStream in operator mode needs the server's own (system) account.
        let system = KeyPair::new_account();
        let system_jwt = nats_jwt(
            &operator,
            &system.public_key(),
            serde_json::json!({"type": "account", "version": 2}),
        );
        let operator_file = dir.join("operator.jwt");
        std::fs::write(&operator_file, &operator_jwt).expect("operator JWT");
        let server_config = dir.join("nats-server.conf");
        std::fs::write(
            &server_config,
            format!(
                "operator: \"{}\"\nsystem_account: {system_key}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {}: \"{account_jwt}\"\n  {system_key}: \"{system_jwt}\"\n}}\n",
                operator_file.display(),
                account.public_key(),
                system_key = system.public_key(),
            ),
        )
        .expect("nats-server config");
        let (creds, seed) = user_creds(&account, &dir.join("gw.creds"));
        let (stranger_creds, stranger_seed) = user_creds(&stranger, &dir.join("stranger.creds"));
        Self {
            server_config,
            creds,
            stranger_creds,
            seeds: [seed, stranger_seed],
        }
    }
}

/// Writes a `.creds` file at `path` for a new user of `account`; returns it and the seed.
fn user_creds(account: &nkeys::KeyPair, path: &Path) -> (PathBuf, String) {
    let user = nkeys::KeyPair::new_user();
    let jwt = nats_jwt(
        account,
        &user.public_key(),
        serde_json::json!({
            "type": "user", "version": 2, "pub": {}, "sub": {},
            "subs": -1, "data": -1, "payload": -1,
        }),
    );
    let seed = user.seed().expect("user seed");
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
    );
    std::fs::write(path, creds).expect("creds file");
    (path.to_path_buf(), seed)
}

/// A NATS JWT (version 2) for `subject` with the `nats` claims, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let id = hex::encode(sha2::Sha256::digest(format!("{subject}{issued}")));
    let claims = serde_json::json!({
        "jti": id, "iat": issued, "iss": issuer.public_key(), "name": "edge-test",
        "sub": subject, "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
        encode(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("signing a JWT");
    format!("{signed}.{}", encode(&signature))
}
