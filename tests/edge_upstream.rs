//! The edge pulling through its disk cache (`[upstream]`), with real processes on loopback: a
//! SeaweedFS bucket holding an HLS tree made by ffmpeg, edges with empty caches in front of it,
//! a second edge using the first as its `http` upstream (a shield).
//!
//! What is asserted, each with the edge's own metrics as the witness of upstream traffic:
//! every file comes through with the right bytes (ranges too, on a miss); forged and expired
//! URLs never cause an upstream request; concurrent misses for one object cause exactly one;
//! cached segments are served while the bucket is down, others answer 502, and everything
//! recovers when it is back; the byte budget evicts the least recently used file and a
//! restart keeps the cache; an object larger than the budget is refused before it is written;
//! a cold segment streams whole over HTTP/2 from its fill; playlists are fetched again after
//! their TTL, and a hung bucket gets the stale copy served within a second; an object the
//! bucket lacks is asked for once per TTL; a root holding other files is refused, not emptied;
//! at most 64 objects are pulled at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use e2e::content::{pseudo_random_bytes, world_readable_tempdir};
use e2e::seaweed::{self, SeaweedFs, ADMIN, READER};
use e2e::tls::{CertFiles, TestCa};
use e2e::{
    metrics, past_expires, process, signer, wait_until, Edge, EdgeOptions, RawResponse, Request,
};
use tempfile::TempDir;

const BUCKET: &str = "media";
const PREFIX: &str = "hls";
const VIDEO: &str = "4f1c2d3e-0000-4000-8000-000000000001";

/// `[upstream]` for a bucket named by the `S3_*` environment; short timeouts, no retries.
fn s3_config(extra: &str) -> String {
    format!(
        "[upstream]\nkind = \"s3\"\nconnect_timeout_secs = 1\ntimeout_secs = 5\n\
         max_retries = 0\nretry_timeout_secs = 1\nplaylist_ttl_secs = 1\n{extra}\n"
    )
}

fn start_s3_edge(weed: &SeaweedFs, cache: &Path, extra: &str) -> Edge {
    let mut options = EdgeOptions::new(cache).config(&s3_config(extra));
    for (name, value) in weed.env(BUCKET, PREFIX, READER) {
        options = options.env(&name, &value);
    }
    Edge::start(options)
}

fn signed(rel: &str) -> String {
    signer().signed_url(&uri(rel), e2e::future_expires(), "")
}

fn uri(rel: &str) -> String {
    format!("/hls/{VIDEO}/{rel}")
}

fn get(edge: &Edge, rel: &str) -> RawResponse {
    edge.public(Request::get(signed(rel)))
}

fn upstream_requests(edge: &Edge) -> f64 {
    metrics::value(&edge.metrics(), "edge_upstream_requests_total", &[]).unwrap_or(0.0)
}

fn metric(edge: &Edge, name: &str) -> f64 {
    metrics::value(&edge.metrics(), name, &[]).unwrap_or(0.0)
}

