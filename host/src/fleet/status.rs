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
    /// What became of the precompiled artifact the fleet pinned for this node's platform at
    /// its last deploy since the node started: `used`, or `not used: WHY` (the node compiled
    /// it). Absent when none was pinned for its platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precompiled: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(states: &[AppState], heartbeat_at: u64) -> NodeStatus {
        let apps = states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let app = AppStatus {
                    source: format!("oci://127.0.0.1:5000/edge/app{i}@sha256:{}", "a".repeat(64)),
                    component: format!("sha256:{}", "b".repeat(64)),
                    state: *state,
                    serving: None,
                    error: (*state == AppState::Failed).then(|| "no HTTP handler".to_string()),
                    attempts: u32::from(*state == AppState::Failed),
                    retry_at: None,
                    precompiled: None,
                };
                (format!("app{i}"), app)
            })
            .collect();
        NodeStatus {
            node: "gw-1".into(),
            groups: vec!["shop".into()],
            version: "0.1.0".into(),
            heartbeat_at,
            heartbeat_s: 15,
            desired_revisions: BTreeMap::new(),
            apps,
        }
    }

    #[test]
    fn a_node_is_stale_after_three_missed_heartbeats_and_failed_apps_show_their_error() {
        let running = report(&[AppState::Running], 1000);
        assert!(running.converged());
        assert!(!running.stale(1045));
        assert!(running.stale(1046));
        let table = render(&[running], 1010);
        assert!(table.contains("converged"), "{table}");
        assert!(table.contains("app0@bbbbbbbbbbbb"), "{table}");

        let failed = report(&[AppState::Running, AppState::Failed], 1000);
        assert!(!failed.converged());
        let table = render(&[failed], 1001);
        assert!(table.contains("failed"), "{table}");
        assert!(table.contains("app1: no HTTP handler"), "{table}");
        assert!(render(&[report(&[], 0)], 1000).contains("stale"));
    }
}
