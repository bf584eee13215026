//! Node configuration: the `edge-config/node.toml` schema, its defaults and its loading.
//!
//! Every key has a default, so `edge serve` runs with no file at all. Unknown keys are an error,
//! so a typo never silently falls back to a default. The documented default file,
//! `edge-config/node.toml`, is checked against [`NodeConfig::default`] by a test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capabilities::config::AppConfigLimits;
use crate::capabilities::kv::KvConfig;
use crate::capabilities::messaging::MessagingConfig;
use crate::capabilities::nn::config::{
    InferenceConfig, ModelConfig, OpenvinoConfig, default_models,
};
use crate::capabilities::outbound_http::OutboundHttpConfig;

/// Default address of the data plane (the HTTP traffic routed to apps).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default address of the admin API (deploys, listings, metrics).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// Default folder for deployed components, artifacts, metadata and the admin token.
pub const DEFAULT_DATA_DIR: &str = ".edge-data";

/// Errors a caller can tell apart when loading the node configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub pool: PoolConfig,
    pub kv: KvConfig,
    pub openvino: OpenvinoConfig,
    pub inference: InferenceConfig,
    /// Models the node loads at start-up, by the name guests pass to `load-by-name`. A file
    /// that has any `[models.NAME]` section replaces the default list.
    pub models: BTreeMap<String, ModelConfig>,
    /// What `edge deploy --config` may set (wasi:config).
    pub app_config: AppConfigLimits,
    /// Outgoing HTTP of apps granted `--allow-outbound`.
    pub outbound_http: OutboundHttpConfig,
    /// Brokers for message triggers and publishing (`--subscribe`, `--publish`).
    pub messaging: MessagingConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            limits: LimitsConfig::default(),
            pool: PoolConfig::default(),
            kv: KvConfig::default(),
            openvino: OpenvinoConfig::default(),
            inference: InferenceConfig::default(),
            models: default_models(),
            app_config: AppConfigLimits::default(),
            outbound_http: OutboundHttpConfig::default(),
            messaging: MessagingConfig::default(),
        }
    }
}

/// Where the node listens and keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Data plane address. Port 0 picks a free port (the bound address is printed).
    pub listen: SocketAddr,
    /// Admin API address. Keep it on loopback or a management network.
    pub admin_listen: SocketAddr,
    /// Folder for everything the node persists.
    pub data_dir: PathBuf,
    /// Admin bearer token. Empty: read or generate `<data_dir>/admin.token`.
    pub token: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: parse_default_addr(DEFAULT_LISTEN),
            admin_listen: parse_default_addr(DEFAULT_ADMIN_LISTEN),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            token: String::new(),
        }
    }
}

fn parse_default_addr(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|_| unreachable!("default address {addr} is valid"))
}

/// Limits applied to every request and every instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory one instance may grow to, in MiB.
    pub memory_mib: u64,
    /// Wall-clock time one request may take, in milliseconds, guest CPU and waiting together.
    pub request_timeout_ms: u64,
    /// Largest request body an app receives, in bytes; larger ones get 413.
    pub max_body_bytes: u64,
    /// Requests one app serves at once; more get 503 instead of queueing.
    pub max_concurrent_requests_per_app: usize,
    /// Largest component accepted by a deploy, in bytes.
    pub max_component_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_mib: 128,
            request_timeout_ms: 10_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_concurrent_requests_per_app: 256,
            max_component_bytes: 64 * 1024 * 1024,
        }
    }
}

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