/// A small HLS tree made by ffmpeg (3 one-second segments), as `(path below the video,
/// bytes)`.
fn hls_tree() -> Vec<(String, Vec<u8>)> {
    let dir = TempDir::new().expect("temp dir");
    let out = e2e::process::run_bounded(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-f", "lavfi"])
            .args(["-i", "testsrc2=s=320x240:r=25:d=3"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
            .args(["-hls_time", "1", "-hls_playlist_type", "vod"])
            .args(["-hls_segment_filename"])
            .arg(dir.path().join("segment_%03d.ts"))
            .arg(dir.path().join("index.m3u8")),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            (
                format!("360p/{name}"),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.push((
        "master.m3u8".into(),
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x240\n360p/index.m3u8\n"
            .to_vec(),
    ));
    files.sort();
    assert!(
        files.len() >= 4,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    files
}

fn upload(weed: &SeaweedFs, files: &[(String, Vec<u8>)]) {
    let objects = weed.objects(BUCKET, PREFIX, ADMIN);
    let under_video: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(rel, bytes)| (format!("{VIDEO}/{rel}"), bytes.clone()))
        .collect();
    seaweed::upload(&objects, &under_video);
}

fn bucket() -> SeaweedFs {
    let weed = SeaweedFs::start();
    weed.create_bucket(BUCKET);
    weed
}

fn cache_dir() -> TempDir {
    world_readable_tempdir("e2e-edge-cache-")
}

#[test]
fn an_empty_cache_pulls_every_file_and_a_shield_edge_pulls_from_it() {
    let weed = bucket();
    let tree = hls_tree();
    upload(&weed, &tree);
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    let segment = tree
        .iter()
        .find(|(rel, _)| rel.ends_with(".ts"))
        .expect("a segment");

    // A range on a miss: the whole segment is pulled, the range answered.
    let ranged = edge.public(Request::get(signed(&segment.0)).header("Range", "bytes=100-1099"));
    assert_eq!(ranged.status, 206, "{}", edge.diagnostics());
    assert_eq!(ranged.body, segment.1[100..1100]);
    assert_eq!(upstream_requests(&edge), 1.0);

    for (rel, bytes) in &tree {
        let r = get(&edge, rel);
        assert_eq!(r.status, 200, "{rel}: {}\n{}", r.text(), edge.diagnostics());
        assert_eq!(&r.body, bytes, "{rel}");
        assert!(r.header("etag").is_some() && r.header("last-modified").is_some());
    }
    let pulled = upstream_requests(&edge);
    assert_eq!(pulled, tree.len() as f64, "one upstream request per file");
    // Hits come from disk, with the validators the miss sent.
    let first = get(&edge, &segment.0);
    let again = get(&edge, &segment.0);
    assert_eq!((first.status, &first.body), (200, &segment.1));
    assert_eq!(first.header("etag"), again.header("etag"));
    assert_eq!(
        first.header("etag"),
        ranged.header("etag"),
        "miss and hit agree"
    );
    assert_eq!(upstream_requests(&edge), pulled, "segments are cached");
    assert!(cache.path().join(VIDEO).join(&segment.0).is_file());
    let not_modified = edge.public(
        Request::get(signed(&segment.0))
            .header("If-None-Match", first.header("etag").unwrap_or("")),
    );
    assert_eq!(not_modified.status, 304);
    let missing = get(&edge, "360p/segment_999.ts");
    assert_eq!(missing.status, 404, "{}", missing.text());

    // A shield: the second edge's upstream is the first edge (same secret, same URLs).
    let shield_cache = cache_dir();
    let config = format!(
        "[upstream]\nkind = \"http\"\nurl = \"http://{}/hls/\"\nplaylist_ttl_secs = 1\n",
        edge.public_addr
    );
    let outer = Edge::start(EdgeOptions::new(shield_cache.path()).config(&config));
    for (rel, bytes) in &tree {
        let r = get(&outer, rel);
        assert_eq!(r.status, 200, "{rel} through the shield: {}", r.text());
        assert_eq!(&r.body, bytes, "{rel} through the shield");
    }
    assert_eq!(upstream_requests(&outer), tree.len() as f64);
    // The inner edge served the shield from its cache: at most its playlists, older than
    // their TTL by now, were pulled again.
    let playlists = tree
        .iter()
        .filter(|(rel, _)| rel.ends_with(".m3u8"))
        .count() as f64;
    let again = upstream_requests(&edge) - pulled;
    assert!((0.0..=playlists).contains(&again), "{again} pulled again");
}

#[test]
fn playlists_are_pulled_again_after_their_ttl() {
    let weed = bucket();
    upload(
        &weed,
        &[("360p/index.m3u8".into(), b"#EXTM3U\n#v1\n".to_vec())],
    );
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    assert_eq!(get(&edge, "360p/index.m3u8").body, b"#EXTM3U\n#v1\n");
    upload(
        &weed,
        &[("360p/index.m3u8".into(), b"#EXTM3U\n#v2\n".to_vec())],
    );
    let renewed = wait_until(Duration::from_secs(10), || {
        get(&edge, "360p/index.m3u8").body == b"#EXTM3U\n#v2\n"
    });
    assert!(renewed, "the playlist was never fetched again");
    let pulls = upstream_requests(&edge);
    assert!(
        (2.0..=6.0).contains(&pulls),
        "{pulls} pulls in a few seconds"
    );
}

/// A bucket that hangs (frozen: connections accepted, never answered) does not stall a
/// playlist past its TTL for the bucket's timeout (5 s here): the stale copy is served after
/// about a second, and the fill left running refreshes it once the bucket answers again.
#[test]
fn a_hung_bucket_gets_the_stale_playlist_served_within_a_second() {
    let weed = bucket();
    let (v1, v2) = (b"#EXTM3U\n#v1\n".to_vec(), b"#EXTM3U\n#v2\n".to_vec());
    upload(&weed, &[("360p/index.m3u8".into(), v1.clone())]);
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    assert_eq!(get(&edge, "360p/index.m3u8").body, v1);

    let frozen = weed.freeze();
    std::thread::sleep(Duration::from_millis(1200)); // past the 1 s TTL
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let r = get(&edge, "360p/index.m3u8");
        let took = started.elapsed();
        assert_eq!((r.status, &r.body), (200, &v1), "{}", edge.diagnostics());
        assert!(
            took < Duration::from_millis(2500),
            "stale copy after {took:?}"
        );
    }
    assert!(metric(&edge, "edge_upstream_stale_served_total") >= 2.0);

    drop(frozen);
    upload(&weed, &[("360p/index.m3u8".into(), v2.clone())]);
    let renewed = wait_until(Duration::from_secs(15), || {
        get(&edge, "360p/index.m3u8").body == v2
    });
    assert!(renewed, "never refreshed\n{}", edge.diagnostics());
}

/// Over HTTP/2 (TLS, ALPN h2, curl as the client) a cold segment streams from its fill as it
/// arrives, a budgeted piece at a time, and arrives whole.
#[test]
fn a_cold_segment_streams_whole_over_http2() {
    let weed = bucket();
    let bytes = pseudo_random_bytes(31, 3_000_000);
    upload(&weed, &[("720p/segment_000.ts".into(), bytes.clone())]);
    let cache = cache_dir();
    let ca = TestCa::new();
    let dir = world_readable_tempdir("e2e-upstream-h2-");
    let files = CertFiles::in_dir(dir.path());
    files.install(&ca.issue("edge", 1));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("write the CA");
    let mut options = EdgeOptions::new(cache.path())
        .config(&s3_config(""))
        .tls(&files);
    for (name, value) in weed.env(BUCKET, PREFIX, READER) {
        options = options.env(&name, &value);
    }
    let edge = Edge::start(options);
    let addr = edge.tls_addr.expect("the TLS listener");
    let got = dir.path().join("segment.ts");
    let out = process::run_bounded(
        Command::new("curl")
            .args(["--http2", "-sS", "-w", "%{http_version} %{http_code}", "-o"])
            .arg(&got)
            .arg("--cacert")
            .arg(&ca_file)
            .arg(format!("https://{addr}{}", signed("720p/segment_000.ts"))),
        Duration::from_secs(30),
    );
    let status = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status,
        "2 200",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge.diagnostics()
    );
    assert!(
        std::fs::read(&got).expect("downloaded") == bytes,
        "bytes differ"
    );
    let streamed = metrics::value(
        &edge.metrics(),
        "edge_bytes_sent_total",
        &[("path", "upstream")],
    );
    assert_eq!(
        streamed,
        Some(bytes.len() as f64),
        "sent from the fill as it arrived"
    );
}

/// When a frozen bucket keeps a fill from answering, the requests that stop waiting for it
/// (after `lock_timeout`) fetch for themselves at most 16 at a time; the rest wait for the
/// fill, and everyone gets the 504 when the bucket's timeout passes.
#[test]
fn waiters_past_the_lock_timeout_fetch_for_themselves_only_a_few_at_a_time() {
    let weed = bucket();
    let bytes = pseudo_random_bytes(23, 100_000);
    upload(&weed, &[("360p/segment_000.ts".into(), bytes)]);
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "lock_timeout_secs = 1");
    let _frozen = weed.freeze();
    let viewers = 30;
    let start = Arc::new(Barrier::new(viewers));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..viewers)
            .map(|_| {
                let (edge, start) = (&edge, start.clone());
                scope.spawn(move || {
                    start.wait();
                    get(edge, "360p/segment_000.ts").status
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("viewer"))
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 504), "{statuses:?}");
    let asked = upstream_requests(&edge);
    // The fill, then at most 16 of the 29 that stopped waiting for it.
    assert!(
        (2.0..=17.0).contains(&asked),
        "{asked} bucket requests\n{}",
        edge.metrics()
    );
    assert_eq!(metric(&edge, "edge_upstream_lock_timeouts_total"), 29.0);
}

/// Players retrying an object the bucket does not have (a deleted video) cost one bucket
/// request per TTL, not one each; once uploaded, the object is found after that TTL.
#[test]
fn a_missing_object_is_asked_for_once_per_ttl() {
    let weed = bucket();
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    for _ in 0..5 {
        let r = get(&edge, "360p/segment_404.ts");
        assert_eq!(r.status, 404, "{}", r.text());
    }
    assert_eq!(upstream_requests(&edge), 1.0, "{}", edge.metrics());
    assert_eq!(metric(&edge, "edge_upstream_missing_remembered_total"), 4.0);
    upload(&weed, &[("360p/segment_404.ts".into(), b"late".to_vec())]);
    let found = wait_until(Duration::from_secs(10), || {
        get(&edge, "360p/segment_404.ts").status == 200
    });
    assert!(found, "never found once uploaded\n{}", edge.diagnostics());
}

#[test]
fn forged_and_expired_urls_never_reach_the_upstream() {
    let weed = bucket();
    upload(
        &weed,
        &[("360p/segment_000.ts".into(), pseudo_random_bytes(3, 10_000))],
    );
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    let good = signed("360p/segment_000.ts");
    let forged = good.replacen("md5=", "md5=A", 1);
    let expired = signer().signed_url(&uri("360p/segment_000.ts"), past_expires(), "");
    let cold_expired = signer().signed_url(&uri("360p/nope.ts"), past_expires(), "");
    for (target, status) in [
        (forged, 403),
        (expired, 410),
        (cold_expired, 410),
        (uri("360p/segment_000.ts"), 403),
        (format!("{}?md5=x&expires=1", uri("360p/nope.ts")), 403),
    ] {
        for method in ["GET", "HEAD"] {
            let r = edge.public(Request::get(target.clone()).method(method));
            assert_eq!(r.status, status, "{method} {target}");
        }
    }
    assert_eq!(
        upstream_requests(&edge),
        0.0,
        "no refused URL went upstream"
    );
    assert_eq!(metric(&edge, "edge_disk_cache_misses_total"), 0.0);
    assert_eq!(get(&edge, "360p/segment_000.ts").status, 200);
    assert_eq!(upstream_requests(&edge), 1.0);
}

#[test]
fn concurrent_misses_for_one_segment_make_exactly_one_upstream_request() {
    const VIEWERS: usize = 24;
    let weed = bucket();
    let body = pseudo_random_bytes(11, 6_000_000);
    upload(&weed, &[("1080p/segment_000.ts".into(), body.clone())]);
    let cache = cache_dir();
    let edge = Arc::new(start_s3_edge(&weed, cache.path(), ""));
    let barrier = Arc::new(Barrier::new(VIEWERS));
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|_| {
            let (edge, barrier) = (edge.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                get(&edge, "1080p/segment_000.ts")
            })
        })
        .collect();
    for viewer in viewers {
        let r = viewer.join().expect("viewer thread");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body == body, "a viewer got {} wrong bytes", r.body.len());
    }
    assert_eq!(upstream_requests(&edge), 1.0, "{}", edge.diagnostics());
    let coalesced = metric(&edge, "edge_upstream_coalesced_total");
    let hits = metric(&edge, "edge_disk_cache_hits_total");
    assert_eq!(
        coalesced + hits,
        (VIEWERS - 1) as f64,
        "the others waited or hit"
    );
    assert!(coalesced >= 1.0, "at least one viewer waited on the fill");
}

