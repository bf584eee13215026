//! NATS through `async-nats`: one connection per node, connected in the background and
//! reconnected for ever. Subscriptions are JetStream durable pull consumers with explicit acks
//! (at-least-once; a message published while the node is down waits in the stream), or plain
//! subjects (at-most-once) when `[messaging.nats] jetstream = false`.
//!
//! A subscription uses the stream that already captures its subject; when none does, the node
//! creates one (`EDGE_<APP>_<HASH>`, file storage). The outbox is sent through JetStream when a
//! stream captures the subject (waiting for its ack), else as a plain publish, flushed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;
use sha2::Digest as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::NatsConfig;
use super::link::{Acker, Backoff, Delivery, LinkState};
use super::outbox::{OutMessage, Outbox};
use super::topic::Broker;

/// Checks the section at start-up, so a bad URL stops the node with a clear error.
pub fn check_config(config: &NatsConfig) -> anyhow::Result<()> {
    let uri: http::Uri = config
        .url
        .parse()
        .context("[messaging.nats] url is not a URL; write nats://HOST:PORT")?;
    match uri.scheme_str() {
        Some("nats" | "tls") if uri.host().is_some() => Ok(()),
        _ => anyhow::bail!("[messaging.nats] url must be nats://HOST:PORT or tls://HOST:PORT"),
    }
}

/// Connects in the background; the returned client queues work until the link is up.
pub async fn connect(
    config: &NatsConfig,
    state: Arc<LinkState>,
) -> anyhow::Result<async_nats::Client> {
    let events = state.clone();
    let options = with_credentials(
        async_nats::ConnectOptions::new(),
        config,
        "[messaging.nats]",
    )
    .await?
    .name(&config.client_id)
    .retry_on_initial_connect()
    .connection_timeout(Duration::from_secs(5))
    .reconnect_delay_callback(|attempts| {
        Duration::from_millis((100u64 << attempts.min(7)).min(10_000))
    })
    .event_callback(move |event| {
        let state = events.clone();
        async move {
            match event {
                async_nats::Event::Connected => state.set_connected(),
                async_nats::Event::Disconnected => state.set_disconnected("disconnected"),
                async_nats::Event::ClientError(err) => {
                    let err = err.to_string();
                    let hint = connection_hint("[messaging.nats]", &err);
                    state.set_disconnected(format!("{err}; {hint}"))
                }
                async_nats::Event::ServerError(err) => {
                    state.note_error(format!("nats server error: {err}"))
                }
                other => tracing::debug!("nats: {other}"),
            }
        }
    });
    let client = options
        .connect(config.url.as_str())
        .await
        .context("setting up the nats connection")?;
    Ok(client)
}

/// What to check for a NATS client error that trying again will not fix; `section` names the
/// config section (`[messaging.nats]`, `[fleet]`).
pub fn connection_hint(section: &str, error: &str) -> String {
    let error = error.to_ascii_lowercase();
    if error.contains("authorization") || error.contains("authentication") {
        format!("check {section} username and password, token or credentials_file")
    } else if error.contains("certificate") || error.contains("tls") {
        format!("check {section} url (tls://) and ca_file")
    } else {
        format!("check {section} url and that the server is up (with -js where JetStream is used)")
    }
}

/// Adds the credentials and TLS settings of `config` to `options`; `section` names the config
/// section in errors (`[messaging.nats]`, `[fleet]`).
pub async fn with_credentials(
    mut options: async_nats::ConnectOptions,
    config: &NatsConfig,
    section: &str,
) -> anyhow::Result<async_nats::ConnectOptions> {
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose().to_string());
    }
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .with_context(|| format!("reading {section} credentials_file {}", path.display()))?;
    }
    if let Some(path) = &config.ca_file {
        options = options
            .add_root_certificates(path.clone())
            .require_tls(true);
    }
    if config.url.starts_with("tls://") {
        options = options.require_tls(true);
    }
    Ok(options)
}

fn header_map(headers: &[(String, String)]) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (name, value) in headers {
        map.append(name.as_str(), value.as_str());
    }
    map
}

fn headers_of(map: Option<&async_nats::HeaderMap>) -> Vec<(String, String)> {
    let Some(map) = map else { return Vec::new() };
    let mut headers: Vec<(String, String)> = map
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_string()))
        })
        .collect();
    headers.sort();
    headers
}

/// Sends the outbox oldest-first, deleting each message once the server took it.
pub fn start_publisher(
    client: async_nats::Client,
    outbox: Arc<Outbox>,
    state: Arc<LinkState>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let js = jetstream::new(client.clone());
        let mut backoff = Backoff::new();
        let mut jetstream_seen = false;
        loop {
            let (id, message) = match outbox.oldest().await {
                Ok(next) => next,
                Err(err) => {
                    tracing::error!("reading the nats outbox: {err:#}");
                    backoff.wait().await;
                    continue;
                }
            };
            state.wait_connected().await;
            match send(&client, &js, &message, &mut jetstream_seen).await {
                Ok(()) => {
                    backoff.reset();
                    outbox.remove(id);
                }
                Err(err) => {
                    tracing::debug!(subject = %message.topic, "nats publish failed, will retry: {err:#}");
                    backoff.wait().await;
                }
            }
        }
    })
}

