//! Store-and-forward: what apps publish is first written to the node's database, one tree per
//! broker, and sent from there oldest-first by the broker's link, which deletes an entry only
//! once the broker acknowledged it. A broker outage, or a node restart during one, loses
//! nothing; messages arrive in the order they were published, possibly twice (at-least-once).
//!
//! The outbox is bounded (messages and bytes). When it is full, [`OutboxFull::Reject`] fails
//! the new publish (the guest sees the error), [`OutboxFull::DropOldest`] drops the oldest
//! stored messages to make room and counts them.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::config::OutboxFull;
use super::topic::Broker;
use crate::group_commit::GroupCommit;

/// A message waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    /// Sent as NATS headers; MQTT 3.1.1 has none, so they are dropped there.
    pub headers: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct StoredHeader {
    topic: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
}

impl OutMessage {
    /// `u32` length of a JSON header (topic, headers), the header, then the raw payload.
    fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&StoredHeader {
            topic: self.topic.clone(),
            headers: self.headers.clone(),
        })
        .expect("a string header serialises");
        let mut out = Vec::with_capacity(4 + header.len() + self.payload.len());
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let len = bytes
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .context("outbox entry shorter than its length prefix")?;
        let header = bytes
            .get(4..4 + len)
            .context("outbox entry shorter than its header")?;
        let header: StoredHeader = serde_json::from_slice(header).context("outbox header")?;
        Ok(Self {
            topic: header.topic,
            payload: bytes[4 + len..].to_vec(),
            headers: header.headers,
        })
    }
}

/// Why a publish was not stored.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "the node's {broker} outbox is full ({messages} messages, {bytes} bytes) while the \
         broker is unreachable; the message was not accepted, try again later"
    )]
    Full {
        broker: Broker,
        messages: u64,
        bytes: u64,
    },
    #[error("storing the message on the node failed: {0}")]
    Storage(String),
}

/// Bounds and policy of one outbox.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub max_messages: u64,
    pub max_bytes: u64,
    pub when_full: OutboxFull,
}

/// Counters the outbox keeps in the node's metrics.
#[derive(Clone, Default)]
pub struct OutboxMetrics {
    pub queued: Gauge,
    pub dropped: Counter,
}

struct Usage {
    messages: u64,
    bytes: u64,
}

/// One broker's outbox.
pub struct Outbox {
    broker: Broker,
    db: sled::Db,
    commit: Arc<GroupCommit>,
    tree: sled::Tree,
    limits: OutboxLimits,
    usage: Mutex<Usage>,
    metrics: OutboxMetrics,
    added: Notify,
}

impl Outbox {
    /// Opens the broker's outbox in `db`, counting what an earlier run left to send.
    pub fn open(
        db: &sled::Db,
        commit: Arc<GroupCommit>,
        broker: Broker,
        limits: OutboxLimits,
        metrics: OutboxMetrics,
    ) -> anyhow::Result<Self> {
        let tree = db
            .open_tree(format!("outbox/{broker}"))
            .with_context(|| format!("opening the {broker} outbox"))?;
        let mut usage = Usage {
            messages: 0,
            bytes: 0,
        };
        for entry in tree.iter() {
            let (_, value) = entry.with_context(|| format!("reading the {broker} outbox"))?;
            usage.messages += 1;
            usage.bytes += value.len() as u64;
        }
        if usage.messages > 0 {
            tracing::info!(
                %broker,
                messages = usage.messages,
                "messages from an earlier run wait in the outbox"
            );
        }
        metrics.queued.set(usage.messages as i64);
        Ok(Self {
            broker,
            db: db.clone(),
            commit,
            tree,
            limits,
            usage: Mutex::new(usage),
            metrics,
            added: Notify::new(),
        })
    }

    /// Stores `message` durably (flushed to disk) behind everything stored before it.
    pub async fn push(&self, message: &OutMessage) -> Result<(), OutboxError> {
        let value = message.encode();
        let size = value.len() as u64;
        {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            while usage.messages + 1 > self.limits.max_messages
                || usage.bytes + size > self.limits.max_bytes
            {
                if self.limits.when_full == OutboxFull::Reject || usage.messages == 0 {
                    return Err(OutboxError::Full {
                        broker: self.broker,
                        messages: usage.messages,
                        bytes: usage.bytes,
                    });
                }
                match self.tree.pop_min() {
                    Ok(Some((_, old))) => {
                        usage.messages -= 1;
                        usage.bytes -= old.len() as u64;
                        self.metrics.dropped.inc();
                    }
                    Ok(None) => break,
                    Err(err) => return Err(OutboxError::Storage(err.to_string())),
                }
            }
            let id = self
                .db
                .generate_id()
                .map_err(|err| OutboxError::Storage(err.to_string()))?;
            self.tree
                .insert(id.to_be_bytes(), value)
                .map_err(|err| OutboxError::Storage(err.to_string()))?;
            usage.messages += 1;
            usage.bytes += size;
            self.metrics.queued.set(usage.messages as i64);
        }
        self.commit
            .persist()
            .await
            .map_err(|err| OutboxError::Storage(err.to_string()))?;
        self.added.notify_one();
        Ok(())
    }