#[test]
fn an_outage_keeps_cached_segments_and_everything_recovers() {
    let mut weed = bucket();
    let warm = pseudo_random_bytes(21, 200_000);
    let cold = pseudo_random_bytes(22, 200_000);
    upload(
        &weed,
        &[
            ("360p/segment_000.ts".into(), warm.clone()),
            ("360p/segment_001.ts".into(), cold.clone()),
        ],
    );
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    assert_eq!(get(&edge, "360p/segment_000.ts").body, warm);

    weed.stop();
    for _ in 0..3 {
        let r = get(&edge, "360p/segment_000.ts");
        assert_eq!((r.status, r.body == warm), (200, true), "cached while down");
        let r = get(&edge, "360p/segment_001.ts");
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.text().starts_with("{\"error\":"), "{}", r.text());
    }
    weed.start_again();
    let back = wait_until(Duration::from_secs(30), || {
        get(&edge, "360p/segment_001.ts").status == 200
    });
    assert!(
        back,
        "never recovered\n{}\n{}",
        edge.diagnostics(),
        weed.diagnostics()
    );
    assert_eq!(get(&edge, "360p/segment_001.ts").body, cold);
    assert!(
        metrics::value(
            &edge.metrics(),
            "edge_upstream_requests_total",
            &[("outcome", "error")]
        )
        .unwrap_or(0.0)
            >= 3.0
    );
}

