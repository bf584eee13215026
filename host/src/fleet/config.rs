//! `[fleet]`: how a node reaches its fleet's desired state, and the names (groups, nodes,
//! keys) both sides agree on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::capabilities::messaging::NatsConfig;
use crate::secret::Secret;

/// Default bucket of desired state.
pub const DESIRED_BUCKET: &str = "edge-fleet";
/// Default bucket of node status.
pub const STATUS_BUCKET: &str = "edge-fleet-status";

/// `[fleet]`: the node's link to its fleet's desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// `nats://HOST:PORT` (or `tls://`); empty: no fleet, the admin API alone changes apps.
    pub url: String,
    /// This node's name in the fleet; the host name when empty.
    pub node_id: String,
    /// Groups whose desired apps this node runs (a node's own entry wins over its groups,
    /// a later group over an earlier one).
    pub groups: Vec<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// PEM file with extra CA certificates trusted for TLS.
    pub ca_file: Option<PathBuf>,
    pub bucket: String,
    pub status_bucket: String,
    /// How often the node reports (and re-reads its desired state), in seconds.
    pub heartbeat_s: u64,
    /// First wait before a failed deploy is tried again, in seconds; doubled per failure up
    /// to 32 times this. A change to the app's desired state is tried at once.
    pub retry_s: u64,
    /// Use artifacts compiled elsewhere (`edge push --precompile`) instead of compiling, when
    /// the desired state pins one for this node's platform. Off by default: such an artifact
    /// is native code, so whoever can write the fleet's desired state could run code outside
    /// the sandbox on this node. Turn it on where that is the same people who build it.
    pub accept_precompiled: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            node_id: String::new(),
            groups: Vec::new(),
            username: None,
            password: None,
            token: None,
            credentials_file: None,
            ca_file: None,
            bucket: DESIRED_BUCKET.into(),
            status_bucket: STATUS_BUCKET.into(),
            heartbeat_s: 15,
            retry_s: 30,
            accept_precompiled: false,
        }
    }
}

impl FleetConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// The node id, or the host name when none is configured.
    pub fn resolved_node_id(&self) -> String {
        if !self.node_id.is_empty() {
            return self.node_id.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().replace('.', "-"))
            .unwrap_or_else(|_| "edge".into())
    }

    /// Checks names at start-up, so a typo stops the node with a clear error.
    pub fn check(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        if !(self.url.starts_with("nats://") || self.url.starts_with("tls://")) {
            return Err("[fleet] url must be nats://HOST:PORT or tls://HOST:PORT".into());
        }
        check_name("[fleet] node_id", &self.resolved_node_id())?;
        for group in &self.groups {
            check_name("[fleet] groups", group)?;
        }
        if self.heartbeat_s == 0 || self.retry_s == 0 {
            return Err("[fleet] heartbeat_s and retry_s must be at least 1".into());
        }
        Ok(())
    }

    /// The connection settings in the shape the NATS link code takes.
    pub fn nats(&self) -> NatsConfig {
        NatsConfig {
            url: self.url.clone(),
            client_id: format!("edge-fleet-{}", self.resolved_node_id()),
            username: self.username.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            credentials_file: self.credentials_file.clone(),
            ca_file: self.ca_file.clone(),
            jetstream: true,
            ack_wait_ms: 30_000,
        }
    }
}

/// Group and node names become key tokens: letters, digits, `-` and `_`, 1 to 64 of them.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what}: {name:?} is not a valid name; use 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// The desired-state key of a group.
pub fn group_key(group: &str) -> String {
    format!("group.{group}")
}

/// The desired-state (and status) key of a node.
pub fn node_key(node: &str) -> String {
    format!("node.{node}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_section_with_a_bad_url_or_name_is_refused_and_no_url_means_no_fleet() {
        assert!(!FleetConfig::default().enabled());
        assert_eq!(FleetConfig::default().check(), Ok(()));
        let good = FleetConfig {
            url: "nats://127.0.0.1:4222".into(),
            node_id: "gw-1".into(),
            groups: vec!["shop_floor".into()],
            ..FleetConfig::default()
        };
        assert_eq!(good.check(), Ok(()));
        assert_eq!(good.nats().client_id, "edge-fleet-gw-1");
        for (bad, says) in [
            (
                FleetConfig {
                    url: "http://x".into(),
                    ..good.clone()
                },
                "nats://",
            ),
            (
                FleetConfig {
                    node_id: "gw.1".into(),
                    ..good.clone()
                },
                "node_id",
            ),
            (
                FleetConfig {
                    groups: vec!["a b".into()],
                    ..good.clone()
                },
                "groups",
            ),
        ] {
            let err = bad.check().expect_err(says);
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(group_key("shop"), "group.shop");
        assert_eq!(node_key("gw-1"), "node.gw-1");
    }

    #[test]
    fn credentials_never_appear_in_debug_output() {
        let config: FleetConfig = toml::from_str(
            "url = \"nats://127.0.0.1:4222\"\nusername = \"gw\"\npassword = \"hunter2\"\n\
             token = \"s3cret-token\"",
        )
        .expect("parses");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret-token"),
            "{debug}"
        );
    }
}
