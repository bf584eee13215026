//! The admin API's wire types, shared by the node's handlers ([`crate::control::admin`]) and the
//! CLI's client ([`crate::client`]), so the client needs nothing of the node.

use serde::{Deserialize, Serialize};

pub use crate::capabilities::kv::KeyPage;
pub use crate::capabilities::nn::{InputView, ModelView, ModelsView, RuntimeView};

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