/// Publishes one outbox message: to the stream capturing its subject, waiting for the ack,
/// or as a plain flushed publish when no stream captures it. A publish nobody answers means
/// either no stream or a JetStream not ready yet (a server that just restarted loads its
/// streams first): the plain publish is only taken when JetStream itself says no stream
/// matches, or when this server never showed JetStream; otherwise the message waits for a
/// retry, so a restart of the server loses no stored message.
async fn send(
    client: &async_nats::Client,
    js: &jetstream::Context,
    message: &OutMessage,
    jetstream_seen: &mut bool,
) -> anyhow::Result<()> {
    let headers = header_map(&message.headers);
    let payload = bytes::Bytes::from(message.payload.clone());
    let acked = async {
        js.publish_with_headers(message.topic.clone(), headers.clone(), payload.clone())
            .await?
            .await
    };
    match tokio::time::timeout(Duration::from_secs(10), acked).await {
        Ok(Ok(_ack)) => {
            *jetstream_seen = true;
            Ok(())
        }
        Ok(Err(err)) if err.kind() == PublishErrorKind::StreamNotFound => {
            match js.stream_by_subject(message.topic.clone()).await {
                Ok(stream) => {
                    *jetstream_seen = true;
                    anyhow::bail!("stream {stream} captures the subject but is not ready yet")
                }
                Err(err) if err.kind() == GetStreamByNameErrorKind::NotFound => {
                    *jetstream_seen = true;
                }
                Err(err) if *jetstream_seen => {
                    anyhow::bail!("JetStream does not answer yet ({err}); it did before")
                }
                // No JetStream on this server: plain NATS.
                Err(_) => {}
            }
            client
                .publish_with_headers(message.topic.clone(), headers, payload)
                .await?;
            client.flush().await?;
            Ok(())
        }
        Ok(Err(err)) => Err(err.into()),
        Err(_) => anyhow::bail!("no acknowledgement within 10 s"),
    }
}

/// What an app's subscription asks of NATS.
pub struct SubscriberSpec {
    pub app: String,
    pub subjects: Vec<String>,
    pub max_in_flight: usize,
}

/// Starts one consumer per subject of the app, delivering into `deliveries`.
pub fn start_subscriber(
    config: &NatsConfig,
    client: async_nats::Client,
    spec: SubscriberSpec,
    state: Arc<LinkState>,
    deliveries: mpsc::Sender<Delivery>,
) -> Vec<JoinHandle<()>> {
    spec.subjects
        .iter()
        .map(|subject| {
            let run = Consume {
                client: client.clone(),
                subject: subject.clone(),
                app: spec.app.clone(),
                durable: durable_name(&config.client_id, &spec.app, subject),
                ack_wait: Duration::from_millis(config.ack_wait_ms.max(1000)),
                max_in_flight: spec.max_in_flight,
                state: state.clone(),
                deliveries: deliveries.clone(),
            };
            if config.jetstream {
                tokio::spawn(run.jetstream())
            } else {
                tokio::spawn(run.plain())
            }
        })
        .collect()
}

/// Deletes the durable consumer of `app` for `subject`, if JetStream has one (bounded wait).
pub async fn forget_consumer(
    config: &NatsConfig,
    client: &async_nats::Client,
    app: &str,
    subject: &str,
) {
    if !config.jetstream {
        return;
    }
    let durable = durable_name(&config.client_id, app, subject);
    let js = jetstream::new(client.clone());
    let delete = async {
        let name = js.stream_by_subject(subject.to_string()).await?;
        js.get_stream(name).await?.delete_consumer(&durable).await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(5), delete).await {
        Ok(Ok(())) => {
            tracing::info!(app, consumer = %durable, "deleted the app's jetstream consumer")
        }
        Ok(Err(err)) => {
            tracing::warn!(app, consumer = %durable, "could not delete the app's jetstream consumer: {err:#}")
        }
        Err(_) => {
            tracing::warn!(app, consumer = %durable, "could not delete the app's jetstream consumer: nats did not answer in 5 s")
        }
    }
}

/// `ID-APP-HASH`: stable for an app's subject, valid as a consumer name.
fn durable_name(client_id: &str, app: &str, subject: &str) -> String {
    let hash = hex::encode(&sha2::Sha256::digest(subject.as_bytes())[..4]);
    let clean = |s: &str| s.replace(['.', '*', '>', ' '], "_");
    format!("{}-{}-{hash}", clean(client_id), clean(app))
}

