//! The `edge` command line: argument parsing and the output of each subcommand.

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
    Deploy(DeployArgs),
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
}

impl NodeArgs {
    fn client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::new(&self.node, self.token.clone(), &self.data_dir)
    }
}

#[derive(Debug, Args)]
struct DeployArgs {
    /// App name: lowercase letters, digits, '-' or '_'.
    name: String,
    /// The component file (.wasm).
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
    #[command(flatten)]
    node: NodeArgs,
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
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            let config = serve_config(args)?;
            runtime.block_on(async {
                // Installed before the node starts, so no signal finds it without a handler.
                let shutdown = crate::daemon::shutdown_signal();
                crate::daemon::run(config, shutdown).await
            })
        }
        Command::Deploy(args) => runtime.block_on(deploy(args)),
        Command::List(args) => runtime.block_on(list(args)),
        Command::Models(args) => runtime.block_on(models(args)),
        Command::Kv(command) => runtime.block_on(kv(command)),
        Command::Remove(args) => runtime.block_on(async {
            validate_app_name(&args.name).map_err(anyhow::Error::msg)?;
            let app = args
                .node
                .client()?
                .remove(&args.name, args.delete_data)
                .await?;
            let data = if args.delete_data {
                "its key-value data was deleted"
            } else if app.kv {
                "its key-value data is kept; remove --delete-data deletes it"
            } else {
                "it had no key-value data"
            };
            println!("removed {} (was serving {}); {data}", app.name, app.route);
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
    let compiled = if reply.compile_ms > 0.0 {
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
        "{:<20} {:<24} {:<14} {:>10} {:>4} {:<20} {:<20} {:<28} {:<28} {:<28} {:>10}  PREVIOUS",
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
        "SNAPSHOT"
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
            "{:<20} {:<24} {:<14} {:>10} {:>4} {:<20} {:<20} {:<28} {:<28} {:<28} {:>10}  {}",
            app.name,
            app.route,
            short_digest(&app.digest),
            human_size(app.size),
            if app.kv { "yes" } else { "-" },
            listed(&app.models),
            listed(&app.config),
            listed(&app.outbound),
            listed(&app.subscribe),
            listed(&app.publish),
            app.snapshot
                .as_ref()
                .map_or_else(|| "-".to_string(), |s| human_size(s.size)),
            app.previous
                .as_ref()
                .map_or("-", |p| short_digest(&p.digest))
        );
    }
    Ok(())
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

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn,wasmtime_wasi_nn=off")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
