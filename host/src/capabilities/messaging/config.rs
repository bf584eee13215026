//! The `[messaging]` section: which brokers this node talks to and how message delivery is
//! bounded. Credentials are kept out of `Debug` output, logs and errors.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::secret::Secret;

/// `[messaging]`: delivery limits shared by both brokers, plus one section per broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingConfig {
    /// `[messaging.mqtt]`: absent, the node has no MQTT broker and refuses `mqtt:` grants.
    pub mqtt: Option<MqttConfig>,
    /// `[messaging.nats]`: absent, the node has no NATS server and refuses `nats:` grants.
    pub nats: Option<NatsConfig>,
    /// Largest message payload, in bytes, delivered to a guest or accepted from one.
    pub max_payload_bytes: usize,
    /// Messages one app handles at once. 1 keeps each topic's messages in arrival order.
    pub max_in_flight_per_app: usize,
    /// Further attempts after a handler fails (traps, times out or returns an error).
    pub retries: u32,
    /// Wait before the first retry, in ms; doubles on each later one (at most 30 s).
    pub retry_backoff_ms: u64,
    /// Messages kept on the node while a broker is unreachable, per broker.
    pub outbox_max_messages: u64,
    /// Payload bytes kept on the node while a broker is unreachable, per broker.
    pub outbox_max_bytes: u64,
    /// What a publish does when the outbox is full.
    pub outbox_full: OutboxFull,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            mqtt: None,
            nats: None,
            max_payload_bytes: 1024 * 1024,
            max_in_flight_per_app: 16,
            retries: 3,
            retry_backoff_ms: 200,
            outbox_max_messages: 100_000,
            outbox_max_bytes: 64 * 1024 * 1024,
            outbox_full: OutboxFull::Reject,
        }
    }
}

impl MessagingConfig {
    /// The wait before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(16);
        Duration::from_millis(self.retry_backoff_ms.saturating_mul(factor).min(30_000))
    }
}

/// What a publish does when the broker is unreachable and the outbox is at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboxFull {
    /// The publish fails with an error the guest sees; nothing stored is dropped.
    Reject,
    /// The oldest stored messages are dropped (and counted) to make room.
    DropOldest,
}

/// `[messaging.mqtt]`: one MQTT 3.1.1 broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://HOST:PORT`, or `mqtts://HOST:PORT` for TLS.
    pub url: String,
    /// Prefix of this node's client ids: `ID-out` publishes, `ID-APP` subscribes for an app.
    /// Unique per node on the broker: two nodes with the same id take each other's sessions.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file with the CA certificates trusted for `mqtts://` (default: the webpki roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds between keep-alive pings.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
}

/// `[messaging.nats]`: one NATS server (or cluster URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://HOST:PORT`, or `tls://HOST:PORT` for TLS.
    pub url: String,
    /// Connection name, and prefix of the durable consumer names (`ID-APP-N`).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub token: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// PEM file with extra CA certificates trusted for TLS.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Subscribe through JetStream durable consumers with explicit acks (at-least-once).
    /// `false`: plain subjects, at-most-once (a message sent while the node is down is lost).
    #[serde(default = "default_true")]
    pub jetstream: bool,
    /// How long JetStream waits for an ack before redelivering, in ms. Keep it above the
    /// request time limit times the attempts.
    #[serde(default = "default_ack_wait_ms")]
    pub ack_wait_ms: u64,
}

fn default_client_id() -> String {
    "edge".into()
}

fn default_keep_alive_s() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

fn default_ack_wait_ms() -> u64 {
    30_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_appear_in_debug_output() {
        let config: MessagingConfig = toml::from_str(
            r#"
            [mqtt]
            url = "mqtt://127.0.0.1:1883"
            username = "gw"
            password = "hunter2"
            [nats]
            url = "nats://127.0.0.1:4222"
            token = "s3cret-token"
            "#,
        )
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret-token"));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        let config = MessagingConfig::default();
        assert_eq!(config.backoff(1), Duration::from_millis(200));
        assert_eq!(config.backoff(3), Duration::from_millis(800));
        assert_eq!(config.backoff(40), Duration::from_secs(30));
    }
}
