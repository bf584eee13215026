//! The `wasi:messaging@0.2.0-draft` host side: `types` (client and message resources),
//! `producer`, `request-reply`, and the call into a guest's `incoming-handler`.
//!
//! `client.connect(NAME)` takes the broker kind, `mqtt` or `nats`. Publishing checks the app's
//! `--publish` grant, the topic and the payload size, then stores the message in the node's
//! outbox: `send` returns once the message is on the node's disk, whether or not the broker is
//! reachable now. Errors say what was wrong and what to do.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::brokers::{Brokers, PublishError};
use super::outbox::OutMessage;
use super::topic::{Broker, TopicPattern, check_publish_topic};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/messaging-0.2.0-draft",
        world: "wasi:messaging/messaging-request-reply",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "wasi:messaging/types.client": super::Client,
            "wasi:messaging/types.message": super::Message,
            "wasi:messaging/request-reply.request-options": super::RequestOptions,
        },
    });
}

pub use generated::MessagingRequestReplyIndices as HandlerIndices;
use generated::wasi::messaging::types::{self, Error};
use generated::wasi::messaging::{producer, request_reply};

/// Longest a guest's request waits for its reply.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's wait when the guest sets none.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection handle: which of the node's brokers.
pub struct Client {
    broker: Broker,
}

/// A message, incoming or being built by the guest.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub topic: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
    pub metadata: Vec<(String, String)>,
    /// Where a NATS request wants its reply.
    pub reply_to: Option<(Broker, String)>,
}

/// Options of one request.
#[derive(Default)]
pub struct RequestOptions {
    timeout: Option<Duration>,
}

/// Header carrying the content type on NATS.
const CONTENT_TYPE: &str = "content-type";

impl Message {
    fn into_outgoing(self, topic: String) -> OutMessage {
        let mut headers = self.metadata;
        if let Some(content_type) = self.content_type {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(CONTENT_TYPE));
            headers.push((CONTENT_TYPE.into(), content_type));
        }
        OutMessage {
            topic,
            payload: self.data,
            headers,
        }
    }

    /// A message as delivered to the guest: the content type comes out of the headers.
    pub fn incoming(
        broker: Broker,
        topic: String,
        data: Vec<u8>,
        mut headers: Vec<(String, String)>,
        reply_to: Option<String>,
    ) -> Self {
        let content_type = headers
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(CONTENT_TYPE))
            .map(|i| headers.remove(i).1);
        Self {
            topic: Some(topic),
            content_type,
            data,
            metadata: headers,
            reply_to: reply_to.map(|r| (broker, r)),
        }
    }
}

/// What an app version may do with messaging, shared by its instances.
pub struct AppMessaging {
    pub app: Arc<str>,
    /// `--publish` patterns.
    pub publish: Vec<TopicPattern>,
    pub brokers: Arc<Brokers>,
    pub counters: super::AppCounters,
}

/// The messaging context of one store.
#[derive(Clone, Default)]
pub struct MessagingCtx(pub Option<Arc<AppMessaging>>);

/// What the messaging host functions borrow from the store.
pub struct MessagingView<'a> {
    ctx: &'a MessagingCtx,
    table: &'a mut ResourceTable,
}

impl<'a> MessagingView<'a> {
    pub fn new(ctx: &'a MessagingCtx, table: &'a mut ResourceTable) -> Self {
        Self { ctx, table }
    }

    /// Puts an incoming message in the table, to pass to the guest's handler.
    pub fn push(&mut self, message: Message) -> wasmtime::Result<Resource<Message>> {
        Ok(self.table.push(message)?)
    }

    fn app(&self) -> Result<&Arc<AppMessaging>, Error> {
        self.ctx.0.as_ref().ok_or_else(|| {
            Error::PermissionDenied(
                "this app was deployed without messaging grants; redeploy with --publish \
                 BROKER:TOPIC-PATTERN"
                    .into(),
            )
        })
    }

