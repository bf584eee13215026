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

pub use crate::api::AppLimits;
use crate::capabilities::config::AppConfigLimits;
use crate::capabilities::kv::{KvConfig, KvQuota};
use crate::capabilities::messaging::MessagingConfig;
use crate::capabilities::nn::config::{
    InferenceConfig, ModelConfig, OpenvinoConfig, default_models,
};
use crate::capabilities::outbound_http::OutboundHttpConfig;
use crate::disk::StorageConfig;
use crate::fleet::config::FleetConfig;
use crate::guest_logs::GuestLogsConfig;
use crate::oci::RegistryConfig;
use crate::usage::MeteringConfig;

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
    /// The admin actions' audit log.
    pub audit: AuditConfig,
    /// What apps write to stdout and stderr (`edge logs`).
    pub guest_logs: GuestLogsConfig,
    /// Usage metering (`edge usage`).
    pub metering: MeteringConfig,
    /// Free space kept on the data disk.
    pub storage: StorageConfig,
    /// OCI registries components are pulled from (`edge deploy NAME oci://…`, the fleet).
    pub registry: RegistryConfig,
    /// Desired state from NATS JetStream for a fleet of nodes (off unless `url` is set).
    pub fleet: FleetConfig,
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
            audit: AuditConfig::default(),
            guest_logs: GuestLogsConfig::default(),
            metering: MeteringConfig::default(),
            storage: StorageConfig::default(),
            registry: RegistryConfig::default(),
            fleet: FleetConfig::default(),
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
    /// PEM certificate chain for the admin API; with `tls_key`, the admin API speaks HTTPS only.
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// Allow the admin API on a non-loopback address without TLS (tokens in clear text).
    pub insecure_cleartext_admin: bool,
    /// Connections the data plane holds at once; past it, new ones wait to be accepted.
    pub max_connections: usize,
    /// Connections one client address may hold on the data plane; more are closed at once.
    pub max_connections_per_client: usize,
    /// How long a client may take to send the start of a request body (all of a body up to
    /// 64 KiB) before the request takes an instance, in ms; slower: 408.
    pub request_body_timeout_ms: u64,
    /// On SIGTERM, how long requests in flight may finish before they are cut, in ms; the
    /// database is flushed after.
    pub drain_timeout_ms: u64,
    /// Threads serving data-plane connections, each with its own event loop; unset: one per
    /// CPU the process may use; 0: the node's shared multi-threaded runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_threads: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: parse_default_addr(DEFAULT_LISTEN),
            admin_listen: parse_default_addr(DEFAULT_ADMIN_LISTEN),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            token: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            insecure_cleartext_admin: false,
            max_connections: 4096,
            max_connections_per_client: 256,
            request_body_timeout_ms: 10_000,
            drain_timeout_ms: 15_000,
            http_threads: None,
        }
    }
}

