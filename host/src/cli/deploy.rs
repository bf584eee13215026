//! `edge deploy`: its options (sizes, durations, config values read from a file and the
//! command line), the request to the node and the line it prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::NodeArgs;
use crate::client::{DeployOptions, human_size, short_digest};
use crate::names::validate_app_name;

#[derive(Debug, Args)]
pub(super) struct DeployArgs {
    /// App name: lowercase letters, digits, '-' or '_'.
    name: String,
    /// The component: a file (.wasm), or a registry reference the node pulls,
    /// oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:DIGEST.
    file: PathBuf,
    /// Route prefix the app answers under (default /NAME).
    #[arg(long)]
    route: Option<String>,
    /// Environment variable for the app's instances, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Grant a private key-value namespace (wasi:keyvalue).
    #[arg(long)]
    kv: bool,
    /// Grant a model of the node's registry, opened with wasi:nn load-by-name (repeatable;
    /// see `edge models`).
    #[arg(long = "model", value_name = "NAME")]
    models: Vec<String>,
    /// A wasi:config value for the app, KEY=VALUE (repeatable). Values are never shown by
    /// `edge list` or the node's log, only keys.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_env)]
    config: Vec<(String, String)>,
    /// A TOML file of wasi:config values (`key = "value"` lines; numbers and booleans are
    /// passed as text). `--config` values win over the file's.
    #[arg(long, value_name = "FILE.toml")]
    config_file: Option<PathBuf>,
    /// Let the app send HTTP requests to ORIGIN: scheme, host and optional port, such as
    /// https://api.example.com, https://*.example.com or http://127.0.0.1:9000 (repeatable).
    #[arg(long = "allow-outbound", value_name = "ORIGIN")]
    allow_outbound: Vec<String>,
    /// Run the app's wasi:messaging handler for messages on BROKER:PATTERN, e.g.
    /// 'mqtt:sensors/+/temperature' or 'nats:orders.>' (repeatable; the broker is configured
    /// in the node's [messaging.mqtt] or [messaging.nats]).
    #[arg(long = "subscribe", value_name = "BROKER:PATTERN")]
    subscribe: Vec<String>,
    /// Let the app publish to topics matching BROKER:PATTERN, e.g. 'mqtt:alerts/#'
    /// (repeatable; every other topic is denied).
    #[arg(long = "publish", value_name = "BROKER:PATTERN")]
    publish: Vec<String>,
    /// Do not run the component's `wizer-initialize` at deploy (serve it un-snapshotted).
    #[arg(long)]
    no_snapshot: bool,
    /// Linear memory one instance may grow to: MiB, or a size such as 256MiB or 1GiB
    /// (default: the node's [limits] memory_mib; at most its max_app_memory_mib).
    #[arg(long, value_name = "SIZE", value_parser = parse_mib)]
    memory: Option<u64>,
    /// Time limit of one request or message, such as 500ms, 30s or 2m (default: the node's
    /// [limits] request_timeout_ms; at most its max_app_request_timeout_ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_millis)]
    timeout: Option<u64>,
    /// Requests the app serves at once; more get 503 (default: the node's
    /// [limits] max_concurrent_requests_per_app).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Largest request body: bytes, or a size such as 64KiB or 20MiB; larger ones get 413
    /// (default: the node's [limits] max_body_bytes).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    max_body: Option<u64>,
    /// Key-value data the app may keep, all buckets together: MiB, or a size such as 1GiB
    /// (default: the node's [limits] kv_quota_mib; at most its max_app_kv_quota_mib).
    #[arg(long, value_name = "SIZE", value_parser = parse_mib)]
    kv_quota: Option<u64>,
    /// Key-value buckets the app may have (default: the node's [limits] kv_buckets).
    #[arg(long, value_name = "N")]
    kv_buckets: Option<usize>,
    /// Let one instance serve up to N requests instead of a fresh instance per request.
    /// Faster for big-language components, but what a request leaves in the instance's memory
    /// is visible to the next ones (see docs/operations.md). Default 1: no reuse.
    #[arg(long, value_name = "N", default_value_t = 1)]
    reuse: u32,
    /// Requests one reused instance serves at once (WASI 0.3 components only).
    #[arg(long, value_name = "M", default_value_t = 1)]
    reuse_concurrency: u32,
    /// How long an idle reused instance is kept, such as 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_millis, default_value = "10s")]
    reuse_idle: u64,
    #[command(flatten)]
    node: NodeArgs,
}