    /// Checks that the app may send `len` bytes to `topic` on `broker`.
    fn check_send(
        &self,
        broker: Broker,
        topic: &str,
        len: usize,
    ) -> Result<Arc<AppMessaging>, Error> {
        let app = self.app()?.clone();
        if let Err(why) = check_publish_topic(broker, topic) {
            return Err(Error::Other(format!("invalid {broker} topic: {why}")));
        }
        if !app.publish.iter().any(|p| p.matches(broker, topic)) {
            app.counters.publish_denied.inc();
            tracing::warn!(app = %app.app, %broker, topic, "publish denied: topic not granted");
            return Err(Error::PermissionDenied(format!(
                "app {} may not publish to {broker}:{topic}; redeploy with --publish {broker}:PATTERN \
                 covering it",
                app.app
            )));
        }
        let limit = app.brokers.config().max_payload_bytes;
        if len > limit {
            return Err(Error::Other(format!(
                "the message is {len} bytes; this node sends at most {limit} \
                 ([messaging] max_payload_bytes)"
            )));
        }
        Ok(app)
    }
}

fn to_wit(err: PublishError) -> Error {
    match err {
        PublishError::NotConfigured(_) => Error::Connection(err.to_string()),
        other => Error::Other(other.to_string()),
    }
}

type WitResult<T> = wasmtime::Result<Result<T, Error>>;

impl types::Host for MessagingView<'_> {}

impl types::HostClient for MessagingView<'_> {
    async fn connect(&mut self, name: String) -> WitResult<Resource<Client>> {
        let Some(broker) = Broker::from_name(&name) else {
            return Ok(Err(Error::Connection(format!(
                "unknown broker {name:?}; connect to \"mqtt\" or \"nats\""
            ))));
        };
        let app = match self.app() {
            Ok(app) => app,
            Err(err) => return Ok(Err(err)),
        };
        if !app.brokers.is_configured(broker) {
            return Ok(Err(Error::Connection(
                PublishError::NotConfigured(broker).to_string(),
            )));
        }
        Ok(Ok(self.table.push(Client { broker })?))
    }

    async fn disconnect(&mut self, _client: Resource<Client>) -> WitResult<()> {
        Ok(Ok(()))
    }

    async fn drop(&mut self, client: Resource<Client>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        Ok(())
    }
}

impl types::HostMessage for MessagingView<'_> {
    async fn new(&mut self, data: Vec<u8>) -> wasmtime::Result<Resource<Message>> {
        Ok(self.table.push(Message {
            data,
            ..Message::default()
        })?)
    }

    async fn topic(&mut self, m: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.topic.clone())
    }

    async fn content_type(&mut self, m: Resource<Message>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&m)?.content_type.clone())
    }

    async fn set_content_type(
        &mut self,
        m: Resource<Message>,
        value: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.content_type = Some(value);
        Ok(())
    }

    async fn data(&mut self, m: Resource<Message>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&m)?.data.clone())
    }

    async fn set_data(&mut self, m: Resource<Message>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.data = data;
        Ok(())
    }

    async fn metadata(
        &mut self,
        m: Resource<Message>,
    ) -> wasmtime::Result<Option<Vec<(String, String)>>> {
        let metadata = &self.table.get(&m)?.metadata;
        Ok((!metadata.is_empty()).then(|| metadata.clone()))
    }

    async fn add_metadata(
        &mut self,
        m: Resource<Message>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        let metadata = &mut self.table.get_mut(&m)?.metadata;
        metadata.retain(|(k, _)| *k != key);
        metadata.push((key, value));
        Ok(())
    }

    async fn set_metadata(
        &mut self,
        m: Resource<Message>,
        meta: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata = meta;
        Ok(())
    }

    async fn remove_metadata(&mut self, m: Resource<Message>, key: String) -> wasmtime::Result<()> {
        self.table.get_mut(&m)?.metadata.retain(|(k, _)| *k != key);
        Ok(())
    }

    async fn drop(&mut self, m: Resource<Message>) -> wasmtime::Result<()> {
        self.table.delete(m)?;
        Ok(())
    }
}

impl producer::Host for MessagingView<'_> {
    async fn send(
        &mut self,
        client: Resource<Client>,
        topic: String,
        message: Resource<Message>,
    ) -> WitResult<()> {
        let broker = self.table.get(&client)?.broker;
        let message = self.table.delete(message)?;
        let app = match self.check_send(broker, &topic, message.data.len()) {
            Ok(app) => app,
            Err(err) => return Ok(Err(err)),
        };
        let outgoing = message.into_outgoing(topic);
        match app.brokers.publish(broker, &outgoing).await {
            Ok(()) => {
                app.counters.published.inc();
                Ok(Ok(()))
            }
            Err(err) => {
                app.counters.publish_failed.inc();
                tracing::warn!(app = %app.app, %broker, topic = %outgoing.topic, "publish failed: {err}");
                Ok(Err(to_wit(err)))
            }
        }
    }
}