struct Consume {
    client: async_nats::Client,
    subject: String,
    app: String,
    durable: String,
    ack_wait: Duration,
    max_in_flight: usize,
    state: Arc<LinkState>,
    deliveries: mpsc::Sender<Delivery>,
}

impl Consume {
    async fn jetstream(self) {
        let js = jetstream::new(self.client.clone());
        let mut backoff = Backoff::new();
        loop {
            self.state.wait_connected().await;
            match self.consume(&js).await {
                Ok(()) => return,
                Err(err) => {
                    self.state.note_error(format!(
                        "jetstream subscription of app {} to {}: {err:#}",
                        self.app, self.subject
                    ));
                    backoff.wait().await;
                }
            }
        }
    }

    /// Runs until the node drops the subscription (Ok) or the consumer fails (Err).
    async fn consume(&self, js: &jetstream::Context) -> anyhow::Result<()> {
        let stream = self.stream(js).await?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.durable,
                consumer::pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subject: self.subject.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_ack_pending: self.max_in_flight as i64,
                    ..Default::default()
                },
            )
            .await
            .context("creating the durable consumer")?;
        let mut messages = consumer.messages().await.context("pulling messages")?;
        while let Some(message) = messages.next().await {
            let message = match message {
                Ok(message) => message,
                Err(err) => {
                    tracing::debug!(app = %self.app, "jetstream pull: {err}");
                    continue;
                }
            };
            let delivery = Delivery {
                broker: Broker::Nats,
                topic: message.subject.to_string(),
                payload: message.payload.clone(),
                headers: headers_of(message.headers.as_ref()),
                reply_to: None,
                ack: Acker::JetStream(Box::new(message)),
            };
            if self.deliveries.send(delivery).await.is_err() {
                return Ok(());
            }
        }
        anyhow::bail!("the message stream ended")
    }

    /// The stream capturing the subject, created when there is none.
    async fn stream(&self, js: &jetstream::Context) -> anyhow::Result<jetstream::stream::Stream> {
        match js.stream_by_subject(self.subject.clone()).await {
            Ok(name) => Ok(js.get_stream(name).await?),
            Err(err) if err.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
                let name = format!("EDGE_{}", self.durable.replace('-', "_").to_uppercase());
                tracing::info!(app = %self.app, subject = %self.subject, stream = %name, "creating a jetstream stream for the subscription");
                Ok(js
                    .get_or_create_stream(jetstream::stream::Config {
                        name,
                        subjects: vec![self.subject.clone()],
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await
                    .context(
                        "creating a stream for the subject (does another stream overlap it?)",
                    )?)
            }
            Err(err) => Err(err).context("looking up the stream of the subject"),
        }
    }

    async fn plain(self) {
        let mut backoff = Backoff::new();
        loop {
            let mut subscriber = match self.client.subscribe(self.subject.clone()).await {
                Ok(subscriber) => subscriber,
                Err(err) => {
                    self.state.note_error(format!(
                        "subscribing app {} to {}: {err}",
                        self.app, self.subject
                    ));
                    backoff.wait().await;
                    continue;
                }
            };
            while let Some(message) = subscriber.next().await {
                let delivery = Delivery {
                    broker: Broker::Nats,
                    topic: message.subject.to_string(),
                    payload: message.payload.clone(),
                    headers: headers_of(message.headers.as_ref()),
                    reply_to: message.reply.as_ref().map(|r| r.to_string()),
                    ack: Acker::Nothing,
                };
                if self.deliveries.send(delivery).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A request on `subject`, waiting up to `timeout` for one reply.
pub async fn request(
    client: &async_nats::Client,
    message: &OutMessage,
    timeout: Duration,
) -> anyhow::Result<(String, bytes::Bytes, Vec<(String, String)>)> {
    let call = client.request_with_headers(
        message.topic.clone(),
        header_map(&message.headers),
        bytes::Bytes::from(message.payload.clone()),
    );
    let reply = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| anyhow::anyhow!("no reply within {timeout:?}"))??;
    Ok((
        reply.subject.to_string(),
        reply.payload,
        headers_of(reply.headers.as_ref()),
    ))
}

/// A plain publish (replies to requests are not stored: the requester waits for them now).
pub async fn publish_now(client: &async_nats::Client, message: &OutMessage) -> anyhow::Result<()> {
    client
        .publish_with_headers(
            message.topic.clone(),
            header_map(&message.headers),
            bytes::Bytes::from(message.payload.clone()),
        )
        .await?;
    client.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::connection_hint;

    #[test]
    fn nats_client_errors_point_at_the_setting_to_check() {
        let hint = |error| connection_hint("[messaging.nats]", error);
        assert_eq!(
            hint("nats: authorization violation"),
            "check [messaging.nats] username and password, token or credentials_file"
        );
        assert!(hint("invalid peer certificate: UnknownIssuer").contains("ca_file"));
        assert!(hint("connection refused").contains("-js"));
    }
}
