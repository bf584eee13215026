//! The operator's side of a fleet (`edge fleet apply`, `status`, `rollback`): it talks to NATS
//! and the registry directly, never to nodes.
//!
//! An apply resolves and checks every reference before it writes anything, so an unknown
//! reference or a non-wasm artifact changes nothing. Each group's or node's document is then
//! written in one put, with the revision read before it (a concurrent apply of the same key
//! fails instead of being lost); nodes never see half a document.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt as _;

use super::desired::{FleetFile, Target};
use super::status::NodeStatus;
use super::{FleetConfig, check_name, group_key, node_key};
use crate::capabilities::messaging::nats_with_credentials;
use crate::oci::{OciRef, Registries};

/// Versions of each desired-state key kept: how far `edge fleet rollback` can go back.
const DESIRED_HISTORY: i64 = 16;

/// How long one listing of a bucket's keys or of a key's history may take. async-nats lists
/// through an ordered consumer that ends when the server says nothing is left; one was seen
/// waiting for that forever right after the server restarted (`edge fleet status` hung for
/// 12 minutes in a test), so a listing that takes longer is started again with a new consumer.
const LISTING_PATIENCE: Duration = Duration::from_secs(5);
const LISTING_TRIES: u32 = 3;

/// The two buckets, reached from the operator's machine.
pub struct FleetLink {
    pub desired: kv::Store,
    pub status: kv::Store,
}

impl FleetLink {
    /// Connects once (no background retries: the operator is waiting). With `create`, makes
    /// the buckets when this NATS server has none yet.
    pub async fn connect(config: &FleetConfig, create: bool) -> anyhow::Result<Self> {
        let nats = config.nats();
        let client = nats_with_credentials(async_nats::ConnectOptions::new(), &nats, "--nats")
            .await?
            .name("edge-fleet-cli")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .connect(nats.url.as_str())
            .await
            .with_context(|| {
                format!(
                    "cannot reach NATS at {}; nothing was changed. Check --nats and that the \
                     server runs with JetStream (-js)",
                    nats.url
                )
            })?;
        let js = jetstream::new(client);
        let desired = bucket(&js, &config.bucket, DESIRED_HISTORY, create).await?;
        let status = bucket(&js, &config.status_bucket, 1, create).await?;
        Ok(Self { desired, status })
    }

    /// Writes the file's groups and nodes; returns `(key, revision, apps)` per entry, and
    /// notes for the operator (precompiled artifacts found, or left out and why).
    pub async fn apply(
        &self,
        mut file: FleetFile,
        registries: &Registries,
    ) -> anyhow::Result<(Vec<(String, u64, usize)>, Vec<String>)> {
        let notes = pin_references(&mut file, registries).await?;
        let mut written = Vec::new();
        for (key, target) in file.entries() {
            let value = serde_json::to_vec(target).context("encoding the desired state")?;
            let result = match self.desired.entry(key.clone()).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => self
                    .desired
                    .update(&key, value.into(), entry.revision)
                    .await
                    .map_err(anyhow::Error::new),
                Ok(_) => self
                    .desired
                    .put(&key, value.into())
                    .await
                    .map_err(anyhow::Error::new),
                Err(err) => Err(anyhow::Error::new(err)),
            };
            match result {
                Ok(revision) => written.push((key, revision, target.apps.len())),
                Err(err) => {
                    let done: Vec<&str> = written.iter().map(|(k, _, _)| k.as_str()).collect();
                    anyhow::bail!(
                        "writing {key} failed: {err:#}. Written before it: {}. Each key is \
                         replaced whole, so nodes see the old or the new document; run the \
                         same apply again to finish",
                        if done.is_empty() {
                            "none".to_string()
                        } else {
                            done.join(", ")
                        }
                    );
                }
            }
        }
        Ok((written, notes))
    }

    /// Puts back the previous distinct document of a group (`node == false`) or node;
    /// returns the revision it came from and the new one.
    pub async fn rollback(&self, name: &str, node: bool) -> anyhow::Result<(u64, u64)> {
        check_name(if node { "node" } else { "group" }, name).map_err(anyhow::Error::msg)?;
        let key = if node {
            node_key(name)
        } else {
            group_key(name)
        };
        let versions = listed(&format!("reading the history of {key}"), || async {
            let mut history = self.desired.history(&key).await?;
            let mut versions = Vec::new();
            while let Some(entry) = history.next().await {
                versions.push(entry?);
            }
            Ok(versions)
        })
        .await?;
        let current = versions
            .last()
            .filter(|e| e.operation == kv::Operation::Put)
            .with_context(|| format!("{key} has no desired state to roll back"))?;
        let previous = versions
            .iter()
            .rev()
            .filter(|e| e.operation == kv::Operation::Put)
            .find(|e| e.value != current.value)
            .with_context(|| {
                format!("{key} has no earlier, different desired state in its history")
            })?;
        let revision = self
            .desired
            .update(&key, previous.value.clone(), current.revision)
            .await
            .with_context(|| format!("writing {key}"))?;
        Ok((previous.revision, revision))
    }

    /// Every node's last report, by node name.
    pub async fn statuses(&self) -> anyhow::Result<Vec<NodeStatus>> {
        let mut names = listed("listing node reports", || async {
            let mut keys = self.status.keys().await?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                names.push(key?);
            }
            Ok(names)
        })
        .await?;
        names.sort();
        let mut statuses = Vec::new();
        for key in names {
            if let Some(value) = self
                .status
                .get(&key)
                .await
                .context("reading a node report")?
            {
                match serde_json::from_slice::<NodeStatus>(&value) {
                    Ok(status) => statuses.push(status),
                    Err(err) => tracing::warn!("the report under {key} does not decode: {err}"),
                }
            }
        }
        Ok(statuses)
    }

    /// The desired document under a key, if any.
    pub async fn desired(&self, key: &str) -> anyhow::Result<Option<Target>> {
        let Some(value) = self.desired.get(key).await? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(&value)?))
    }
}

