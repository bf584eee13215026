//! The fleet agent inside a node: watches the node's desired-state keys (its groups' and its
//! own), reconciles through the node's own deploy and remove operations, and reports to the
//! status bucket on every change and every heartbeat.
//!
//! - A watch delivers changes at once; every heartbeat the agent also reads its keys again, so
//!   a watch lost in a reconnect delays convergence by one heartbeat at most.
//! - A failed deploy is reported and tried again after `retry_s`, doubled per failure (up to
//!   32 times), or at once when its desired entry changes: never in a hot loop.
//! - Without NATS the node keeps serving what it deployed last (all of it is on its disk);
//!   at start it reads the current desired state, so a node that was off catches up.
//! - Apps the fleet deployed and no longer wants are removed (their data is kept); apps
//!   deployed through the admin API are left alone unless the fleet names them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt as _;

use super::desired::{DesiredApp, Target, merge};
use super::status::{AppState, AppStatus, NodeStatus};
use super::{FleetConfig, group_key, node_key};
use crate::capabilities::messaging::{nats_connection_hint, nats_with_credentials};
use crate::control::audit::AuditEvent;
use crate::control::node::{Node, Precompiled};
use crate::engine::portable::PortableCompiler;
use crate::error::DeployError;
use crate::names::unix_now;
use crate::oci::OciError;

/// The audit log's token name for changes the fleet made.
const AUDIT_ACTOR: &str = "fleet";

/// A failed attempt at one desired entry.
struct Attempt {
    spec_digest: String,
    failures: u32,
    retry_at: u64,
    error: String,
}

pub struct FleetAgent {
    node: Arc<Node>,
    config: FleetConfig,
    node_id: String,
    docs: BTreeMap<String, Target>,
    revisions: BTreeMap<String, u64>,
    wanted: BTreeMap<String, DesiredApp>,
    attempts: BTreeMap<String, Attempt>,
    /// What became of each app's precompiled artifact at its last deploy ("used", or why
    /// not), for the status report.
    precompiled: BTreeMap<String, String>,
    /// This node's platform key for precompiled artifacts, once computed (`None` inside:
    /// it could not be).
    platform_key: Option<Option<String>>,
}

/// Starts the agent for `node` when `[fleet]` is configured.
pub fn spawn(node: Arc<Node>) -> Option<tokio::task::JoinHandle<()>> {
    let config = node.config.fleet.clone();
    if !config.enabled() {
        return None;
    }
    let agent = FleetAgent {
        node_id: config.resolved_node_id(),
        node,
        config,
        docs: BTreeMap::new(),
        revisions: BTreeMap::new(),
        wanted: BTreeMap::new(),
        attempts: BTreeMap::new(),
        precompiled: BTreeMap::new(),
        platform_key: None,
    };
    Some(tokio::spawn(agent.run()))
}