impl ServerConfig {
    /// How many data-plane connection threads to start (0: none, the shared runtime).
    pub fn http_thread_count(&self) -> usize {
        self.http_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The admin TLS files, when both are set.
    pub fn admin_tls(&self) -> Option<(&Path, &Path)> {
        (!self.tls_cert.as_os_str().is_empty() && !self.tls_key.as_os_str().is_empty())
            .then_some((self.tls_cert.as_path(), self.tls_key.as_path()))
    }

    /// Refuses a cleartext admin API reachable from the network unless explicitly allowed.
    pub fn check_admin_exposure(&self) -> Result<(), ConfigError> {
        if self.admin_tls().is_none()
            && !self.admin_listen.ip().is_loopback()
            && !self.insecure_cleartext_admin
        {
            return Err(ConfigError::Invalid(format!(
                "the admin API would listen on {} without TLS, so admin tokens would cross the \
                 network in clear text: set [server] tls_cert and tls_key, keep admin_listen on \
                 loopback, or (only on an isolated management network) pass \
                 --insecure-cleartext-admin",
                self.admin_listen
            )));
        }
        Ok(())
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
    /// Highest `edge deploy --memory` an app may ask for, in MiB (also the pool's slot size).
    pub max_app_memory_mib: u64,
    /// Highest `edge deploy --timeout`, in milliseconds.
    pub max_app_request_timeout_ms: u64,
    /// Highest `edge deploy --max-body`, in bytes.
    pub max_app_body_bytes: u64,
    /// Highest `edge deploy --concurrency`.
    pub max_app_concurrent_requests: usize,
    /// Key-value data one app may keep (keys and values, all buckets), in MiB.
    pub kv_quota_mib: u64,
    /// Key-value buckets one app may have.
    pub kv_buckets: usize,
    /// Highest `edge deploy --kv-quota`, in MiB.
    pub max_app_kv_quota_mib: u64,
    /// Highest `edge deploy --kv-buckets`.
    pub max_app_kv_buckets: usize,
    /// Linear memory all guests together may hold, in MiB; past it new requests get 503.
    /// 0: half of the machine's memory.
    pub node_memory_mib: u64,
    /// Threads compiling a deployed component; 0: half the cores (at least one), leaving the
    /// rest to the data plane.
    pub compile_threads: usize,
    /// Serve big components first from the baseline compiler (Winch: a few times faster to
    /// compile, slower code) while the optimizing compile runs in the background; its code
    /// replaces the baseline's without dropping a request.
    pub baseline_tier: bool,
    /// Components from this size (KiB) take the baseline tier; smaller ones compile with the
    /// optimizing compiler at once (they take well under a second).
    pub baseline_tier_min_kib: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_mib: 128,
            request_timeout_ms: 10_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_concurrent_requests_per_app: 256,
            max_component_bytes: 64 * 1024 * 1024,
            max_app_memory_mib: 1024,
            max_app_request_timeout_ms: 300_000,
            max_app_body_bytes: 100 * 1024 * 1024,
            max_app_concurrent_requests: 1024,
            kv_quota_mib: 256,
            kv_buckets: 64,
            max_app_kv_quota_mib: 64 * 1024,
            max_app_kv_buckets: 4096,
            node_memory_mib: 0,
            compile_threads: 0,
            baseline_tier: true,
            baseline_tier_min_kib: 1024,
        }
    }
}

/// Longest request time limit the node accepts in any setting (a day): past it, deadlines
/// computed from `Instant::now()` could overflow.
pub const LONGEST_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

