//! `forward`: an IoT gateway passing readings to the cloud. A `POST` to its route forwards the
//! body to the URL in the wasi:config key `upstream` and answers with the upstream's status;
//! a `GET` says where it forwards to. Redirects are followed (at most 3), each hop through the
//! node's outgoing-HTTP grant check. Needs `--config upstream=URL` and `--allow-outbound` for
//! the upstream's origin.

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/config-http-app",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::config::store as config;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 3;
/// Largest write `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;

struct Forward;

impl Guest for Forward {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let upstream = match config::get("upstream") {
            Ok(Some(url)) => url,
            Ok(None) => {
                return respond(
                    response_out,
                    500,
                    "no upstream configured: wasi:config key `upstream` is none (deploy with \
                     --config upstream=URL)\n",
                );
            }
            Err(err) => return respond(response_out, 500, &format!("config error: {err:?}\n")),
        };
        match request.method() {
            Method::Get => respond(
                response_out,
                200,
                &format!("forwards POSTs to {upstream}\n"),
            ),
            Method::Post => {
                let body = read_body(&request);
                match forward(&upstream, body) {
                    Ok(status) => respond(
                        response_out,
                        status,
                        &format!("upstream answered {status}\n"),
                    ),
                    Err(code) => {
                        let status = match code {
                            ErrorCode::ConnectionTimeout
                            | ErrorCode::ConnectionReadTimeout
                            | ErrorCode::HttpResponseTimeout => 504,
                            _ => 502,
                        };
                        respond(response_out, status, &format!("upstream error: {code:?}\n"))
                    }
                }
            }
            _ => respond(response_out, 405, "use GET or POST\n"),
        }
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    if let Ok(stream) = body.stream() {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            bytes.extend_from_slice(&chunk);
        }
    }
    bytes
}

/// Sends `body` to `url`, following redirects; the final status or the wasi:http error.
fn forward(url: &str, body: Vec<u8>) -> Result<u16, ErrorCode> {
    let mut url = url.to_string();
    let mut method = Method::Post;
    let mut body = body;
    for _ in 0..=MAX_REDIRECTS {
        let (status, location) = send(&url, &method, &body)?;
        let Some(location) = location.filter(|_| matches!(status, 301 | 302 | 303 | 307 | 308))
        else {
            return Ok(status);
        };
        if matches!(status, 301..=303) {
            method = Method::Get;
            body.clear();
        }
        url = resolve(&url, &location);
    }
    Err(ErrorCode::LoopDetected)
}

/// `location` made absolute against `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

/// One request; its status and `location` header.
fn send(url: &str, method: &Method, body: &[u8]) -> Result<(u16, Option<String>), ErrorCode> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or(ErrorCode::HttpRequestUriInvalid)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(ErrorCode::HttpProtocolError),
    };
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"application/octet-stream".to_vec(),
    )])
    .map_err(|_| ErrorCode::InternalError(None))?;
    let request = OutgoingRequest::new(headers);
    let invalid = |()| ErrorCode::HttpRequestUriInvalid;
    request.set_method(method).map_err(invalid)?;
    request.set_scheme(Some(&scheme)).map_err(invalid)?;
    request.set_authority(Some(authority)).map_err(invalid)?;
    request.set_path_with_query(Some(path)).map_err(invalid)?;
    let outgoing = request
        .body()
        .map_err(|()| ErrorCode::InternalError(None))?;
    let pending = outgoing_handler::handle(request, None)?;
    {
        let stream = outgoing
            .write()
            .map_err(|()| ErrorCode::InternalError(None))?;
        for chunk in body.chunks(WRITE_CHUNK) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    OutgoingBody::finish(outgoing, None)?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or(ErrorCode::InternalError(None))?
        .map_err(|()| ErrorCode::InternalError(None))??;
    let location = response
        .headers()
        .get("location")
        .first()
        .and_then(|v| String::from_utf8(v.clone()).ok());
    Ok((response.status(), location))
}

fn respond(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("static header is valid");
    let response = OutgoingResponse::new(headers);
    response
        .set_status_code(status)
        .expect("a valid status code");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("stream is taken once");
    let _ = stream.blocking_write_and_flush(text.as_bytes());
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

export!(Forward);
