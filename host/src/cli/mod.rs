//! The `edge` command line: argument parsing and the output of each subcommand; the
//! registry and fleet commands are in [`fleet`].

mod fleet;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::client::{AdminClient, DeployOptions, human_size, short_digest};
use crate::config::NodeConfig;
use crate::names::validate_app_name;

#[derive(Debug, Parser)]
#[command(name = "edge", version, about = "Edge WebAssembly component host")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: serve deployed apps and the admin API.
    Serve(ServeArgs),
    /// Deploy a component (wasi:http/proxy world) as app NAME, replacing its current version.
    Deploy(Box<DeployArgs>),
    /// List deployed apps.
    List(ListArgs),
    /// Stop serving an app and delete it (its key-value data stays unless --delete-data).
    Remove(RemoveArgs),
    /// Make an app's previous version current again (run twice to undo).
    Rollback(NameArgs),
    /// List the node's models (wasi:nn), their device and input shape.
    Models(ListArgs),
    /// Read and change an app's key-value data.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Create, list and revoke named admin tokens with roles (read, deploy, admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show the audit log of admin actions, or verify its hash chain (`edge audit verify`).
    Audit(AuditArgs),
    /// Show what apps consumed: invocations, wall and CPU time, memory GB-s, bytes, inferences
    /// (and how often their instances grew their memory: GROWS).
    Usage(UsageArgs),
    /// Show an app's stdout and stderr lines, with request ids.
    Logs(LogsArgs),
    /// Publish a component to an OCI registry (oci://REGISTRY/REPO:TAG).
    Push(fleet::PushArgs),
    /// Desired state for many nodes, in NATS JetStream: apply, status, rollback.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
}

#[derive(Debug, Args)]
struct UsageArgs {
    /// One app only.
    name: Option<String>,
    /// From this time on: RFC 3339 (2026-12-01T00:00:00Z) or an age (90m, 24h, 7d); counted
    /// from the start of that hour.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Print JSON (one object per app, field `invocations` and the rest).
    #[arg(long)]
    json: bool,
    /// Price the usage with a price sheet (per request, per GB-s, ...), as a bill.
    #[arg(long)]
    cost: bool,
    /// The price sheet for --cost.
    #[arg(
        long,
        value_name = "FILE.toml",
        default_value = "edge-config/prices.toml"
    )]
    prices: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct LogsArgs {
    name: String,
    /// Keep printing new lines as they come (ctrl-c stops).
    #[arg(long, short)]
    follow: bool,
    /// Only lines from this time on: RFC 3339 or an age (10m, 2h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

/// A point in time from RFC 3339 or an age before now; seconds since the epoch.
fn parse_since(text: &str) -> anyhow::Result<std::time::SystemTime> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "invalid time {text:?}: use RFC 3339 (2026-12-01T00:00:00Z) or an age such as 90m, 24h or 7d"
        )
    })?;
    std::time::SystemTime::now()
        .checked_sub(age)
        .ok_or_else(|| anyhow::anyhow!("{text:?} is before the epoch"))
}

fn epoch_millis(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret (shown this once; the node keeps only a hash).
    Create(TokenCreateArgs),
    /// List tokens: name, role, creation time (never secrets).
    List(ListArgs),
    /// Revoke a token: it is refused from now on.
    Revoke(NameArgs),
}

