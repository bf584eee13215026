//! The admin API's wire types, shared by the node's handlers ([`crate::control::admin`]) and the
//! CLI's client ([`crate::client`]), so the client needs nothing of the node.

use serde::{Deserialize, Serialize};

pub use crate::capabilities::kv::KeyPage;
pub use crate::capabilities::nn::{InputView, ModelView, ModelsView, RuntimeView};
pub use crate::usage::{UsageCounters, UsageView};

/// An app as the API shows it. Environment and config values may be secrets: only their
/// names are shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppView {
    pub name: String,
    pub route: String,
    pub digest: String,
    pub size: u64,
    pub deployed_at: u64,
    pub env: Vec<String>,
    /// Keys the app reads with wasi:config (`--config`); never the values.
    #[serde(default)]
    pub config: Vec<String>,
    /// Whether the app has a key-value namespace.
    pub kv: bool,
    /// Bytes of keys and values it holds (apps granted kv).
    #[serde(default)]
    pub kv_bytes: Option<u64>,
    /// Models the app may open.
    #[serde(default)]
    pub models: Vec<String>,
    /// Origins the app may send HTTP requests to (`--allow-outbound`).
    #[serde(default)]
    pub outbound: Vec<String>,
    /// Topics the app is triggered by (`--subscribe BROKER:PATTERN`).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Topics the app may publish to (`--publish BROKER:PATTERN`).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Present when the app runs from a deploy-time snapshot.
    pub snapshot: Option<SnapshotView>,
    pub previous: Option<PreviousView>,
    /// The limits the app runs under.
    #[serde(default)]
    pub limits: Option<LimitsView>,
    /// Instance reuse (`requests` 1: off).
    #[serde(default)]
    pub reuse: Reuse,
    /// `0.2` or `0.3`: the WASI version of its HTTP handler, when it has one.
    #[serde(default)]
    pub wasi_http: Option<String>,
    /// `optimized`, or `baseline` while the optimizing compile of a big component runs.
    #[serde(default)]
    pub tier: Option<String>,
    /// `oci://…@sha256:…` when the component was pulled from a registry.
    #[serde(default)]
    pub source: Option<String>,
    /// Whether the fleet agent manages the app (desired state in NATS, `edge fleet`).
    #[serde(default)]
    pub fleet: bool,
}

/// Limits one app version asked for at deploy (`--memory`, `--timeout`, `--concurrency`,
/// `--max-body`); `None` takes the node's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_quota_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_buckets: Option<usize>,
}

impl AppLimits {
    pub fn is_default(&self) -> bool {
        *self == AppLimits::default()
    }
}

/// Instance reuse an app version opted into at deploy (`--reuse`): off by default, since a
/// reused instance keeps what earlier requests left in its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reuse {
    /// Requests one instance serves before it is retired (1: a fresh instance per request).
    pub requests: u32,
    /// Requests one instance serves at once (WASI 0.3 components only; 0.2 ones take one).
    pub concurrency: u32,
    /// How long an idle instance is kept for the next request, in ms.
    pub idle_ms: u64,
}

impl Default for Reuse {
    fn default() -> Self {
        Self {
            requests: 1,
            concurrency: 1,
            idle_ms: 10_000,
        }
    }
}

impl Reuse {
    pub fn is_default(&self) -> bool {
        *self == Reuse::default()
    }

    /// Whether an instance may serve more than one request.
    pub fn enabled(&self) -> bool {
        self.requests > 1
    }
}

/// An app's limits: its own where it set them at deploy, else the node's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsView {
    pub memory_mib: u64,
    pub timeout_ms: u64,
    pub concurrency: usize,
    pub max_body_bytes: u64,
    /// Key-value quota, in MiB and buckets.
    #[serde(default)]
    pub kv_quota_mib: u64,
    #[serde(default)]
    pub kv_buckets: usize,
    /// Which of them the deploy set (`memory`, `timeout`, `concurrency`, `max_body`,
    /// `kv_quota`, `kv_buckets`).
    pub overridden: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotView {
    /// Size of the snapshotted component in bytes.
    pub size: u64,
    /// How long the init function ran at deploy, in ms.
    pub init_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviousView {
    pub digest: String,
    pub route: String,
    pub deployed_at: u64,
}

/// The answer to a remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveReply {
    /// The app as it was; `None` when it was already removed (a retried `--delete-data`).
    pub app: Option<AppView>,
    /// Buckets of key-value data deleted (`--delete-data`).
    pub deleted_buckets: Option<usize>,
}

/// The answer to a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployReply {
    pub app: AppView,
    /// Where the app now answers.
    pub url: String,
    /// Milliseconds spent compiling (0 when these bytes were compiled before).
    pub compile_ms: f64,
    /// What the deployer should know although the deploy succeeded.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Request header carrying an app's wasi:config values on deploy, as hex-encoded JSON (an
/// object of strings). Values may be secrets: a header keeps them out of URLs, which proxies
/// and access logs record.
pub const CONFIG_HEADER: &str = "edge-config-values";

/// A named admin token as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub role: crate::auth::Role,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// The answer to `POST /v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: TokenView,
    pub secret: String,
}

/// What `POST /v1/tokens` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    pub role: crate::auth::Role,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1 for the first entry the node ever wrote, then one more per entry.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// Name of the token that acted (`admin` for the bootstrap token).
    pub token: String,
    pub action: String,
    pub app: Option<String>,
    /// `bucket/key` for kv actions, the token's name for token actions.
    #[serde(default)]
    pub target: Option<String>,
    pub digest: Option<String>,
    /// `ok`, or why the action was refused or failed.
    pub result: String,
    /// Hash of the previous entry.
    pub prev: String,
    /// SHA-256 of this entry's other fields.
    pub hash: String,
}

/// What `edge audit verify` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditVerification {
    pub ok: bool,
    pub entries: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The last entry the node recorded having written.
    pub head_seq: u64,
    /// The first problem found.
    pub problem: Option<String>,
}

/// One line an app wrote to stdout or stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Increases by one per line kept for the app (`after=` pages on it).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The invocation that wrote it (empty for the node's own notes).
    pub request_id: String,
    /// `stdout`, `stderr`, or `edge` for the node's notes (lines dropped by the rate limit).
    pub stream: String,
    pub text: String,
}

/// `GET /v1/apps/{name}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after=` to get the lines after these.
    pub next_after: u64,
    /// Lines the rate limit dropped since the node started.
    pub dropped: u64,
}