#[test]
fn the_budget_evicts_the_least_recently_used_and_a_restart_keeps_the_cache() {
    const SIZE: usize = 1_000_000;
    let weed = bucket();
    let names: Vec<String> = (0..4).map(|i| format!("720p/segment_{i:03}.ts")).collect();
    let files: Vec<(String, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), pseudo_random_bytes(30 + i as u64, SIZE)))
        .collect();
    upload(&weed, &files);
    let cache = cache_dir();
    let budget = format!("cache_max_bytes = {}", SIZE * 7 / 2);
    let on_disk = |rel: &str| -> PathBuf { cache.path().join(VIDEO).join(rel) };
    let edge = start_s3_edge(&weed, cache.path(), &budget);
    for rel in &names[..3] {
        assert_eq!(get(&edge, rel).status, 200);
    }
    // segment_000 is used again: segment_001 is now the least recently used.
    assert_eq!(get(&edge, &names[0]).status, 200);
    assert_eq!(get(&edge, &names[3]).status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || !on_disk(&names[1]).exists()),
        "the least recently used file was not evicted"
    );
    for rel in [&names[0], &names[2], &names[3]] {
        assert!(on_disk(rel).is_file(), "{rel} evicted");
    }
    assert_eq!(metric(&edge, "edge_disk_cache_evictions_total"), 1.0);
    assert_eq!(metric(&edge, "edge_disk_cache_bytes"), (3 * SIZE) as f64);

    // An object larger than the whole budget is refused before anything is written for it.
    let huge = "720p/segment_099.ts".to_owned();
    upload(&weed, &[(huge.clone(), pseudo_random_bytes(99, SIZE * 4))]);
    let r = get(&edge, &huge);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains("larger than the disk cache"),
        "{}",
        r.text()
    );
    assert!(!on_disk(&huge).exists());
    assert_eq!(metric(&edge, "edge_disk_cache_bytes"), (3 * SIZE) as f64);

    // A fill's leftover from a crash: cleaned at start, never served.
    drop(edge);
    let leftover = cache.path().join(".edge-fill/999-1");
    std::fs::write(&leftover, b"partial").expect("leftover");
    let edge = start_s3_edge(&weed, cache.path(), &budget);
    assert!(!leftover.exists(), "temporary files are cleaned at start");
    for rel in [&names[0], &names[2], &names[3]] {
        let r = get(&edge, rel);
        assert_eq!(r.status, 200);
        assert!(r.body == files.iter().find(|f| &f.0 == rel).expect("file").1);
    }
    assert_eq!(
        upstream_requests(&edge),
        0.0,
        "served from the cache kept across the restart"
    );
    assert_eq!(metric(&edge, "edge_disk_cache_bytes"), (3 * SIZE) as f64);
    let r = edge.public(Request::get(signer().signed_url(
        "/hls/.edge-fill/999-1",
        e2e::future_expires(),
        "",
    )));
    assert_eq!(r.status, 404, "the fill directory is never served");
    // Nor does any other method tell what the cache holds: a 405 would say the file exists.
    std::fs::write(&leftover, b"a fill under way").expect("fill");
    for internal in [
        "/hls/.edge-fill/999-1",
        "/hls/.edge-fill",
        "/hls/.edge-cache",
    ] {
        let url = signer().signed_url(internal, e2e::future_expires(), "");
        let r = edge.public(Request::get(url).method("POST"));
        assert_eq!(r.status, 404, "POST {internal}");
    }
}

