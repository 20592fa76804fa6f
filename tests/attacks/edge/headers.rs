//! Response headers a client or a cache could abuse: a `Cache-Control` that lets a cache keep
//! a response after its link expired, CORS answers cached across origins, and redirects that
//! carry whatever Host the client sent.

use std::io::Write;
use std::net::TcpStream;
use std::time::Instant;

use e2e::content::{SEGMENT, SEGMENT_SIZE};
use e2e::edge::signed_target;
use e2e::http::{self, parse_response, read_to_close};
use e2e::{signer, unix_now, ContentTree, Edge, EdgeOptions, RawResponse, Request};

fn signed_until(rel: &str, expires: i64) -> String {
    signer().signed_url(&ContentTree::uri(rel), expires, "")
}

/// The `max-age` (and `s-maxage`) seconds in a Cache-Control value.
fn ages(response: &RawResponse) -> Vec<(String, u64)> {
    let value = response.header("cache-control").unwrap_or_default();
    value
        .split(',')
        .filter_map(|directive| {
            let (name, seconds) = directive.split_once('=')?;
            Some((name.trim().to_owned(), seconds.trim().parse().ok()?))
        })
        .collect()
}

fn assert_fresh_at_most(response: &RawResponse, what: &str, keep: &str, most: u64, least: u64) {
    let value = response.header("cache-control").unwrap_or_default();
    assert!(value.contains(keep), "{what}: the rest is kept: {value:?}");
    let ages = ages(response);
    assert!(!ages.is_empty(), "{what}: a lifetime: {value:?}");
    for (name, seconds) in ages {
        assert!(
            (least..=most).contains(&seconds),
            "{what}: {name}={seconds}, want {least}..={most} ({value:?})"
        );
    }
}

/// A link that expires in a minute is cacheable for a minute, not the configured day; the
/// same for a 206, a 304 and a playlist (configured 5 s, link valid 2 s). A link valid longer
/// than the configured lifetime gets the configured value unchanged.
#[test]
fn cache_control_never_outlives_the_link() {
    let tree = ContentTree::new();
    let edge = Edge::start(
        EdgeOptions::new(tree.root())
            .config("[http]\ncache_control_media = \"public, max-age=86400, s-maxage=86400\"\n"),
    );
    let soon = unix_now() + 60;
    let target = signed_until(SEGMENT, soon);
    let full = edge.public(Request::get(&target));
    assert_eq!(full.status, 200);
    assert_fresh_at_most(&full, "200, link valid 60 s", "public", 60, 50);

    let partial = edge.public(Request::get(&target).header("Range", "bytes=0-99"));
    assert_eq!(partial.status, 206);
    assert_fresh_at_most(&partial, "206, link valid 60 s", "public", 60, 50);

    let etag = full.header("etag").expect("an ETag").to_owned();
    let not_modified = edge.public(Request::get(&target).header("If-None-Match", etag));
    assert_eq!(not_modified.status, 304);
    assert_fresh_at_most(&not_modified, "304, link valid 60 s", "public", 60, 50);

    let playlist = edge.public(Request::get(signed_until(
        "720p/index.m3u8",
        unix_now() + 2,
    )));
    assert_eq!(playlist.status, 200);
    assert_fresh_at_most(&playlist, "playlist, link valid 2 s", "public", 2, 0);

    let long = edge.public(Request::get(signed_target(SEGMENT)));
    assert_eq!(
        long.header("cache-control"),
        Some("public, max-age=86400, s-maxage=86400"),
        "a link valid a day or more gets the configured value"
    );
}

/// Sends `bytes` and reads the answer until the edge closes.
fn exchange(edge: &Edge, bytes: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(edge.public_addr).expect("connect");
    // The edge may answer before it read everything (a head that is too large).
    let _ = stream.write_all(bytes);
    let answer = read_to_close(&mut stream, Instant::now() + http::IO_TIMEOUT)
        .unwrap_or_else(|err| panic!("no answer: {err}\n{}", edge.diagnostics()));
    parse_response(&answer, bytes.starts_with(b"HEAD ")).expect("a parsable answer")
}

/// With CORS on, what the edge answers depends on `Origin`, so every answer (success, refusal,
/// error, preflight, an answer from the connection itself) carries `Vary: Origin`: a shared
/// cache must not hand an answer made for one origin, or for none, to another.
#[test]
fn every_answer_of_a_cors_enabled_edge_varies_by_origin() {
    let tree = ContentTree::new();
    let edge = Edge::start(
        EdgeOptions::new(tree.root())
            .config("[http]\ncors_allowed_origins = [\"https://app.example\"]\n"),
    );
    let host = edge.public_addr.to_string();
    let app = "https://app.example";
    let segment = signed_target(SEGMENT);
    let uri = ContentTree::uri(SEGMENT);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "allowed origin",
            Request::get(&segment)
                .host(&host)
                .header("Origin", app)
                .build(),
            200,
        ),
        ("no origin", Request::get(&segment).host(&host).build(), 200),
        (
            "other origin",
            Request::get(&segment)
                .host(&host)
                .header("Origin", "https://evil.example")
                .build(),
            200,
        ),
        (
            "tampered",
            Request::get(format!("{uri}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=1"))
                .host(&host)
                .build(),
            403,
        ),
        (
            "expired",
            Request::get(signed_until(SEGMENT, unix_now() - 60))
                .host(&host)
                .build(),
            410,
        ),
        ("unsigned", Request::get(&uri).host(&host).build(), 403),
        (
            "missing file",
            Request::get(signed_target("720p/none.ts"))
                .host(&host)
                .build(),
            404,
        ),
        (
            "outside the prefix",
            Request::get("/nope").host(&host).build(),
            404,
        ),
        ("health", Request::get("/healthz").host(&host).build(), 200),
        ("no Host", Request::get(&segment).build(), 400),
        (
            "preflight",
            Request::get(&uri)
                .method("OPTIONS")
                .host(&host)
                .header("Origin", app)
                .header("Access-Control-Request-Method", "GET")
                .build(),
            204,
        ),
        (
            "head too large",
            Request::get(&segment)
                .host(&host)
                .header("X-Pad", "a".repeat(64 * 1024))
                .build(),
            400,
        ),
    ];
    for (what, bytes, status) in cases {
        let response = exchange(&edge, &bytes);
        assert_eq!(response.status, status, "{what}");
        let varies: Vec<&str> = response
            .headers
            .iter()
            .filter(|(name, value)| name == "vary" && value.contains("Origin"))
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(
            varies.len(),
            1,
            "{what}: one Vary: Origin, got {:?}",
            response.headers
        );
    }

    let plain = Edge::start(EdgeOptions::new(tree.root()));
    let response = plain.public(Request::get(&segment).header("Origin", app));
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), SEGMENT_SIZE);
    assert_eq!(
        response.header("vary"),
        None,
        "without CORS, exactly like nginx"
    );
}

/// The redirect of a directory to its slash form is relative: a Host header of the client's
/// choosing (or a cache keyed without it) never turns it into a redirect to another site.
#[test]
fn a_directory_redirect_never_carries_the_client_host() {
    let tree = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(tree.root()));
    let target = signed_target("720p");
    let (path, query) = target.split_once('?').expect("a signed target has a query");
    for host in [
        "evil.example",
        "evil.example:443",
        edge.public_addr.to_string().as_str(),
    ] {
        let response = exchange(&edge, &Request::get(&target).host(host).build());
        assert_eq!(response.status, 301, "Host {host}");
        assert_eq!(
            response.header("location"),
            Some(format!("{path}/?{query}").as_str()),
            "Host {host}: the Location is the path and query only"
        );
    }
}
