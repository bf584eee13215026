//! Driver and reference for `scripts/bench-messages.sh`, against a running mosquitto and a node
//! that serves `relay` (subscribed to `jobs/#`) and `sensor-alert` (threshold below every
//! reading).
//!
//! 1. Throughput through the guest: publishes COUNT messages on `jobs/bench` (QoS 1, up to 64
//!    unacknowledged at a time) and times until every one came back relayed on
//!    `relayed/jobs/bench`.
//! 2. The reference, in the same run on the same broker: a native Rust subscriber doing the
//!    same relay (QoS 1 in, publish QoS 1 out, acknowledge after the publish was confirmed by
//!    the broker), timed the same way on `native/bench` → `relayed/native/bench`.
//! 3. Latency publish → handler → alert: one reading at a time on `sensors/s1/temperature`,
//!    timed until its alert arrives on `alerts/s1`; p50 and p99.
//!
//!   cargo run --release --example messages_bench -- PORT COUNT LATENCY_SAMPLES
//!
//! Prints `guest_per_s native_per_s latency_p50_ms latency_p99_ms` on one line.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const WINDOW: usize = 64;
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, count, samples] = args.as_slice() else {
        return Err("usage: messages_bench PORT COUNT LATENCY_SAMPLES".into());
    };
    let port: u16 = port.parse()?;
    let count: usize = count.parse()?;
    let samples: usize = samples.parse()?;

    let native = tokio::spawn(native_relay(port));
    let guest = throughput(port, "jobs/bench", count)
        .await
        .map_err(|err| format!("through the guest: {err}"))?;
    let reference = throughput(port, "native/bench", count)
        .await
        .map_err(|err| format!("through the native relay: {err}"))?;
    native.abort();
    let (p50, p99) = latency(port, samples).await?;
    println!("{guest:.0} {reference:.0} {p50:.2} {p99:.2}");
    Ok(())
}

fn connect(port: u16, id: &str, clean: bool) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options
        .set_clean_session(clean)
        .set_keep_alive(Duration::from_secs(30))
        .set_inflight(WINDOW as u16);
    let (client, mut eventloop) = AsyncClient::new(options, 4 * WINDOW);
    eventloop.network_options.set_tcp_nodelay(true);
    (client, eventloop)
}

/// What the benchmark's own event loops report.
enum Seen {
    Subscribed,
    Acked,
    Message(Vec<u8>),
}

fn drive(mut eventloop: EventLoop, events: mpsc::UnboundedSender<Seen>) {
    tokio::spawn(async move {
        loop {
            let seen = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => Seen::Subscribed,
                Ok(Event::Incoming(Packet::PubAck(_))) => Seen::Acked,
                Ok(Event::Incoming(Packet::Publish(p))) => Seen::Message(p.payload.to_vec()),
                Ok(_) => continue,
                Err(_) => {
                    // Reconnects; a broker that stays away ends the run at its patience.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if events.send(seen).is_err() {
                return;
            }
        }
    });
}

async fn wait_for(
    events: &mut mpsc::UnboundedReceiver<Seen>,
    want: impl Fn(&Seen) -> bool,
) -> Result<Seen, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(seen)) if want(&seen) => return Ok(seen),
            Ok(Some(_)) => {}
            _ => return Err("bench: timed out waiting for the broker".into()),
        }
    }
}

/// Messages per second from the first publish to the last relay received.
async fn throughput(
    port: u16,
    topic: &str,
    count: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let (watcher, watcher_loop) = connect(
        port,
        &format!("bench-watch-{}", topic.replace('/', "-")),
        true,
    );
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    drive(watcher_loop, seen_tx);
    watcher
        .subscribe(format!("relayed/{topic}"), QoS::AtLeastOnce)
        .await?;
    wait_for(&mut seen, |s| matches!(s, Seen::Subscribed)).await?;

    let (publisher, publisher_loop) = connect(
        port,
        &format!("bench-pub-{}", topic.replace('/', "-")),
        true,
    );
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    drive(publisher_loop, acks_tx);
    let started = Instant::now();
    let mut outstanding = 0;
    let mut received = HashSet::new();
    for i in 0..count {
        while outstanding >= WINDOW {
            wait_for(&mut acks, |s| matches!(s, Seen::Acked)).await?;
            outstanding -= 1;
        }
        publisher
            .publish(topic, QoS::AtLeastOnce, false, format!("{{\"seq\":{i}}}"))
            .await?;
        outstanding += 1;
        while let Ok(Seen::Message(m)) = seen.try_recv() {
            received.insert(m);
        }
    }
    while received.len() < count {
        match wait_for(&mut seen, |s| matches!(s, Seen::Message(_))).await? {
            Seen::Message(m) => {
                received.insert(m);
            }
            _ => unreachable!(),
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// The native reference: relays `native/#` to `relayed/native/...`, acknowledging each message
/// after the broker confirmed its relay.
async fn native_relay(port: u16) {
    let mut options = MqttOptions::new("bench-native-relay", "127.0.0.1", port);
    options
        .set_clean_session(true)
        .set_manual_acks(true)
        .set_inflight(WINDOW as u16)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 4 * WINDOW);
    eventloop.network_options.set_tcp_nodelay(true);
    client.subscribe("native/#", QoS::AtLeastOnce).await.ok();
    // Relays are queued by a task of their own: the event loop must keep polling.
    let (relay_tx, mut relays) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let sender = client.clone();
    tokio::spawn(async move {
        while let Some((topic, payload)) = relays.recv().await {
            let _ = sender
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await;
        }
    });
    // Incoming messages whose relay awaits its PUBACK, in publish order (the broker acks in order).
    let mut waiting = std::collections::VecDeque::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let _ = relay_tx.send((
                    format!("relayed/{}", publish.topic),
                    publish.payload.to_vec(),
                ));
                waiting.push_back(publish);
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                if let Some(original) = waiting.pop_front() {
                    let acker = client.clone();
                    tokio::spawn(async move { acker.ack(&original).await });
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// p50 and p99, in ms, of publish → sensor-alert → alert.
async fn latency(port: u16, samples: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (client, eventloop) = connect(port, "bench-latency", true);
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    drive(eventloop, seen_tx);
    client.subscribe("alerts/s1", QoS::AtLeastOnce).await?;
    wait_for(&mut seen, |s| matches!(s, Seen::Subscribed)).await?;
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let celsius = 100.0 + i as f64;
        let started = Instant::now();
        client
            .publish(
                "sensors/s1/temperature",
                QoS::AtLeastOnce,
                false,
                format!("{{\"sensor\":\"s1\",\"celsius\":{celsius}}}"),
            )
            .await?;
        let needle = format!("\"celsius\":{celsius}");
        wait_for(
            &mut seen,
            |s| matches!(s, Seen::Message(m) if String::from_utf8_lossy(m).contains(&needle)),
        )
        .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}