#[derive(Debug, Args)]
struct TokenCreateArgs {
    /// Token name, recorded in the audit log for every action taken with it.
    name: String,
    /// read: list, usage, metrics, logs; deploy: also deploy, rollback, remove (keeping data);
    /// admin: everything (delete data, kv, tokens, audit).
    #[arg(long, value_enum)]
    role: crate::auth::Role,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// `verify`: check the log's hash chain and exit non-zero if it was edited or truncated.
    #[arg(value_parser = ["verify"])]
    verify: Option<String>,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
    /// How many of the latest entries to show.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Subcommand)]
enum KvCommand {
    /// List the keys of a bucket.
    List(KvBucketArgs),
    /// Print a value (raw bytes) to stdout.
    Get(KvKeyArgs),
    /// Store a value: the VALUE argument, or stdin when it is `-`.
    Set(KvSetArgs),
    /// Delete a key.
    Delete(KvKeyArgs),
}

#[derive(Debug, Args)]
struct KvBucketArgs {
    app: String,
    bucket: String,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct KvKeyArgs {
    app: String,
    bucket: String,
    key: String,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct KvSetArgs {
    app: String,
    bucket: String,
    key: String,
    value: String,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    name: String,
    /// Also delete the app's key-value data (kept by default, so a redeploy finds it).
    #[arg(long)]
    delete_data: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Node config file (TOML); embedded defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data plane address, overriding [server] listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin API address, overriding [server] admin_listen.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Data folder, overriding [server] data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The node's own log on stderr: `text` for people, `json` (one object per line) for
    /// log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Serve the admin API without TLS on a non-loopback address. Tokens then cross the
    /// network in clear text: use only on an isolated management network.
    #[arg(long)]
    insecure_cleartext_admin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How client commands reach a node.
#[derive(Debug, Args)]
struct NodeArgs {
    /// Admin API of the node.
    #[arg(long, env = "EDGE_NODE", default_value = "http://127.0.0.1:8081")]
    node: String,
    /// Admin token; defaults to EDGE_TOKEN, then <data-dir>/admin.token.
    #[arg(long, env = "EDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data folder of a local node, to read its admin.token.
    #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// PEM file of the CA that signed the node's admin certificate (for https:// nodes).
    #[arg(long, env = "EDGE_CA_FILE", value_name = "CA.pem")]
    ca_file: Option<PathBuf>,
}

impl NodeArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::new(
            &self.node,
            self.token.clone(),
            &self.data_dir,
            self.ca_file.as_deref(),
        )
    }
}

#[derive(Debug, Args)]
struct DeployArgs {
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

#[derive(Debug, Args)]
struct ListArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct NameArgs {
    name: String,
    #[command(flatten)]
    node: NodeArgs,
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

/// Entry point of the binary: parses arguments, runs, prints one error line on failure.
pub fn main() -> ExitCode {
    quiet_error_backtraces();
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve(_));
    let failed = match run(cli) {
        Ok(()) => false,
        Err(err) => {
            eprintln!("error: {err:#}");
            true
        }
    };
    if serving {
        exit_skipping_library_destructors(i32::from(failed));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Ends the node's process without the C and C++ exit handlers. By now the node has drained,
/// flushed its database and usage, joined its start-up threads and dropped everything it owns;
/// what exit handlers would still run are the static destructors of the libraries it loaded.
/// OpenVINO's threading library (oneTBB) can crash in them while its worker threads wind down
/// (uxlfoundation/oneTBB#2186): a node stopped right after a model compiled died with SIGSEGV
/// after logging "stopped", failing a clean shutdown that had lost nothing.
fn exit_skipping_library_destructors(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[cfg(edge_link_order_profile)]
    write_link_order_profile();
    // SAFETY: `_exit` ends the process at once; no Rust state is used after it.
    #[expect(
        unsafe_code,
        reason = "ending the process without running foreign static destructors"
    )]
    unsafe {
        libc::_exit(code)
    }
}

/// Writes the profile of an instrumented build, which `_exit` would skip. Only
/// `scripts/link-order.sh` sets this cfg, with `-C profile-generate` (a cfg rather than a
/// feature: a feature would change every symbol name the profile is matched by).
#[cfg(edge_link_order_profile)]
#[expect(
    unsafe_code,
    reason = "calling the LLVM profile runtime linked into instrumented builds"
)]
fn write_link_order_profile() {
    unsafe extern "C" {
        fn __llvm_profile_write_file() -> std::ffi::c_int;
    }
    // SAFETY: the runtime is linked and initialised in builds with `-C profile-generate`; the
    // call only writes the counters to the file named by LLVM_PROFILE_FILE.
    if unsafe { __llvm_profile_write_file() } != 0 {
        eprintln!("edge: could not write the link order profile");
    }
}

/// Error values (anyhow's and wasmtime's) capture a stack backtrace whenever RUST_BACKTRACE is
/// set, unless RUST_LIB_BACKTRACE says otherwise; routine errors inside a request (a guest's
/// stream closing) would then each pay for an unwind, several % of a small request's CPU.
/// Panics keep their backtraces under RUST_BACKTRACE; error backtraces need
/// RUST_LIB_BACKTRACE=1.
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first in `main`, before any other thread exists.
        #[expect(
            unsafe_code,
            reason = "setting an environment variable before threads start"
        )]
        unsafe {
            std::env::set_var("RUST_LIB_BACKTRACE", "0");
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Registry clients (reqwest 0.13) take TLS from the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let config = serve_config(args)?;
            runtime.block_on(async {
                // Installed before the node starts, so no signal finds it without a handler.
                let shutdown = crate::daemon::shutdown_signal();
                crate::daemon::run(config, shutdown).await
            })
        }
        Command::Deploy(args) => runtime.block_on(deploy(*args)),
        Command::List(args) => runtime.block_on(list(args)),
        Command::Models(args) => runtime.block_on(models(args)),
        Command::Kv(command) => runtime.block_on(kv(command)),
        Command::Token(command) => runtime.block_on(token(command)),
        Command::Audit(args) => runtime.block_on(audit(args)),
        Command::Usage(args) => runtime.block_on(usage(args)),
        Command::Logs(args) => runtime.block_on(logs(args)),
        Command::Push(args) => runtime.block_on(fleet::push(args)),
        Command::Fleet(command) => runtime.block_on(fleet::run(command)),
        Command::Remove(args) => runtime.block_on(async {
            validate_app_name(&args.name).map_err(anyhow::Error::msg)?;
            let reply = args
                .node
                .client()?
                .remove(&args.name, args.delete_data)
                .await?;
            let data = match reply.deleted_buckets {
                Some(buckets) => format!("its key-value data was deleted ({buckets} buckets)"),
                None if reply.app.as_ref().is_some_and(|a| a.kv) => {
                    "its key-value data is kept; remove --delete-data deletes it".to_string()
                }
                None => "it had no key-value data".to_string(),
            };
            match &reply.app {
                Some(app) => println!("removed {} (was serving {}); {data}", app.name, app.route),
                None => println!("{} was not deployed; {data}", args.name),
            }
            Ok(())
        }),
        Command::Rollback(args) => runtime.block_on(async {
            validate_app_name(&args.name).map_err(anyhow::Error::msg)?;
            let app = args.node.client()?.rollback(&args.name).await?;
            println!(
                "rolled back {}: now serving {} on {} (run again to undo)",
                app.name,
                short_digest(&app.digest),
                app.route
            );
            Ok(())
        }),
    }
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            validate_app_name(&args.name).map_err(|_| {
                anyhow::anyhow!(
                    "invalid token name {:?}: use 1-63 lowercase letters, digits, '-' or '_'",
                    args.name
                )
            })?;
            let created = args
                .node
                .client()?
                .token_create(&args.name, args.role)
                .await?;
            eprintln!(
                "created token {} with role {}; its secret is printed below, once (the node keeps only a hash):",
                created.token.name, created.token.role
            );
            println!("{}", created.secret);
        }
        TokenCommand::List(args) => {
            let tokens = args.node.client()?.token_list().await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(());
            }
            println!("{:<24} {:<8} CREATED", "NAME", "ROLE");
            println!(
                "{:<24} {:<8} (bootstrap token: admin.token)",
                "admin", "admin"
            );
            for token in tokens {
                println!(
                    "{:<24} {:<8} {}",
                    token.name,
                    token.role,
                    format_time(token.created_at)
                );
            }
        }
        TokenCommand::Revoke(args) => {
            let token = args.node.client()?.token_revoke(&args.name).await?;
            println!("revoked token {} (role {})", token.name, token.role);
        }
    }
    Ok(())
}