impl LimitsConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn memory_bytes(&self) -> usize {
        mib_to_bytes(self.memory_mib)
    }

    /// Components from this size take the baseline tier first; `None` when it is off.
    pub fn baseline_tier_min_bytes(&self) -> Option<u64> {
        self.baseline_tier
            .then_some(self.baseline_tier_min_kib.saturating_mul(1024))
    }

    /// What all guests' linear memory may take together: `node_memory_mib`, or half of the
    /// machine's memory (4 GiB where it cannot be read).
    pub fn node_memory_bytes(&self) -> u64 {
        if self.node_memory_mib > 0 {
            return self.node_memory_mib.saturating_mul(1024 * 1024);
        }
        let total_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(8 * 1024 * 1024);
        total_kib * 1024 / 2
    }

    /// The largest linear memory any instance may have: the pool's slot size.
    pub fn largest_memory_bytes(&self) -> usize {
        mib_to_bytes(self.memory_mib.max(self.max_app_memory_mib))
    }

    /// An app's limits: its deploy-time overrides over the node defaults. Fails, naming the
    /// setting and the node's maximum, when an override is out of bounds.
    pub fn resolve(&self, app: &AppLimits) -> Result<ResolvedLimits, String> {
        fn pick<T: Copy + PartialOrd + std::fmt::Display>(
            asked: Option<T>,
            default: T,
            max: T,
            min: T,
            flag: &str,
            key: &str,
        ) -> Result<T, String> {
            match asked {
                None => Ok(default),
                Some(v) if v < min => Err(format!("{flag} {v} is below the minimum of {min}")),
                Some(v) if v > max => Err(format!(
                    "{flag} {v} is above this node's maximum of {max} ([limits] {key})"
                )),
                Some(v) => Ok(v),
            }
        }
        let memory_mib = pick(
            app.memory_mib,
            self.memory_mib,
            self.max_app_memory_mib.max(self.memory_mib),
            1,
            "--memory (MiB)",
            "max_app_memory_mib",
        )?;
        let timeout_ms = pick(
            app.timeout_ms,
            self.request_timeout_ms,
            self.max_app_request_timeout_ms.max(self.request_timeout_ms),
            1,
            "--timeout (ms)",
            "max_app_request_timeout_ms",
        )?;
        let concurrency = pick(
            app.concurrency,
            self.max_concurrent_requests_per_app,
            self.max_app_concurrent_requests
                .max(self.max_concurrent_requests_per_app),
            1,
            "--concurrency",
            "max_app_concurrent_requests",
        )?;
        let max_body_bytes = pick(
            app.max_body_bytes,
            self.max_body_bytes,
            self.max_app_body_bytes.max(self.max_body_bytes),
            0,
            "--max-body (bytes)",
            "max_app_body_bytes",
        )?;
        let kv_quota_mib = pick(
            app.kv_quota_mib,
            self.kv_quota_mib,
            self.max_app_kv_quota_mib.max(self.kv_quota_mib),
            1,
            "--kv-quota (MiB)",
            "max_app_kv_quota_mib",
        )?;
        let kv_buckets = pick(
            app.kv_buckets,
            self.kv_buckets,
            self.max_app_kv_buckets.max(self.kv_buckets),
            1,
            "--kv-buckets",
            "max_app_kv_buckets",
        )?;
        Ok(ResolvedLimits {
            memory_bytes: mib_to_bytes(memory_mib),
            timeout: Duration::from_millis(timeout_ms),
            concurrency,
            max_body_bytes,
            kv: KvQuota {
                bytes: kv_quota_mib.saturating_mul(1024 * 1024),
                buckets: kv_buckets,
            },
        })
    }
}

fn mib_to_bytes(mib: u64) -> usize {
    usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// The limits an app version runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedLimits {
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time one invocation may take.
    pub timeout: Duration,
    /// Invocations in flight at once.
    pub concurrency: usize,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// What it may keep in its key-value namespace.
    pub kv: KvQuota,
}

/// The audit log (`<data_dir>/audit/audit.log`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Size at which the log file is rotated to `audit.log.1`.
    pub max_file_bytes: u64,
    /// Rotated files kept; older ones are deleted (the chain stays verifiable from the oldest
    /// kept entry on).
    pub keep_files: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 * 1024 * 1024,
            keep_files: 8,
        }
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
    /// How much of each linear memory (and table) stays resident when an instance ends,
    /// reset in place for the next instance instead of returned to the kernel and faulted in
    /// again: saves page faults and TLB shootdowns per request, costs resident memory per
    /// warm slot.
    pub keep_resident_kib: KeepResident,
}

/// `[pool] keep_resident_kib`: a number of KiB, or `"auto"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepResident {
    /// [`KeepResident::AUTO_WITH_PAGEMAP_SCAN_KIB`] where the kernel reports which pages an
    /// instance wrote (`PAGEMAP_SCAN`, Linux 6.7+), so only those are reset;
    /// [`KeepResident::AUTO_WITHOUT_PAGEMAP_SCAN_KIB`] elsewhere, where every kept byte is
    /// reset at every instance's end whether the guest touched it or not.
    Auto,
    /// Exactly this many KiB.
    Kib(u32),
}

impl KeepResident {
    /// Covers the pages an interpreter's fresh instance dirties (the Python hello of
    /// componentize-py: between 1 and 2 MiB, measured by page faults per request).
    pub const AUTO_WITH_PAGEMAP_SCAN_KIB: u32 = 2048;
    /// A blind reset of more costs small guests more than the faults it saves.
    pub const AUTO_WITHOUT_PAGEMAP_SCAN_KIB: u32 = 256;

