//! `hello`: the smallest useful wasi:http app. Any path under its route answers 200 with
//! `hello from edge <version>: <path>`; the version comes from the `HELLO_VERSION`
//! environment variable (set with `edge deploy --env HELLO_VERSION=2`), `1` when unset.

wit_bindgen::generate!({
    path: "../../wit",
    world: "edge:platform/http-app",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let version = std::env::var("HELLO_VERSION").unwrap_or_else(|_| "1".to_string());
        let body = format!("hello from edge {version}: {path}\n");

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("static header is valid");
        let response = OutgoingResponse::new(headers);
        response
            .set_status_code(200)
            .expect("200 is a valid status");
        let outgoing = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));

        let stream = outgoing.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(body.as_bytes())
            .expect("client is reading the body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("body is complete");
    }
}

export!(Hello);
