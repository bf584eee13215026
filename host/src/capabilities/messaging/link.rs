//! What both broker links share: the connection state shown by `/healthz` and metrics, the
//! reconnect backoff, and a delivered message with the handle that acknowledges it.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use super::topic::Broker;

/// A broker link's connection state.
pub struct LinkState {
    broker: Broker,
    connected: watch::Sender<bool>,
    /// Why the last attempt failed; never carries credentials (URLs are not included).
    last_error: Mutex<Option<String>>,
    gauge: Gauge,
}

impl LinkState {
    pub fn new(broker: Broker, gauge: Gauge) -> Self {
        Self {
            broker,
            connected: watch::Sender::new(false),
            last_error: Mutex::new(None),
            gauge,
        }
    }

    pub fn set_connected(&self) {
        if !self.connected.send_replace(true) {
            tracing::info!(broker = %self.broker, "broker connected");
        }
        self.gauge.set(1);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a failed or lost connection: a warning when the link was up or the reason is
    /// new (a node that never reached its broker says why once), debug while it repeats.
    pub fn set_disconnected(&self, why: impl std::fmt::Display) {
        let why = why.to_string();
        let was_connected = self.connected.send_replace(false);
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if was_connected {
            tracing::warn!(broker = %self.broker, "broker connection lost: {why}; reconnecting with backoff");
        } else if last.as_deref() != Some(why.as_str()) {
            tracing::warn!(broker = %self.broker, "broker unreachable: {why}; trying again with backoff");
        } else {
            tracing::debug!(broker = %self.broker, "broker still unreachable: {why}");
        }
        self.gauge.set(0);
        *last = Some(why);
    }

    /// Records a problem that does not drop the connection (a refused subscription).
    pub fn note_error(&self, why: String) {
        tracing::warn!(broker = %self.broker, "{why}");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves once the link is connected.
    pub async fn wait_connected(&self) {
        let mut rx = self.connected.subscribe();
        let _ = rx.wait_for(|up| *up).await;
    }
}

/// Exponential reconnect backoff: 100 ms doubling to 10 s, reset on success.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::MAX);
    }
}

/// One message delivered to an app, acknowledged once it was handled (or dead-lettered).
pub struct Delivery {
    pub broker: Broker,
    pub topic: String,
    pub payload: bytes::Bytes,
    pub headers: Vec<(String, String)>,
    /// Where a NATS request wants its reply.
    pub reply_to: Option<String>,
    pub ack: Acker,
}

/// How a delivery is acknowledged to its broker.
pub enum Acker {
    /// MQTT QoS 1: PUBACK through the app's subscriber client.
    Mqtt {
        client: rumqttc::AsyncClient,
        publish: rumqttc::Publish,
    },
    /// JetStream explicit ack.
    JetStream(Box<async_nats::jetstream::Message>),
    /// At-most-once (plain NATS subjects, MQTT QoS 0): nothing to acknowledge.
    Nothing,
}

impl Acker {
    /// Tells the broker the message is still being worked on (before a retry's wait), so
    /// JetStream does not redeliver it meanwhile; nothing to do for MQTT.
    pub async fn in_progress(&self) {
        if let Acker::JetStream(message) = self
            && let Err(err) = message
                .ack_with(async_nats::jetstream::AckKind::Progress)
                .await
        {
            tracing::debug!("telling JetStream a message is in progress: {err}");
        }
    }

    pub async fn ack(self) -> anyhow::Result<()> {
        match self {
            // Queued for the subscriber's event loop without waiting (on a task of its own when
            // the queue is full): that loop may itself be waiting for this handler's slot (it
            // stops reading while every slot is busy), and it drains its request queue only
            // between the packets it has already read.
            Acker::Mqtt { client, publish } => {
                tokio::spawn(async move {
                    if let Err(err) = client.ack(&publish).await {
                        tracing::warn!(
                            "queueing an mqtt acknowledgement failed (the message will come again): {err}"
                        );
                    }
                });
            }
            Acker::JetStream(message) => message
                .ack()
                .await
                .map_err(|err| anyhow::anyhow!("acknowledging to JetStream: {err}"))?,
            Acker::Nothing => {}
        }
        Ok(())
    }
}
