//! `counter`: local state through `wasi:keyvalue`. Deploy with `--kv`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /counter/incr/{key}` | increments atomically, answers the new value as decimal text |
//! | `POST /counter/cas-incr/{key}` | the same with a compare-and-swap retry loop (draft2 `cas`) |
//! | `GET /counter/kv/{key}` | the value, 404 when absent |
//! | `PUT /counter/kv/{key}` | stores the body |
//! | `DELETE /counter/kv/{key}` | deletes the key |
//! | `GET /counter/keys` | every key, one per line (follows list-keys cursors) |
//! | `POST /counter/bench/{key}?n=N` | N increments in one request (for `scripts/bench-kv.sh`) |
//!
//! `?bucket=NAME` picks the bucket (default `default`). Store errors answer 400 with the
//! node's message (oversized key or value, invalid bucket name).

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/kv-http-app",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::keyvalue0_2_0_draft::{atomics, store};
use wasi::keyvalue0_2_0_draft2::{atomics as atomics2, store as store2};

struct Counter;

impl Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = route(request);
        respond(out, status, &body);
    }
}

fn route(request: IncomingRequest) -> (u16, Vec<u8>) {
    let path_and_query = request.path_with_query().unwrap_or_default();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query.as_str(), ""));
    let bucket_name = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("bucket="))
        .map_or_else(|| "default".to_string(), percent_decode);
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .splitn(3, '/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method();
    let result = match (&method, segments.as_slice()) {
        (Method::Post, [_, "incr", key]) => increment(&bucket_name, key),
        (Method::Post, [_, "cas-incr", key]) => cas_increment(&bucket_name, key),
        (Method::Post, [_, "bench", key]) => {
            let n = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            increment_many(&bucket_name, key, n)
        }
        (Method::Get, [_, "kv", key]) => get(&bucket_name, key),
        (Method::Put, [_, "kv", key]) => match read_body(request) {
            Some(body) => put(&bucket_name, key, body),
            None => Ok((400, b"cannot read the request body".to_vec())),
        },
        (Method::Delete, [_, "kv", key]) => delete(&bucket_name, key),
        (Method::Get, [_, "keys"]) => keys(&bucket_name),
        _ => Ok((404, b"unknown counter route".to_vec())),
    };
    result.unwrap_or_else(|message| (400, message.into_bytes()))
}

/// Decodes `%XX` escapes, so keys may hold any character.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn open(bucket: &str) -> Result<store::Bucket, String> {
    store::open(bucket).map_err(describe)
}

fn describe(err: store::Error) -> String {
    match err {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(message) => message,
    }
}

fn describe2(err: store2::Error) -> String {
    match err {
        store2::Error::NoSuchStore => "no such store".into(),
        store2::Error::AccessDenied => "access denied".into(),
        store2::Error::Other(message) => message,
    }
}

type Answer = Result<(u16, Vec<u8>), String>;

fn increment(bucket: &str, key: &str) -> Answer {
    let value = atomics::increment(&open(bucket)?, key, 1).map_err(describe)?;
    Ok((200, value.to_string().into_bytes()))
}

/// `n` increments in one request: measures kv calls through the guest, not HTTP.
fn increment_many(bucket: &str, key: &str, n: u32) -> Answer {
    let bucket = open(bucket)?;
    let mut value = 0;
    for _ in 0..n {
        value = atomics::increment(&bucket, key, 1).map_err(describe)?;
    }
    Ok((200, value.to_string().into_bytes()))
}

/// Read, add one, swap; retry when another request changed the value in between.
fn cas_increment(bucket: &str, key: &str) -> Answer {
    let bucket = store2::open(bucket).map_err(describe2)?;
    let mut cas = atomics2::Cas::new(&bucket, key).map_err(describe2)?;
    for _ in 0..10_000 {
        let current = cas.current().map_err(describe2)?;
        let value: u64 = match current {
            None => 0,
            Some(bytes) => String::from_utf8_lossy(&bytes)
                .parse()
                .map_err(|_| format!("value of {key} is not a number"))?,
        };
        let next = value + 1;
        match atomics2::swap(cas, next.to_string().as_bytes()) {
            Ok(()) => return Ok((200, next.to_string().into_bytes())),
            Err(atomics2::CasError::CasFailed(retry)) => cas = retry,
            Err(atomics2::CasError::StoreError(err)) => return Err(describe2(err)),
        }
    }
    Err("compare-and-swap kept failing".into())
}

fn get(bucket: &str, key: &str) -> Answer {
    match open(bucket)?.get(key).map_err(describe)? {
        Some(value) => Ok((200, value)),
        None => Ok((404, format!("no key {key}").into_bytes())),
    }
}

fn put(bucket: &str, key: &str, value: Vec<u8>) -> Answer {
    open(bucket)?.set(key, &value).map_err(describe)?;
    Ok((200, b"stored".to_vec()))
}

fn delete(bucket: &str, key: &str) -> Answer {
    open(bucket)?.delete(key).map_err(describe)?;
    Ok((200, b"deleted".to_vec()))
}

fn keys(bucket: &str) -> Answer {
    let bucket = open(bucket)?;
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor).map_err(describe)?;
        all.extend(page.keys);
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok((200, all.join("\n").into_bytes()))
}

fn read_body(request: IncomingRequest) -> Option<Vec<u8>> {
    let body = request.consume().ok()?;
    let stream = body.stream().ok()?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(_) => return None,
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    Some(bytes)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().expect("stream taken once");
    for chunk in body.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("client reads the body");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("body complete");
}

export!(Counter);
