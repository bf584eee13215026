//! Message triggers end to end with real brokers (mosquitto, nats-server with JetStream): the
//! example guests, delivery guarantees under broker restarts, node crashes and outages, dead
//! letters, and bad input. Every test also checks that HTTP keeps serving.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::brokers::{Broker, MqttProbe, free_port};
use crate::harness::{
    CliResult, PATIENCE, TestHost, client, get, guest, metric_or_zero, photo, send,
};

/// A node config with the given brokers and quick retries.
fn node_toml(mqtt: Option<&str>, nats: Option<&str>, extra: &str) -> String {
    let mut toml = format!(
        "{extra}\n[messaging]\nretries = 2\nretry_backoff_ms = 20\nmax_in_flight_per_app = 4\n"
    );
    if let Some(url) = mqtt {
        toml.push_str(&format!(
            "[messaging.mqtt]\nurl = \"{url}\"\nclient_id = \"edge-test\"\n"
        ));
    }
    if let Some(url) = nats {
        toml.push_str(&format!(
            "[messaging.nats]\nurl = \"{url}\"\nclient_id = \"edge-test\"\nack_wait_ms = 3000\n"
        ));
    }
    toml
}

/// Starts a node on `data` with `toml` as its config (kept across restarts).
fn node_in(data: &Path, toml: &str) -> TestHost {
    let config = data.join("node.toml");
    std::fs::write(&config, toml).expect("writing node.toml");
    TestHost::start_in(
        &data.join("node"),
        &["--config", config.to_str().expect("utf-8")],
    )
}

/// Deploys `guests/sensor-alert` as `sensor`, as its README does, with `threshold`.
fn deploy_sensor(host: &TestHost, threshold: &str) -> CliResult {
    let threshold = format!("threshold={threshold}");
    host.deploy(
        "sensor",
        &guest("sensor-alert"),
        &[
            "--kv",
            "--subscribe",
            "mqtt:sensors/+/temperature",
            "--publish",
            "mqtt:alerts/#",
            "--config",
            &threshold,
        ],
    )
}

/// Deploys the `relay` fixture subscribed to `subscribe`, allowed to publish to `publish`.
fn deploy_relay(host: &TestHost, subscribe: &str, publish: &str) -> CliResult {
    host.deploy(
        "relay",
        &guest("relay"),
        &["--subscribe", subscribe, "--publish", publish],
    )
}

async fn healthz(host: &TestHost) -> String {
    get(&format!("{}/healthz", host.admin_url)).await.body
}