#[test]
fn a_root_holding_other_files_is_refused_not_emptied() {
    // An operator's content tree given as the cache by mistake: the cache would evict (delete)
    // its files, so the edge refuses to start and touches nothing.
    let root = cache_dir();
    let content = root.path().join(VIDEO).join("720p/segment_000.ts");
    std::fs::create_dir_all(content.parent().expect("parent")).expect("dirs");
    std::fs::write(&content, b"the operator's only copy").expect("content");
    let output = e2e::process::run_bounded(
        std::process::Command::new(e2e::edge::edge_binary())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .arg("--root")
            .arg(root.path())
            .env("NO_COLOR", "1")
            .env("HLS_SIGNING_SECRET", e2e::TEST_SECRET)
            .env("EDGE_UPSTREAM_KIND", "http")
            .env("EDGE_UPSTREAM_URL", "http://127.0.0.1:9/hls/"),
        Duration::from_secs(20),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "started on a content tree: {stderr}"
    );
    assert!(stderr.contains(".edge-cache"), "{stderr}");
    assert_eq!(
        std::fs::read(&content).expect("still there"),
        b"the operator's only copy"
    );
    assert!(!root.path().join(".edge-cache").exists());
}

/// Fills run on after the requests that started them (HEADs answered, clients gone), so they
/// are bounded edge-wide: many cold objects asked for at once against a bucket that does not
/// answer start 64 bucket requests, the rest wait their turn, and all give up with 504 by the
/// bucket's timeout, counted from each request: a fill that waited for its place gets only
/// what is left of it.
#[test]
fn at_most_64_objects_are_pulled_at_once() {
    let weed = bucket();
    let cache = cache_dir();
    let edge = start_s3_edge(&weed, cache.path(), "");
    let frozen = weed.freeze();
    let viewers = 80;
    let gauges = |edge: &Edge| {
        let m = edge.metrics();
        let value = |name| metrics::value(&m, name, &[]).unwrap_or(-1.0);
        (
            value("edge_upstream_fills_running"),
            value("edge_upstream_fills_waiting"),
        )
    };
    // The upstream's timeout_secs in s3_config.
    let timeout = Duration::from_secs(5);
    let answers: Vec<(u16, Duration)> = std::thread::scope(|scope| {
        let viewer = |i: usize| {
            let edge = &edge;
            scope.spawn(move || {
                let rel = format!("360p/segment_{i:03}.ts");
                let started = std::time::Instant::now();
                let status = edge
                    .public(Request::get(signed(&rel)).method("HEAD"))
                    .status;
                (status, started.elapsed())
            })
        };
        let mut handles: Vec<_> = (0..64).map(viewer).collect();
        let running = wait_until(Duration::from_secs(4), || gauges(&edge) == (64.0, 0.0));
        assert!(running, "fills (running, waiting): {:?}", gauges(&edge));
        // The late ones get their places with half the timeout gone.
        std::thread::sleep(timeout / 2);
        handles.extend((64..viewers).map(viewer));
        let bounded = wait_until(Duration::from_secs(2), || gauges(&edge) == (64.0, 16.0));
        assert!(bounded, "fills (running, waiting): {:?}", gauges(&edge));
        handles
            .into_iter()
            .map(|h| h.join().expect("viewer"))
            .collect()
    });
    drop(frozen);
    assert!(answers.iter().all(|a| a.0 == 504), "{answers:?}");
    let slowest = answers.iter().map(|a| a.1).max().unwrap_or_default();
    assert!(
        slowest < timeout + Duration::from_millis(1500),
        "a request waited {slowest:?} for a bucket timing out in {timeout:?}"
    );
    assert_eq!(gauges(&edge), (0.0, 0.0), "every place given back");
}

