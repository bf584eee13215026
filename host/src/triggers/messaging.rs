//! The message trigger: runs apps' `wasi:messaging/incoming-handler` for messages on the
//! topics they subscribed to at deploy.
//!
//! It watches the live routes and keeps one subscription per subscribing app (restarted only
//! when the app's `--subscribe` list changes; a redeploy with the same list keeps it, and each
//! message runs the version current when it is handled). Each message gets a fresh instance
//! with the app's grants and the node's time and memory limits.
//!
//! Delivery: a message is acknowledged only after its handler returned Ok. A handler that
//! traps, times out or returns an error is retried `[messaging] retries` times with doubling
//! backoff; then the message goes to the dead-letter topic (`dead-letter/APP` on MQTT,
//! `dead-letter.APP` on NATS) with the reason attached, and is acknowledged. An app handles at
//! most `max_in_flight_per_app` messages at once; past that the trigger stops reading from the
//! broker, which holds the rest (backpressure, no unbounded queue). Messages of one topic are
//! handled in arrival order only with `max_in_flight_per_app = 1`; with more, and across
//! retries, they may complete out of order.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::apps::{LoadedApp, RoutingTable};
use crate::capabilities::messaging::{
    AppCounters, Broker, Delivery, Message, OutMessage, TopicPattern, call_handler,
};
use crate::control::node::Node;
use crate::usage::{CpuTimed, Trigger};

/// Longest reason kept with a dead letter.
const MAX_REASON_CHARS: usize = 512;

/// An app's running subscription; dropping it stops it.
struct Subscription {
    patterns: Vec<TopicPattern>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Keeps apps' subscriptions in step with the routes until `shutdown` resolves.
pub async fn run(node: Arc<Node>, shutdown: impl Future<Output = ()>) {
    let mut routes = node.routes.watch();
    let mut running: HashMap<String, Subscription> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let table = routes.borrow_and_update().clone();
        reconcile(&node, &table, &mut running);
        tokio::select! {
            changed = routes.changed() => if changed.is_err() { break },
            () = &mut shutdown => break,
        }
    }
}

fn reconcile(node: &Arc<Node>, table: &RoutingTable, running: &mut HashMap<String, Subscription>) {
    let wanted: HashMap<&str, &Vec<TopicPattern>> = table
        .apps()
        .filter(|app| !app.subscriptions.is_empty())
        .map(|app| (app.name.as_str(), &app.subscriptions))
        .collect();
    running.retain(|name, _| wanted.contains_key(name.as_str()));
    for (name, patterns) in wanted {
        let stale: Vec<TopicPattern> = match running.get(name) {
            Some(current) if current.patterns == *patterns => continue,
            Some(current) => current
                .patterns
                .iter()
                .filter(|p| !patterns.contains(p))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        running.remove(name);
        match subscribe(node, name, patterns, &stale) {
            Ok(subscription) => {
                tracing::info!(app = name, topics = patterns.len(), "subscribed");
                running.insert(name.to_string(), subscription);
            }
            Err(err) => tracing::error!(app = name, "cannot subscribe: {err:#}"),
        }
    }
}

fn subscribe(
    node: &Arc<Node>,
    app: &str,
    patterns: &[TopicPattern],
    stale: &[TopicPattern],
) -> anyhow::Result<Subscription> {
    let in_flight = node.brokers.config().max_in_flight_per_app.max(1);
    let (deliveries, received) = mpsc::channel(in_flight);
    let mut tasks = node.brokers.subscribe(app, patterns, stale, deliveries)?;
    tasks.push(tokio::spawn(dispatch(
        node.clone(),
        app.to_string(),
        received,
        Arc::new(Semaphore::new(in_flight)),
    )));
    Ok(Subscription {
        patterns: patterns.to_vec(),
        tasks,
    })
}

/// Hands each delivery to a task of its own, at most `in_flight` at once.
async fn dispatch(
    node: Arc<Node>,
    app: String,
    mut received: mpsc::Receiver<Delivery>,
    in_flight: Arc<Semaphore>,
) {
    let counters = Arc::new(node.brokers.metrics().app(&app));
    while let Some(delivery) = received.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let (node, app, counters) = (node.clone(), app.clone(), counters.clone());
        tokio::spawn(async move {
            handle(&node, &app, &counters, delivery).await;
            drop(permit);
        });
    }
}