/// Waits until `/healthz` has a line starting with `line`.
async fn wait_for_health(host: &TestHost, line: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let body = healthz(host).await;
        if body.lines().any(|l| l.starts_with(line)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthz never showed {line:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json(publish: &rumqttc::Publish) -> serde_json::Value {
    serde_json::from_slice(&publish.payload).expect("a JSON payload")
}

async fn assert_http_serves(host: &TestHost) {
    let reply = get(&format!("{}/hello", host.data_url)).await;
    assert_eq!(reply.status, 200, "HTTP stopped serving: {}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_alert_averages_readings_and_publishes_alerts_over_mqtt() {
    let broker = Broker::mosquitto();
    let host = TestHost::start_with_config(&node_toml(Some(&broker.url()), None, ""));
    wait_for_health(&host, "mqtt: connected").await;
    let mut alerts = MqttProbe::connect(broker.port(), "alerts-watcher", &["alerts/#"]).await;
    let deployed = deploy_sensor(&host, "30");
    assert!(
        deployed
            .stdout
            .contains("messages on mqtt:sensors/+/temperature"),
        "{}",
        deployed.stdout
    );
    host.wait_for_log("subscribed");
    let devices = MqttProbe::connect(broker.port(), "devices", &["unused/never"]).await;
    for (sensor, celsius) in [("s1", 21.5), ("s1", 22.5), ("s2", 35.0), ("s1", 31.0)] {
        devices
            .publish(
                &format!("sensors/{sensor}/temperature"),
                format!(r#"{{"sensor":"{sensor}","celsius":{celsius}}}"#),
            )
            .await;
    }

    let got = alerts.collect_until(|all| all.len() >= 2).await;
    let mut by_topic: Vec<(String, serde_json::Value)> =
        got.iter().map(|p| (p.topic.clone(), json(p))).collect();
    by_topic.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_topic.len(), 2, "two readings are over 30: {by_topic:?}");
    assert_eq!(by_topic[0].0, "alerts/s1");
    assert_eq!(by_topic[0].1["celsius"], 31.0);
    assert_eq!(by_topic[0].1["threshold"], 30.0);
    assert_eq!(by_topic[1].0, "alerts/s2");
    assert_eq!(by_topic[1].1["average"], 35.0);
    assert!(
        alerts
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "no alert for readings under 30"
    );

    host.wait_for_metric("edge_messages_total{app=\"sensor\",result=\"acked\"}", 4.0)
        .await;
    let averages = get(&format!("{}/sensor", host.data_url)).await;
    assert_eq!(averages.status, 200, "{}", averages.body);
    let averages: serde_json::Value = serde_json::from_str(&averages.body).unwrap();
    assert_eq!(averages["s1"]["readings"], 3);
    assert_eq!(averages["s1"]["average"], 25.0);
    assert_eq!(averages["s2"]["average"], 35.0);

    let listed = host.edge(&["list"]);
    assert!(
        listed.stdout.contains("mqtt:sensors/+/temperature")
            && listed.stdout.contains("mqtt:alerts/#"),
        "{}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains("threshold=30") && !listed.stdout.contains(" 30 "),
        "config values stay secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_classify_labels_frames_from_jetstream() {
    let nats = Broker::nats();
    let watcher = async_nats::connect(nats.url())
        .await
        .expect("connecting to nats");
    let js = async_nats::jetstream::new(watcher.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "FRAMES".into(),
        subjects: vec!["frames.>".into()],
        ..Default::default()
    })
    .await
    .expect("creating the frames stream");
    let mut labels = watcher.subscribe("labels.>").await.expect("subscribing");
    watcher.flush().await.unwrap();

    let host = TestHost::start_with_config(&node_toml(None, Some(&nats.url()), ""));
    host.deploy(
        "camera",
        &guest("camera-classify"),
        &[
            "--model",
            "efficientnet-lite0",
            "--subscribe",
            "nats:frames.>",
            "--publish",
            "nats:labels.>",
            "--config",
            "result_broker=nats",
        ],
    );
    // Published before the node consumes: JetStream keeps it for the durable consumer.
    js.publish("frames.cam1", photo("chelsea.png").into())
        .await
        .expect("publishing a frame")
        .await
        .expect("the stream stored the frame");

    use futures_util::StreamExt as _;
    let result = tokio::time::timeout(PATIENCE, labels.next())
        .await
        .expect("labels within the test's patience")
        .expect("a label message");
    assert_eq!(result.subject.as_str(), "labels.cam1");
    let answer: serde_json::Value = serde_json::from_slice(&result.payload).unwrap();
    let top = answer["top"][0]["label"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        ["tiger cat", "tabby", "Egyptian cat"].contains(&top.as_str()),
        "chelsea.png is a cat: {answer}"
    );
    let headers = result.headers.expect("metadata travels as headers");
    assert_eq!(headers.get("camera").map(|v| v.as_str()), Some("cam1"));
    assert_eq!(
        headers.get("content-type").map(|v| v.as_str()),
        Some("application/json")
    );
    host.wait_for_metric("edge_messages_total{app=\"camera\",result=\"acked\"}", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_then_dead_lettered_with_the_reason() {
    let broker = Broker::mosquitto();
    let host = TestHost::start_with_config(&node_toml(
        Some(&broker.url()),
        None,
        "[limits]\nrequest_timeout_ms = 1000\n",
    ));
    host.deploy("hello", &guest("hello"), &[]);
    deploy_relay(&host, "mqtt:jobs/#", "mqtt:relayed/#");
    let mut dead = MqttProbe::connect(broker.port(), "dead-watcher", &["dead-letter/#"]).await;
    host.wait_for_log("subscribed");
    let producer = MqttProbe::connect(broker.port(), "jobs-producer", &["unused/never"]).await;
    producer.publish("jobs/trap", "trap").await;
    producer.publish("jobs/error", "error").await;
    producer.publish("jobs/spin", "spin").await;

    let letters = dead.collect_until(|all| all.len() >= 3).await;
    assert_eq!(letters.len(), 3, "three dead letters");
    for letter in &letters {
        assert_eq!(letter.topic, "dead-letter/relay");
        let envelope = json(letter);
        assert_eq!(envelope["app"], "relay");
        assert_eq!(
            envelope["attempts"], 3,
            "first try and two retries: {envelope}"
        );
        let reason = envelope["reason"].as_str().unwrap_or_default();
        match envelope["topic"].as_str() {
            Some("jobs/trap") => assert!(reason.contains("trapped"), "{reason}"),
            Some("jobs/error") => assert!(reason.contains("asked to fail"), "{reason}"),
            Some("jobs/spin") => assert!(reason.contains("time limit"), "{reason}"),
            other => panic!("unexpected dead letter for {other:?}"),
        }
        assert_eq!(
            envelope["payload"],
            envelope["topic"]
                .as_str()
                .unwrap()
                .trim_start_matches("jobs/")
        );
    }
    let metrics = host.metrics().await;
    assert_eq!(
        metric_or_zero(
            &metrics,
            "edge_messages_total{app=\"relay\",result=\"dead_lettered\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_or_zero(
            &metrics,
            "edge_messages_total{app=\"relay\",result=\"retried\"}"
        ),
        6.0
    );
    assert_http_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_is_lost_when_the_broker_restarts_mid_stream() {
    const N: usize = 60;
    let mut broker = Broker::mosquitto();
    let host = TestHost::start_with_config(&node_toml(Some(&broker.url()), None, ""));
    deploy_relay(&host, "mqtt:jobs/#", "mqtt:relayed/#");
    host.deploy("hello", &guest("hello"), &[]);
    host.wait_for_log("subscribed");
    let mut relayed = MqttProbe::connect(broker.port(), "relayed-watcher", &["relayed/#"]).await;
    let producer = MqttProbe::connect(broker.port(), "restart-producer", &["unused/never"]).await;
    for i in 0..N / 2 {
        producer.publish("jobs/a", format!("sleep:20:{i}")).await;
    }
    // Restart while the node is still working through the first half.
    let mut seen = BTreeSet::new();
    relays_until(&mut relayed, &mut seen, 1).await;
    broker.stop();
    assert_http_serves(&host).await;
    wait_for_health(&host, "mqtt: unreachable").await;
    broker.start_again();
    wait_for_health(&host, "mqtt: connected").await;
    for i in N / 2..N {
        producer.publish("jobs/a", format!("sleep:20:{i}")).await;
    }
    relays_until(&mut relayed, &mut seen, N).await;
    assert_eq!(
        seen.len(),
        N,
        "every message relayed at least once; missing {:?}",
        missing(&seen, N)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_messages_come_again_after_the_node_is_killed() {
    const N: usize = 60;
    let broker = Broker::mosquitto();
    let data = tempfile::tempdir().unwrap();
    let toml = node_toml(Some(&broker.url()), None, "");
    let host = node_in(data.path(), &toml);
    deploy_relay(&host, "mqtt:jobs/#", "mqtt:relayed/#");
    host.wait_for_log("subscribed");
    let mut relayed = MqttProbe::connect(broker.port(), "crash-watcher", &["relayed/#"]).await;
    let producer = MqttProbe::connect(broker.port(), "crash-producer", &["unused/never"]).await;
    for i in 0..N {
        producer.publish("jobs/a", format!("sleep:30:{i}")).await;
    }
    let mut seen = BTreeSet::new();
    relays_until(&mut relayed, &mut seen, 5).await;
    host.kill9();
    let host = node_in(data.path(), &toml);
    relays_until(&mut relayed, &mut seen, N).await;
    let metrics = host.metrics().await;
    let messaging: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("edge_messages") || l.starts_with("edge_outbox"))
        .collect();
    assert_eq!(
        seen.len(),
        N,
        "every message relayed after the crash; missing {:?}; {messaging:#?}",
        missing(&seen, N)
    );
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_published_during_an_outage_arrives_in_order_after_it() {
    const N: usize = 20;
    let mut broker = Broker::mosquitto();
    let host = TestHost::start_with_config(&node_toml(Some(&broker.url()), None, ""));
    deploy_sensor(&host, "0");
    // Persistent session: the watcher's subscription outlives the broker restart.
    let alerts = MqttProbe::connect(broker.port(), "outage-watcher", &["alerts/#"]).await;
    drop(alerts);
    broker.stop();
    wait_for_health(&host, "mqtt: unreachable").await;

    let http = client();
    for i in 0..N {
        let reading = format!(r#"{{"sensor":"s9","celsius":{}}}"#, i + 1);
        let reply = send(http.post(format!("{}/sensor", host.data_url)).body(reading)).await;
        assert_eq!(
            reply.status, 200,
            "HTTP ingestion works while the broker is down: {}",
            reply.body
        );
        assert!(reply.body.contains("\"alert\":true"), "{}", reply.body);
    }
    host.wait_for_metric("edge_outbox_messages{broker=\"mqtt\"}", N as f64)
        .await;
    assert!(healthz(&host).await.contains(&format!("outbox {N}")));

    broker.start_again();
    let mut alerts = MqttProbe::connect(broker.port(), "outage-watcher", &["alerts/#"]).await;
    let got = alerts.collect_until(|all| all.len() >= N).await;
    let celsius: Vec<f64> = got
        .iter()
        .map(|p| json(p)["celsius"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = (1..=N).map(|i| i as f64).collect();
    assert_eq!(celsius, expected, "every alert, in the order published");
    wait_for_health(&host, "mqtt: connected, outbox 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_messages_survive_a_server_restart() {
    const N: usize = 30;
    let mut nats = Broker::nats();
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let js = jobs_and_relayed_streams(&watcher).await;
    let host = TestHost::start_with_config(&node_toml(None, Some(&nats.url()), ""));
    deploy_relay(&host, "nats:jobs.>", "nats:relayed.>");
    host.deploy("hello", &guest("hello"), &[]);
    for i in 0..N / 2 {
        js.publish("jobs.a", format!("sleep:20:{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    host.wait_for_metric("edge_messages_total{app=\"relay\",result=\"acked\"}", 1.0)
        .await;
    nats.stop();
    assert_http_serves(&host).await;
    wait_for_health(&host, "nats: unreachable").await;
    nats.start_again();
    wait_for_health(&host, "nats: connected").await;
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(watcher.clone());
    for i in N / 2..N {
        js.publish("jobs.a", format!("sleep:20:{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Relays were published into the RELAYED stream: read them all back from it.
    let seen = relayed_ids(&js, N).await;
    assert_eq!(
        seen.len(),
        N,
        "every JetStream message relayed; missing {:?}",
        missing(&seen, N)
    );

    // A removed app leaves no durable consumer collecting messages on the server.
    let removed = host.edge(&["remove", "relay"]);
    assert!(removed.ok, "{}", removed.stderr);
    use futures_util::TryStreamExt as _;
    let consumers: Vec<String> = js
        .get_stream("JOBS")
        .await
        .unwrap()
        .consumer_names()
        .try_collect()
        .await
        .unwrap();
    assert!(
        consumers.is_empty(),
        "the removed app's consumer is deleted: {consumers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messaging_input_gets_a_clear_error_and_http_keeps_serving() {
    let broker = Broker::mosquitto();
    let host = TestHost::start_with_config(&node_toml(Some(&broker.url()), None, ""));
    host.deploy("hello", &guest("hello"), &[]);
    let relay = guest("relay");
    let relay = relay.to_str().unwrap();

    for (pattern, why) in [
        ("mqtt:sensors/#/x", "must be the last level"),
        ("mqtt:sensors/s+", "whole level"),
        ("nats:orders..x", "empty tokens"),
        ("kafka:orders", "unknown broker"),
        ("sensors/#", "names no broker"),
        ("nats:orders.>", "this node has no nats broker"),
    ] {
        let refused = host.edge(&[
            "deploy",
            "bad",
            relay,
            "--subscribe",
            pattern,
            "--publish",
            "mqtt:relayed/#",
        ]);
        assert!(!refused.ok, "{pattern} must be refused");
        assert!(
            refused.stderr.contains(why),
            "{pattern}: {}",
            refused.stderr
        );
    }
    let no_grant = host.edge(&["deploy", "bad", relay, "--subscribe", "mqtt:jobs/#"]);
    assert!(
        !no_grant.ok && no_grant.stderr.contains("--publish"),
        "{}",
        no_grant.stderr
    );
    let hello = guest("hello");
    let not_a_handler = host.edge(&[
        "deploy",
        "bad",
        hello.to_str().unwrap(),
        "--subscribe",
        "mqtt:jobs/#",
    ]);
    assert!(
        !not_a_handler.ok
            && not_a_handler
                .stderr
                .contains("wasi:messaging/incoming-handler"),
        "{}",
        not_a_handler.stderr
    );

    // Oversized in, oversized out, a topic not granted, malformed JSON: dead letters with reasons.
    deploy_relay(&host, "mqtt:jobs/#", "mqtt:relayed/jobs/ok/#");
    deploy_sensor(&host, "30");
    let mut dead = MqttProbe::connect(broker.port(), "bad-dead-watcher", &["dead-letter/#"]).await;
    host.wait_for_log("subscribed");
    let producer = MqttProbe::connect(broker.port(), "bad-producer", &["unused/never"]).await;
    producer
        .publish("jobs/ok/huge", vec![b'x'; 2 * 1024 * 1024])
        .await;
    producer.publish("jobs/ok/big-out", "big:2000000").await;
    producer.publish("jobs/elsewhere", "hello").await;
    producer
        .publish("sensors/s1/temperature", "{not json")
        .await;
    let letters = dead.collect_until(|all| all.len() >= 4).await;
    let reasons: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            let e = json(l);
            (
                e["topic"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let reason_of = |topic: &str| {
        reasons
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no dead letter for {topic}: {reasons:?}"))
    };
    assert!(
        reason_of("jobs/ok/huge").contains("max_payload_bytes"),
        "{reasons:?}"
    );
    assert!(
        reason_of("jobs/ok/big-out").contains("max_payload_bytes"),
        "{reasons:?}"
    );
    assert!(
        reason_of("jobs/elsewhere").contains("may not publish to mqtt:relayed/jobs/elsewhere"),
        "{reasons:?}"
    );
    assert!(
        reason_of("sensors/s1/temperature").contains("malformed reading"),
        "{reasons:?}"
    );
    let huge = letters
        .iter()
        .find(|l| json(l)["topic"] == "jobs/ok/huge")
        .unwrap();
    assert!(
        huge.payload.len() < 4096,
        "an oversized payload is not copied into its dead letter"
    );
    assert_http_serves(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_does_not_stop_deploys_or_http() {
    let port = free_port();
    let host = TestHost::start_with_config(&node_toml(
        Some(&format!("mqtt://127.0.0.1:{port}")),
        None,
        "",
    ));
    host.deploy("hello", &guest("hello"), &[]);
    wait_for_health(&host, "mqtt: unreachable").await;
    let deployed = deploy_relay(&host, "mqtt:jobs/#", "mqtt:relayed/#");
    assert!(
        deployed
            .stderr
            .contains("warning: the mqtt broker is unreachable"),
        "{}",
        deployed.stderr
    );
    assert_http_serves(&host).await;
    let metrics = host.metrics().await;
    assert_eq!(
        metric_or_zero(&metrics, "edge_broker_connected{broker=\"mqtt\"}"),
        0.0,
        "{metrics}"
    );
    let health = get(&format!("{}/healthz", host.admin_url)).await;
    assert_eq!(
        health.status, 200,
        "a broker being down does not make the node unhealthy"
    );
    assert!(
        !health.body.contains("127.0.0.1"),
        "no broker URL in healthz: {}",
        health.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_over_a_tls_nats_with_a_password_and_a_wrong_one_is_refused_unshown() {
    const N: usize = 10;
    const PASSWORD: &str = "broker-secret-5151";
    const WRONG: &str = "not-the-secret-2626";
    let temp = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = crate::harness::make_certificates(temp.path());
    let nats = Broker::nats_secured(&cert, &key, "gw", PASSWORD);
    let watcher = async_nats::ConnectOptions::new()
        .user_and_password("gw".into(), PASSWORD.into())
        .add_root_certificates(ca.clone())
        .require_tls(true)
        .connect(nats.url())
        .await
        .expect("connecting to the TLS nats-server");
    let js = jobs_and_relayed_streams(&watcher).await;
    let node_config = |password: &str| {
        format!(
            "{}username = \"gw\"\npassword = \"{password}\"\nca_file = \"{}\"\n",
            node_toml(None, Some(&nats.url()), ""),
            ca.display()
        )
    };
    let good = TestHost::start_with_config(&node_config(PASSWORD));
    let refused = TestHost::start_with_config(&node_config(WRONG));

    // Over TLS with the password, messages reach the handler and its publishes the stream.
    relays_every_job(&good, &js, N).await;

    // With a wrong password the node says why and what to check, keeps serving HTTP, and
    // neither node shows a password anywhere.
    assert_refused_login_is_explained_unshown(&good, &refused, "nats", &[PASSWORD, WRONG]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_with_a_creds_file_and_a_stranger_account_is_refused_unshown() {
    const N: usize = 10;
    let temp = tempfile::tempdir().expect("temp dir");
    let accounts = crate::brokers::NatsAccounts::create(temp.path());
    let nats = Broker::nats_with_accounts(&accounts);
    let watcher = async_nats::ConnectOptions::with_credentials_file(&accounts.creds)
        .await
        .expect("reading the creds file")
        .connect(nats.url())
        .await
        .expect("connecting with the creds file");
    let js = jobs_and_relayed_streams(&watcher).await;
    let node_config = |creds: &Path| {
        format!(
            "{}credentials_file = \"{}\"\n",
            node_toml(None, Some(&nats.url()), ""),
            creds.display()
        )
    };
    let good = TestHost::start_with_config(&node_config(&accounts.creds));
    let refused = TestHost::start_with_config(&node_config(&accounts.stranger_creds));

    relays_every_job(&good, &js, N).await;

    // A user of an account the server does not trust is refused and told what to check; no
    // seed is ever shown.
    wait_for_health(&refused, "nats: unreachable (").await;
    let health = healthz(&refused).await;
    assert!(health.contains("credentials_file"), "{health}");
    for text in [good.log(), refused.log(), health, healthz(&good).await] {
        for seed in &accounts.seeds {
            assert!(!text.contains(seed.as_str()), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_flow_over_tls_with_a_password_and_a_wrong_one_is_refused_unshown() {
    const PASSWORD: &str = "mqtt-secret-7373";
    const WRONG: &str = "not-the-secret-8484";
    let temp = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = crate::harness::make_certificates(temp.path());
    let (broker, plain_port) = Broker::mosquitto_secured(&cert, &key, "gw", PASSWORD);
    let node_config = |password: &str| {
        format!(
            "{}username = \"gw\"\npassword = \"{password}\"\nca_file = \"{}\"\n",
            node_toml(Some(&broker.url()), None, ""),
            ca.display()
        )
    };
    let good = TestHost::start_with_config(&node_config(PASSWORD));
    let refused = TestHost::start_with_config(&node_config(WRONG));

    // Over TLS with the password, a reading reaches the handler and its alert the broker.
    wait_for_health(&good, "mqtt: connected").await;
    let mut alerts = MqttProbe::connect(plain_port, "tls-alerts", &["alerts/#"]).await;
    let deployed = deploy_sensor(&good, "30");
    assert!(deployed.ok, "{}", deployed.stderr);
    good.wait_for_log("subscribed");
    let device = MqttProbe::connect(plain_port, "tls-device", &["unused/never"]).await;
    device
        .publish(
            "sensors/s9/temperature",
            r#"{"sensor":"s9","celsius":40.0}"#,
        )
        .await;
    let got = alerts.collect_until(|all| !all.is_empty()).await;
    assert_eq!(got.first().map(|p| p.topic.as_str()), Some("alerts/s9"));

    // With a wrong password the node says why and what to check, keeps serving HTTP, and
    // neither node shows a password anywhere.
    assert_refused_login_is_explained_unshown(&good, &refused, "mqtt", &[PASSWORD, WRONG]).await;
}

/// Checks a node whose login `broker` refused: its `/healthz` line and a warning name the
/// `[messaging.BROKER]` credentials to check, it keeps serving HTTP, and no `secrets` appear
/// in either node's log or `/healthz`.
async fn assert_refused_login_is_explained_unshown(
    good: &TestHost,
    refused: &TestHost,
    broker: &str,
    secrets: &[&str],
) {
    let hint = format!("check [messaging.{broker}] username and password");
    wait_for_health(refused, &format!("{broker}: unreachable (")).await;
    let health = healthz(refused).await;
    assert!(health.contains(&hint), "{health}");
    assert!(
        refused.wait_for_log(&hint),
        "no warning with the setting to check: {}",
        refused.log()
    );
    refused.deploy("hello", &guest("hello"), &[]);
    assert_http_serves(refused).await;
    for text in [good.log(), refused.log(), health, healthz(good).await] {
        for secret in secrets {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

/// Deploys the relay on `host` (`nats:jobs.>` to `nats:relayed.>`), publishes `n` jobs once
/// the node is connected, and checks that every one was relayed into the stream.
async fn relays_every_job(host: &TestHost, js: &async_nats::jetstream::Context, n: usize) {
    let deployed = deploy_relay(host, "nats:jobs.>", "nats:relayed.>");
    assert!(deployed.ok, "{}", deployed.stderr);
    wait_for_health(host, "nats: connected").await;
    for i in 0..n {
        js.publish("jobs.a", format!("sleep:0:{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let seen = relayed_ids(js, n).await;
    assert_eq!(seen.len(), n, "missing {:?}", missing(&seen, n));
}

/// The id in a relayed `sleep:MS:ID` payload.
fn id_of(payload: &[u8]) -> Option<usize> {
    std::str::from_utf8(payload)
        .ok()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

/// Collects relays into `seen` until it holds `n` distinct ids (or the test's patience ends).
async fn relays_until(probe: &mut MqttProbe, seen: &mut BTreeSet<usize>, n: usize) {
    probe
        .collect_until(|all| {
            if let Some(id) = all.last().and_then(|p| id_of(&p.payload)) {
                seen.insert(id);
            }
            seen.len() >= n
        })
        .await;
}

fn missing(seen: &BTreeSet<usize>, n: usize) -> Vec<usize> {
    (0..n).filter(|i| !seen.contains(i)).collect()
}

/// JetStream streams `JOBS` (`jobs.>`, what the relay reads) and `RELAYED` (`relayed.>`, what
/// it publishes), on the server `watcher` is connected to.
async fn jobs_and_relayed_streams(watcher: &async_nats::Client) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(watcher.clone());
    for (name, subjects) in [("JOBS", "jobs.>"), ("RELAYED", "relayed.>")] {
        js.get_or_create_stream(async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    js
}

/// The ids of the messages in the `RELAYED` stream, read until there are `want` of them or
/// the test's patience ends.
async fn relayed_ids(js: &async_nats::jetstream::Context, want: usize) -> BTreeSet<usize> {
    let stream = js.get_stream("RELAYED").await.unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = BTreeSet::new();
    while seen.len() < want && std::time::Instant::now() < deadline {
        let info = stream.get_info().await.unwrap();
        for seq in 1..=info.state.last_sequence {
            if let Ok(message) = stream.get_raw_message(seq).await
                && let Some(id) = id_of(&message.payload)
            {
                seen.insert(id);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// Publishes `payload` to `subject` (raw bytes, not necessarily UTF-8) over a plain protocol
/// connection, as any NATS client of the broker could, and waits for the server's PONG.
async fn publish_raw_nats(port: u16, subject: &[u8], payload: &[u8]) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to nats-server");
    let mut line = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPUB ".to_vec();
    line.extend_from_slice(subject);
    line.extend_from_slice(format!(" {}\r\n", payload.len()).as_bytes());
    line.extend_from_slice(payload);
    line.extend_from_slice(b"\r\nPING\r\n");
    socket.write_all(&line).await.expect("publishing");
    let mut read = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&read).contains("PONG") {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .expect("nats-server answers PING")
            .expect("reading from nats-server");
        assert!(
            n > 0,
            "nats-server closed: {}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_that_is_not_utf8_is_delivered_and_the_nats_link_stays_up() {
    const N: usize = 10;
    let nats = Broker::nats();
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let js = jobs_and_relayed_streams(&watcher).await;
    let host = TestHost::start_with_config(&node_toml(None, Some(&nats.url()), ""));
    deploy_relay(&host, "nats:jobs.>", "nats:relayed.>");
    host.deploy("hello", &guest("hello"), &[]);
    wait_for_health(&host, "nats: connected").await;

    publish_raw_nats(nats.port(), b"jobs.\xff\xfe", b"sleep:0:999").await;
    for i in 0..N {
        js.publish("jobs.a", format!("sleep:0:{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_http_serves(&host).await;
    let seen = relayed_ids(&js, N + 1).await;
    // The bad message itself reached the app (its subject's invalid bytes replaced), and the
    // node's connection never dropped over it.
    assert!(
        seen.contains(&999),
        "the message with the bad subject was relayed too"
    );
    assert_eq!(
        missing(&seen, N),
        Vec::<usize>::new(),
        "every message relayed:\n{}",
        host.log()
    );
    let log = host.log();
    assert!(
        log.contains("not UTF-8"),
        "the bad subject is logged:\n{log}"
    );
    assert!(
        !log.contains("broker connection lost"),
        "the NATS link dropped:\n{log}"
    );
    wait_for_health(&host, "nats: connected").await;
}