/// A size: a plain number of `unit` bytes, or a number with B, KiB, MiB or GiB (K, M, G and
/// KB, MB, GB are read as the binary units too).
fn parse_size(text: &str, unit: u64) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. 256MiB"))?;
    let multiplier = match suffix.trim().to_ascii_lowercase().as_str() {
        "" => unit,
        "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size unit {other:?}: use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn parse_mib(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text, 1 << 20)?;
    if bytes % (1 << 20) != 0 {
        return Err(format!("memory {text:?} must be a whole number of MiB"));
    }
    Ok(bytes >> 20)
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_size(text, 1)
}

fn parse_millis(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration {text:?} ({err}): use e.g. 500ms, 30s, 2m"))?;
    u64::try_from(duration.as_millis()).map_err(|_| format!("duration {text:?} is too long"))
}

/// The config values of a deploy: the file's, then `--config` ones over them.
fn config_values(args: &DeployArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    if let Some(path) = &args.config_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        for (key, value) in table {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    value.to_string()
                }
                _ => anyhow::bail!(
                    "{}: config key {key:?} is a table, array or date; wasi:config values are \
                     text (write it as a string)",
                    path.display()
                ),
            };
            values.insert(key, text);
        }
    }
    values.extend(args.config.iter().cloned());
    Ok(values)
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if key.is_empty() {
        return Err(format!("empty variable name in {s:?}"));
    }
    Ok((key.to_string(), value.to_string()))
}

pub(super) async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    validate_app_name(&args.name).map_err(anyhow::Error::msg)?;
    let config = config_values(&args)?;
    let client = args.node.client()?;
    let reply = client
        .deploy(
            &args.name,
            &args.file,
            &DeployOptions {
                route: args.route.as_deref(),
                env: &args.env,
                kv: args.kv,
                models: &args.models,
                snapshot: !args.no_snapshot,
                config: &config,
                outbound: &args.allow_outbound,
                subscribe: &args.subscribe,
                publish: &args.publish,
                limits: &crate::api::AppLimits {
                    memory_mib: args.memory,
                    timeout_ms: args.timeout,
                    concurrency: args.concurrency,
                    max_body_bytes: args.max_body,
                    kv_quota_mib: args.kv_quota,
                    kv_buckets: args.kv_buckets,
                },
                reuse: &crate::api::Reuse {
                    requests: args.reuse,
                    concurrency: args.reuse_concurrency,
                    idle_ms: args.reuse_idle,
                },
            },
        )
        .await?;
    let snapshot = match &reply.app.snapshot {
        Some(s) => format!(
            ", snapshot of {} after a {:.0} ms init",
            human_size(s.size),
            s.init_ms
        ),
        None => String::new(),
    };
    let compiled = if reply.app.tier.as_deref() == Some("baseline") {
        format!(
            "compiled in {:.0} ms by the baseline compiler; optimized code follows in the \
             background",
            reply.compile_ms
        )
    } else if reply.compile_ms > 0.0 {
        format!("compiled in {:.0} ms", reply.compile_ms)
    } else {
        "already compiled".to_string()
    };
    let serves = match reply.app.subscribe.as_slice() {
        [] => reply.url.clone(),
        topics => format!("{} and messages on {}", reply.url, topics.join(", ")),
    };
    println!(
        "{} {} now serves {} ({}, {}{}){}",
        reply.app.name,
        short_digest(&reply.app.digest),
        serves,
        human_size(reply.app.size),
        compiled,
        snapshot,
        if reply.app.previous.is_some() {
            "; previous version kept for `edge rollback`"
        } else {
            ""
        }
    );
    for warning in &reply.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