/// An HTTP upstream that answers every GET with `BODY`, a byte every `pause`; returns its
/// address and how many GETs it had (the edge's start-up check is a HEAD).
fn trickling_upstream(pause: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let gets = Arc::new(AtomicUsize::new(0));
    let counted = gets.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET ") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    BODY.len()
                );
                let _ = stream.write_all(answer.as_bytes());
                for b in BODY {
                    std::thread::sleep(pause);
                    let _ = stream.write_all(&[*b]);
                }
            });
        }
    });
    (addr, gets)
}

/// What [`trickling_upstream`] serves.
const BODY: &[u8] = b"12345678";

/// An edge pulling from the HTTP upstream at `upstream`, with one-second timeouts.
fn http_edge(upstream: std::net::SocketAddr, cache: &Path) -> EdgeOptions {
    let config = format!(
        "[upstream]\nkind = \"http\"\nurl = \"http://{upstream}/hls/\"\n\
         connect_timeout_secs = 1\ntimeout_secs = 1\n"
    );
    EdgeOptions::new(cache).config(&config)
}

/// The upstream's timeout bounds each wait, not the whole transfer: an object that takes
/// three times as long to arrive, a byte at a time, is served whole and then cached.
#[test]
fn an_object_slower_than_the_timeout_is_served_whole_and_cached() {
    let (upstream, gets) = trickling_upstream(Duration::from_millis(400));
    let cache = cache_dir();
    let edge = Edge::start(http_edge(upstream, cache.path()));
    let first = get(&edge, "720p/slow.ts");
    assert_eq!(
        (first.status, first.body.as_slice()),
        (200, BODY),
        "{}",
        edge.diagnostics()
    );
    let again = get(&edge, "720p/slow.ts");
    assert_eq!((again.status, again.body.as_slice()), (200, BODY));
    assert_eq!(gets.load(Ordering::SeqCst), 1, "cached");
}

