//! What both origin API tests use: the platform (edge and origin on one data directory), its
//! configuration, waiting for `ready`, uploads, playlist and credential checks, and asserting
//! on JSON error answers.

use std::path::PathBuf;
use std::time::Duration;

use e2e::http::Request;
use e2e::origin::{data_dir, json, PURGE_TOKEN};
use e2e::sse::SseStream;
use e2e::{metrics, signer, unix_now, Edge, EdgeOptions, Origin, OriginOptions, RawResponse};
use shared::secure_link::LinkRequest;
use tempfile::TempDir;

/// A job on a 2 s clip takes a few seconds; this bounds a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// ffmpeg playing a 2 s clip through the whole chain.
pub const PLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// The origin's job-state gauges refresh every 5 s.
pub const GAUGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The playback settings the tests rely on (the defaults, spelled out).
pub const URL_TTL_SECS: i64 = 43_200;
pub const EXPIRY_BUCKET_SECS: i64 = 300;

/// The origin's `--config`: tiny fast encodes, the default playback settings spelled out, and
/// the upload limit under test (`lifecycle` accepts its clips of a few hundred KB; `refusals`
/// sets a limit its oversized bodies exceed).
pub fn origin_config(max_upload_bytes: u64) -> String {
    format!(
        "[server]\nmax_upload_bytes = {max_upload_bytes}\n\n\
         [playback]\nurl_ttl_secs = {URL_TTL_SECS}\nexpiry_bucket_secs = {EXPIRY_BUCKET_SECS}\n\n\
         [transcode]\nworkers = 1\nsegment_secs = 1\nx264_preset = \"ultrafast\"\nnvenc = \"off\"\n"
    )
}

/// The edge and the origin sharing one data directory, as deployed.
pub struct Platform {
    pub edge: Edge,
    pub origin: Origin,
    pub data: PathBuf,
    // Last: removed after both processes are gone.
    pub dir: TempDir,
}

impl Platform {
    pub fn start() -> Self {
        let (dir, data) = data_dir("e2e-origin-api-");
        let edge =
            Edge::start(EdgeOptions::new(&data.join("hls")).env("EDGE_PURGE_TOKEN", PURGE_TOKEN));
        let origin = Origin::start(
            OriginOptions::new(&data, &format!("http://{}", edge.public_addr))
                .edge_admin_url(&format!("http://{}", edge.admin_addr))
                .config(&origin_config(20_000_000)),
        );
        Self {
            edge,
            origin,
            data,
            dir,
        }
    }

    pub fn diagnostics(&self) -> String {
        format!("{}\n{}", self.origin.diagnostics(), self.edge.diagnostics())
    }
}

/// Follows the events of `id` until the job is ready; panics on failure or timeout. A failed
/// attempt on these clean clips is a failure too, even if a retry would follow.
///
/// The stream starts with a `status` snapshot and ends with `ready` (or `failed`); a job that
/// was already ready when the stream opened ends after the snapshot, which says so.
pub fn wait_ready(p: &Platform, token: &str, id: &str) -> SseStream {
    let is_final_snapshot = |data: &str| {
        serde_json::from_str::<serde_json::Value>(data)
            .is_ok_and(|v| v["status"] == "ready" || v["status"] == "failed")
    };
    let stream = p.origin.events(token, id, READY_TIMEOUT, |event| {
        event.event == "ready"
            || event.event == "failed"
            || (event.event == "status" && is_final_snapshot(&event.data))
    });
    let context = || {
        format!(
            "events of {id}:\n{}\n{}",
            stream.transcript(),
            p.diagnostics()
        )
    };
    assert_eq!(stream.response.status, 200, "{}", context());
    assert!(
        stream
            .response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream")),
        "content type {:?}\n{}",
        stream.response.header("content-type"),
        context()
    );
    assert!(
        !stream.timed_out,
        "not ready within {READY_TIMEOUT:?}\n{}",
        context()
    );
    assert_eq!(
        stream.events.first().map(|e| e.event.as_str()),
        Some("status"),
        "the first event is the status snapshot\n{}",
        context()
    );
    let last = stream.events.last().expect("at least the snapshot");
    let ready = last.event == "ready"
        || (last.event == "status"
            && serde_json::from_str::<serde_json::Value>(&last.data)
                .is_ok_and(|v| v["status"] == "ready"));
    assert!(ready, "the job did not become ready\n{}", context());
    if last.event == "ready" {
        let data: serde_json::Value = serde_json::from_str(&last.data).expect("ready data is JSON");
        assert_eq!(data["video"], id, "{}", context());
    }
    stream
}

