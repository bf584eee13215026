//! `camera-classify`: frames from cameras, classified on the gateway. Each message on the
//! subscribed topics is a JPEG or PNG frame; the component decodes and preprocesses it (the
//! same code as `classify`), runs the node's model through `wasi:nn` and publishes the top
//! five labels as JSON `{"model","top":[{"label","index","probability"}]}`.
//!
//! The result goes to `labels/{camera}` (MQTT) or `labels.{camera}` (NATS), where `{camera}`
//! is the last level of the frame's topic (`frames/cam1`, `frames.cam1`). wasi:config keys:
//! `result_broker` (`mqtt`, the default, or `nats`), `result_prefix` (default `labels`),
//! `model` (default `efficientnet-lite0`), `model_input` (default `input`). A frame that is
//! not an image fails the handler with the reason (the node retries, then dead-letters it).
//!
//! ```text
//! edge deploy camera camera_classify.wasm --model efficientnet-lite0 \
//!     --subscribe 'nats:frames.>' --publish 'nats:labels.>' --config result_broker=nats
//! ```

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/messaging-app",
    generate_all,
});

#[path = "../../classify/src/answer.rs"]
mod answer;
#[path = "../../classify/src/image_input.rs"]
mod image_input;
#[path = "../../classify/src/inference.rs"]
mod inference;
#[path = "../../classify/src/json.rs"]
mod json;

use exports::wasi::messaging::incoming_handler::Guest;
use wasi::config::store as config;
use wasi::messaging::producer;
use wasi::messaging::types::{Client, Error, Message};

struct CameraClassify;

impl Guest for CameraClassify {
    fn handle(frame: Message) -> Result<(), Error> {
        let topic = frame.topic().unwrap_or_default();
        let broker = setting("result_broker", "mqtt");
        let separator = match broker.as_str() {
            "mqtt" => '/',
            "nats" => '.',
            other => {
                return Err(Error::Other(format!(
                    "wasi:config result_broker is {other:?}; use mqtt or nats"
                )));
            }
        };
        let camera = topic
            .rsplit(['/', '.'])
            .next()
            .filter(|c| !c.is_empty())
            .unwrap_or("unknown");
        let model = setting("model", "efficientnet-lite0");
        let input = setting("model_input", "input");
        let tensor = image_input::to_tensor(&frame.data()).map_err(Error::Other)?;
        let logits = inference::infer(&model, &input, &tensor).map_err(|failure| {
            Error::Other(format!(
                "{} (HTTP status {} in classify)",
                failure.message, failure.status
            ))
        })?;
        let answer = answer::top_classes_json(&model, &logits).map_err(Error::Other)?;
        let result = Message::new(answer.trim_end().as_bytes());
        result.set_content_type("application/json");
        result.add_metadata("camera", camera);
        let client = Client::connect(&broker)?;
        let prefix = setting("result_prefix", "labels");
        producer::send(&client, &format!("{prefix}{separator}{camera}"), result)
    }
}

fn setting(key: &str, default: &str) -> String {
    match config::get(key) {
        Ok(Some(value)) => value,
        _ => default.to_string(),
    }
}

export!(CameraClassify);
