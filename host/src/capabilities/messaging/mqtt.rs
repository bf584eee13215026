//! MQTT 3.1.1 through `rumqttc`: one publishing client per node (`ID-out`) that drains the
//! outbox, and one subscribing client per app (`ID-APP`) with a persistent session (messages
//! published while the node is down wait on the broker), QoS 1 and manual acknowledgements.
//!
//! A dropped connection is retried with backoff for ever. The outbox entry being sent stays
//! stored until its PUBACK; after a reconnect it is sent again (by rumqttc when the broker
//! kept the session, else by the forwarder), so it is never lost, at worst duplicated.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::MqttConfig;
use super::link::{Acker, Backoff, Delivery, LinkState};
use super::outbox::{OutMessage, Outbox};
use super::topic::Broker;

/// Client options for one connection of this node.
/// Publishes the node sends before waiting for the broker's acknowledgements.
const SEND_WINDOW: usize = 64;

/// MQTT's largest packet (3.1.1 §2.2.3).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// Client options for one connection of this node. Incoming packets may be as large as MQTT
/// allows: one the client refused would come back after every reconnect and block the app's
/// queue for ever, so an oversized message is read, then dead-lettered by the trigger. (Bound
/// memory with the broker's own limit, mosquitto's `message_size_limit`.)
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
        // Outgoing: headroom for the packet header around the largest payload accepted.
        .set_max_packet_size(MQTT_MAX_PACKET, max_payload + 64 * 1024);
    if let Some(user) = &config.username {
        let password = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
        options.set_credentials(user.clone(), password.to_string());
    }
    if tls {
        let transport = match &config.ca_file {
            Some(path) => rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca: std::fs::read(path).with_context(|| {
                    format!("reading [messaging.mqtt] ca_file {}", path.display())
                })?,
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

/// Starts the node's publishing connection, which sends the outbox oldest-first.
pub fn start_publisher(
    config: &MqttConfig,
    outbox: Arc<Outbox>,
    state: Arc<LinkState>,
    max_payload: usize,
) -> anyhow::Result<JoinHandle<()>> {
    let options = options(
        config,
        format!("{}-out", config.client_id),
        true,
        max_payload,
    )?;
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    eventloop.network_options.set_tcp_nodelay(true);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let poller = tokio::spawn(poll_publisher(eventloop, state.clone(), events_tx));
    Ok(tokio::spawn(async move {
        forward(client, outbox, state, events_rx).await;
        poller.abort();
    }))
}

/// What the publisher's event loop tells the forwarder.
enum PublisherEvent {
    Acked,
    /// Connected with a new session: rumqttc dropped what was unacknowledged.
    NewSession,
}

async fn poll_publisher(
    mut eventloop: EventLoop,
    state: Arc<LinkState>,
    events: mpsc::UnboundedSender<PublisherEvent>,
) {
    let mut backoff = Backoff::new();
    let mut connected_before = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                backoff.reset();
                state.set_connected();
                if connected_before && !connack.session_present {
                    let _ = events.send(PublisherEvent::NewSession);
                }
                connected_before = true;
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                let _ = events.send(PublisherEvent::Acked);
            }
            Ok(_) => {}
            Err(err) => {
                state.set_disconnected(format!("{err}{}", connection_hint(&err)));
                backoff.wait().await;
            }
        }
    }
}

/// Sends the outbox in order with up to [`SEND_WINDOW`] messages awaiting their PUBACK (the
/// broker acknowledges in the order it received them, MQTT 3.1.1 §4.6), deleting each once
/// acknowledged. After a reconnect with a new session every unacknowledged one is sent again.
async fn forward(
    client: AsyncClient,
    outbox: Arc<Outbox>,
    state: Arc<LinkState>,
    mut events: mpsc::UnboundedReceiver<PublisherEvent>,
) {
    let mut in_flight: VecDeque<(u64, OutMessage)> = VecDeque::new();
    loop {
        if in_flight.len() < SEND_WINDOW {
            state.wait_connected().await;
            if in_flight.is_empty() {
                // Acks and session news about messages already settled are not for the next.
                while events.try_recv().is_ok() {}
            }
            let after = in_flight.back().map(|(id, _)| *id);
            match outbox.first_after(after) {
                Ok(Some((id, message))) => {
                    if send(&client, &message).await {
                        in_flight.push_back((id, message));
                    } else {
                        outbox.remove(id);
                    }
                    continue;
                }
                Ok(None) if in_flight.is_empty() => {
                    outbox.added().await;
                    continue;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::error!("reading the mqtt outbox: {err:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        // The window is full, or everything stored is in flight: wait for the broker.
        match events.recv().await {
            Some(PublisherEvent::Acked) => {
                if let Some((id, _)) = in_flight.pop_front() {
                    outbox.remove(id);
                }
            }
            Some(PublisherEvent::NewSession) => {
                state.wait_connected().await;
                for (_, message) in &in_flight {
                    send(&client, message).await;
                }
            }
            None => return,
        }
    }
}

/// Queues one publish; false when MQTT can never send it (the message is dropped, logged).
async fn send(client: &AsyncClient, message: &OutMessage) -> bool {
    let queued = client
        .publish(
            message.topic.clone(),
            QoS::AtLeastOnce,
            false,
            message.payload.clone(),
        )
        .await;
    if let Err(err) = queued {
        tracing::error!(topic = %message.topic, "dropping a message mqtt cannot send: {err}");
        return false;
    }
    true
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
    // Acks queue here while the loop waits on a full `deliveries`: room for more than a
    // broker sends unacknowledged (mosquitto's max_inflight_messages is 20 by default).
    let (client, mut eventloop) = AsyncClient::new(options, (spec.max_in_flight * 4).max(1024));
    // Small packets (acks, relays) go out at once instead of waiting for Nagle's algorithm.
    eventloop.network_options.set_tcp_nodelay(true);
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
    if tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .is_err()
    {
        tracing::warn!(
            app,
            "could not clear the app's mqtt session (broker unreachable)"
        );
    }
}

/// What to check, for a connection error that trying again will not fix (empty otherwise).
fn connection_hint(err: &rumqttc::ConnectionError) -> &'static str {
    use rumqttc::{ConnectReturnCode, ConnectionError};
    match err {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => "; check [messaging.mqtt] username and password",
        ConnectionError::Tls(_) => "; check [messaging.mqtt] url (mqtts://) and ca_file",
        _ => "",
    }
}