/// Uploads `body` as a raw request body; returns the new video id.
pub fn upload_raw(p: &Platform, token: &str, body: &[u8]) -> String {
    let response = p.origin.upload(token, body, "video/mp4");
    accepted_id(p, &response)
}

pub fn accepted_id(p: &Platform, response: &RawResponse) -> String {
    assert_eq!(
        response.status,
        202,
        "upload: {}\n{}",
        response.text(),
        p.diagnostics()
    );
    let body = json(response);
    let id = body["id"]
        .as_str()
        .expect("upload answer has an id")
        .to_owned();
    assert_eq!(body["status"], "queued", "{body}");
    assert_eq!(body["status_url"], format!("/api/videos/{id}"), "{body}");
    id
}

/// The URI lines of a playlist.
pub fn uris(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The signed master of `id`, fetched twice within one expiry bucket; the two must be the
/// same bytes (a bucket boundary between them is retried, at most twice).
pub fn identical_masters(p: &Platform, token: &str, id: &str) -> RawResponse {
    let target = format!("/api/videos/{id}/hls/master.m3u8?token={token}");
    let bucket = || (unix_now() + URL_TTL_SECS).div_euclid(EXPIRY_BUCKET_SECS);
    for _ in 0..3 {
        let before = bucket();
        let first = p.origin.get(&target);
        let second = p.origin.get(&target);
        if bucket() != before {
            continue;
        }
        assert_eq!(
            first.status,
            200,
            "master: {}\n{}",
            first.text(),
            p.diagnostics()
        );
        assert_eq!(
            first.body,
            second.body,
            "two fetches within one expiry bucket differ:\n{}\n---\n{}",
            first.text(),
            second.text()
        );
        return first;
    }
    panic!("three attempts straddled an expiry bucket boundary");
}

/// The `pt` credential of every variant URI of a master (they must all carry the same one).
pub fn master_credential(master: &str) -> String {
    let credentials: Vec<&str> = uris(master)
        .iter()
        .map(|uri| {
            uri.split_once("?pt=")
                .unwrap_or_else(|| panic!("variant URI {uri:?} carries no ?pt=\n{master}"))
                .1
        })
        .collect();
    assert!(!credentials.is_empty(), "no variants in\n{master}");
    assert!(
        credentials.iter().all(|c| *c == credentials[0]),
        "variants carry different credentials\n{master}"
    );
    credentials[0].to_owned()
}

/// One checked variant: the signed segment URLs (absolute, at the edge) and the key URI.
pub struct Variant {
    pub segments: Vec<String>,
    pub key_uri: String,
}

/// Fetches and checks the signed variant playlist of `rung`.
pub fn variant(p: &Platform, id: &str, rung: &str, pt: &str) -> Variant {
    let response = p
        .origin
        .get(&format!("/api/videos/{id}/hls/{rung}/index.m3u8?pt={pt}"));
    assert_eq!(
        response.status,
        200,
        "variant {rung}: {}\n{}",
        response.text(),
        p.diagnostics()
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let text = response.text();
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    assert!(
        text.contains("#EXT-X-ENDLIST"),
        "a VOD playlist is complete\n{text}"
    );

    // The key placeholder became the origin's key endpoint, with the same credential.
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-KEY:"))
        .collect();
    assert_eq!(keys.len(), 1, "one key line\n{text}");
    let key_uri = keys[0]
        .strip_prefix("#EXT-X-KEY:METHOD=AES-128,URI=\"")
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("unexpected key line {:?}", keys[0]));
    assert_eq!(
        key_uri,
        format!("key?pt={pt}"),
        "relative to the variant URL"
    );
    assert!(!text.contains("key:"), "placeholder left in\n{text}");

    // Every segment URI is an absolute edge URL the edge's own rules accept.
    let link = signer();
    let now = unix_now();
    let edge_base = format!("http://{}", p.edge.public_addr);
    let segments: Vec<String> = uris(&text).iter().map(|s| (*s).to_owned()).collect();
    assert!(segments.len() >= 2, "a 2 s clip in 1 s segments\n{text}");
    for url in &segments {
        let rest = url
            .strip_prefix(&edge_base)
            .unwrap_or_else(|| panic!("segment URI {url:?} is not at the edge {edge_base}"));
        let (path, query) = rest.split_once('?').expect("signed URL has a query");
        let prefix = format!("/hls/{id}/{rung}/segment_");
        assert!(path.starts_with(&prefix) && path.ends_with(".ts"), "{path}");
        let args: Vec<&str> = query.split('&').collect();
        assert_eq!(args.len(), 2, "md5 and expires only: {query}");
        let md5 = args[0].strip_prefix("md5=").expect("md5 first");
        assert_eq!(md5.len(), 22, "base64url MD5 without padding: {md5}");
        let expires: i64 = args[1]
            .strip_prefix("expires=")
            .and_then(|e| e.parse().ok())
            .expect("expires second");
        assert_eq!(expires % EXPIRY_BUCKET_SECS, 0, "bucketed expiry {expires}");
        assert!(
            (now + URL_TTL_SECS - 5..=now + URL_TTL_SECS + EXPIRY_BUCKET_SECS).contains(&expires),
            "expires {expires} is not now + ttl rounded up (now {now})"
        );
        let request = LinkRequest {
            uri: path.as_bytes(),
            args: query.as_bytes(),
            remote_addr: "",
        };
        assert_eq!(link.verify(&request, now), Ok(()), "signature of {url}");
        let file = p
            .data
            .join("hls")
            .join(id)
            .join(rung)
            .join(path.rsplit('/').next().expect("file name"));
        assert!(file.is_file(), "{} is published", file.display());
    }
    Variant {
        segments,
        key_uri: key_uri.to_owned(),
    }
}

/// `GET` an absolute edge URL (`http://<edge>/...`) at the edge.
pub fn edge_get(p: &Platform, url: &str) -> RawResponse {
    let target = url
        .strip_prefix(&format!("http://{}", p.edge.public_addr))
        .unwrap_or(url);
    p.edge.public(Request::get(target))
}

pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics::value(text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"))
}

/// Replaces the middle character of a base64url string by another one. Not the last one:
/// there, some bits are padding that decoders (nginx's, and so the edge's) ignore, so a
/// changed last character may decode to the very same bytes.
pub fn tamper(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// A JWT with its signature (not its claims) tampered.
pub fn tamper_signature(jwt: &str) -> String {
    let (signed, signature) = jwt.rsplit_once('.').expect("a JWT");
    format!("{signed}.{}", tamper(signature))
}

/// A response for a failure message: status and at most 300 characters of the body.
pub fn shown(response: &RawResponse) -> String {
    let text = response.text();
    let cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        format!(
            "{} {cut:?}... ({} bytes)",
            response.status,
            response.body.len()
        )
    } else {
        format!("{} {cut:?}", response.status)
    }
}

pub fn assert_status(response: &RawResponse, status: u16, what: &str) {
    assert_eq!(response.status, status, "{what}: got {}", shown(response));
}

/// An error answer: `status` with a JSON body `{"error": "<non-empty>"}`.
pub fn assert_error(response: &RawResponse, status: u16, what: &str) {
    assert_status(response, status, what);
    let body = json(response);
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: error body {body}"
    );
}