async fn audit(args: AuditArgs) -> anyhow::Result<()> {
    let client = args.node.client()?;
    if args.verify.is_some() {
        let verified = client.audit_verify().await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&verified)?);
        }
        let range = match (verified.first_seq, verified.last_seq) {
            (Some(first), Some(last)) => format!("entries {first} to {last}"),
            _ => "no entries".to_string(),
        };
        if verified.ok {
            if !args.json {
                println!(
                    "audit log intact: {} entries ({range}), chain and head match",
                    verified.entries
                );
            }
            return Ok(());
        }
        anyhow::bail!(
            "audit log damaged: {}",
            verified.problem.unwrap_or_else(|| "unknown problem".into())
        );
    }
    let entries = client.audit(args.limit).await?;
    for entry in entries {
        if args.json {
            println!("{}", serde_json::to_string(&entry)?);
            continue;
        }
        println!(
            "{:>6} {} {:<12} {:<18} {:<20} {:<14} {}",
            entry.seq,
            entry.time,
            entry.token,
            entry.action,
            match (&entry.app, &entry.target) {
                (Some(app), Some(target)) => format!("{app} {target}"),
                (Some(app), None) => app.clone(),
                (None, Some(target)) => target.clone(),
                (None, None) => "-".to_string(),
            },
            entry.digest.as_deref().map_or("-", short_digest),
            entry.result
        );
    }
    Ok(())
}