/// An object whose name the disk cannot take (here a directory of other cached objects) is
/// still served whole, only not kept: each request gets it, none a broken answer.
#[test]
fn an_object_the_disk_cannot_name_is_served_not_kept() {
    let (upstream, gets) = trickling_upstream(Duration::ZERO);
    let cache = cache_dir();
    let edge = Edge::start(http_edge(upstream, cache.path()));
    assert_eq!(get(&edge, "720p/a.ts").body, BODY);
    for n in 1..=2 {
        let r = get(&edge, "720p");
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, BODY),
            "{}",
            edge.diagnostics()
        );
        // Its fill ends after the answer (naming it fails after the flush): a request before
        // then would join it.
        let refused = wait_until(Duration::from_secs(5), || {
            edge.diagnostics().matches("cannot be kept on disk").count() >= n
        });
        assert!(refused, "{}", edge.diagnostics());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        gets.load(Ordering::SeqCst),
        3,
        "served each time, kept never"
    );
    assert!(cache.path().join(VIDEO).join("720p").is_dir());
}

/// A pulled object is on the disk before it takes its name: after a power cut, the next
/// start indexes every named file as a whole object, and a rename may reach the disk before
/// the bytes it names.
#[test]
fn a_pulled_object_is_flushed_before_it_takes_its_name() {
    let (upstream, _) = trickling_upstream(Duration::ZERO);
    let cache = cache_dir();
    let edge = Edge::start(http_edge(upstream, cache.path()));
    let strace =
        e2e::process::Strace::attach(edge.pid(), "fsync,fdatasync,rename,renameat,renameat2");
    let r = get(&edge, "720p/flushed.ts");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, BODY),
        "{}",
        edge.diagnostics()
    );
    let kept = cache.path().join(VIDEO).join("720p/flushed.ts");
    assert!(wait_until(Duration::from_secs(5), || kept.exists()), "kept");
    let trace = strace.finish();
    let lines: Vec<&str> = trace.lines().collect();
    let renamed = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains("720p/flushed.ts\""))
        .unwrap_or_else(|| panic!("no rename into place:\n{trace}"));
    assert!(
        lines[..renamed]
            .iter()
            .any(|l| l.contains("fsync(") || l.contains("fdatasync(")),
        "renamed before any flush:\n{trace}"
    );
}

