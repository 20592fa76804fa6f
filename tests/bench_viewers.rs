//! The viewer load generator (`bench viewers`) against a real origin and edge: viewers play
//! to the end while an attacker's forged URLs are refused, the request budget stops a run,
//! expired URLs (410) are refreshed from the origin, and an unreachable origin is a clear
//! failure. The generator's JSON summary is what operators read, so its numbers are checked
//! against what the run must have done.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::origin::{data_dir, generate_clip, json, mint_token, JWT_SECRET};
use e2e::{process, wait_until, Edge, EdgeOptions, Origin, OriginOptions};
use serde_json::Value;
use tempfile::TempDir;

const READY: Duration = Duration::from_secs(120);

/// Edge, origin (1 s segments, fast preset) and the clips they serve, all under one temp dir.
struct Platform {
    origin: Origin,
    _edge: Edge,
    dir: TempDir,
}

impl Platform {
    fn start(playback: &str) -> Self {
        let (dir, data) = data_dir("e2e-bench-viewers-");
        let edge = Edge::start(EdgeOptions::new(&data.join("hls")));
        let config = format!(
            "[transcode]\nworkers = 2\nsegment_secs = 1\nx264_preset = \"ultrafast\"\n\
             nvenc = \"off\"\n{playback}"
        );
        let origin = Origin::start(
            OriginOptions::new(&data, &format!("http://{}", edge.public_addr)).config(&config),
        );
        Self {
            origin,
            _edge: edge,
            dir,
        }
    }

    /// Uploads a generated clip as `alice` and waits until it is ready; returns its id.
    fn ready_video(&self, name: &str, secs: u32) -> String {
        let token = mint_token(JWT_SECRET, "alice", false, "1h");
        let clip = self.dir.path().join(format!("{name}.mp4"));
        generate_clip(&clip, secs, 320, 240);
        let body = fs::read(&clip).expect("read clip");
        let answer = json(&self.origin.upload(&token, &body, "video/mp4"));
        let id = answer["id"]
            .as_str()
            .unwrap_or_else(|| panic!("upload answered {answer}"))
            .to_owned();
        let mut last = Value::Null;
        let done = wait_until(READY, || {
            last = json(&self.origin.get_as(&token, &format!("/api/videos/{id}")));
            last["status"] == "ready" || last["status"] == "failed"
        });
        assert!(
            done && last["status"] == "ready",
            "{id} not ready: {last}\n{}",
            self.origin.diagnostics()
        );
        id
    }

    fn origin_url(&self) -> String {
        format!("http://{}", self.origin.api_addr)
    }
}

/// What one run of the generator left: exit status, summary and progress output.
struct Run {
    success: bool,
    summary: Value,
    stderr: String,
    took: Duration,
}

fn bench_binary() -> PathBuf {
    let path = process::binaries_dir().join("bench");
    assert!(path.is_file(), "{} not built", path.display());
    path
}

