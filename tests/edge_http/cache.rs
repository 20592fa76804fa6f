//! Cache freshness and the admin listener: a cached file never outlives its file on disk;
//! purge needs the token and empties the cache; `/metrics` exposes the documented series.

use e2e::content::{pseudo_random_bytes, SEGMENT, VIDEO_ID};
use e2e::http;
use e2e::{metrics, ContentTree, Edge, EdgeOptions, RawResponse, Request, PREFIX};

use crate::support::{expired, signed, start_edge, tampered};

// ---------------------------------------------------------------------------------------------
// cache freshness
// ---------------------------------------------------------------------------------------------

/// A cached small file replaced by rename (same size, same second), replaced by a different
/// size, deleted and recreated: every request sees the file as it is on disk now.
#[test]
fn cache_never_serves_a_replaced_or_deleted_file() {
    let tree = ContentTree::new();
    let rel = "live/segment_000.ts";
    let edge = start_edge(&tree);
    let fetch = || edge.public(Request::get(signed(rel)));

    let first = pseudo_random_bytes(100, 50_000);
    tree.write(rel, &first);
    for attempt in 0..2 {
        let response = fetch();
        assert_eq!(response.status, 200, "fetch #{attempt}");
        assert!(
            response.body == first,
            "fetch #{attempt} is the first version"
        );
    }

    let steps: [(&str, Vec<u8>); 2] = [
        // Same length, very likely the same mtime second: only the inode and ns mtime change.
        ("same size", pseudo_random_bytes(101, 50_000)),
        ("other size", pseudo_random_bytes(102, 70_001)),
    ];
    for (what, contents) in &steps {
        tree.replace_atomically(rel, contents);
        let response = fetch();
        assert_eq!(response.status, 200, "after replacing ({what})");
        assert!(
            response.body == *contents,
            "after replacing ({what}) the new content is served, got {} bytes",
            response.body.len()
        );
    }

    tree.remove(rel);
    assert_eq!(fetch().status, 404, "a deleted file is gone at once");

    let again = pseudo_random_bytes(103, 1234);
    tree.write(rel, &again);
    let response = fetch();
    assert_eq!(response.status, 200, "a recreated file is served");
    assert!(response.body == again, "the recreated content is served");
}

// ---------------------------------------------------------------------------------------------
// admin listener: purge and metrics
// ---------------------------------------------------------------------------------------------

/// At least 16 bytes: the edge refuses a shorter purge token.
const PURGE_TOKEN: &str = "purge-secret-0123456789";

fn purge(edge: &Edge, prefix: &str, authorization: Option<&str>) -> RawResponse {
    let mut request = Request::get(format!("/purge?prefix={prefix}"))
        .method("POST")
        .host(edge.admin_addr.to_string())
        .header("Content-Length", "0");
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    http::raw_request(edge.admin_addr, &request.build()).expect("POST /purge")
}

fn counter(edge: &Edge, name: &str) -> f64 {
    metrics::value(&edge.metrics(), name, &[]).unwrap_or(0.0)
}

/// Purge needs the bearer token; after a purge, a cached file is read from disk again.
#[test]
fn purge_requires_the_token_and_empties_the_cache() {
    let tree = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(tree.root()).env("EDGE_PURGE_TOKEN", PURGE_TOKEN));
    let prefix = format!("{PREFIX}{VIDEO_ID}/");

    assert_eq!(purge(&edge, &prefix, None).status, 401, "no token");
    assert_eq!(
        purge(&edge, &prefix, Some("Bearer wrong")).status,
        401,
        "wrong token"
    );
    assert_eq!(
        purge(&edge, &prefix, Some(&format!("Basic {PURGE_TOKEN}"))).status,
        401,
        "wrong scheme"
    );

    let target = signed("720p/index.m3u8");
    assert_eq!(edge.public(Request::get(&target)).status, 200);
    let hits_before = counter(&edge, "edge_cache_hits_total");
    assert_eq!(edge.public(Request::get(&target)).status, 200);
    assert!(
        counter(&edge, "edge_cache_hits_total") > hits_before,
        "the second request is a cache hit"
    );

    let response = purge(&edge, &prefix, Some(&format!("Bearer {PURGE_TOKEN}")));
    assert!(
        (200..300).contains(&response.status),
        "purge with the token: {} {}",
        response.status,
        response.text()
    );
    let misses_before = counter(&edge, "edge_cache_misses_total");
    assert_eq!(edge.public(Request::get(&target)).status, 200);
    assert!(
        counter(&edge, "edge_cache_misses_total") > misses_before,
        "after the purge the file is read again (a miss)"
    );
}

/// After mixed traffic, `/metrics` exposes every documented series.
#[test]
fn metrics_expose_the_documented_series() {
    let tree = ContentTree::new();
    let big = "1080p/segment_000.ts";
    tree.write(big, &pseudo_random_bytes(9, 2 * 1024 * 1024));
    let edge = start_edge(&tree);

    let traffic = [
        (signed("720p/index.m3u8"), 200),
        (signed("720p/index.m3u8"), 200),
        (signed(big), 200),
        (tampered(SEGMENT), 403),
        (expired(SEGMENT), 410),
        (ContentTree::uri(SEGMENT), 403),
        (
            format!("{}?md5=short&expires=1", ContentTree::uri(SEGMENT)),
            403,
        ),
        (signed("720p/segment_999.ts"), 404),
    ];
    for (target, status) in &traffic {
        assert_eq!(
            edge.public(Request::get(target.as_str())).status,
            *status,
            "GET {target}"
        );
    }
    assert_eq!(edge.admin_get("/healthz").status, 200, "admin /healthz");
    assert_eq!(
        edge.public(Request::get("/healthz")).status,
        200,
        "public /healthz"
    );

    let text = edge.metrics();
    let expect = |name: &str, labels: &[(&str, &str)]| {
        let value = metrics::value(&text, name, labels);
        assert!(value.is_some(), "/metrics lacks {name} {labels:?}:\n{text}");
        value.unwrap_or_default()
    };
    assert!(expect("edge_requests_total", &[("status_class", "2xx")]) >= 3.0);
    assert!(expect("edge_requests_total", &[("status_class", "4xx")]) >= 5.0);
    let has_route = metrics::parse(&text).iter().any(|sample| {
        sample.name == "edge_requests_total" && sample.labels.iter().any(|(k, _)| k == "route")
    });
    assert!(has_route, "edge_requests_total carries a route label");
    assert!(expect("edge_bytes_sent_total", &[("path", "cache")]) > 0.0);
    assert!(expect("edge_bytes_sent_total", &[("path", "sendfile")]) >= (2 * 1024 * 1024) as f64);
    assert!(expect("edge_cache_hits_total", &[]) >= 1.0);
    assert!(expect("edge_cache_misses_total", &[]) >= 1.0);
    assert!(expect("edge_cache_bytes", &[]) > 0.0);
    assert!(expect("edge_signature_failures_total", &[("reason", "bad_hash")]) >= 1.0);
    assert!(expect("edge_signature_failures_total", &[("reason", "expired")]) >= 1.0);
    assert!(expect("edge_signature_failures_total", &[("reason", "missing")]) >= 1.0);
    assert!(expect("edge_signature_failures_total", &[("reason", "malformed")]) >= 1.0);
    assert!(expect("edge_request_duration_seconds_count", &[]) >= traffic.len() as f64);
    expect("edge_request_duration_seconds_bucket", &[("le", "+Inf")]);
    expect("edge_open_connections", &[]);
}
