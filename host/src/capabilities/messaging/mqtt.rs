//! MQTT 3.1.1 through `rumqttc`: one publishing client per node (`ID-out`) that drains the
//! outbox, and one subscribing client per app (`ID-APP`) with a persistent session (messages
//! published while the node is down wait on the broker), QoS 1 and manual acknowledgements.
//!
//! A dropped connection is retried with backoff for ever; rumqttc resends unacknowledged
//! publishes after reconnecting, so the outbox entry being sent is never lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::MqttConfig;
use super::link::{Acker, Backoff, Delivery, LinkState};
use super::outbox::Outbox;
use super::topic::Broker;

/// Client options for one connection of this node.
fn options(
    config: &MqttConfig,
    client_id: String,
    clean_session: bool,
    max_payload: usize,
) -> anyhow::Result<MqttOptions> {
    let uri: http::Uri = config
        .url
        .parse()
        .with_context(|| "[messaging.mqtt] url is not a URL; write mqtt://HOST:PORT")?;
    let host = uri
        .host()
        .context("[messaging.mqtt] url has no host; write mqtt://HOST:PORT")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let (tls, default_port) = match uri.scheme_str() {
        Some("mqtt" | "tcp") => (false, 1883),
        Some("mqtts" | "ssl") => (true, 8883),
        other => anyhow::bail!(
            "[messaging.mqtt] url scheme {other:?} is not supported; use mqtt:// or mqtts://"
        ),
    };
    let mut options = MqttOptions::new(client_id, host, uri.port_u16().unwrap_or(default_port));
    options
        .set_keep_alive(Duration::from_secs(config.keep_alive_s.max(5)))
        .set_clean_session(clean_session)
        // Headroom for the packet header around the largest payload accepted.
        .set_max_packet_size(max_payload + 64 * 1024, max_payload + 64 * 1024);
    if let Some(user) = &config.username {
        let password = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
        options.set_credentials(user.clone(), password.to_string());
    }
    if tls {
        let transport = match &config.ca_file {
            Some(path) => rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca: std::fs::read(path)
                    .with_context(|| format!("reading [messaging.mqtt] ca_file {}", path.display()))?,
                alpn: None,
                client_auth: None,
            }),
            None => rumqttc::Transport::tls_with_default_config(),
        };
        options.set_transport(transport);
    }
    Ok(options)
}

/// Checks the section at start-up, so a bad URL stops the node with a clear error.
pub fn check_config(config: &MqttConfig) -> anyhow::Result<()> {
    options(config, config.client_id.clone(), true, 1024).map(|_| ())
}

/// Starts the node's publishing connection: sends the outbox oldest-first, one message at a
/// time, deleting each once the broker acknowledged it.
pub fn start_publisher(
    config: &MqttConfig,
    outbox: Arc<Outbox>,
    state: Arc<LinkState>,
    max_payload: usize,
) -> anyhow::Result<JoinHandle<()>> {
    let options = options(config, format!("{}-out", config.client_id), true, max_payload)?;
    let (client, eventloop) = AsyncClient::new(options, 16);
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let poller = tokio::spawn(poll_publisher(eventloop, state.clone(), acks_tx));
    Ok(tokio::spawn(async move {
        forward(client, outbox, state, acks_rx).await;
        poller.abort();
    }))
}

async fn poll_publisher(
    mut eventloop: EventLoop,
    state: Arc<LinkState>,
    acks: mpsc::UnboundedSender<u16>,
) {
    let mut backoff = Backoff::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                state.set_connected();
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                let _ = acks.send(ack.pkid);
            }
            Ok(_) => {}
            Err(err) => {
                state.set_disconnected(err);
                backoff.wait().await;
            }
        }
    }
}

