//! Every track of an upload reaches real players through the edge: a Matroska file with three
//! audio languages and two subtitle tracks, made by ffmpeg here, round-trips with its languages
//! intact; ffmpeg and GStreamer decode every audio rendition in full; a subtitle file uploaded
//! afterwards joins the master (a malformed one is refused with where it is wrong) and leaves
//! it when deleted; hls.js in Chromium switches the audio track and shows a subtitle cue when
//! the video reaches its time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::clips::{multitrack_clip, Tracks};
use e2e::origin::{
    add_subtitles_at_once, data_dir, delete_subtitles_at_once, ffmpeg_audio_seconds, json,
    mint_token, names_subtitles, JWT_SECRET,
};
use e2e::port::free_port;
use e2e::process::{self, run_bounded};
use e2e::{Edge, EdgeOptions, Origin, OriginOptions};

const SECS: u32 = 8;
/// The first English cue: the browser must show it at this time of the video.
const CUE_AT: f64 = 3.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The seconds of audio GStreamer decodes from the playlist at `url`.
fn gstreamer_audio_seconds(url: &str, scratch: &Path, name: &str) -> f64 {
    let raw = scratch.join(format!("{name}.gst.pcm"));
    let out = run_bounded(
        Command::new("gst-launch-1.0")
            .args([
                "-q",
                "uridecodebin",
                &format!("uri={url}"),
                "caps=audio/x-raw",
            ])
            .args(["!", "audioconvert", "!", "audioresample", "!"])
            .arg("audio/x-raw,format=S16LE,channels=1,rate=48000")
            .args(["!", "filesink"])
            .arg(format!("location={}", raw.display())),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "GStreamer {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::metadata(&raw).expect("decoded").len() as f64 / 2.0 / 48_000.0
}

#[test]
fn three_languages_and_two_subtitles_round_trip_to_real_players() {
    let (dir, data) = data_dir("e2e-tracks-");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let clip = scratch.join("film.mkv");
    multitrack_clip(
        &clip,
        SECS,
        &Tracks {
            audio: &[("eng", None), ("fra", Some("Fran\u{e7}ais")), ("deu", None)],
            subtitles: &[
                (
                    "eng",
                    &[(CUE_AT, 5.0, "Hello there"), (6.0, 7.0, "Second line")],
                ),
                ("spa", &[(1.0, 2.0, "Hola")]),
            ],
        },
    );
    let port = free_port();
    let page = format!("http://127.0.0.1:{port}");
    let edge = Edge::start(
        EdgeOptions::new(&data.join("hls"))
            .config(&format!("[http]\ncors_allowed_origins = [\"{page}\"]\n")),
    );
    let origin = Origin::start(
        OriginOptions::new(&data, &format!("http://{}", edge.public_addr))
            .listen(&format!("127.0.0.1:{port}"))
            .config(
                "[transcode]\nsegment_secs = 2\nx264_preset = \"ultrafast\"\nnvenc = \"off\"\n",
            ),
    );
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let uploaded = origin.upload(
        &alice,
        &std::fs::read(&clip).expect("clip"),
        "video/x-matroska",
    );
    assert_eq!(uploaded.status, 202, "{}", uploaded.text());
    let id = json(&uploaded)["id"].as_str().expect("id").to_owned();
    let events = origin.events(&alice, &id, Duration::from_secs(120), |e| {
        matches!(e.event.as_str(), "ready" | "failed")
    });
    assert_eq!(
        events.events.last().map(|e| e.event.as_str()),
        Some("ready"),
        "{}\n{}",
        events.transcript(),
        origin.diagnostics()
    );

    // The languages round-trip.
    let record = json(&origin.get_as(&alice, &format!("/api/videos/{id}")));
    let audio: Vec<(String, String)> = record["audio_tracks"]
        .as_array()
        .expect("audio tracks")
        .iter()
        .map(|t| {
            (
                t["language"].as_str().unwrap_or_default().into(),
                t["name"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert_eq!(
        audio,
        [
            ("eng".into(), "English".into()),
            ("fra".into(), "Fran\u{e7}ais".into()),
            ("deu".into(), "German".into())
        ],
        "{record}"
    );
    let subs: Vec<&str> = record["subtitles"]
        .as_array()
        .expect("subtitles")
        .iter()
        .filter_map(|s| s["language"].as_str())
        .collect();
    assert_eq!(subs, ["eng", "spa"], "{record}");

    // ffmpeg: every audio rendition of the master, in full.
    let info = json(&origin.get_as(&alice, &format!("/api/videos/{id}/stream-info")));
    let manifest = info["manifest_url"].as_str().expect("manifest").to_owned();
    let master_url = format!("{}{manifest}", origin.base_url());
    for n in 0..3 {
        let seconds = ffmpeg_audio_seconds(&master_url, &format!("0:a:{n}"), &scratch);
        assert!(
            (seconds - f64::from(SECS)).abs() < 0.15,
            "ffmpeg audio {n}: {seconds} s"
        );
    }
    // GStreamer: every audio rendition's playlist, in full.
    assert!(
        process::on_path("gst-launch-1.0"),
        "gst-launch-1.0 is not installed; scripts/test.sh installs it"
    );
    let master = origin.get(&manifest).text();
    for (n, line) in master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .enumerate()
    {
        let uri = line
            .split("URI=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("uri");
        let base = manifest.split("master.m3u8").next().unwrap_or_default();
        let url = format!("{}{base}{uri}", origin.base_url());
        let seconds = gstreamer_audio_seconds(&url, &scratch, &format!("audio{n}"));
        assert!(
            (seconds - f64::from(SECS)).abs() < 0.15,
            "GStreamer audio {n}: {seconds} s"
        );
    }

    // A subtitle file uploaded afterwards joins the master; a malformed one says what is wrong.
    let add = |body: &[u8]| origin.add_subtitle(&alice, &id, "lang=ita&name=Italiano", body);
    let bad = add(b"WEBVTT\n\n00:00:01.000 -> 00:00:02.000\nCiao\n");
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("line 3"), "{}", bad.text());
    let good = add(b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nCiao\n");
    assert_eq!(good.status, 201, "{}", good.text());
    let sub = json(&good)["id"].as_str().expect("id").to_owned();
    // Larger than a subtitle file may be: refused before it is buffered.
    let huge = add(&vec![b'a'; 512 * 1024 + 1]);
    assert_eq!(huge.status, 413, "{}", huge.text());
    // Only its own name deletes it: `subs_u01` is not `subs_u1`.
    let alias = sub.replace("subs_u", "subs_u0");
    let wrong = origin.delete_as(&alice, &format!("/api/videos/{id}/subtitles/{alias}"));
    assert_eq!(wrong.status, 404, "{}", wrong.text());
    assert!(origin
        .get(&manifest)
        .text()
        .contains("NAME=\"Italiano\",LANGUAGE=\"ita\""));
    let deleted = origin.delete_as(&alice, &format!("/api/videos/{id}/subtitles/{sub}"));
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(!origin.get(&manifest).text().contains("Italiano"));
    assert!(!data.join("hls").join(&id).join(&sub).exists());

    // Several at once: each gets its own number and its place in the master; then all go.
    const LANGUAGES: [&str; 6] = ["nld", "swe", "pol", "fin", "dan", "ces"];
    let file = b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHej\n";
    let added = add_subtitles_at_once(&[&origin], &alice, &id, &LANGUAGES, file);
    assert!(
        !added.contains(&sub),
        "the deleted {sub}'s number was given again: caches may still hold its segments"
    );
    let master = origin.get(&manifest).text();
    for lang in LANGUAGES {
        assert!(
            names_subtitles(&master, lang),
            "{lang} is missing from the master:\n{master}"
        );
    }
    delete_subtitles_at_once(&[&origin], &alice, &id, &added);
    let master = origin.get(&manifest).text();
    for lang in LANGUAGES {
        assert!(
            !names_subtitles(&master, lang),
            "{lang} is still in the master:\n{master}"
        );
    }

    // hls.js in Chromium: switch the audio track, show the English cue at its time.
    let output = process::run_bounded(
        Command::new("node")
            .arg(repo().join("tests/browser/tracks.e2e.mjs"))
            .current_dir(repo())
            .env("WEB_E2E_BASE_URL", &page)
            .env("WEB_E2E_TOKEN", &alice)
            .env("WEB_E2E_VIDEO", &id)
            .env("WEB_E2E_CUE_AT", CUE_AT.to_string())
            .env(
                "WEB_E2E_CHROMIUM",
                std::env::var_os("WEB_E2E_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()),
            ),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "tracks scenario:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "the tracks scenario failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