/// Runs the handler with retries, then acknowledges (or dead-letters and acknowledges).
async fn handle(node: &Arc<Node>, app_name: &str, counters: &AppCounters, delivery: Delivery) {
    counters.received.inc();
    let config = node.brokers.config();
    let attempts = config.retries.saturating_add(1);
    let limit = config.max_payload_bytes;
    let mut reason = String::new();
    let mut tried = 0;
    if delivery.payload.len() > limit {
        reason = format!(
            "the payload is {} bytes; this node hands at most {limit} to an app \
             ([messaging] max_payload_bytes)",
            delivery.payload.len()
        );
    } else {
        while tried < attempts {
            tried += 1;
            // The version serving now; a removed app leaves the message to the broker.
            let Some(app) = node.routes.current().get(app_name).cloned() else {
                tracing::info!(app = app_name, "app removed: message left unacknowledged");
                return;
            };
            match invoke(node, &app, &delivery).await {
                Ok(()) => {
                    acknowledge(app_name, delivery).await;
                    counters.acked.inc();
                    return;
                }
                Err(why) => reason = why,
            }
            if tried < attempts {
                counters.retried.inc();
                tracing::debug!(app = app_name, topic = %delivery.topic, attempt = tried, "handler failed, retrying: {reason}");
                delivery.ack.in_progress().await;
                tokio::time::sleep(config.backoff(tried)).await;
            }
        }
    }
    tracing::warn!(app = app_name, topic = %delivery.topic, attempts = tried, "message dead-lettered: {reason}");
    let letter = dead_letter(
        app_name,
        &delivery,
        &reason,
        tried,
        delivery.payload.len() <= limit,
    );
    match node.brokers.publish(delivery.broker, &letter).await {
        Ok(()) => {
            counters.dead_lettered.inc();
            acknowledge(app_name, delivery).await;
        }
        // Not acknowledged: the broker delivers it again later.
        Err(err) => tracing::error!(
            app = app_name,
            "cannot store the dead letter, message left unacknowledged: {err}"
        ),
    }
}

async fn acknowledge(app: &str, delivery: Delivery) {
    if let Err(err) = delivery.ack.ack().await {
        tracing::warn!(
            app,
            "acknowledging a handled message failed (it will come again): {err:#}"
        );
    }
}

/// One invocation: a fresh instance, the handler called with the message.
async fn invoke(node: &Arc<Node>, app: &Arc<LoadedApp>, delivery: &Delivery) -> Result<(), String> {
    let Some(indices) = app.message_handler.clone() else {
        return Err("the serving version does not export wasi:messaging/incoming-handler".into());
    };
    if !node.memory_budget.has_room() {
        return Err("the node's memory budget for apps ([limits] node_memory_mib) is spent".into());
    }
    let timeout = app.limits.timeout;
    let mut store = super::new_store(
        node,
        app,
        Instant::now() + timeout,
        super::new_request_id(),
        Some(Trigger::Message),
    );
    if let Some(usage) = &app.usage {
        usage.bytes_in.fetch_add(
            delivery.payload.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let message = Message::incoming(
        delivery.broker,
        delivery.topic.clone(),
        delivery.payload.to_vec(),
        delivery.headers.clone(),
        delivery.reply_to.clone(),
    );
    let pre = app.pre.clone();
    let run = async move {
        let resource = store.data_mut().push_message(message)?;
        let instance = pre.instantiate_async(&mut store).await?;
        call_handler(&mut store, &indices, &instance, resource).await
    };
    let bounded = async move { tokio::time::timeout(timeout, run).await };
    let bounded: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> = match &app.usage {
        Some(usage) => Box::pin(CpuTimed::new(bounded, usage.clone())),
        None => Box::pin(bounded),
    };
    // Apps granted a model block their thread in inference: keep them off the async workers.
    let outcome = match (&app.models, node.models.workers()) {
        (Some(models), Some(workers)) => {
            let share = models.worker_share();
            workers
                .spawn(async move {
                    let _turn = share.acquire_owned().await;
                    bounded.await
                })
                .await
        }
        _ => Ok(bounded.await),
    };
    let reason = match outcome {
        Ok(Ok(Ok(Ok(())))) => return Ok(()),
        Ok(Ok(Ok(Err(guest_error)))) => guest_error,
        Ok(Ok(Err(trap))) => match trap.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => {
                format!("the handler ran past its time limit of {timeout:?}")
            }
            _ => format!("the handler trapped: {trap:#}"),
        },
        Ok(Err(_elapsed)) => format!("the handler ran past its time limit of {timeout:?}"),
        Err(join) => format!("the handler task failed: {join}"),
    };
    Err(reason.chars().take(MAX_REASON_CHARS).collect())
}

/// The dead letter of a message: on NATS the original payload with the reason in headers; on
/// MQTT 3.1.1, which has no headers, a JSON envelope carrying both. An oversized payload is
/// left out (only its size is told).
fn dead_letter(
    app: &str,
    delivery: &Delivery,
    reason: &str,
    attempts: u32,
    keep_payload: bool,
) -> OutMessage {
    let topic = delivery.broker.dead_letter_topic(app);
    let payload: &[u8] = if keep_payload { &delivery.payload } else { &[] };
    match delivery.broker {
        Broker::Nats => OutMessage {
            topic,
            payload: payload.to_vec(),
            headers: vec![
                ("Edge-App".into(), app.to_string()),
                ("Edge-Topic".into(), delivery.topic.clone()),
                ("Edge-Reason".into(), reason.to_string()),
                ("Edge-Attempts".into(), attempts.to_string()),
                (
                    "Edge-Payload-Bytes".into(),
                    delivery.payload.len().to_string(),
                ),
            ],
        },
        Broker::Mqtt => {
            let mut envelope = serde_json::json!({
                "app": app,
                "topic": delivery.topic,
                "reason": reason,
                "attempts": attempts,
                "payload_bytes": delivery.payload.len(),
            });
            match std::str::from_utf8(payload) {
                Ok(text) if keep_payload => envelope["payload"] = text.into(),
                Ok(_) => {}
                Err(_) => envelope["payload_hex"] = hex::encode(payload).into(),
            }
            OutMessage {
                topic,
                payload: envelope.to_string().into_bytes(),
                headers: Vec::new(),
            }
        }
    }
}