async fn usage(args: UsageArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .map(|t| epoch_millis(t) / 1000);
    let sheet = if args.cost {
        Some(crate::prices::PriceSheet::load(&args.prices)?)
    } else {
        None
    };
    let report = args
        .node
        .client()?
        .usage(args.name.as_deref(), since)
        .await?;
    if let Some(sheet) = sheet {
        let bill = sheet.bill(&report);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&bill)?);
            return Ok(());
        }
        let c = &bill.currency;
        println!(
            "{:<20} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}",
            "APP", "INVOCATIONS", "MEMORY", "CPU", "TRANSFER", "INFERENCES", "TOTAL"
        );
        for charge in &bill.apps {
            println!(
                "{:<20} {:>14.6} {:>14.6} {:>14.6} {:>14.6} {:>14.6} {:>14.6}",
                charge.app,
                charge.invocations,
                charge.memory,
                charge.cpu,
                charge.transfer,
                charge.inferences,
                charge.total
            );
        }
        println!("free allowance: -{:.6} {c}", bill.free_allowance);
        println!("total: {:.6} {c}", bill.total);
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if report.is_empty() {
        println!(
            "no usage recorded{}",
            if since.is_some() {
                " in that period"
            } else {
                ""
            }
        );
        return Ok(());
    }
    println!(
        "{:<20} {:>12} {:>9} {:>9} {:>11} {:>10} {:>12} {:>10} {:>10} {:>10} {:>8}",
        "APP",
        "INVOCATIONS",
        "HTTP",
        "MESSAGES",
        "WALL s",
        "CPU s",
        "GB-s",
        "IN",
        "OUT",
        "INFER",
        "GROWS"
    );
    for row in report {
        let u = &row.usage;
        println!(
            "{:<20} {:>12} {:>9} {:>9} {:>11.3} {:>10.3} {:>12.6} {:>10} {:>10} {:>10} {:>8}",
            row.app,
            u.invocations,
            u.invocations_http,
            u.invocations_message,
            u.wall_seconds,
            u.cpu_seconds,
            u.gb_seconds,
            human_size(u.bytes_in).replace(' ', ""),
            human_size(u.bytes_out).replace(' ', ""),
            u.inferences,
            u.memory_growths
        );
    }
    Ok(())
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    validate_app_name(&args.name).map_err(anyhow::Error::msg)?;
    let since_ms = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()?
        .map_or(0, epoch_millis);
    let client = args.node.client()?;
    let mut after = 0;
    let mut reported_drops = 0;
    let mut first = true;
    loop {
        let wait = if args.follow && !first { 20 } else { 0 };
        first = false;
        let page = client.logs(&args.name, after, since_ms, wait).await?;
        for line in &page.lines {
            if args.json {
                println!("{}", serde_json::to_string(line)?);
            } else {
                let time = humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(line.time_ms),
                );
                println!(
                    "{time} {} {:<6} {}",
                    line.request_id, line.stream, line.text
                );
            }
        }
        if page.dropped > reported_drops && !args.json && !args.follow {
            eprintln!(
                "note: {} lines were dropped by the app's log rate limit ([guest_logs])",
                page.dropped
            );
        }
        reported_drops = page.dropped;
        after = page.next_after;
        if !args.follow && page.lines.is_empty() {
            return Ok(());
        }
        if !args.follow && page.lines.len() < 1000 {
            return Ok(());
        }
    }
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn format_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

