//! Watching while it transcodes, end to end: the real origin publishes a video segment by
//! segment while its ladder encodes, real players (ffmpeg, GStreamer) start as soon as
//! stream-info says it is playable and decode every frame of the finished video through the
//! edge (GStreamer every frame from where it joins); a second viewer after completion gets VOD playlists; a delete or a failure during the
//! encode withdraws everything published so far.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use e2e::origin::{data_dir, generate_clip, json, mint_token, truncated_clip, JWT_SECRET};
use e2e::process::{self, run_bounded};
use e2e::{wait_until, Edge, EdgeOptions, Origin, OriginOptions, RawResponse};

/// The clip: long enough at a slow preset that the encode is well under way when it becomes
/// playable, short enough for a 2-core machine.
const CLIP_SECS: u32 = 24;
const FPS: u32 = 25;
const SEGMENT_SECS: u32 = 2;

fn config(preset: &str, attempts: u32) -> String {
    format!(
        "[transcode]\nworkers = 1\nsegment_secs = {SEGMENT_SECS}\nx264_preset = \"{preset}\"\n\
         nvenc = \"off\"\nmax_attempts = {attempts}\n"
    )
}

struct Platform {
    edge: Edge,
    origin: Origin,
    _dir: tempfile::TempDir,
}

impl Platform {
    fn start(prefix: &str, origin_config: &str) -> Self {
        let (dir, data) = data_dir(prefix);
        let edge = Edge::start(EdgeOptions::new(&data.join("hls")));
        let origin = Origin::start(
            OriginOptions::new(&data, &format!("http://{}", edge.public_addr))
                .config(origin_config),
        );
        Self {
            edge,
            origin,
            _dir: dir,
        }
    }

    fn diagnostics(&self) -> String {
        format!("{}\n{}", self.origin.diagnostics(), self.edge.diagnostics())
    }

    fn upload(&self, token: &str, clip: &Path) -> String {
        let r = self
            .origin
            .upload(token, &std::fs::read(clip).expect("clip"), "video/mp4");
        assert_eq!(r.status, 202, "{}\n{}", r.text(), self.diagnostics());
        json(&r)["id"].as_str().expect("id").to_owned()
    }

    /// Follows the events of `id` until `playable` (or the end); returns whether it came, and
    /// the events seen.
    fn wait_playable(&self, token: &str, id: &str) -> (bool, Vec<String>) {
        let stream = self
            .origin
            .events(token, id, Duration::from_secs(120), |e| {
                matches!(e.event.as_str(), "playable" | "ready" | "failed")
            });
        let names: Vec<String> = stream.events.iter().map(|e| e.event.clone()).collect();
        (names.iter().any(|n| n == "playable"), names)
    }

    fn record(&self, token: &str, id: &str) -> serde_json::Value {
        json(&self.origin.get_as(token, &format!("/api/videos/{id}")))
    }

    fn stream_info(&self, token: &str, id: &str) -> RawResponse {
        self.origin
            .get_as(token, &format!("/api/videos/{id}/stream-info"))
    }
}

/// The text of every variant playlist behind `master_url` (a path on the origin).
fn variants(origin: &Origin, master_url: &str) -> Vec<(RawResponse, String)> {
    let master = origin.get(master_url);
    assert_eq!(master.status, 200, "{}", master.text());
    master
        .text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|uri| {
            let base = master_url.split("master.m3u8").next().unwrap_or("");
            let r = origin.get(&format!("{base}{uri}"));
            assert_eq!(r.status, 200, "{uri}: {}", r.text());
            let text = r.text();
            (r, text)
        })
        .collect()
}

/// Frames of each video stream ffmpeg decodes from `url` (every variant of a master).
fn ffmpeg_frames(url: &str) -> Vec<usize> {
    let out = run_bounded(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-prefer_x_start",
                "1",
            ])
            .args(["-i", url, "-map", "0:v", "-f", "framecrc", "-"]),
        Duration::from_secs(180),
    );
    assert!(
        out.status.success(),
        "ffmpeg could not play {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut per_stream = std::collections::BTreeMap::<usize, usize>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(stream) = line.split(',').next().and_then(|s| s.trim().parse().ok()) {
            *per_stream.entry(stream).or_default() += 1;
        }
    }
    per_stream.into_values().collect()
}

