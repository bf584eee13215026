//! `edge list` and `edge models`: what the node serves and the models it has, as a table or
//! as JSON.

use clap::Args;

use super::NodeArgs;
use crate::client::{human_size, short_digest};

#[derive(Debug, Args)]
pub(super) struct ListArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) node: NodeArgs,
}

pub(super) async fn list(args: ListArgs) -> anyhow::Result<()> {
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

pub(super) async fn models(args: ListArgs) -> anyhow::Result<()> {
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