async fn kv(command: KvCommand) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    match command {
        KvCommand::List(a) => {
            for key in a.node.client()?.kv_list(&a.app, &a.bucket).await? {
                println!("{key}");
            }
        }
        KvCommand::Get(a) => {
            let value = a.node.client()?.kv_get(&a.app, &a.bucket, &a.key).await?;
            std::io::stdout().write_all(&value)?;
        }
        KvCommand::Set(a) => {
            let value = if a.value == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf)?;
                buf
            } else {
                a.value.into_bytes()
            };
            a.node
                .client()?
                .kv_set(&a.app, &a.bucket, &a.key, value)
                .await?;
        }
        KvCommand::Delete(a) => {
            a.node
                .client()?
                .kv_delete(&a.app, &a.bucket, &a.key)
                .await?;
        }
    }
    Ok(())
}

fn serve_config(args: ServeArgs) -> anyhow::Result<NodeConfig> {
    let mut config = NodeConfig::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(admin) = args.admin_listen {
        config.server.admin_listen = admin;
    }
    if let Some(dir) = args.data_dir {
        config.server.data_dir = dir;
    }
    if args.insecure_cleartext_admin {
        config.server.insecure_cleartext_admin = true;
    }
    config.validate()?;
    config.server.check_admin_exposure()?;
    Ok(config)
}

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
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

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let apps = args.node.client()?.list().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&apps)?);
        return Ok(());
    }
    if apps.is_empty() {
        println!("no apps deployed; deploy one with `edge deploy NAME FILE.wasm`");
        return Ok(());
    }
    println!(
        "{:<20} {:<24} {:<14} {:>10} {:<18} {:<20} {:<20} {:<28} {:<28} {:<28} {:>10}  {:<40} {:<4} {:<16} PREVIOUS",
        "NAME",
        "ROUTE",
        "DIGEST",
        "SIZE",
        "KV",
        "MODELS",
        "CONFIG",
        "OUTBOUND",
        "SUBSCRIBE",
        "PUBLISH",
        "SNAPSHOT",
        "LIMITS (* = set at deploy)",
        "WASI",
        "REUSE"
    );
    let listed = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(",")
        }
    };
    for app in apps {
        println!(
            "{:<20} {:<24} {:<14} {:>10} {:<18} {:<20} {:<20} {:<28} {:<28} {:<28} {:>10}  {:<40} {:<4} {:<16} {}",
            app.name,
            app.route,
            short_digest(&app.digest),
            human_size(app.size),
            describe_kv(&app),
            listed(&app.models),
            listed(&app.config),
            listed(&app.outbound),
            listed(&app.subscribe),
            listed(&app.publish),
            app.snapshot
                .as_ref()
                .map_or_else(|| "-".to_string(), |s| human_size(s.size)),
            app.limits
                .as_ref()
                .map_or_else(|| "-".to_string(), describe_limits),
            app.wasi_http.as_deref().unwrap_or("-"),
            describe_reuse(&app.reuse),
            app.previous
                .as_ref()
                .map_or("-", |p| short_digest(&p.digest))
        );
    }
    Ok(())
}