    /// The oldest stored message, waiting for one when the outbox is empty.
    pub async fn oldest(&self) -> anyhow::Result<(u64, OutMessage)> {
        loop {
            if let Some(next) = self.first_after(None)? {
                return Ok(next);
            }
            self.added().await;
        }
    }

    /// The first stored message after `after` (the oldest when `None`), if there is one.
    pub fn first_after(&self, after: Option<u64>) -> anyhow::Result<Option<(u64, OutMessage)>> {
        loop {
            let entry = match after {
                None => self.tree.first()?,
                Some(id) => self
                    .tree
                    .range(id.saturating_add(1).to_be_bytes()..)
                    .next()
                    .transpose()?,
            };
            let Some((key, value)) = entry else {
                return Ok(None);
            };
            let id = u64::from_be_bytes(key.as_ref().try_into().context("outbox key")?);
            match OutMessage::decode(&value) {
                Ok(message) => return Ok(Some((id, message))),
                Err(err) => {
                    tracing::error!(broker = %self.broker, "dropping an unreadable outbox entry: {err:#}");
                    self.remove(id);
                }
            }
        }
    }

    /// Resolves once a message was stored since the last call returned (a store between a
    /// look at the outbox and this call is not missed). One caller, the broker's sender.
    pub async fn added(&self) {
        self.added.notified().await;
    }

    /// Deletes a sent message.
    pub fn remove(&self, id: u64) {
        match self.tree.remove(id.to_be_bytes()) {
            Ok(Some(old)) => {
                let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
                usage.messages = usage.messages.saturating_sub(1);
                usage.bytes = usage.bytes.saturating_sub(old.len() as u64);
                self.metrics.queued.set(usage.messages as i64);
            }
            Ok(None) => {}
            Err(err) => tracing::error!(broker = %self.broker, "removing a sent message: {err}"),
        }
    }

    /// Messages waiting to be sent.
    pub fn len(&self) -> u64 {
        self.usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(i: u32) -> OutMessage {
        OutMessage {
            topic: format!("alerts/{i}"),
            payload: vec![i as u8; 10],
            headers: vec![("k".into(), "v".into())],
        }
    }

    fn open(dir: &std::path::Path, max_messages: u64, when_full: OutboxFull) -> (sled::Db, Outbox) {
        let db = crate::group_commit::open_test_db(dir);
        let outbox = Outbox::open(
            &db,
            Arc::new(GroupCommit::new(db.clone())),
            Broker::Mqtt,
            OutboxLimits {
                max_messages,
                max_bytes: 1 << 20,
                when_full,
            },
            OutboxMetrics::default(),
        )
        .unwrap();
        (db, outbox)
    }

    #[tokio::test]
    async fn messages_come_out_oldest_first_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_db, outbox) = open(dir.path(), 10, OutboxFull::Reject);
            for i in 0..3 {
                outbox.push(&message(i)).await.unwrap();
            }
            let (id, first) = outbox.oldest().await.unwrap();
            assert_eq!(first, message(0));
            outbox.remove(id);
        }
        let (_db, outbox) = open(dir.path(), 10, OutboxFull::Reject);
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.oldest().await.unwrap().1, message(1));
    }

    #[tokio::test]
    async fn a_full_outbox_rejects_or_drops_the_oldest_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, outbox) = open(&dir.path().join("reject"), 2, OutboxFull::Reject);
        outbox.push(&message(0)).await.unwrap();
        outbox.push(&message(1)).await.unwrap();
        let err = outbox.push(&message(2)).await.unwrap_err();
        assert!(err.to_string().contains("outbox is full"), "{err}");
        assert_eq!(outbox.oldest().await.unwrap().1, message(0));

        let (_db, outbox) = open(&dir.path().join("drop"), 2, OutboxFull::DropOldest);
        for i in 0..3 {
            outbox.push(&message(i)).await.unwrap();
        }
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.oldest().await.unwrap().1, message(1));
    }
}
