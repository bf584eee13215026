//! The node's broker links: for each configured broker, its connection state, its outbox and
//! the task sending it, plus starting and stopping apps' subscriptions. Nothing here blocks
//! the HTTP data plane: a broker that is down at start, at deploy or mid-stream only shows in
//! `/healthz` and metrics while the links reconnect with backoff.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{MessagingConfig, MqttConfig, NatsConfig};
use super::link::{Delivery, LinkState};
use super::outbox::{OutMessage, Outbox, OutboxError, OutboxLimits, OutboxMetrics};
use super::topic::{Broker, TopicPattern};
use super::{mqtt, nats};
use crate::group_commit::GroupCommit;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabel {
    pub broker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabel {
    pub app: String,
    /// received, acked, retried, dead_lettered, published, publish_denied, publish_failed
    pub result: &'static str,
}

/// One app's message counters (series of `edge_messages_total`).
#[derive(Clone, Default)]
pub struct AppCounters {
    pub received: Counter,
    pub acked: Counter,
    pub retried: Counter,
    pub dead_lettered: Counter,
    pub published: Counter,
    pub publish_denied: Counter,
    pub publish_failed: Counter,
}

/// The messaging series in the node's metrics.
#[derive(Clone, Default)]
pub struct MessagingMetrics {
    pub connected: Family<BrokerLabel, Gauge>,
    pub outbox_queued: Family<BrokerLabel, Gauge>,
    pub outbox_dropped: Family<BrokerLabel, Counter>,
    pub messages: Family<MessageLabel, Counter>,
}

impl MessagingMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "edge_broker_connected",
            "1 while the node is connected to the broker",
            metrics.connected.clone(),
        );
        registry.register(
            "edge_outbox_messages",
            "Published messages stored on the node, waiting for the broker",
            metrics.outbox_queued.clone(),
        );
        registry.register(
            "edge_outbox_dropped",
            "Stored messages dropped because the outbox was full (outbox_full = drop-oldest)",
            metrics.outbox_dropped.clone(),
        );
        registry.register(
            "edge_messages",
            "Messages per app: received, acked, retried, dead_lettered, published, publish_denied, publish_failed",
            metrics.messages.clone(),
        );
        metrics
    }

    /// `app`'s counters, looked up once so that counting a message takes no label lookup.
    pub fn app(&self, app: &str) -> AppCounters {
        let counter = |result| {
            self.messages
                .get_or_create(&MessageLabel {
                    app: app.to_string(),
                    result,
                })
                .clone()
        };
        AppCounters {
            received: counter("received"),
            acked: counter("acked"),
            retried: counter("retried"),
            dead_lettered: counter("dead_lettered"),
            published: counter("published"),
            publish_denied: counter("publish_denied"),
            publish_failed: counter("publish_failed"),
        }
    }

    fn label(broker: Broker) -> BrokerLabel {
        BrokerLabel {
            broker: broker.name().to_string(),
        }
    }
}

struct MqttLink {
    config: MqttConfig,
    state: Arc<LinkState>,
    outbox: Arc<Outbox>,
}

struct NatsLink {
    config: NatsConfig,
    state: Arc<LinkState>,
    outbox: Arc<Outbox>,
    client: async_nats::Client,
}

/// A broker's state as `/healthz` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BrokerStatus {
    pub broker: String,
    pub connected: bool,
    /// Messages waiting in the outbox.
    pub outbox: u64,
    /// The last connection or subscription problem, while there is one.
    pub error: Option<String>,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("this node has no {0} broker ([messaging.{0}] is not configured)")]
    NotConfigured(Broker),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Failed(String),
}