    /// The KiB to keep, given whether the kernel has `PAGEMAP_SCAN`.
    pub fn kib(self, pagemap_scan: bool) -> u32 {
        match self {
            KeepResident::Kib(kib) => kib,
            KeepResident::Auto if pagemap_scan => Self::AUTO_WITH_PAGEMAP_SCAN_KIB,
            KeepResident::Auto => Self::AUTO_WITHOUT_PAGEMAP_SCAN_KIB,
        }
    }
}

impl Serialize for KeepResident {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            KeepResident::Auto => serializer.serialize_str("auto"),
            KeepResident::Kib(kib) => serializer.serialize_u32(*kib),
        }
    }
}

impl<'de> Deserialize<'de> for KeepResident {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = KeepResident;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of KiB or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, kib: i64) -> Result<KeepResident, E> {
                u32::try_from(kib).map(KeepResident::Kib).map_err(|_| {
                    E::custom(format!(
                        "{kib} KiB is out of range: 0 to {} or \"auto\"",
                        u32::MAX
                    ))
                })
            }
            fn visit_u64<E: serde::de::Error>(self, kib: u64) -> Result<KeepResident, E> {
                self.visit_i64(i64::try_from(kib).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<KeepResident, E> {
                if text == "auto" {
                    Ok(KeepResident::Auto)
                } else {
                    Err(E::custom(format!(
                        "\"{text}\" is not a size: give a number of KiB or \"auto\""
                    )))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_instances: 1000,
            max_memories_per_instance: 4,
            max_tables_per_instance: 16,
            max_unused_warm_slots: 100,
            keep_resident_kib: KeepResident::Auto,
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

    /// Checks values that parse but cannot work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.server.tls_cert.as_os_str().is_empty() != self.server.tls_key.as_os_str().is_empty()
        {
            return invalid("server.tls_cert and server.tls_key must be set together");
        }
        if self.limits.memory_mib == 0 {
            return invalid("limits.memory_mib must be at least 1");
        }
        if self.limits.request_timeout_ms == 0 {
            return invalid("limits.request_timeout_ms must be at least 1");
        }
        if self
            .limits
            .request_timeout_ms
            .max(self.limits.max_app_request_timeout_ms)
            > LONGEST_TIMEOUT_MS
        {
            return invalid(&format!(
                "limits.request_timeout_ms and max_app_request_timeout_ms must be at most \
                 {LONGEST_TIMEOUT_MS} (a day)"
            ));
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
        self.fleet.check().map_err(ConfigError::Invalid)?;
        if self.registry.pull_timeout_ms == 0 {
            return invalid("registry.pull_timeout_ms must be at least 1");
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
    fn keep_resident_takes_kib_or_auto_and_names_both_when_wrong() {
        let kib = NodeConfig::parse("[pool]\nkeep_resident_kib = 512\n").unwrap();
        assert_eq!(kib.pool.keep_resident_kib, KeepResident::Kib(512));
        assert_eq!(kib.pool.keep_resident_kib.kib(true), 512);
        let auto = NodeConfig::parse("[pool]\nkeep_resident_kib = \"auto\"\n").unwrap();
        assert_eq!(auto.pool.keep_resident_kib, KeepResident::Auto);
        assert_eq!(auto.pool.keep_resident_kib.kib(true), 2048);
        assert_eq!(auto.pool.keep_resident_kib.kib(false), 256);
        for wrong in ["\"lots\"", "-1"] {
            let err =
                NodeConfig::parse(&format!("[pool]\nkeep_resident_kib = {wrong}\n")).unwrap_err();
            assert!(err.contains("auto") && err.contains("KiB"), "{err}");
        }
    }

    #[test]
    fn documented_default_file_matches_embedded_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../edge-config/node.toml");
        let loaded = NodeConfig::load(Some(&path)).unwrap();
        assert_eq!(loaded, NodeConfig::default());
    }
}