impl FleetAgent {
    async fn run(mut self) {
        tracing::info!(node = %self.node_id, groups = ?self.config.groups, "fleet agent started");
        let first_wait = Duration::from_millis(500);
        let mut wait = first_wait;
        loop {
            let started = tokio::time::Instant::now();
            if let Err(err) = self.session().await {
                tracing::warn!("fleet: {err:#}; keeping the current apps and trying again");
            }
            // A session that ran a while was healthy: start the backoff again.
            if started.elapsed() > Duration::from_secs(60) {
                wait = first_wait;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.config.groups.iter().map(|g| group_key(g)).collect();
        keys.push(node_key(&self.node_id));
        keys
    }

    /// One connection: wait for the buckets, then watch and reconcile until the link is
    /// replaced or the watch ends.
    async fn session(&mut self) -> anyhow::Result<()> {
        let reconnects = Arc::new(AtomicU64::new(0));
        let seen = reconnects.clone();
        let nats = self.config.nats();
        let client = nats_with_credentials(async_nats::ConnectOptions::new(), &nats, "[fleet]")
            .await?
            .name(&nats.client_id)
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100u64 << attempts.min(7)).min(5_000))
            })
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            seen.fetch_add(1, Ordering::SeqCst);
                            tracing::info!("fleet: connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("fleet: NATS connection lost; serving the last state")
                        }
                        async_nats::Event::ClientError(err) => {
                            let err = err.to_string();
                            tracing::warn!(
                                "fleet: cannot use NATS: {err}; {}; serving the last state and trying again",
                                nats_connection_hint("[fleet]", &err)
                            )
                        }
                        other => tracing::debug!("fleet nats: {other}"),
                    }
                }
            })
            .connect(nats.url.as_str())
            .await?;
        let js = jetstream::new(client);
        let desired = self.bucket(&js, &self.config.bucket).await;
        let status = self.bucket(&js, &self.config.status_bucket).await;
        let heartbeat = Duration::from_secs(self.config.heartbeat_s);
        loop {
            let generation = reconnects.load(Ordering::SeqCst);
            let mut watchers = Vec::new();
            for key in self.keys() {
                watchers.push(desired.watch_with_history(&key).await?);
            }
            let mut changes = futures_util::stream::select_all(watchers);
            self.refresh(&desired).await;
            self.reconcile().await;
            self.report(&status).await;
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
            loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some(Ok(entry)) => {
                            self.absorb(&entry);
                            self.reconcile().await;
                            self.report(&status).await;
                        }
                        Some(Err(err)) => {
                            tracing::warn!("fleet: the watch failed: {err}; watching again");
                            break;
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        self.refresh(&desired).await;
                        self.reconcile().await;
                        self.report(&status).await;
                        if reconnects.load(Ordering::SeqCst) != generation {
                            tracing::info!("fleet: reconnected; watching again");
                            break;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the bucket exists (`edge fleet apply` creates it) and returns it.
    async fn bucket(&self, js: &jetstream::Context, name: &str) -> kv::Store {
        let mut wait = Duration::from_millis(200);
        let mut told = false;
        loop {
            match js.get_key_value(name).await {
                Ok(store) => return store,
                Err(err) => {
                    if !told {
                        tracing::info!(
                            "fleet: bucket {name} not available yet ({err}); waiting for \
                             `edge fleet apply` or the NATS link"
                        );
                        told = true;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Takes one change from the watch: older than what a re-read gave, it is skipped.
    fn absorb(&mut self, entry: &kv::Entry) {
        if self
            .revisions
            .get(&entry.key)
            .is_some_and(|r| *r >= entry.revision)
        {
            return;
        }
        self.take(entry);
    }

    /// Takes an entry as the key's current document.
    fn take(&mut self, entry: &kv::Entry) {
        self.revisions.insert(entry.key.clone(), entry.revision);
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Target>(&entry.value) {
                Ok(target) => {
                    self.docs.insert(entry.key.clone(), target);
                }
                Err(err) => tracing::error!(
                    key = %entry.key,
                    "fleet: desired state does not decode ({err}); keeping the previous one"
                ),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                self.docs.remove(&entry.key);
            }
        }
    }

    /// Reads every key again (anti-entropy); keeps what it has when NATS does not answer.
    async fn refresh(&mut self, desired: &kv::Store) {
        for key in self.keys() {
            match desired.entry(key.clone()).await {
                // What a read returns is current, even at a lower revision (a bucket made
                // again from nothing starts counting anew).
                Ok(Some(entry)) => self.take(&entry),
                Ok(None) => {
                    self.docs.remove(&key);
                    self.revisions.remove(&key);
                }
                Err(err) => {
                    tracing::debug!("fleet: cannot read {key}: {err}");
                    return;
                }
            }
        }
    }

    async fn reconcile(&mut self) {
        self.wanted = merge(&self.config.groups, &self.node_id, &self.docs);
        let wanted = self.wanted.clone();
        for (name, app) in &wanted {
            let spec_digest = app.spec_digest();
            if self.runs(name, &spec_digest) {
                self.attempts.remove(name);
                continue;
            }
            let now = unix_now();
            if let Some(attempt) = self.attempts.get(name)
                && attempt.spec_digest == spec_digest
                && now < attempt.retry_at
            {
                continue;
            }
            match self.deploy(name, app).await {
                Ok(precompiled) => {
                    self.attempts.remove(name);
                    match precompiled {
                        Some(note) => self.precompiled.insert(name.clone(), note),
                        None => self.precompiled.remove(name),
                    };
                }
                Err(err) => self.note_failure(name, spec_digest, err.to_string()),
            }
        }
        self.remove_unwanted().await;
    }

    /// Whether the node serves `name` as deployed for the desired entry `spec_digest`.
    fn runs(&self, name: &str, spec_digest: &str) -> bool {
        self.node
            .repo
            .get_app(name)
            .ok()
            .flatten()
            .is_some_and(|r| {
                r.current
                    .source
                    .as_ref()
                    .and_then(|s| s.fleet_spec.as_deref())
                    == Some(spec_digest)
            })
    }

    /// Deploys `app` as `name`; returns what became of its precompiled artifact, if the
    /// desired state pins one for this node's platform.
    async fn deploy(
        &mut self,
        name: &str,
        app: &DesiredApp,
    ) -> Result<Option<String>, DeployError> {
        let pulled = self.node.pull(&app.source).await?;
        if !app.component.is_empty() && pulled.layer_digest != app.component {
            return Err(OciError::DigestMismatch {
                reference: app.source.clone(),
                expected: app.component.clone(),
                actual: pulled.layer_digest,
            }
            .into());
        }
        let digest = pulled
            .layer_digest
            .trim_start_matches("sha256:")
            .to_string();
        let mut spec = app.deploy_spec();
        let mut precompiled_note = None;
        if let Some(reference) = self.precompiled_for(app).await {
            if !self.config.accept_precompiled {
                precompiled_note =
                    Some("not used: [fleet] accept_precompiled is off on this node".to_string());
            } else if crate::engine::snapshot::taken_at_deploy(spec.snapshot, &pulled.bytes) {
                // Not even pulled: the node will serve the snapshot's code.
                precompiled_note = Some(format!(
                    "not used: {}",
                    crate::engine::snapshot::ARTIFACT_OF_SNAPSHOTTED_COMPONENT
                ));
            } else {
                match self
                    .node
                    .pull_precompiled(&reference, &pulled.layer_digest)
                    .await
                {
                    Ok(artifact) => spec.precompiled = Some(artifact),
                    Err(err) => precompiled_note = Some(format!("not used: {err}")),
                }
            }
        }
        let outcome = self.node.deploy(name, pulled.bytes, spec).await;
        self.node
            .record_audit(AuditEvent {
                token: AUDIT_ACTOR.into(),
                action: "deploy",
                app: Some(name.to_string()),
                digest: Some(digest),
                result: match &outcome {
                    Ok(_) => "ok".into(),
                    Err(err) => format!("refused: {err}"),
                },
                ..AuditEvent::default()
            })
            .await;
        let outcome = outcome?;
        match &outcome.precompiled {
            Some(Precompiled::Used) => precompiled_note = Some("used".into()),
            Some(Precompiled::NotUsed(why)) => precompiled_note = Some(format!("not used: {why}")),
            None => {}
        }
        tracing::info!(
            app = name,
            source = %app.source,
            precompiled = precompiled_note.as_deref().unwrap_or("none offered"),
            "fleet: deployed"
        );
        for warning in outcome.warnings {
            tracing::warn!(app = name, "fleet: {warning}");
        }
        Ok(precompiled_note)
    }

    /// The precompiled artifact the desired state pins for this node's platform, if any.
    async fn precompiled_for(&mut self, app: &DesiredApp) -> Option<String> {
        if app.precompiled.is_empty() {
            return None;
        }
        if self.platform_key.is_none() {
            let key = tokio::task::spawn_blocking(|| PortableCompiler::new().map(|c| c.key()))
                .await
                .map_err(anyhow::Error::new)
                .and_then(|key| key);
            self.platform_key = Some(match key {
                Ok(key) => {
                    tracing::info!(
                        key,
                        "fleet: this node's platform key for precompiled artifacts"
                    );
                    Some(key)
                }
                Err(err) => {
                    tracing::warn!("fleet: no platform key, precompiled artifacts unused: {err:#}");
                    None
                }
            });
        }
        let key = self.platform_key.as_ref()?.as_ref()?;
        app.precompiled.get(key).cloned()
    }

    fn note_failure(&mut self, name: &str, spec_digest: String, error: String) {
        let attempt = self
            .attempts
            .entry(name.to_string())
            .or_insert_with(|| Attempt {
                spec_digest: spec_digest.clone(),
                failures: 0,
                retry_at: 0,
                error: String::new(),
            });
        if attempt.spec_digest != spec_digest {
            attempt.spec_digest = spec_digest;
            attempt.failures = 0;
        }
        attempt.failures += 1;
        let wait = self.config.retry_s << (attempt.failures - 1).min(5);
        attempt.retry_at = unix_now() + wait;
        attempt.error = error;
        tracing::warn!(
            app = name,
            failures = attempt.failures,
            retry_in_s = wait,
            "fleet: deploy failed: {}",
            attempt.error
        );
    }

    /// Removes apps the fleet deployed that no desired entry names any more.
    async fn remove_unwanted(&mut self) {
        let Ok(records) = self.node.repo.list_apps() else {
            return;
        };
        for record in records {
            let by_fleet = record
                .current
                .source
                .as_ref()
                .is_some_and(|s| s.fleet_spec.is_some());
            if !by_fleet || self.wanted.contains_key(&record.name) {
                continue;
            }
            let outcome = self.node.remove(&record.name, false).await;
            self.node
                .record_audit(AuditEvent {
                    token: AUDIT_ACTOR.into(),
                    action: "remove",
                    app: Some(record.name.clone()),
                    result: match &outcome {
                        Ok(_) => "ok".into(),
                        Err(err) => format!("refused: {err}"),
                    },
                    ..AuditEvent::default()
                })
                .await;
            match outcome {
                Ok(_) => tracing::info!(app = %record.name, "fleet: removed (no longer desired)"),
                Err(err) => tracing::warn!(app = %record.name, "fleet: cannot remove: {err}"),
            }
        }
    }

    fn status(&self) -> NodeStatus {
        let apps = self
            .wanted
            .iter()
            .map(|(name, app)| {
                let serving = self
                    .node
                    .repo
                    .get_app(name)
                    .ok()
                    .flatten()
                    .map(|r| r.current.digest);
                let attempt = self.attempts.get(name);
                let state = if self.runs(name, &app.spec_digest()) {
                    AppState::Running
                } else if attempt.is_some() {
                    AppState::Failed
                } else {
                    AppState::Pending
                };
                let status = AppStatus {
                    source: app.source.clone(),
                    component: app.component.clone(),
                    state,
                    serving,
                    error: attempt.map(|a| a.error.clone()),
                    attempts: attempt.map_or(0, |a| a.failures),
                    retry_at: attempt.map(|a| a.retry_at),
                    precompiled: self.precompiled.get(name).cloned(),
                };
                (name.clone(), status)
            })
            .collect();
        NodeStatus {
            node: self.node_id.clone(),
            groups: self.config.groups.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            heartbeat_at: unix_now(),
            heartbeat_s: self.config.heartbeat_s,
            desired_revisions: self.revisions.clone(),
            apps,
        }
    }

    async fn report(&self, status: &kv::Store) {
        let report = self.status();
        let bytes = match serde_json::to_vec(&report) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!("fleet: cannot encode the status: {err}");
                return;
            }
        };
        if let Err(err) = status.put(node_key(&self.node_id), bytes.into()).await {
            tracing::debug!("fleet: cannot report status: {err}");
        }
    }
}
