//! What a node reports to the status bucket (`node.<NODE>`), and how `edge fleet status`
//! shows it. Reports carry app names, references, digests and error messages; never config
//! values or credentials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One node's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub groups: Vec<String>,
    /// The `edge` version the node runs.
    pub version: String,
    /// When the node wrote this report, in seconds since the Unix epoch.
    pub heartbeat_at: u64,
    /// How often it reports: a report older than three of these is stale.
    pub heartbeat_s: u64,
    /// The desired-state revision of each key the node last read.
    pub desired_revisions: BTreeMap<String, u64>,
    /// Every app the fleet wants on this node, and what the node made of it.
    pub apps: BTreeMap<String, AppStatus>,
}

/// An app the fleet wants on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The pinned reference the fleet asked for.
    pub source: String,
    /// `sha256:…` of the component asked for.
    pub component: String,
    pub state: AppState,
    /// Hex digest of the component the node serves under this name, if any.
    pub serving: Option<String>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Failed attempts at this desired entry so far.
    pub attempts: u32,
    /// When the next attempt is due after a failure, in seconds since the Unix epoch.
    pub retry_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Serving what the fleet asked for.
    Running,
    /// Not tried yet (or in progress).
    Pending,
    /// The last attempt failed; the node serves its previous version, if it had one.
    Failed,
}

impl NodeStatus {
    /// Whether every app the fleet wants runs.
    pub fn converged(&self) -> bool {
        self.apps.values().all(|a| a.state == AppState::Running)
    }

    /// Whether the report is older than three heartbeats at `now`.
    pub fn stale(&self, now: u64) -> bool {
        now.saturating_sub(self.heartbeat_at) > 3 * self.heartbeat_s.max(1)
    }
}

/// `edge fleet status` as a table: one line per node, then its failed apps.
pub fn render(statuses: &[NodeStatus], now: u64) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>9}  {:<8}  APPS",
        "NODE", "STATE", "HEARTBEAT", "VERSION"
    );
    for status in statuses {
        let state = if status.stale(now) {
            "stale"
        } else if status.converged() {
            "converged"
        } else if status.apps.values().any(|a| a.state == AppState::Failed) {
            "failed"
        } else {
            "pending"
        };
        let apps: Vec<String> = status
            .apps
            .iter()
            .map(|(name, app)| {
                let digest = app.component.trim_start_matches("sha256:");
                format!("{name}@{}", &digest[..digest.len().min(12)])
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>8}s  {:<8}  {}",
            status.node,
            state,
            now.saturating_sub(status.heartbeat_at),
            status.version,
            if apps.is_empty() {
                "-".to_string()
            } else {
                apps.join(" ")
            }
        );
        for (name, app) in &status.apps {
            if let Some(error) = &app.error {
                let _ = writeln!(out, "    {name}: {error}");
            }
        }
    }
    out
}
