//! Zero-copy delivery (sendfile(2) seen through strace) and connection reuse: keep-alive
//! across statuses and pipelined requests answered in order.

use std::fs;
use std::io::Write;
use std::time::Duration;

use e2e::content::{pseudo_random_bytes, SEGMENT};
use e2e::http;
use e2e::process::Strace;
use e2e::{metrics, ContentTree, Request};

use crate::support::{expired, signed, start_edge, tampered};

// ---------------------------------------------------------------------------------------------
// zero-copy delivery
// ---------------------------------------------------------------------------------------------

/// A segment larger than the cache's object limit (1.5 MiB by default) is sent with
/// sendfile(2), and the bytes counted by the kernel calls add up to the file.
#[test]
fn cold_large_segment_goes_out_by_sendfile() {
    let tree = ContentTree::new();
    let rel = "1080p/segment_000.ts";
    let size = 3 * 1024 * 1024 + 17;
    let bytes = pseudo_random_bytes(1080, size);
    tree.write(rel, &bytes);
    let edge = start_edge(&tree);

    let strace = Strace::attach(edge.pid(), "sendfile");
    let response = edge.public(Request::get(signed(rel)));
    let trace = strace.finish();
    assert_eq!(response.status, 200, "{}", edge.diagnostics());
    assert!(response.body == bytes, "the body is the file");

    let calls = parse_sendfile_trace(&trace);
    let sent: i64 = calls.iter().map(|call| call.result.max(0)).sum();
    assert_eq!(
        sent,
        i64::try_from(size).expect("size fits"),
        "sendfile calls must carry the whole file; trace:\n{trace}"
    );
    let fds: Vec<(i64, i64)> = calls.iter().filter_map(|call| call.fds).collect();
    assert!(
        !fds.is_empty() && fds.windows(2).all(|pair| pair[0] == pair[1]),
        "one socket and one file descriptor for one response: {fds:?}"
    );

    let metrics = edge.metrics();
    let via_sendfile = metrics::value(&metrics, "edge_bytes_sent_total", &[("path", "sendfile")]);
    assert!(
        via_sendfile.is_some_and(|bytes| bytes >= size as f64),
        "edge_bytes_sent_total{{path=\"sendfile\"}} counts the segment: {via_sendfile:?}"
    );
}

/// One `sendfile` call seen by strace: its `(out_fd, in_fd)` when visible and its result.
#[derive(Debug)]
struct SendfileCall {
    fds: Option<(i64, i64)>,
    result: i64,
}

/// Parses `strace -f -e trace=sendfile` output, including calls split into
/// `<unfinished ...>` / `<... sendfile resumed>` halves by other threads.
fn parse_sendfile_trace(trace: &str) -> Vec<SendfileCall> {
    let mut calls = Vec::new();
    let mut pending = std::collections::HashMap::new();
    for line in trace.lines() {
        let pid = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Some(args) = line.split_once("sendfile(").map(|(_, rest)| rest) {
            let fds = parse_fds(args);
            if line.contains("<unfinished") {
                pending.insert(pid, fds);
                continue;
            }
            if let Some(result) = syscall_result(line) {
                calls.push(SendfileCall { fds, result });
            }
        } else if line.contains("<... sendfile resumed>") {
            if let Some(result) = syscall_result(line) {
                let fds = pending.remove(&pid).flatten();
                calls.push(SendfileCall { fds, result });
            }
        }
    }
    calls
}

fn parse_fds(args: &str) -> Option<(i64, i64)> {
    let mut parts = args.split(',').map(str::trim);
    let out_fd = parts.next()?.parse().ok()?;
    let in_fd = parts.next()?.parse().ok()?;
    Some((out_fd, in_fd))
}

/// The number after the last `= ` (e.g. `= 65536` or `= -1 EAGAIN (...)`).
fn syscall_result(line: &str) -> Option<i64> {
    line.rsplit_once("= ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// keep-alive and pipelining
// ---------------------------------------------------------------------------------------------

/// Several requests on one connection, whatever the status of the earlier ones (like nginx:
/// keep-alive survives 200, 403, 404 and 410).
#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let tree = ContentTree::new();
    let edge = start_edge(&tree);
    let mut connection = http::connect(edge.public_addr).expect("connect");
    let host = edge.public_addr.to_string();
    let steps = [
        (signed(SEGMENT), 200),
        (tampered(SEGMENT), 403),
        (signed("720p/index.m3u8"), 200),
        (expired(SEGMENT), 410),
        (signed("720p/segment_999.ts"), 404),
        (signed(SEGMENT), 200),
    ];
    for (target, status) in &steps {
        let request = Request::get(target.as_str())
            .host(&host)
            .keep_alive()
            .build();
        let response = connection.exchange(&request).unwrap_or_else(|err| {
            panic!(
                "GET {target} on the kept-alive connection: {err}\n{}",
                edge.diagnostics()
            )
        });
        assert_eq!(response.status, *status, "GET {target}");
        assert!(
            !response.closes_connection(),
            "the edge keeps the connection after {status}"
        );
    }
}

/// Requests written back to back before any response is read are answered in order.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let tree = ContentTree::new();
    let edge = start_edge(&tree);
    let host = edge.public_addr.to_string();
    let requests = [
        Request::get(signed("720p/index.m3u8"))
            .host(&host)
            .keep_alive(),
        Request::get(signed(SEGMENT))
            .method("HEAD")
            .host(&host)
            .keep_alive(),
        Request::get(tampered(SEGMENT)).host(&host).keep_alive(),
        Request::get(signed(SEGMENT))
            .host(&host)
            .header("Range", "bytes=0-99")
            .keep_alive(),
        // The last one closes, so the server ends the connection after it.
        Request::get(signed("master.m3u8")).host(&host),
    ];
    let mut bytes = Vec::new();
    for request in &requests {
        bytes.extend(request.build());
    }
    let mut connection = http::connect(edge.public_addr).expect("connect");
    connection
        .stream()
        .write_all(&bytes)
        .expect("write the pipeline");

    let playlist_len = fs::metadata(tree.path("720p/index.m3u8"))
        .expect("stat")
        .len();
    let expected: [(bool, u16, Option<u64>); 5] = [
        (false, 200, Some(playlist_len)),
        (true, 200, Some(0)),
        (false, 403, None),
        (false, 206, Some(100)),
        (false, 200, None),
    ];
    for (index, (is_head, status, body_len)) in expected.into_iter().enumerate() {
        let response = connection.read_response(is_head).unwrap_or_else(|err| {
            panic!("pipelined response #{index}: {err}\n{}", edge.diagnostics())
        });
        assert_eq!(response.status, status, "pipelined response #{index}");
        if let Some(len) = body_len {
            assert_eq!(
                response.body.len() as u64,
                len,
                "pipelined response #{index} body"
            );
        }
    }
    let closed = connection
        .peer_closed_within(Duration::from_secs(5))
        .expect("nothing more after the last response");
    assert!(closed, "the edge closes after `Connection: close`");
}