/// Video frames GStreamer decodes from `url` (`uridecodebin`, one adaptive stream).
fn gstreamer_frames(url: &str) -> usize {
    let out = run_bounded(
        Command::new("gst-launch-1.0")
            .args(["uridecodebin", &format!("uri={url}"), "caps=video/x-raw"])
            .args(["!", "fakesink", "sync=false", "silent=false", "-v"]),
        Duration::from_secs(180),
    );
    assert!(
        out.status.success(),
        "GStreamer could not play {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // `-v` reports each buffer the sink takes as its `last-message`.
        .filter(|l| l.contains("last-message = chain"))
        .count()
}

#[test]
fn players_start_while_it_encodes_and_get_every_frame() {
    let work = tempfile::tempdir().expect("tmp");
    let clip = work.path().join("clip.mp4");
    generate_clip(&clip, CLIP_SECS, 640, 360);
    let p = Platform::start("e2e-growing-", &config("slow", 3));
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let id = p.upload(&alice, &clip);
    let uploaded = Instant::now();
    let (playable, events) = p.wait_playable(&alice, &id);
    let to_playable = uploaded.elapsed();
    assert!(
        playable,
        "no playable event: {events:?}\n{}",
        p.diagnostics()
    );
    eprintln!("playable {to_playable:?} after the upload");
    // GStreamer first: it joins a playlist without ENDLIST near its end (below), so the sooner
    // it starts, the more of the video it plays.
    let info = p.stream_info(&alice, &id);
    assert_eq!(info.status, 200, "{}", info.text());
    let info = json(&info);
    let manifest = info["manifest_url"].as_str().expect("manifest").to_owned();
    let url = format!("{}{manifest}", p.origin.base_url());
    let gst = process::on_path("gst-launch-1.0").then(|| {
        let url = url.clone();
        thread::spawn(move || gstreamer_frames(&url))
    });

    // While it encodes: playable, not complete, everywhere the API says so.
    let record = p.record(&alice, &id);
    assert_eq!(
        (&record["playable"], &record["complete"], &record["status"]),
        (
            &serde_json::json!(true),
            &serde_json::json!(false),
            &serde_json::json!("processing")
        ),
        "{record}"
    );
    assert_eq!(info["playable"], true, "{info}");
    assert_eq!(info["complete"], false, "{info}");
    assert!(info["retry_after"].as_u64().is_some(), "{info}");
    for (response, text) in variants(&p.origin, &manifest) {
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{text}");
        assert!(text.contains("#EXT-X-START:TIME-OFFSET=0\n"), "{text}");
        assert!(!text.contains("#EXT-X-ENDLIST"), "{text}");
        assert!(
            text.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"key?pt="),
            "{text}"
        );
        let cache = response.header("cache-control").unwrap_or_default();
        assert!(
            cache.contains("max-age=1"),
            "a growing playlist is cached {cache:?}"
        );
    }

    // ffmpeg starts where EXT-X-START says, whenever it joins, and follows to the end.
    let frames = ffmpeg_frames(&url);
    let expected = (CLIP_SECS * FPS) as usize;
    assert!(!frames.is_empty());
    for n in &frames {
        assert_eq!(*n, expected, "ffmpeg decoded {frames:?} frames per rung");
    }
    // The finished playlists are published before the job is marked ready: a moment apart.
    let ready = wait_until(Duration::from_secs(30), || {
        p.record(&alice, &id)["status"] == "ready"
    });
    assert!(ready, "{}", p.record(&alice, &id));
    match gst {
        Some(handle) => {
            // GStreamer 1.22 ignores EXT-X-START: it joins a playlist without ENDLIST three
            // target durations from its end, so it plays every frame only when it joins while
            // at most three segments are out. On a loaded machine it may join later; it must
            // still play from there to the end.
            let n = handle.join().expect("GStreamer thread");
            let live_edge = (3 * SEGMENT_SECS * FPS) as usize;
            assert!(
                n <= expected && n + live_edge >= expected,
                "GStreamer decoded {n} of {expected} frames"
            );
            if n < expected {
                eprintln!("GStreamer joined {} frames in", expected - n);
            }
        }
        None => panic!("gst-launch-1.0 is not installed; scripts/test.sh installs it"),
    }

    // A viewer after completion gets the VOD playlists.
    let info = json(&p.stream_info(&alice, &id));
    assert_eq!(
        (&info["playable"], &info["complete"]),
        (&serde_json::json!(true), &serde_json::json!(true))
    );
    let manifest = info["manifest_url"].as_str().expect("manifest").to_owned();
    for (response, text) in variants(&p.origin, &manifest) {
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
        assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        assert!(!text.contains("EXT-X-START"), "{text}");
        let cache = response.header("cache-control").unwrap_or_default();
        assert!(cache.contains("max-age=60"), "{cache:?}");
    }
}

#[test]
fn a_delete_or_a_failure_during_the_encode_withdraws_what_was_published() {
    let work = tempfile::tempdir().expect("tmp");
    let clip = work.path().join("clip.mp4");
    generate_clip(&clip, CLIP_SECS, 640, 360);
    let p = Platform::start("e2e-growing-withdrawn-", &config("slow", 1));
    let data = p.origin.data.clone();
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");

    let id = p.upload(&alice, &clip);
    let (playable, events) = p.wait_playable(&alice, &id);
    assert!(playable, "{events:?}\n{}", p.diagnostics());
    assert!(data.join("hls").join(&id).join("master.m3u8").is_file());
    let deleted = p.origin.delete_as(&alice, &format!("/api/videos/{id}"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let gone =
        |id: &str| !data.join("hls").join(id).exists() && !data.join("keys").join(id).exists();
    assert!(gone(&id), "the delete left published files");
    // Nothing the stopped encode was still writing lands afterwards: its ffmpeg is gone, and
    // so are the files.
    assert!(
        wait_until(Duration::from_secs(30), || process::processes_mentioning(
            &id
        )
        .is_empty()),
        "still running for the deleted video: {:?}",
        process::processes_mentioning(&id)
    );
    assert!(gone(&id), "files appeared after the delete");

    // A clip whose index promises more than its data: it plays for a while, then fails.
    let truncated = work.path().join("truncated.mp4");
    truncated_clip(&clip, &truncated);
    let id = p.upload(&alice, &truncated);
    let mut record = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(120), || {
            record = p.record(&alice, &id);
            record["status"] == "failed"
        }),
        "{record}\n{}",
        p.diagnostics()
    );
    assert_eq!(record["playable"], false, "{record}");
    assert!(gone(&id), "a failed video stays published");
    assert_eq!(p.stream_info(&alice, &id).status, 422);
}
