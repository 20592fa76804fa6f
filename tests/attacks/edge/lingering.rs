//! Requests with bodies, which the edge never reads. One refused while its body is still
//! arriving: the refusal must reach a client that writes its whole body before reading, not a
//! reset (nginx's lingering close). And a body must never be read as the next request.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::content::SEGMENT;
use e2e::edge::signed_target;
use e2e::http::{self, parse_response, read_to_close};
use e2e::{ContentTree, Edge, EdgeOptions, Request};

/// A 4 MiB body (more than loopback buffers hold) written whole before the client reads: the
/// edge refuses from the head, then reads and discards the body before closing, so the write
/// completes and the 400 is there to read. Closing at once reset the connection under the
/// client's write instead.
#[test]
fn a_client_that_writes_its_whole_body_first_gets_the_400() {
    let tree = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(tree.root()));
    let body = vec![b'x'; 4 << 20];
    let request = Request::get(signed_target(SEGMENT))
        .host(edge.public_addr.to_string())
        .sized_body(&body)
        .build();
    let mut stream = TcpStream::connect(edge.public_addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(15)))
        .expect("write timeout");
    stream.write_all(&request).unwrap_or_else(|err| {
        panic!(
            "writing the whole request failed: {err} (the edge reset the connection)\n{}",
            edge.diagnostics()
        )
    });
    let bytes = read_to_close(&mut stream, Instant::now() + http::IO_TIMEOUT)
        .unwrap_or_else(|err| panic!("reading the answer: {err}\n{}", edge.diagnostics()));
    let response = parse_response(&bytes, false).expect("a parsable answer");
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("request bodies are not accepted"));
}

/// A body the edge does not read is never taken for the next request, whatever the answer to
/// the request that carried it: a TRACE (refused with 405 before its body is looked at) whose
/// body is a whole `GET /healthz` must get one answer and a close, or a proxy reusing the
/// connection would hand the smuggled request's answer to someone else.
#[test]
fn a_body_is_never_read_as_the_next_request() {
    let tree = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(tree.root()));
    let host = edge.public_addr.to_string();
    let smuggled = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    for method in ["TRACE", "GET"] {
        let request = Request::get("/healthz")
            .method(method)
            .host(host.clone())
            .keep_alive()
            .sized_body(smuggled.as_bytes())
            .build();
        let mut stream = TcpStream::connect(edge.public_addr).expect("connect");
        stream.write_all(&request).expect("write");
        let bytes = read_to_close(&mut stream, Instant::now() + http::IO_TIMEOUT)
            .unwrap_or_else(|err| panic!("{method}: the connection stayed open: {err}"));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{method} with a request as its body got more than one answer:\n{text}"
        );
        assert!(
            !text.contains("\r\n\r\nok"),
            "{method}: the smuggled request was answered:\n{text}"
        );
    }
}