/// The node's broker links.
pub struct Brokers {
    config: MessagingConfig,
    mqtt: Option<MqttLink>,
    nats: Option<NatsLink>,
    metrics: MessagingMetrics,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Brokers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Brokers {
    /// Opens the outboxes and starts connecting to every configured broker (in the
    /// background: an unreachable broker does not delay or fail the start).
    pub async fn start(
        config: MessagingConfig,
        db: &sled::Db,
        commit: Arc<GroupCommit>,
        metrics: MessagingMetrics,
    ) -> anyhow::Result<Self> {
        let limits = OutboxLimits {
            max_messages: config.outbox_max_messages.max(1),
            max_bytes: config.outbox_max_bytes.max(1),
            when_full: config.outbox_full,
        };
        let open = |broker: Broker| -> anyhow::Result<(Arc<LinkState>, Arc<Outbox>)> {
            let label = MessagingMetrics::label(broker);
            let state = Arc::new(LinkState::new(
                broker,
                metrics.connected.get_or_create(&label).clone(),
            ));
            let outbox = Outbox::open(
                db,
                commit.clone(),
                broker,
                limits,
                OutboxMetrics {
                    queued: metrics.outbox_queued.get_or_create(&label).clone(),
                    dropped: metrics.outbox_dropped.get_or_create(&label).clone(),
                },
            )?;
            Ok((state, Arc::new(outbox)))
        };
        let mut tasks = Vec::new();
        let mqtt = match &config.mqtt {
            Some(mqtt_config) => {
                mqtt::check_config(mqtt_config)?;
                let (state, outbox) = open(Broker::Mqtt)?;
                tasks.push(mqtt::start_publisher(
                    mqtt_config,
                    outbox.clone(),
                    state.clone(),
                    config.max_payload_bytes,
                )?);
                Some(MqttLink {
                    config: mqtt_config.clone(),
                    state,
                    outbox,
                })
            }
            None => None,
        };
        let nats = match &config.nats {
            Some(nats_config) => {
                nats::check_config(nats_config)?;
                let (state, outbox) = open(Broker::Nats)?;
                let client = nats::connect(nats_config, state.clone()).await?;
                tasks.push(nats::start_publisher(
                    client.clone(),
                    outbox.clone(),
                    state.clone(),
                ));
                Some(NatsLink {
                    config: nats_config.clone(),
                    state,
                    outbox,
                    client,
                })
            }
            None => None,
        };
        Ok(Self {
            config,
            mqtt,
            nats,
            metrics,
            tasks,
        })
    }

    pub fn config(&self) -> &MessagingConfig {
        &self.config
    }

    pub fn metrics(&self) -> &MessagingMetrics {
        &self.metrics
    }

    pub fn is_configured(&self, broker: Broker) -> bool {
        match broker {
            Broker::Mqtt => self.mqtt.is_some(),
            Broker::Nats => self.nats.is_some(),
        }
    }

    fn state(&self, broker: Broker) -> Option<&Arc<LinkState>> {
        match broker {
            Broker::Mqtt => self.mqtt.as_ref().map(|l| &l.state),
            Broker::Nats => self.nats.as_ref().map(|l| &l.state),
        }
    }

    fn outbox(&self, broker: Broker) -> Option<&Arc<Outbox>> {
        match broker {
            Broker::Mqtt => self.mqtt.as_ref().map(|l| &l.outbox),
            Broker::Nats => self.nats.as_ref().map(|l| &l.outbox),
        }
    }

    /// Every configured broker's state.
    pub fn status(&self) -> Vec<BrokerStatus> {
        Broker::ALL
            .into_iter()
            .filter_map(|broker| {
                let state = self.state(broker)?;
                Some(BrokerStatus {
                    broker: broker.name().to_string(),
                    connected: state.is_connected(),
                    outbox: self.outbox(broker).map_or(0, |o| o.len()),
                    error: state.last_error(),
                })
            })
            .collect()
    }

    /// Whether `broker` is connected now (`None`: not configured).
    pub fn is_connected(&self, broker: Broker) -> Option<bool> {
        self.state(broker).map(|s| s.is_connected())
    }

    /// Stores `message` for `broker`; it is sent as soon as the broker is reachable.
    pub async fn publish(&self, broker: Broker, message: &OutMessage) -> Result<(), PublishError> {
        let outbox = self
            .outbox(broker)
            .ok_or(PublishError::NotConfigured(broker))?;
        outbox.push(message).await?;
        Ok(())
    }

    /// A NATS request, waiting for one reply.
    pub async fn request(
        &self,
        broker: Broker,
        message: &OutMessage,
        timeout: Duration,
    ) -> Result<(String, bytes::Bytes, Vec<(String, String)>), PublishError> {
        let link = self.nats_for(broker, "request-reply")?;
        nats::request(&link.client, message, timeout)
            .await
            .map_err(|err| PublishError::Failed(format!("request to {}: {err:#}", message.topic)))
    }

    /// Sends a reply to a NATS request at once (not stored: the requester is waiting now).
    pub async fn reply(&self, broker: Broker, message: &OutMessage) -> Result<(), PublishError> {
        let link = self.nats_for(broker, "replies")?;
        nats::publish_now(&link.client, message)
            .await
            .map_err(|err| PublishError::Failed(format!("reply: {err:#}")))
    }

    fn nats_for(&self, broker: Broker, what: &str) -> Result<&NatsLink, PublishError> {
        match broker {
            Broker::Nats => self
                .nats
                .as_ref()
                .ok_or(PublishError::NotConfigured(broker)),
            Broker::Mqtt => Err(PublishError::Unsupported(format!(
                "{what} need NATS; MQTT 3.1.1 has no reply topics (publish to a topic instead)"
            ))),
        }
    }

    /// Starts `app`'s subscriptions, delivering into `deliveries`; `stale` are patterns an
    /// earlier version subscribed to and this one does not. Dropping the handles stops them.
    pub fn subscribe(
        &self,
        app: &str,
        patterns: &[TopicPattern],
        stale: &[TopicPattern],
        deliveries: mpsc::Sender<Delivery>,
    ) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let of = |list: &[TopicPattern], broker| -> Vec<String> {
            list.iter()
                .filter(|p| p.broker == broker)
                .map(|p| p.pattern.clone())
                .collect()
        };
        let max_in_flight = self.config.max_in_flight_per_app.max(1);
        let mut tasks = Vec::new();
        let filters = of(patterns, Broker::Mqtt);
        if !filters.is_empty() {
            let link = self
                .mqtt
                .as_ref()
                .ok_or(PublishError::NotConfigured(Broker::Mqtt))?;
            tasks.push(mqtt::start_subscriber(
                &link.config,
                mqtt::SubscriberSpec {
                    app: app.to_string(),
                    filters,
                    stale: of(stale, Broker::Mqtt),
                    max_payload: self.config.max_payload_bytes,
                    max_in_flight,
                },
                link.state.clone(),
                deliveries.clone(),
            )?);
        }
        let subjects = of(patterns, Broker::Nats);
        if !subjects.is_empty() {
            let link = self
                .nats
                .as_ref()
                .ok_or(PublishError::NotConfigured(Broker::Nats))?;
            tasks.extend(nats::start_subscriber(
                &link.config,
                link.client.clone(),
                nats::SubscriberSpec {
                    app: app.to_string(),
                    subjects,
                    max_in_flight,
                },
                link.state.clone(),
                deliveries,
            ));
        }
        Ok(tasks)
    }

    /// Forgets a removed app's broker-side state, so the brokers stop keeping messages for
    /// it: its persistent MQTT session and its JetStream durable consumers. Best effort and
    /// bounded; an unreachable broker is logged.
    pub async fn forget(&self, app: &str, patterns: &[TopicPattern]) {
        let subscribed = |broker| patterns.iter().any(|p| p.broker == broker);
        if let Some(link) = self.mqtt.as_ref().filter(|_| subscribed(Broker::Mqtt)) {
            mqtt::forget_session(&link.config, app).await;
        }
        if let Some(link) = self.nats.as_ref().filter(|_| subscribed(Broker::Nats)) {
            for pattern in patterns.iter().filter(|p| p.broker == Broker::Nats) {
                nats::forget_consumer(&link.config, &link.client, app, &pattern.pattern).await;
            }
        }
    }
}