impl request_reply::Host for MessagingView<'_> {
    async fn request(
        &mut self,
        client: Resource<Client>,
        topic: String,
        message: Resource<Message>,
        options: Option<Resource<RequestOptions>>,
    ) -> WitResult<Vec<Resource<Message>>> {
        let broker = self.table.get(&client)?.broker;
        let message = self.table.get(&message)?.clone();
        let timeout = match options {
            Some(options) => self.table.delete(options)?.timeout,
            None => None,
        }
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
        .min(MAX_REQUEST_TIMEOUT);
        let app = match self.check_send(broker, &topic, message.data.len()) {
            Ok(app) => app,
            Err(err) => return Ok(Err(err)),
        };
        match app
            .brokers
            .request(broker, &message.into_outgoing(topic), timeout)
            .await
        {
            Ok((subject, payload, headers)) => {
                let reply = Message::incoming(broker, subject, payload.to_vec(), headers, None);
                Ok(Ok(vec![self.table.push(reply)?]))
            }
            Err(PublishError::Failed(why)) if why.contains("no reply within") => {
                Ok(Err(Error::Timeout))
            }
            Err(err) => Ok(Err(to_wit(err))),
        }
    }

    async fn reply(
        &mut self,
        reply_to: Resource<Message>,
        message: Resource<Message>,
    ) -> WitResult<()> {
        let Some((broker, address)) = self.table.get(&reply_to)?.reply_to.clone() else {
            return Ok(Err(Error::Other(
                "this message has no reply address (only NATS requests have one)".into(),
            )));
        };
        let message = self.table.delete(message)?;
        let app = match self.app() {
            Ok(app) => app.clone(),
            Err(err) => return Ok(Err(err)),
        };
        let result = app
            .brokers
            .reply(broker, &message.into_outgoing(address))
            .await;
        Ok(result.map_err(to_wit))
    }
}

impl request_reply::HostRequestOptions for MessagingView<'_> {
    async fn new(&mut self) -> wasmtime::Result<Resource<RequestOptions>> {
        Ok(self.table.push(RequestOptions::default())?)
    }

    async fn set_timeout_ms(
        &mut self,
        options: Resource<RequestOptions>,
        timeout_ms: u32,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&options)?.timeout = Some(Duration::from_millis(timeout_ms.into()));
        Ok(())
    }

    /// One reply is collected whatever is asked: more would need a reply inbox per request.
    async fn set_expected_replies(
        &mut self,
        _options: Resource<RequestOptions>,
        _replies: u32,
    ) -> wasmtime::Result<()> {
        Ok(())
    }

    async fn drop(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<()> {
        self.table.delete(options)?;
        Ok(())
    }
}

/// Marks the `HasData` projection from the host state to [`MessagingView`].
struct WasiMessaging;

impl HasData for WasiMessaging {
    type Data<'a> = MessagingView<'a>;
}

/// Adds `wasi:messaging` `types`, `producer` and `request-reply` to the linker.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> MessagingView<'_>,
) -> anyhow::Result<()> {
    types::add_to_linker::<T, WasiMessaging>(linker, view)?;
    producer::add_to_linker::<T, WasiMessaging>(linker, view)?;
    request_reply::add_to_linker::<T, WasiMessaging>(linker, view)?;
    Ok(())
}

/// Calls the guest's `incoming-handler.handle`; `Ok(Err(reason))` is the guest's own error.
pub async fn call_handler<T: Send + 'static>(
    store: &mut wasmtime::Store<T>,
    indices: &HandlerIndices,
    instance: &wasmtime::component::Instance,
    message: Resource<Message>,
) -> wasmtime::Result<Result<(), String>> {
    let bindings = indices.load(&mut *store, instance)?;
    let result = bindings
        .wasi_messaging_incoming_handler()
        .call_handle(&mut *store, message)
        .await?;
    Ok(result.map_err(|err| match err {
        Error::Timeout => "the handler reported a timeout".to_string(),
        Error::Connection(why) => format!("the handler reported a connection error: {why}"),
        Error::PermissionDenied(why) => format!("the handler reported permission denied: {why}"),
        Error::Other(why) => format!("the handler returned an error: {why}"),
    }))
}