/// Runs `list` until it finishes within [`LISTING_PATIENCE`], at most [`LISTING_TRIES`] times.
async fn listed<T, F, Fut>(what: &str, list: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    listed_within(LISTING_PATIENCE, what, list).await
}

async fn listed_within<T, F, Fut>(patience: Duration, what: &str, mut list: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    for _ in 0..LISTING_TRIES {
        if let Ok(listing) = tokio::time::timeout(patience, list()).await {
            return listing.with_context(|| what.to_string());
        }
        tracing::warn!("{what}: NATS did not finish within {patience:?}; asking again");
    }
    anyhow::bail!(
        "{what}: NATS did not finish the listing in {LISTING_TRIES} tries of {patience:?} \
         each; check that its JetStream is healthy (it may still be recovering after a \
         restart) and try again"
    )
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    history: i64,
    create: bool,
) -> anyhow::Result<kv::Store> {
    match js.get_key_value(name).await {
        Ok(store) => Ok(store),
        Err(_) if create => {
            // The stream a key-value bucket is, made directly: async-nats' create_key_value
            // first reads account limits in a shape nats-server 2.9 does not answer with.
            js.create_stream(stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: history,
                storage: stream::StorageType::File,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: stream::DiscardPolicy::New,
                num_replicas: 1,
                ..stream::Config::default()
            })
            .await
            .with_context(|| format!("creating the bucket {name}; is JetStream enabled (-js)?"))?;
            js.get_key_value(name)
                .await
                .with_context(|| format!("opening the bucket {name} just created"))
        }
        Err(err) => Err(anyhow::Error::new(err).context(format!(
            "this NATS server has no fleet bucket {name}; run `edge fleet apply` first"
        ))),
    }
}

/// Replaces every source by the reference pinned to its manifest digest and records the
/// component digest, checking each is a wasm component, and the precompiled artifacts
/// published beside it (`edge push --precompile`). Nothing is written when a source fails;
/// a precompiled artifact that is not what its tag says is left out, with a note.
async fn pin_references(
    file: &mut FleetFile,
    registries: &Registries,
) -> anyhow::Result<Vec<String>> {
    let mut notes = Vec::new();
    let targets = file.groups.iter_mut().chain(file.nodes.iter_mut());
    for (target_name, target) in targets {
        for (app, desired) in &mut target.apps {
            let reference = OciRef::parse(&desired.source)
                .with_context(|| format!("{target_name}/{app}: nothing was applied"))?;
            let (pinned, component) = registries
                .resolve(&reference)
                .await
                .with_context(|| format!("{target_name}/{app}: nothing was applied"))?;
            match registries.find_precompiled(&pinned, &component).await {
                Ok((found, skipped)) => {
                    for key in found.keys() {
                        notes.push(format!(
                            "{target_name}/{app}: precompiled artifact for platform {key}"
                        ));
                    }
                    for why in skipped {
                        notes.push(format!("{target_name}/{app}: left out: {why}"));
                    }
                    desired.precompiled = found;
                }
                Err(err) => {
                    notes.push(format!(
                        "{target_name}/{app}: no precompiled artifacts ({err}); nodes compile it"
                    ));
                    desired.precompiled.clear();
                }
            }
            desired.source = pinned.to_string();
            desired.component = component;
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listing_that_never_ends_is_asked_again_then_fails_saying_what_to_check() {
        let mut tries = 0;
        let patience = Duration::from_millis(20);
        let err = listed_within(patience, "listing node reports", || {
            tries += 1;
            std::future::pending::<anyhow::Result<()>>()
        })
        .await
        .unwrap_err();
        assert_eq!(tries, LISTING_TRIES);
        let message = format!("{err:#}");
        assert!(
            message.contains("listing node reports") && message.contains("JetStream is healthy"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_listing_stuck_once_is_answered_by_the_next_try() {
        let mut tries = 0;
        let listing = listed_within(Duration::from_millis(20), "listing node reports", || {
            tries += 1;
            let stuck = tries == 1;
            async move {
                if stuck {
                    std::future::pending::<()>().await;
                }
                Ok(vec!["gw-1".to_string()])
            }
        })
        .await
        .unwrap();
        assert_eq!((listing, tries), (vec!["gw-1".to_string()], 2));
    }
}