/// The pooling instance allocator: slots reserved up front so instantiation is a few µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Use the pooling allocator. If its address-space reservation fails the node falls back
    /// to on-demand allocation and logs it.
    pub enabled: bool,
    /// Component instances alive at once across all apps (the pool's size).
    pub max_instances: u32,
    /// Linear memories per component instance (toolchains with adapters use more than one).
    pub max_memories_per_instance: u32,
    /// Tables per component instance.
    pub max_tables_per_instance: u32,
    /// Memory slots kept warm (their pages resident) after an instance ends, for reuse.
    pub max_unused_warm_slots: u32,
    /// KiB at the start of each linear memory (and table) reset with memset and kept
    /// resident when an instance ends, instead of being returned to the kernel: saves page
    /// faults and an madvise per request for small guests, costs resident memory per slot.
    pub keep_resident_kib: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_instances: 1000,
            max_memories_per_instance: 4,
            max_tables_per_instance: 16,
            max_unused_warm_slots: 100,
            keep_resident_kib: 256,
        }
    }
}

impl NodeConfig {
    /// Loads a config file; `None` gives the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let config = match path {
            None => NodeConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text, rejecting unknown keys.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.limits.memory_mib == 0 {
            return invalid("limits.memory_mib must be at least 1");
        }
        if self.limits.request_timeout_ms == 0 {
            return invalid("limits.request_timeout_ms must be at least 1");
        }
        if self.limits.max_concurrent_requests_per_app == 0 {
            return invalid("limits.max_concurrent_requests_per_app must be at least 1");
        }
        if self.kv.page_size == 0 || self.kv.max_key_bytes == 0 {
            return invalid("kv.page_size and kv.max_key_bytes must be at least 1");
        }
        if self.outbound_http.timeout_ms == 0 || self.outbound_http.max_concurrent_per_app == 0 {
            return invalid(
                "outbound_http.timeout_ms and max_concurrent_per_app must be at least 1",
            );
        }
        if self.pool.max_instances == 0 {
            return invalid("pool.max_instances must be at least 1");
        }
        let messaging = &self.messaging;
        if messaging.max_in_flight_per_app == 0
            || messaging.max_payload_bytes == 0
            || messaging.outbox_max_messages == 0
            || messaging.outbox_max_bytes == 0
        {
            return invalid(
                "messaging.max_in_flight_per_app, max_payload_bytes, outbox_max_messages and \
                 outbox_max_bytes must be at least 1",
            );
        }
        if let Some(name) = self
            .models
            .keys()
            .find(|name| crate::names::validate_app_name(name).is_err())
        {
            return invalid(&format!(
                "model name {name:?}: use lowercase letters, digits, '-' or '_'"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::nn::config::{InferencePrecision, ModelDevice, PerformanceHint};

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(NodeConfig::parse("").unwrap(), NodeConfig::default());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = NodeConfig::parse("[limits]\nmemory_mb = 3\n").unwrap_err();
        assert!(err.contains("memory_mb"), "{err}");
    }

    #[test]
    fn models_section_replaces_the_default_list() {
        let config =
            NodeConfig::parse("[models.detector]\npath = \"/models/detector\"\ndevice = \"GPU\"\n")
                .unwrap();
        assert_eq!(config.models.len(), 1);
        assert_eq!(config.models["detector"].device, ModelDevice::Gpu);
        assert_eq!(config.models["detector"].hint, PerformanceHint::Latency);
        let err = NodeConfig::parse("[models.x]\npath = \"m\"\ndevice = \"TPU\"\n").unwrap_err();
        assert!(err.contains("TPU"), "{err}");
    }

    #[test]
    fn precision_defaults_to_f32_and_unknown_values_name_the_allowed_ones() {
        let config = NodeConfig::parse("[models.x]\npath = \"m\"\n").unwrap();
        assert_eq!(config.models["x"].precision, InferencePrecision::F32);
        let config = NodeConfig::parse("[models.x]\npath = \"m\"\nprecision = \"bf16\"\n").unwrap();
        assert_eq!(config.models["x"].precision, InferencePrecision::Bf16);
        let err = NodeConfig::parse("[models.x]\npath = \"m\"\nprecision = \"f64\"\n").unwrap_err();
        for needle in ["f64", "precision", "f32", "bf16", "f16", "auto"] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn documented_default_file_matches_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-config/node.toml");
        let loaded = NodeConfig::load(Some(&path)).unwrap();
        assert_eq!(loaded, NodeConfig::default());
    }
}
