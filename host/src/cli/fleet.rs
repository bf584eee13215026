//! `edge push` and `edge fleet …`: the commands that talk to a registry and to NATS instead
//! of one node's admin API.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::fleet::config::{DESIRED_BUCKET, FleetConfig, STATUS_BUCKET};
use crate::fleet::control::FleetLink;
use crate::fleet::desired::FleetFile;
use crate::oci::{OciRef, Registries, RegistryConfig};
use crate::secret::Secret;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The component file (.wasm).
    file: PathBuf,
    /// Where to publish: oci://REGISTRY/REPO:TAG.
    reference: String,
    /// Also publish the component compiled for this machine's architecture (a CPU baseline
    /// every node of it has), tagged aot-KEY-DIGEST: fleet nodes of the same architecture and
    /// edge version with `[fleet] accept_precompiled` then skip compiling it.
    #[arg(long)]
    precompile: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// How the CLI reaches a registry.
#[derive(Debug, Args)]
struct RegistryArgs {
    /// Registry user name (basic auth); anonymous when absent.
    #[arg(long, env = "EDGE_REGISTRY_USERNAME")]
    registry_username: Option<String>,
    /// Registry password; read from the environment rather than the command line.
    #[arg(long, env = "EDGE_REGISTRY_PASSWORD", hide_env_values = true)]
    registry_password: Option<String>,
    /// A registry (host:port) to reach over plain HTTP although not on loopback (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure: Vec<String>,
}

impl RegistryArgs {
    fn registries(&self, reference_registries: &[&str]) -> Registries {
        let credentials = match (&self.registry_username, &self.registry_password) {
            (Some(user), Some(password)) => reference_registries
                .iter()
                .map(|registry| crate::oci::RegistryCredential {
                    registry: (*registry).to_string(),
                    username: user.clone(),
                    password: Secret::new(password.clone()),
                })
                .collect(),
            _ => Vec::new(),
        };
        Registries::without_cache(RegistryConfig {
            insecure: self.insecure.clone(),
            credentials,
            ..RegistryConfig::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Write the desired state of the groups and nodes in FILE.toml (each replaced whole);
    /// every source is pinned to its digest first.
    Apply(ApplyArgs),
    /// Show every node's report: state, last heartbeat, what it runs, its errors.
    Status(StatusArgs),
    /// Put back the previous desired state of a group or a node.
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    file: PathBuf,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (an array of node reports).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The group to roll back.
    #[arg(long, conflicts_with = "node", required_unless_present = "node")]
    group: Option<String>,
    /// The node to roll back (its own entries, not its groups').
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    nats: NatsArgs,
}

/// How the CLI reaches the fleet's NATS server.
#[derive(Debug, Args)]
struct NatsArgs {
    /// NATS server holding the fleet's state.
    #[arg(
        long = "nats",
        env = "EDGE_FLEET_NATS",
        default_value = "nats://127.0.0.1:4222"
    )]
    url: String,
    #[arg(long = "nats-user", env = "EDGE_FLEET_NATS_USER")]
    username: Option<String>,
    #[arg(
        long = "nats-password",
        env = "EDGE_FLEET_NATS_PASSWORD",
        hide_env_values = true
    )]
    password: Option<String>,
    #[arg(
        long = "nats-token",
        env = "EDGE_FLEET_NATS_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    #[arg(long = "nats-creds", value_name = "FILE")]
    credentials_file: Option<PathBuf>,
    /// PEM file with extra CA certificates trusted for TLS.
    #[arg(long = "nats-ca-file", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Bucket of desired state.
    #[arg(long, default_value = DESIRED_BUCKET)]
    bucket: String,
    /// Bucket of node reports.
    #[arg(long, default_value = STATUS_BUCKET)]
    status_bucket: String,
}

impl NatsArgs {
    fn config(&self) -> FleetConfig {
        FleetConfig {
            url: self.url.clone(),
            node_id: "cli".into(),
            username: self.username.clone(),
            password: self.password.clone().map(Secret::new),
            token: self.token.clone().map(Secret::new),
            credentials_file: self.credentials_file.clone(),
            ca_file: self.ca_file.clone(),
            bucket: self.bucket.clone(),
            status_bucket: self.status_bucket.clone(),
            ..FleetConfig::default()
        }
    }
}

pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let reference = OciRef::parse(&args.reference)?;
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("cannot read component file {}", args.file.display()))?;
    let size = wasm.len();
    let registries = args.registry.registries(&[reference.registry()]);
    let component = crate::oci::sha256_digest(&wasm);
    let artifact = if args.precompile {
        Some(precompile(&wasm, &component).await?)
    } else {
        None
    };
    let pinned = registries.push(&reference, wasm).await?;
    println!("pushed {} ({size} bytes)", reference);
    if let Some((config, artifact)) = artifact {
        let artifact_size = artifact.len();
        let at = registries
            .push_precompiled(&reference, &config, artifact)
            .await
            .context("the component was pushed, its precompiled artifact was not")?;
        println!(
            "pushed the artifact for {} (platform {}, {artifact_size} bytes): {at}",
            config.target, config.key
        );
    }
    println!("{pinned}");
    Ok(())
}

/// Compiles `wasm` for this machine's architecture ([`PortableCompiler`]); refuses what no
/// node would take.
async fn precompile(
    wasm: &[u8],
    component: &str,
) -> anyhow::Result<(crate::oci::PrecompiledConfig, Vec<u8>)> {
    use crate::engine::portable::PortableCompiler;
    crate::control::validate::check_binary_kind(wasm)?;
    let wasm = wasm.to_vec();
    let component = component.to_string();
    if crate::engine::snapshot::exports_init(&wasm) {
        eprintln!(
            "note: the component exports wizer-initialize, so nodes snapshot it at deploy \
             and compile the snapshot; the artifact serves apps deployed with \
             snapshot = false"
        );
    }
    tokio::task::spawn_blocking(move || {
        let compiler = PortableCompiler::new().context("building the compiler")?;
        let artifact = compiler
            .precompile(&wasm)
            .context("the component does not compile, so nothing was pushed")?;
        let config = crate::oci::PrecompiledConfig {
            component,
            key: compiler.key(),
            target: compiler.target(),
            edge: env!("CARGO_PKG_VERSION").into(),
        };
        Ok((config, artifact))
    })
    .await?
}

pub async fn run(command: FleetCommand) -> anyhow::Result<()> {
    match command {
        FleetCommand::Apply(args) => apply(args).await,
        FleetCommand::Status(args) => status(args).await,
        FleetCommand::Rollback(args) => {
            let link = FleetLink::connect(&args.nats.config(), false).await?;
            let (name, node) = match (&args.group, &args.node) {
                (Some(group), _) => (group.as_str(), false),
                (None, Some(node)) => (node.as_str(), true),
                (None, None) => anyhow::bail!("name --group or --node"),
            };
            let (from, to) = link.rollback(name, node).await?;
            println!(
                "{} {name}: desired state of revision {from} is current again (revision {to})",
                if node { "node" } else { "group" }
            );
            Ok(())
        }
    }
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let file =
        FleetFile::parse(&text).map_err(|err| anyhow::anyhow!("{}: {err}", args.file.display()))?;
    let mut hosts: Vec<String> = Vec::new();
    for (_, target) in file.entries() {
        for app in target.apps.values() {
            if let Ok(reference) = OciRef::parse(&app.source) {
                hosts.push(reference.registry().to_string());
            }
        }
    }
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let registries = args.registry.registries(&hosts);
    let link = FleetLink::connect(&args.nats.config(), true).await?;
    let (written, notes) = link.apply(file, &registries).await?;
    for note in notes {
        println!("{note}");
    }
    for (key, revision, apps) in written {
        println!("{key}: {apps} apps (revision {revision})");
    }
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let link = FleetLink::connect(&args.nats.config(), false).await?;
    let statuses = link.statuses().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(());
    }
    if statuses.is_empty() {
        println!("no node has reported yet");
        return Ok(());
    }
    print!(
        "{}",
        crate::fleet::status::render(&statuses, crate::names::unix_now())
    );
    Ok(())
}
