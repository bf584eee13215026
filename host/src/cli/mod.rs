//! The `edge` command line: argument parsing and the output of each subcommand; `edge
//! deploy` is in [`deploy`], `edge list` and `edge models` in [`list`], the registry and
//! fleet commands in [`fleet`].

mod deploy;
mod fleet;
mod list;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::client::{AdminClient, human_size, short_digest};
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
    Deploy(Box<deploy::DeployArgs>),
    /// List deployed apps.
    List(list::ListArgs),
    /// Stop serving an app and delete it (its key-value data stays unless --delete-data).
    Remove(RemoveArgs),
    /// Make an app's previous version current again (run twice to undo).
    Rollback(NameArgs),
    /// List the node's models (wasi:nn), their device and input shape.
    Models(list::ListArgs),
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
    List(list::ListArgs),
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
struct NameArgs {
    name: String,
    #[command(flatten)]
    node: NodeArgs,
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
        Command::Deploy(args) => runtime.block_on(deploy::deploy(*args)),
        Command::List(args) => runtime.block_on(list::list(args)),
        Command::Models(args) => runtime.block_on(list::models(args)),
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

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
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
