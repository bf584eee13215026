//! `sensor-alert`: temperature readings from devices, over MQTT (or HTTP).
//!
//! - A message `{"sensor":"s1","celsius":21.5}` on `sensors/{id}/temperature` is added to the
//!   sensor's last ten readings in kv; when the reading is over the wasi:config `threshold`
//!   (celsius), a JSON alert `{"sensor","celsius","average","threshold"}` is published on
//!   `alerts/{id}` (MQTT).
//! - `POST` on the route with the same JSON does the same for devices that speak HTTP, and
//!   answers `{"sensor","average","alert"}`.
//! - `GET` on the route answers every sensor's rolling average:
//!   `{"s1":{"average":21.5,"readings":3}}`.
//!
//! A malformed reading is refused: the handler returns an error (the node retries it, then
//! dead-letters it with this reason), HTTP answers 400. Readings of one sensor handled at the
//! same time are merged with compare-and-swap, so none is lost.
//!
//! ```text
//! edge deploy sensor sensor_alert.wasm --kv --subscribe 'mqtt:sensors/+/temperature' \
//!     --publish 'mqtt:alerts/#' --config threshold=30
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/messaging-http-app",
    generate_all,
});

use serde::{Deserialize, Serialize};

use exports::wasi::http::incoming_handler::Guest as HttpGuest;
use exports::wasi::messaging::incoming_handler::Guest as MessageGuest;
use wasi::config::store as config;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::keyvalue0_2_0_draft2::{atomics, store};
use wasi::messaging::producer;
use wasi::messaging::types::{Client, Error, Message};

/// Readings kept per sensor for the rolling average.
const WINDOW: usize = 10;
/// Key prefix of a sensor's readings in the `default` bucket.
const PREFIX: &str = "readings/";
/// Compare-and-swap attempts before giving up on a contended sensor.
const CAS_ATTEMPTS: usize = 64;

#[derive(Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}

#[derive(Serialize)]
struct Alert<'a> {
    sensor: &'a str,
    celsius: f64,
    average: f64,
    threshold: f64,
}

/// What one reading did.
struct Recorded {
    sensor: String,
    average: f64,
    alert: bool,
}

struct SensorAlert;

impl MessageGuest for SensorAlert {
    fn handle(message: Message) -> Result<(), Error> {
        let topic = message.topic().unwrap_or_default();
        // sensors/{id}/temperature: the id in the topic names the alert topic.
        let id = topic.split('/').nth(1).map(str::to_string);
        record(&message.data(), id)
            .map(|_| ())
            .map_err(Error::Other)
    }
}

impl HttpGuest for SensorAlert {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match request.method() {
            Method::Get => match averages() {
                Ok(json) => (200, json),
                Err(why) => (500, error_json(&why)),
            },
            Method::Post => match read_body(request) {
                Some(body) => match record(&body, None) {
                    Ok(done) => (
                        200,
                        serde_json::json!({
                            "sensor": done.sensor,
                            "average": done.average,
                            "alert": done.alert,
                        })
                        .to_string(),
                    ),
                    Err(why) => (400, error_json(&why)),
                },
                None => (400, error_json("cannot read the request body")),
            },
            _ => (405, error_json("use GET for averages or POST a reading")),
        };
        respond(out, status, &body);
    }
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Adds a reading to its sensor's window and publishes an alert when it is over threshold.
fn record(payload: &[u8], topic_id: Option<String>) -> Result<Recorded, String> {
    let reading: Reading = serde_json::from_slice(payload).map_err(|err| {
        format!("malformed reading ({err}); expected {{\"sensor\":\"s1\",\"celsius\":21.5}}")
    })?;
    if !reading.celsius.is_finite() || reading.sensor.is_empty() || reading.sensor.contains('/') {
        return Err("a reading needs a sensor name without '/' and a finite celsius".into());
    }
    let threshold = threshold()?;
    let average = add_to_window(&reading.sensor, reading.celsius)?;
    let alert = reading.celsius > threshold;
    if alert {
        let id = topic_id.unwrap_or_else(|| reading.sensor.clone());
        let body = serde_json::to_vec(&Alert {
            sensor: &reading.sensor,
            celsius: reading.celsius,
            average,
            threshold,
        })
        .map_err(|err| err.to_string())?;
        publish(&format!("alerts/{id}"), body)?;
    }
    Ok(Recorded {
        sensor: reading.sensor,
        average,
        alert,
    })
}

fn threshold() -> Result<f64, String> {
    match config::get("threshold") {
        Ok(Some(text)) => text
            .trim()
            .parse()
            .map_err(|_| format!("wasi:config `threshold` is {text:?}, not a number of celsius")),
        Ok(None) => Err(
            "wasi:config key `threshold` is not set; deploy with --config threshold=CELSIUS".into(),
        ),
        Err(err) => Err(format!("reading wasi:config: {err:?}")),
    }
}

/// Appends `celsius` to the sensor's last readings (compare-and-swap) and returns their mean.
fn add_to_window(sensor: &str, celsius: f64) -> Result<f64, String> {
    let bucket = store::open("default").map_err(|e| format!("opening kv: {e:?}"))?;
    let key = format!("{PREFIX}{sensor}");
    for _ in 0..CAS_ATTEMPTS {
        let cas = atomics::Cas::new(&bucket, &key).map_err(|e| format!("kv: {e:?}"))?;
        let mut window: Vec<f64> = match cas.current().map_err(|e| format!("kv: {e:?}"))? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => Vec::new(),
        };
        window.push(celsius);
        if window.len() > WINDOW {
            window.remove(0);
        }
        let value = serde_json::to_vec(&window).map_err(|e| e.to_string())?;
        match atomics::swap(cas, &value) {
            Ok(()) => return Ok(mean(&window)),
            Err(atomics::CasError::CasFailed(_)) => continue,
            Err(atomics::CasError::StoreError(e)) => return Err(format!("kv: {e:?}")),
        }
    }
    Err(format!("sensor {sensor} is too contended; try again"))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn publish(topic: &str, body: Vec<u8>) -> Result<(), String> {
    let client = Client::connect("mqtt").map_err(|e| format!("connecting to mqtt: {e:?}"))?;
    let message = Message::new(&body);
    message.set_content_type("application/json");
    producer::send(&client, topic, message).map_err(|e| format!("publishing to {topic}: {e:?}"))
}

/// Every sensor's rolling average and reading count, as JSON.
fn averages() -> Result<String, String> {
    let bucket = store::open("default").map_err(|e| format!("opening kv: {e:?}"))?;
    let mut all = serde_json::Map::new();
    let mut cursor = None;
    loop {
        let page = bucket
            .list_keys(cursor.as_deref())
            .map_err(|e| format!("listing kv: {e:?}"))?;
        for key in &page.keys {
            let Some(sensor) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let window: Vec<f64> = match bucket.get(key).map_err(|e| format!("kv: {e:?}"))? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                None => continue,
            };
            all.insert(
                sensor.to_string(),
                serde_json::json!({ "average": mean(&window), "readings": window.len() }),
            );
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(serde_json::Value::Object(all).to_string())
}

fn read_body(request: IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let stream = body.stream().ok()?;
    let mut bytes = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    drop(stream);
    IncomingBody::finish(body);
    Some(bytes)
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"application/json".to_vec())])
        .expect("static header is valid");
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let outgoing = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream is taken once");
    for chunk in body.as_bytes().chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

export!(SensorAlert);