/// Pulls `720p/a.ts` a byte every 300 ms and, while it arrives, purges `prefix` (below
/// `/hls/`); the viewer gets the object whole. Returns the edge, its cache and the upstream's
/// GET count.
fn purge_during_a_fill(prefix: &str) -> (Edge, TempDir, Arc<AtomicUsize>) {
    const TOKEN: &str = "purge-secret-0123456789";
    let (upstream, gets) = trickling_upstream(Duration::from_millis(300));
    let cache = cache_dir();
    let edge = Edge::start(http_edge(upstream, cache.path()).env("EDGE_PURGE_TOKEN", TOKEN));
    std::thread::scope(|scope| {
        let viewer = scope.spawn(|| get(&edge, "720p/a.ts"));
        assert!(wait_until(Duration::from_secs(2), || gets
            .load(Ordering::SeqCst)
            == 1));
        let purge = Request::get(format!("/purge?prefix=/hls/{prefix}"))
            .method("POST")
            .host(edge.admin_addr.to_string())
            .header("Content-Length", "0")
            .header("Authorization", format!("Bearer {TOKEN}"));
        let purged = e2e::http::raw_request(edge.admin_addr, &purge.build()).expect("purge");
        assert_eq!(purged.status, 200, "{}", purged.text());
        let r = viewer.join().expect("viewer");
        assert_eq!((r.status, r.body.as_slice()), (200, BODY));
    });
    (edge, cache, gets)
}

/// A purge while an object is being pulled: the fill may hold the bytes the purge was for, so
/// it serves them but does not keep them.
#[test]
fn a_purge_during_a_fill_is_not_undone_by_it() {
    let (edge, cache, gets) = purge_during_a_fill(&format!("{VIDEO}/"));
    // The fill ends after its answer.
    let ended = wait_until(Duration::from_secs(5), || {
        edge.diagnostics().contains("purged while it was pulled")
    });
    assert!(ended, "{}", edge.diagnostics());
    assert!(
        !cache.path().join(VIDEO).join("720p/a.ts").exists(),
        "kept after the purge"
    );
    assert_eq!(get(&edge, "720p/a.ts").body, BODY);
    assert_eq!(
        gets.load(Ordering::SeqCst),
        2,
        "pulled again after the purge"
    );
}

/// A purge of another video while an object is pulled leaves that fill alone: it is kept, and
/// the next request is a hit.
#[test]
fn a_purge_elsewhere_during_a_fill_keeps_it() {
    let (edge, cache, gets) = purge_during_a_fill("another-video/");
    let kept = cache.path().join(VIDEO).join("720p/a.ts");
    assert!(
        wait_until(Duration::from_secs(5), || kept.exists()),
        "not kept"
    );
    assert_eq!(get(&edge, "720p/a.ts").body, BODY);
    assert_eq!(gets.load(Ordering::SeqCst), 1, "a hit");
}

/// A failed upstream request is logged without its URL: for an http upstream it carries the
/// viewer's signed query.
#[test]
fn an_unreachable_http_upstream_is_502_and_its_log_holds_no_signature() {
    let dead = std::net::SocketAddr::from(([127, 0, 0, 1], e2e::port::free_port()));
    let cache = cache_dir();
    let edge = Edge::start(http_edge(dead, cache.path()));
    let r = get(&edge, "720p/segment_000.ts");
    assert_eq!(r.status, 502, "{}", r.text());
    // The line is written before the answer, but read from the edge's stderr by a thread.
    let logged = wait_until(Duration::from_secs(10), || {
        edge.diagnostics().contains("upstream GET failed")
    });
    let log = edge.diagnostics();
    assert!(logged, "{log}");
    assert!(!log.contains("md5="), "the signed query is logged: {log}");
}
