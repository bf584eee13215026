//! Messaging: `wasi:messaging@0.2.0-draft` on the node's MQTT broker and NATS server. Apps
//! subscribe at deploy (`--subscribe mqtt:sensors/+/temperature`, `--subscribe nats:orders.>`)
//! and may publish where `--publish` allows; the message trigger
//! ([`crate::triggers::messaging`]) runs their `incoming-handler` for each message.
//!
//! Delivery is at-least-once: MQTT QoS 1 with a persistent session per app and a PUBACK only
//! after the handler returned Ok; NATS through JetStream durable consumers with explicit acks
//! (plain NATS subjects, `jetstream = false`, are at-most-once). What apps publish goes through
//! a store-and-forward outbox in the node's database ([`outbox`]).
//!
//! Capability shape: config section [`MessagingConfig`] (`[messaging]`), grant
//! [`MessagingGrant`] (checked by [`check`]), per-store [`MessagingCtx`] and
//! [`MessagingView`], [`add_to_linker`]; the broker links are [`Brokers`].

mod brokers;
mod config;
mod host;
mod link;
mod mqtt;
mod nats;
mod outbox;
mod topic;

use serde::{Deserialize, Serialize};

pub use brokers::{AppCounters, BrokerStatus, Brokers, MessagingMetrics};
pub use config::{MessagingConfig, MqttConfig, NatsConfig, OutboxFull};
pub use host::{
    AppMessaging, HandlerIndices, Message, MessagingCtx, MessagingView, add_to_linker, call_handler,
};
pub use link::{Acker, Delivery};
pub use nats::{
    connection_hint as nats_connection_hint, with_credentials as nats_with_credentials,
};
pub use outbox::OutMessage;
pub use topic::{Broker, TopicPattern};

use crate::error::DeployError;

/// The export a message-triggered component has (any 0.2.0-draft build).
pub const HANDLER_EXPORT: &str = "wasi:messaging/incoming-handler@0.2.0-draft";
/// Interfaces that publish: they need a `--publish` grant.
const PUBLISH_IMPORTS: [&str; 2] = ["wasi:messaging/producer@", "wasi:messaging/request-reply@"];

/// Topics an app version subscribes and publishes to, as given at deploy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagingGrant {
    /// `--subscribe BROKER:PATTERN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<String>,
    /// `--publish BROKER:PATTERN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
}

/// A grant with every pattern parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedGrant {
    pub subscribe: Vec<TopicPattern>,
    pub publish: Vec<TopicPattern>,
}

impl MessagingGrant {
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.publish.is_empty()
    }

    /// Parses every pattern; the first bad one is a deploy error saying what a good one is.
    pub fn parse(&self) -> Result<ParsedGrant, DeployError> {
        let parse = |list: &[String], flag: &str| -> Result<Vec<TopicPattern>, DeployError> {
            list.iter()
                .map(|spec| {
                    TopicPattern::parse(spec)
                        .map_err(|why| DeployError::InvalidGrant(format!("--{flag} {why}")))
                })
                .collect()
        };
        Ok(ParsedGrant {
            subscribe: parse(&self.subscribe, "subscribe")?,
            publish: parse(&self.publish, "publish")?,
        })
    }
}

/// Deploy-time checks: every broker named is configured on this node, a subscribing app
/// exports the handler, and an app that imports a publishing interface has `--publish`.
pub fn check(
    grant: &ParsedGrant,
    imports: &[String],
    exports_handler: bool,
    brokers: &Brokers,
) -> Result<(), DeployError> {
    for pattern in grant.subscribe.iter().chain(&grant.publish) {
        if !brokers.is_configured(pattern.broker) {
            return Err(DeployError::InvalidGrant(format!(
                "{pattern}: this node has no {0} broker; add a [messaging.{0}] section to its \
                 config, or deploy to a node that has one",
                pattern.broker
            )));
        }
    }
    if !grant.subscribe.is_empty() && !exports_handler {
        return Err(DeployError::WrongWorld(format!(
            "the app subscribes to {} but the component does not export {HANDLER_EXPORT}; build \
             it for the edge:platform/messaging-app world",
            grant.subscribe[0]
        )));
    }
    if grant.publish.is_empty()
        && let Some(import) = imports
            .iter()
            .find(|i| PUBLISH_IMPORTS.iter().any(|p| i.starts_with(p)))
    {
        return Err(DeployError::MissingGrant(format!(
            "the component imports `{import}` but was deployed without a publish grant; \
             redeploy with --publish BROKER:PATTERN (e.g. --publish 'mqtt:alerts/#')"
        )));
    }
    Ok(())
}
