//! Request limits: oversized headers, request bodies, idle connections.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use e2e::content::SEGMENT;
use e2e::http::{self, read_to_close};
use e2e::{ContentTree, Edge, EdgeOptions, Request};

use crate::support::{signed, start_edge};

// TODO(config keys): these follow edge/src/config.rs as it is being written (`[server]`
// `idle_timeout_secs`, `header_timeout_secs`, `max_header_bytes`, `max_connections`); the
// brief assumed a `[limits]` section. The config rejects unknown fields, so a renamed key makes
// the edge refuse to start and these tests fail loudly rather than pass vacuously.
const SHORT_TIMEOUTS: &str = "[server]\nidle_timeout_secs = 1\nheader_timeout_secs = 2\n";

/// A request head larger than the limit is refused (431 or 400) and the connection closed.
#[test]
fn oversized_headers_are_refused_and_the_connection_closed() {
    let tree = ContentTree::new();
    let edge = start_edge(&tree);
    let request = Request::get(signed(SEGMENT))
        .host(edge.public_addr.to_string())
        .header("X-Padding", "a".repeat(64 * 1024))
        .keep_alive()
        .build();
    let mut stream = TcpStream::connect(edge.public_addr).expect("connect");
    // The edge may stop reading and answer before the whole head is written; a failed write
    // is fine as long as the answer arrives.
    let _ = stream.write_all(&request);
    let bytes =
        read_to_close(&mut stream, Instant::now() + http::IO_TIMEOUT).unwrap_or_else(|err| {
            panic!(
                "the edge must answer and close: {err}\n{}",
                edge.diagnostics()
            )
        });
    let response = http::parse_response(&bytes, false).expect("a parsable response");
    assert!(
        matches!(response.status, 400 | 431),
        "oversized head: {} (want 431 or 400)",
        response.status
    );
}

/// A GET with a body is refused.
#[test]
fn request_with_a_body_is_refused() {
    let tree = ContentTree::new();
    let edge = start_edge(&tree);
    let response = edge.public(
        Request::get(signed(SEGMENT))
            .header("Content-Length", "5")
            .body(b"hello"),
    );
    assert!(
        (400..500).contains(&response.status),
        "GET with a 5-byte body: {} (want 4xx)",
        response.status
    );
}

/// Idle connections, before a first request or between requests, are closed by the server.
#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let tree = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(tree.root()).config(SHORT_TIMEOUTS));
    let bound = Duration::from_secs(10);

    let mut silent = http::connect(edge.public_addr).expect("connect");
    let started = Instant::now();
    assert!(
        silent
            .peer_closed_within(bound)
            .expect("no bytes on a silent connection"),
        "a connection that never sends a request is closed within {bound:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "but not at once"
    );

    let mut kept = http::connect(edge.public_addr).expect("connect");
    let request = Request::get(signed("master.m3u8"))
        .host(edge.public_addr.to_string())
        .keep_alive()
        .build();
    assert_eq!(kept.exchange(&request).expect("first request").status, 200);
    assert!(
        kept.peer_closed_within(bound)
            .expect("no bytes after the response"),
        "an idle kept-alive connection is closed within {bound:?}"
    );

    let mut partial = http::connect(edge.public_addr).expect("connect");
    partial
        .stream()
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .expect("write half a head");
    let bytes = read_to_close(partial.stream(), Instant::now() + bound)
        .unwrap_or_else(|err| panic!("a half-sent head is cut off within {bound:?}: {err}"));
    if !bytes.is_empty() {
        let response = http::parse_response(&bytes, false).expect("a parsable response");
        assert_eq!(
            response.status, 408,
            "a response to a half-sent head can only be 408"
        );
    }
}