async fn forward(
    client: AsyncClient,
    outbox: Arc<Outbox>,
    state: Arc<LinkState>,
    mut acks: mpsc::UnboundedReceiver<u16>,
) {
    loop {
        let (id, message) = match outbox.oldest().await {
            Ok(next) => next,
            Err(err) => {
                tracing::error!("reading the mqtt outbox: {err:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        state.wait_connected().await;
        // Acks of an earlier message resent after a reconnect are not this one's.
        while acks.try_recv().is_ok() {}
        if let Err(err) = client
            .publish(message.topic.clone(), QoS::AtLeastOnce, false, message.payload)
            .await
        {
            tracing::error!(topic = %message.topic, "dropping a message mqtt cannot send: {err}");
            outbox.remove(id);
            continue;
        }
        // One message in flight: the next PUBACK is this one's (rumqttc resends it after a
        // reconnect until it comes).
        if acks.recv().await.is_none() {
            return;
        }
        outbox.remove(id);
    }
}

/// What an app's subscriber connection subscribes to and drops.
pub struct SubscriberSpec {
    pub app: String,
    pub filters: Vec<String>,
    /// Filters of an earlier version no longer wanted: unsubscribed from the persistent session.
    pub stale: Vec<String>,
    pub max_payload: usize,
    pub max_in_flight: usize,
}

/// Starts the app's subscriber: a persistent session delivering QoS 1 messages into
/// `deliveries`, each acknowledged by its [`Acker`] after handling. A full `deliveries`
/// channel stops reading from the broker (backpressure: the broker holds the rest).
pub fn start_subscriber(
    config: &MqttConfig,
    spec: SubscriberSpec,
    state: Arc<LinkState>,
    deliveries: mpsc::Sender<Delivery>,
) -> anyhow::Result<JoinHandle<()>> {
    let client_id = format!("{}-{}", config.client_id, spec.app);
    let mut options = options(config, client_id, false, spec.max_payload)?;
    options.set_manual_acks(true);
    // Acks queue here while the loop waits on a full `deliveries`: room for all of them.
    let (client, eventloop) = AsyncClient::new(options, spec.max_in_flight * 2 + 16);
    Ok(tokio::spawn(poll_subscriber(
        client, eventloop, spec, state, deliveries,
    )))
}

async fn poll_subscriber(
    client: AsyncClient,
    mut eventloop: EventLoop,
    spec: SubscriberSpec,
    state: Arc<LinkState>,
    deliveries: mpsc::Sender<Delivery>,
) {
    let mut backoff = Backoff::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                for filter in &spec.stale {
                    let _ = client.try_unsubscribe(filter.clone());
                }
                for filter in &spec.filters {
                    if let Err(err) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        state.note_error(format!("subscribing {} to {filter}: {err}", spec.app));
                    }
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    state.note_error(format!(
                        "the mqtt broker refused a subscription of app {} (check its ACL)",
                        spec.app
                    ));
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let delivery = Delivery {
                    broker: Broker::Mqtt,
                    topic: publish.topic.clone(),
                    payload: publish.payload.clone(),
                    headers: Vec::new(),
                    reply_to: None,
                    ack: if publish.qos == QoS::AtMostOnce {
                        Acker::Nothing
                    } else {
                        Acker::Mqtt {
                            client: client.clone(),
                            publish,
                        }
                    },
                };
                if deliveries.send(delivery).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(app = %spec.app, "mqtt subscriber connection: {err}");
                backoff.wait().await;
            }
        }
    }
}

/// Deletes an app's persistent session on the broker (its subscriptions and queued
/// messages), so a removed app stops collecting messages there. Best effort, bounded.
pub async fn forget_session(config: &MqttConfig, app: &str) {
    let client_id = format!("{}-{app}", config.client_id);
    let Ok(options) = options(config, client_id, true, 1024) else {
        return;
    };
    let (client, mut eventloop) = AsyncClient::new(options, 4);
    let run = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_disconnect();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), run).await.is_err() {
        tracing::warn!(app, "could not clear the app's mqtt session (broker unreachable)");
    }
}
