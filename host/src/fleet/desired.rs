//! Desired state: the apply file (`[groups.G.apps.NAME]`, `[nodes.N.apps.NAME]`), the
//! document stored per group and per node, and how a node merges the documents it follows.
//!
//! ```toml
//! [groups.shop-floor.apps.hello]
//! source = "oci://registry.example.com/edge/hello:1.4"   # pinned to a digest at apply
//! route = "/hello"
//! kv = true
//! env = { GREETING = "hi" }
//! ```
//! An app's settings are the ones `edge deploy` takes, under the same names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::api::AppLimits;
use crate::capabilities::config::ConfigValues;
use crate::capabilities::messaging::MessagingGrant;
use crate::capabilities::outbound_http::OutboundGrant;
use crate::control::node::DeploySpec;
use crate::control::repository::{Grants, SourceRecord};

/// One app as the fleet wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredApp {
    /// `oci://REGISTRY/REPO:TAG` in a file; `oci://…@sha256:…` once applied.
    pub source: String,
    /// `sha256:…` of the component bytes, filled in at apply, so a node tells whether it
    /// already runs them without asking the registry.
    #[serde(default)]
    pub component: String,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// wasi:config values: stored in the bucket, never shown by `edge fleet status`.
    #[serde(default, skip_serializing_if = "ConfigValues::is_empty")]
    pub config: ConfigValues,
    #[serde(default)]
    pub kv: bool,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub allow_outbound: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub limits: AppLimits,
    #[serde(default = "default_true")]
    pub snapshot: bool,
    /// Artifacts compiled from the component for a platform (`edge push --precompile`),
    /// platform key to `oci://…@sha256:…`: found and pinned at apply. A node uses the one
    /// for its key when `[fleet] accept_precompiled` is on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub precompiled: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

impl DesiredApp {
    /// A digest of the entry: a node runs what the fleet asked for when its record carries
    /// this digest. The precompiled artifacts are left out: they say how a node may get the
    /// component's code, not what it runs, so an artifact pushed later redeploys nothing.
    pub fn spec_digest(&self) -> String {
        let what = Self {
            precompiled: BTreeMap::new(),
            ..self.clone()
        };
        let json = serde_json::to_vec(&what).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(json))
    }

    /// The deploy this entry asks for, as the admin API would make it.
    pub fn deploy_spec(&self) -> DeploySpec {
        DeploySpec {
            route: self.route.clone(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            config: self.config.clone(),
            grants: Grants {
                kv: self.kv,
                models: self.models.clone(),
                outbound: OutboundGrant(self.allow_outbound.clone()),
                messaging: MessagingGrant {
                    subscribe: self.subscribe.clone(),
                    publish: self.publish.clone(),
                },
            },
            snapshot: self.snapshot,
            limits: self.limits.clone(),
            source: Some(SourceRecord {
                reference: self.source.clone(),
                fleet_spec: Some(self.spec_digest()),
            }),
            ..DeploySpec::default()
        }
    }
}

/// The apps of one group or one node: the value stored under its key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default)]
    pub apps: BTreeMap<String, DesiredApp>,
}

/// What `edge fleet apply` reads: the groups and nodes it replaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    #[serde(default)]
    pub groups: BTreeMap<String, Target>,
    #[serde(default)]
    pub nodes: BTreeMap<String, Target>,
}

impl FleetFile {
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: Self = toml::from_str(text).map_err(|err| err.to_string())?;
        for name in file.groups.keys() {
            super::check_name("group", name)?;
        }
        for name in file.nodes.keys() {
            super::check_name("node", name)?;
        }
        for target in file.groups.values().chain(file.nodes.values()) {
            for app in target.apps.keys() {
                crate::names::validate_app_name(app)?;
            }
        }
        Ok(file)
    }

    /// Every (key, target) the file writes.
    pub fn entries(&self) -> Vec<(String, &Target)> {
        let groups = self.groups.iter().map(|(g, t)| (super::group_key(g), t));
        let nodes = self.nodes.iter().map(|(n, t)| (super::node_key(n), t));
        groups.chain(nodes).collect()
    }
}

/// The apps a node should run: its groups' entries in order, then its own, a later one
/// replacing an earlier app of the same name. `docs` maps keys to the documents read.
pub fn merge(
    groups: &[String],
    node: &str,
    docs: &BTreeMap<String, Target>,
) -> BTreeMap<String, DesiredApp> {
    let keys = groups
        .iter()
        .map(|g| super::group_key(g))
        .chain(std::iter::once(super::node_key(node)));
    let mut apps = BTreeMap::new();
    for key in keys {
        if let Some(target) = docs.get(&key) {
            for (name, app) in &target.apps {
                apps.insert(name.clone(), app.clone());
            }
        }
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        [groups.shop.apps.hello]
        source = "oci://127.0.0.1:5000/edge/hello:v1"
        route = "/hello"
        kv = true
        env = { GREETING = "hi" }
        limits = { memory_mib = 32 }

        [groups.shop.apps.count]
        source = "oci://127.0.0.1:5000/edge/count:v1"

        [nodes.gw-2.apps.hello]
        source = "oci://127.0.0.1:5000/edge/hello:v2"
    "#;

    #[test]
    fn a_node_runs_its_groups_apps_with_its_own_entries_winning() {
        let file = FleetFile::parse(FILE).expect("parses");
        let docs: BTreeMap<String, Target> = file
            .entries()
            .into_iter()
            .map(|(k, t)| (k, t.clone()))
            .collect();
        let groups = vec!["shop".to_string()];
        let gw1 = merge(&groups, "gw-1", &docs);
        assert_eq!(gw1.len(), 2);
        assert!(gw1["hello"].source.ends_with(":v1"));
        let spec = gw1["hello"].deploy_spec();
        assert!(spec.grants.kv);
        assert_eq!(spec.limits.memory_mib, Some(32));
        assert_eq!(spec.env, vec![("GREETING".into(), "hi".into())]);
        let gw2 = merge(&groups, "gw-2", &docs);
        assert!(gw2["hello"].source.ends_with(":v2"));
        assert!(merge(&[], "gw-3", &docs).is_empty());
        assert_ne!(gw1["hello"].spec_digest(), gw2["hello"].spec_digest());
        let mut with_artifact = gw1["hello"].clone();
        with_artifact
            .precompiled
            .insert("0123456789abcdef".into(), "oci://…".into());
        assert_eq!(with_artifact.spec_digest(), gw1["hello"].spec_digest());
    }

    #[test]
    fn files_with_unknown_keys_or_bad_names_are_refused() {
        for (bad, says) in [
            (
                "[groups.shop.apps.hello]\nsource = \"x\"\nrouet = \"/\"",
                "rouet",
            ),
            ("[groups.\"a b\".apps.hello]\nsource = \"x\"", "a b"),
            ("[groups.shop.apps.Hello]\nsource = \"x\"", "Hello"),
        ] {
            let err = FleetFile::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
