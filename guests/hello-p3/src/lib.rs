//! `hello-p3`: a WASI 0.3 HTTP app (`wasi:http/service@0.3.0`, an async handler with streamed
//! bodies), built with wit-bindgen's async support. By the last path segment:
//! - `.../echo`: streams the request body back as it arrives;
//! - `.../bytes?n=N`: streams N bytes (`x`) in 64 KiB chunks;
//! - `.../count`: answers how many requests this instance has handled (1 without reuse);
//! - `.../trap`: panics; `.../loop`: spins forever; `.../alloc`: allocates until it fails;
//! - anything else: `hello from edge p3: <path>`.

wit_bindgen::generate!({
    path: "../../wit/p3",
    world: "edge:platform-p3/http-app",
    generate_all,
});

use std::sync::atomic::{AtomicU64, Ordering};

use exports::wasi::http::handler::Guest;
use wasi::http::types::{ErrorCode, Fields, Request, Response};
use wit_bindgen::{FutureReader, StreamReader};

static HANDLED: AtomicU64 = AtomicU64::new(0);

const CHUNK: usize = 64 * 1024;

struct App;

impl Guest for App {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let handled = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
        let path_and_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query.as_str(), ""));
        let action = path.rsplit('/').next().unwrap_or_default();
        match action {
            "echo" => {
                let (_, request_done) = wit_future::new(|| Ok(()));
                let (body, _trailers) = Request::consume_body(request, request_done);
                Ok(respond(body))
            }
            "bytes" => {
                let n: usize = query
                    .split('&')
                    .filter_map(|pair| pair.strip_prefix("n="))
                    .find_map(|v| v.parse().ok())
                    .unwrap_or(0);
                let (mut tx, rx) = wit_stream::new();
                wit_bindgen::spawn(async move {
                    let mut left = n;
                    while left > 0 {
                        let chunk = left.min(CHUNK);
                        if !tx.write_all(vec![b'x'; chunk]).await.is_empty() {
                            return;
                        }
                        left -= chunk;
                    }
                });
                Ok(respond(rx))
            }
            "count" => Ok(text(format!("{handled}\n"))),
            "trap" => panic!("asked to trap"),
            "loop" => {
                let mut counter = 0u64;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut blocks = Vec::new();
                loop {
                    blocks.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&blocks);
                }
            }
            _ => Ok(text(format!("hello from edge p3: {path_and_query}\n"))),
        }
    }
}

/// A 200 response streaming `body`.
fn respond(body: StreamReader<u8>) -> Response {
    let (_, trailers): (_, FutureReader<Result<Option<Fields>, ErrorCode>>) =
        wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(body), trailers);
    response
}

/// A 200 response with a short text body.
fn text(body: String) -> Response {
    let (mut tx, rx) = wit_stream::new();
    wit_bindgen::spawn(async move {
        // A client that went away leaves the rest unwritten; nothing to do about it.
        let _unwritten = tx.write_all(body.into_bytes()).await;
    });
    respond(rx)
}

export!(App);