/// Runs `bench viewers --origin <origin> <args>` as `alice` with tokens minted locally.
/// `args` is split on whitespace (no option value here contains any).
fn viewers(origin: &str, args: &str) -> Run {
    let started = Instant::now();
    let output = process::run_bounded(
        Command::new(bench_binary())
            .args(["viewers", "--origin", origin, "--user", "alice"])
            .args(["--progress-secs", "0.5"])
            .args(args.split_whitespace())
            .env("JWT_SECRET", JWT_SECRET),
        Duration::from_secs(90),
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    Run {
        success: output.status.success(),
        summary,
        stderr,
        took: started.elapsed(),
    }
}

fn count(summary: &Value, kind: &str, status: &str) -> u64 {
    summary["kinds"][kind]["statuses"][status]
        .as_u64()
        .unwrap_or(0)
}

fn assert_percentiles_ordered(summary: &Value, kind: &str) {
    let k = &summary["kinds"][kind];
    let p = |name: &str| k[name].as_f64().unwrap_or(-1.0);
    assert!(
        0.0 < p("p50_ms")
            && p("p50_ms") <= p("p99_ms")
            && p("p99_ms") <= p("p999_ms")
            && p("p999_ms") <= p("max_ms"),
        "{kind} percentiles out of order: {k}"
    );
}

#[test]
fn viewers_play_while_forged_urls_are_refused_and_budgets_bound_runs() {
    let platform = Platform::start("");
    let first = platform.ready_video("first", 4);
    platform.ready_video("second", 3);
    let origin = platform.origin_url();

    // Hot video, flat out, with an attacker.
    let run = viewers(&origin, &format!("--video {first} --viewers 3 --attackers 1 --pace flat --duration 4 --max-requests 100000"));
    let s = &run.summary;
    assert!(run.success, "run failed: {s}\n{}", run.stderr);
    assert_eq!(s["unexpected"], 0, "{s}");
    assert_eq!(s["run"]["stopped_by"], "duration", "{s}");
    for kind in [
        "stream_info",
        "master",
        "variant",
        "key",
        "segment",
        "forged",
    ] {
        assert!(
            s["kinds"][kind]["requests"].as_u64() > Some(0),
            "no {kind}: {s}"
        );
        assert_percentiles_ordered(s, kind);
    }
    let segments = s["kinds"]["segment"]["requests"].as_u64().unwrap_or(0);
    assert_eq!(
        count(s, "segment", "200"),
        segments,
        "every segment 200: {s}"
    );
    let forged = s["kinds"]["forged"]["requests"].as_u64().unwrap_or(0);
    assert_eq!(count(s, "forged", "403"), forged, "every forgery 403: {s}");
    // Three viewers flat out on a 4-segment video finish many sessions in four seconds.
    assert!(
        s["viewers"]["sessions_completed"].as_u64() >= Some(3),
        "{s}"
    );
    let segment_bytes = s["kinds"]["segment"]["bytes"].as_u64().unwrap_or(0);
    assert!(segment_bytes > segments * 1000, "segments carry bytes: {s}");
    let progress_lines = run.stderr.lines().filter(|l| l.contains("req/s")).count();
    assert!(progress_lines >= 3, "live progress lines:\n{}", run.stderr);

    // Many videos: viewers spread over both and move on after each.
    let run = viewers(
        &origin,
        "--mode spread --viewers 2 --pace flat --rung lowest --duration 3",
    );
    let s = &run.summary;
    assert!(run.success, "spread run failed: {s}\n{}", run.stderr);
    assert_eq!(s["run"]["videos"], 2, "both videos discovered: {s}");
    assert!(
        s["viewers"]["sessions_completed"].as_u64() >= Some(4),
        "{s}"
    );

    // The request budget ends a run long before its duration.
    let run = viewers(
        &origin,
        "--viewers 4 --pace flat --duration 60 --max-requests 40",
    );
    let s = &run.summary;
    assert!(run.success, "budgeted run failed: {s}\n{}", run.stderr);
    assert_eq!(s["run"]["stopped_by"], "max_requests", "{s}");
    assert!(s["requests"].as_u64() <= Some(40), "{s}");
    assert!(run.took < Duration::from_secs(30), "took {:?}", run.took);

    // Nothing listening: a clear failure, not a hang or an empty success.
    let run = viewers("http://127.0.0.1:9", "--duration 2");
    assert!(
        !run.success,
        "a run against nothing succeeded: {}",
        run.stderr
    );
    assert!(run.stderr.contains("connect"), "{}", run.stderr);
}

#[test]
fn expired_urls_are_refreshed_from_the_origin() {
    // The shortest lifetime the origin accepts, bucketed to the second: URLs signed at the
    // start of a 16 s video expire in the middle of playing it.
    let platform = Platform::start("[playback]\nurl_ttl_secs = 10\nexpiry_bucket_secs = 1\n");
    let video = platform.ready_video("long", 16);
    let run = viewers(
        &platform.origin_url(),
        &format!("--video {video} --viewers 2 --buffer-secs 1 --duration 15"),
    );
    let s = &run.summary;
    assert!(run.success, "run failed: {s}\n{}", run.stderr);
    assert_eq!(s["unexpected"], 0, "{s}");
    let expired = count(s, "segment", "410");
    let refreshes = s["viewers"]["playlist_refreshes"].as_u64().unwrap_or(0);
    assert!(expired >= 2, "both viewers met expired URLs: {s}");
    assert_eq!(refreshes, expired, "each 410 led to one refresh: {s}");
    // The refreshed playlist's URLs worked: more segments played after the expiry.
    assert!(count(s, "segment", "200") > 20, "{s}");
    // The rung playlist's credential expires with its URLs: a refresh starts at the master.
    let sessions = s["kinds"]["stream_info"]["requests"].as_u64().unwrap_or(0);
    assert!(sessions >= 2, "{s}");
    for kind in ["master", "variant"] {
        let n = s["kinds"][kind]["requests"].as_u64().unwrap_or(0);
        assert_eq!(
            n,
            sessions + refreshes,
            "{kind}: one per session and per refresh: {s}"
        );
    }
}