/// `-` without reuse, else `128/16 idle 10s`: requests per instance / at once, idle time.
fn describe_reuse(reuse: &crate::api::Reuse) -> String {
    if !reuse.enabled() {
        return "-".to_string();
    }
    format!(
        "{}/{} idle {}",
        reuse.requests,
        reuse.concurrency,
        humantime::format_duration(std::time::Duration::from_millis(reuse.idle_ms))
    )
}

/// `-` without kv, else `1.2 MiB/256MiB*`: what it holds of its quota (`*`: set at deploy).
fn describe_kv(app: &crate::api::AppView) -> String {
    if !app.kv {
        return "-".to_string();
    }
    let held = app.kv_bytes.map_or_else(|| "?".to_string(), human_size);
    match &app.limits {
        Some(limits) => {
            let set = limits.overridden.iter().any(|o| o == "kv_quota");
            format!(
                "{held}/{}MiB{}",
                limits.kv_quota_mib,
                if set { "*" } else { "" }
            )
        }
        None => held,
    }
}

/// `mem 128MiB timeout 10s conc 256 body 10.0MiB`, a `*` after each value set at deploy.
fn describe_limits(limits: &crate::api::LimitsView) -> String {
    let mark = |name: &str| {
        if limits.overridden.iter().any(|o| o == name) {
            "*"
        } else {
            ""
        }
    };
    format!(
        "mem {}MiB{} timeout {}{} conc {}{} body {}{}",
        limits.memory_mib,
        mark("memory"),
        humantime::format_duration(std::time::Duration::from_millis(limits.timeout_ms)),
        mark("timeout"),
        limits.concurrency,
        mark("concurrency"),
        human_size(limits.max_body_bytes).replace(' ', ""),
        mark("max_body"),
    )
}

async fn models(args: ListArgs) -> anyhow::Result<()> {
    let view = args.node.client()?.models().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    match (&view.openvino.version, &view.openvino.error) {
        (Some(version), _) => println!(
            "OpenVINO {version}, devices: {}",
            view.openvino.devices.join(", ")
        ),
        (None, Some(error)) => println!("OpenVINO not loaded: {error}"),
        (None, None) => println!("OpenVINO not loaded"),
    }
    if view.models.is_empty() {
        println!("no models configured; add [models.NAME] sections to the node config");
        return Ok(());
    }
    println!(
        "{:<24} {:<8} {:<12} {:<32} {:>8} {:>11}",
        "NAME", "DEVICE", "PRECISION", "INPUT", "OUTPUTS", "INFERENCES"
    );
    for model in &view.models {
        if !model.loaded {
            println!(
                "{:<24} not loaded: {}",
                model.name,
                model.error.as_deref().unwrap_or("unknown reason")
            );
            continue;
        }
        let input = model
            .inputs
            .iter()
            .map(|i| format!("{} {} {:?}", i.name, i.element_type, i.shape))
            .collect::<Vec<_>>()
            .join("; ");
        // The precision in force, and the setting when it differs (bf16 asked, f32 run).
        let in_force = model.precision_in_force.as_deref().unwrap_or("?");
        let precision = match model.precision.as_deref() {
            Some(asked) if asked != in_force => format!("{in_force} ({asked})"),
            _ => in_force.to_string(),
        };
        println!(
            "{:<24} {:<8} {:<12} {:<32} {:>8} {:>11}",
            model.name,
            model.device.as_deref().unwrap_or("-"),
            precision,
            input,
            model.outputs,
            model.inferences
        );
    }
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn,wasmtime_wasi_nn=off")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}
