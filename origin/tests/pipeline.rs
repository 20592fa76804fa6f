//! End-to-end tests of the transcoding pipeline on real (generated) clips: which rungs each
//! source gets, the master and variant playlists, per-segment AES-128 encryption (checked by
//! decrypting and ffprobing every segment), poster and storyboard, the events a job reports,
//! cancellation, and the refusal of files that are not videos.
//!
//! Everything published is checked with the real ffprobe, not with the pipeline's own
//! parsers. Clips are generated once (see `support::clips`) and every job uses libx264
//! `ultrafast` with 2-second segments, so the file runs in about a minute on 2 cores.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use origin::transcode::encoder::EncoderPreference;
use origin::transcode::encrypt::{decrypt_segment, ContentKey};
use origin::transcode::input::Source;
use origin::transcode::pipeline::{Job, PipelineError, Profile, Published};
use origin::transcode::progress::Stage;
use shared::media::{Layout, VideoId};
use support::{Event, Recorder, TestEnv};

/// What a published video should look like.
struct Expected<'a> {
    /// `(rung, width, height)`, largest first.
    rungs: &'a [(&'a str, u32, u32)],
    audio: bool,
    fps: f64,
}

/// Every generated clip runs at 25 fps.
const FPS: f64 = 25.0;

/// A cancelled job must be gone within this long.
const CANCEL_LIMIT: Duration = Duration::from_secs(10);

const LANDSCAPE_LADDER: &[(&str, u32, u32)] = &[
    ("1080p", 1920, 1080),
    ("720p", 1280, 720),
    ("480p", 852, 480),
    ("360p", 640, 360),
    ("240p", 426, 240),
];

const PORTRAIT_LADDER: &[(&str, u32, u32)] = &[
    ("720p", 720, 1280),
    ("480p", 480, 852),
    ("360p", 360, 640),
    ("240p", 240, 426),
];

#[tokio::test]
async fn landscape_1080p_gets_every_rung_up_to_1080p() {
    let env = TestEnv::new();
    let (id, published) = transcode(&env, &support::clips().landscape, Profile::Ladder).await;
    assert_eq!(published.encoder, "libx264");
    assert_published(
        &env,
        &id,
        &published,
        &Expected {
            rungs: LANDSCAPE_LADDER,
            audio: true,
            fps: FPS,
        },
    );
}

#[tokio::test]
async fn portrait_without_audio_gets_a_portrait_ladder_and_no_audio_codec() {
    let env = TestEnv::new();
    let (id, published) = transcode(&env, &support::clips().portrait, Profile::Ladder).await;
    assert_published(
        &env,
        &id,
        &published,
        &Expected {
            rungs: PORTRAIT_LADDER,
            audio: false,
            fps: FPS,
        },
    );
}

#[tokio::test]
async fn tiny_source_gets_one_rung_at_its_own_size() {
    let env = TestEnv::new();
    let (id, published) = transcode(&env, &support::clips().tiny, Profile::Ladder).await;
    assert_published(
        &env,
        &id,
        &published,
        &Expected {
            rungs: &[("240p", 320, 240)],
            audio: true,
            fps: FPS,
        },
    );
}

#[tokio::test]
async fn rotated_phone_clip_is_encoded_upright() {
    let env = TestEnv::new();
    let (id, published) = transcode(&env, &support::clips().rotated, Profile::Ladder).await;
    assert_published(
        &env,
        &id,
        &published,
        &Expected {
            rungs: PORTRAIT_LADDER,
            audio: true,
            fps: FPS,
        },
    );
}

#[tokio::test]
async fn passthrough_copies_h264_aac_into_one_source_rung() {
    let env = TestEnv::new();
    let (id, published) = transcode(&env, &support::clips().h264_aac, Profile::Passthrough).await;
    assert_eq!(published.encoder, "copy");
    assert_published(
        &env,
        &id,
        &published,
        &Expected {
            rungs: &[("source", 640, 360)],
            audio: true,
            fps: FPS,
        },
    );
}

/// Copying is only right when the copy plays correctly: MPEG-TS cannot carry a display
/// matrix, so a copied phone clip would play sideways. Non-H.264 video cannot be copied into
/// an `avc1` rendition at all.
#[tokio::test]
async fn passthrough_falls_back_to_the_ladder_for_rotated_and_non_h264_sources() {
    let env = TestEnv::new();
    let clips = support::clips();
    let cases = [
        (&clips.rotated, PORTRAIT_LADDER, "rotated H.264/AAC"),
        (&clips.tiny, &[("240p", 320, 240)][..], "MPEG-4 Part 2"),
    ];
    for (source, rungs, what) in cases {
        let (id, published) = transcode(&env, source, Profile::Passthrough).await;
        assert_eq!(published.encoder, "libx264", "{what} is re-encoded");
        assert_published(
            &env,
            &id,
            &published,
            &Expected {
                rungs,
                audio: true,
                fps: FPS,
            },
        );
    }
}

/// Whoever starts a job may have no use for cancelling it and drop the sender; that must
/// not read as a cancellation.
#[tokio::test]
async fn a_dropped_cancel_sender_does_not_cancel_the_job() {
    let env = TestEnv::new();
    let id = VideoId::random();
    let source = &support::clips().tiny;
    let (_, mut cancel) = shared::shutdown::channel();
    let result = env
        .run(
            &job(&id, source, Profile::Ladder),
            &Recorder::default(),
            &mut cancel,
        )
        .await;
    let published = result.expect("a job nobody cancelled completes");
    assert_eq!(published.rungs.len(), 1);
    assert!(env.layout.video_dir(&id).join("master.m3u8").is_file());
}

#[tokio::test]
async fn files_that_are_not_videos_are_refused_with_a_clear_message() {
    let env = TestEnv::new();
    for (what, path) in support::bad_inputs(&env.scratch()) {
        let id = VideoId::random();
        let recorder = Recorder::default();
        let (_cancel_tx, mut cancel) = shared::shutdown::channel();
        let result = env
            .run(&job(&id, &path, Profile::Ladder), &recorder, &mut cancel)
            .await;
        match result {
            // Unprobed: unreadable now, which at job time (the upload passed its probe) is
            // tried again; either way the message is the owner's.
            Err(PipelineError::Invalid(error) | PipelineError::Unprobed(error)) => {
                let message = error.to_string();
                println!("{what}: {message}");
                assert!(!message.trim().is_empty(), "{what}: empty message");
                assert!(
                    !message.contains(&*path.to_string_lossy()),
                    "{what}: the message shows a server path: {message}"
                );
            }
            other => panic!("{what}: expected PipelineError::Invalid, got {other:?}"),
        }
        assert!(
            !env.layout.video_dir(&id).exists(),
            "{what}: something was published"
        );
        assert!(
            !env.layout.thumbs_dir(&id).exists(),
            "{what}: a poster was published"
        );
        assert_tmp_empty(&env.layout);
        assert!(
            !recorder.events().contains(&Event::ThumbnailReady),
            "{what}: thumbnail reported"
        );
    }
}

#[tokio::test]
async fn cancelling_kills_ffmpeg_and_publishes_nothing() {
    // Published all at once, a cancelled job has published nothing. (A growing publish is
    // withdrawn by whoever cancelled it: tests/growing.rs.)
    let env = TestEnv::all_at_once();
    let id = VideoId::random();
    let (cancel_tx, mut cancel) = shared::shutdown::channel();
    let recorder = Recorder::cancelling(cancel_tx);
    let result = env
        .run(
            &job(&id, &support::clips().long, Profile::Ladder),
            &recorder,
            &mut cancel,
        )
        .await;
    let returned = Instant::now();
    assert!(
        matches!(result, Err(PipelineError::Cancelled)),
        "expected Cancelled, got {result:?}"
    );
    let fired = recorder
        .cancelled_at()
        .expect("the cancellation fired during the encode");
    assert!(
        returned - fired < CANCEL_LIMIT,
        "cancelled job took {:?} to stop",
        returned - fired
    );
    let leftovers = e2e::process::processes_mentioning(&env.root().to_string_lossy());
    assert!(
        leftovers.is_empty(),
        "processes left running: {leftovers:?}"
    );
    assert!(
        !env.layout.video_dir(&id).exists(),
        "cancelled job published HLS"
    );
    assert!(
        !env.layout.keys_dir(&id).exists(),
        "cancelled job published keys"
    );
    assert_tmp_empty(&env.layout);
}

/// A Matroska file whose header declares 1 s of its 60: the limits are checked against the
/// 1 s, so the encode must stop soon after it, not run to 60 s, and the job fails for good
/// with nothing published.
#[tokio::test]
async fn a_source_longer_than_it_declares_is_stopped_soon_after() {
    let env = TestEnv::all_at_once();
    let liar = env.scratch().join("liar.mkv");
    let made = std::process::Command::new(support::FFMPEG)
        .args(["-hide_banner", "-v", "error", "-f", "lavfi"])
        .args(["-i", "testsrc2=s=1280x720:r=25:d=60", "-c:v", "libx264"])
        .args([
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "matroska",
            "-y",
        ])
        .arg(&liar)
        .output()
        .expect("run ffmpeg");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // Segment Info's Duration (ID 0x4489, an 8-byte float, in milliseconds): 1 s.
    let mut bytes = std::fs::read(&liar).expect("read");
    let at = bytes
        .windows(3)
        .position(|w| w == [0x44, 0x89, 0x88])
        .expect("a Duration element");
    bytes[at + 3..at + 11].copy_from_slice(&1000.0f64.to_be_bytes());
    std::fs::write(&liar, &bytes).expect("write");

    let id = VideoId::random();
    let (_cancel_tx, mut cancel) = shared::shutdown::channel();
    let result = env
        .run(
            &job(&id, &liar, Profile::Ladder),
            &Recorder::default(),
            &mut cancel,
        )
        .await;
    match &result {
        Err(e @ PipelineError::Overrun { declared, reached }) => {
            assert!((declared - 1.0).abs() < 0.1, "declared {declared}");
            assert!(*reached < 30.0, "stopped only at {reached} s");
            println!("declared {declared} s, stopped at {reached} s");
            assert!(!e.retryable());
            assert!(e.public_message().contains("longer than"), "{e}");
        }
        other => panic!("expected an overrun, got {other:?}"),
    }
    assert!(
        !env.layout.video_dir(&id).exists(),
        "something was published"
    );
    assert_tmp_empty(&env.layout);
}

// ---------------------------------------------------------------------------------------------
// Running jobs

fn job<'a>(video: &'a VideoId, source: &'a Path, profile: Profile) -> Job<'a> {
    Job {
        video,
        source: Source::File(source),
        profile,
        encoder: EncoderPreference::Auto,
    }
}

/// Runs a job that must succeed, and checks the events it reported on the way.
async fn transcode(env: &TestEnv, source: &Path, profile: Profile) -> (VideoId, Published) {
    let id = VideoId::random();
    let recorder = Recorder::default();
    let (_cancel_tx, mut cancel) = shared::shutdown::channel();
    let published = env
        .run(&job(&id, source, profile), &recorder, &mut cancel)
        .await
        .unwrap_or_else(|e| panic!("transcoding {} failed: {e}", source.display()));
    assert_events(&recorder.events());
    (id, published)
}

/// Stages in order, progress only moving forward and ending at 100, and the poster announced
/// before the encode reports any progress (it is shown while the job runs).
fn assert_events(events: &[Event]) {
    let stages: Vec<Stage> = events
        .iter()
        .filter_map(|e| match e {
            Event::Stage(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(
        stages,
        [
            Stage::Probe,
            Stage::Thumbnail,
            Stage::Encode,
            Stage::Publish,
            Stage::Done
        ]
    );
    let progress: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert!(
        progress.iter().all(|p| (0.0..=100.0).contains(p)),
        "progress out of range: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards: {progress:?}"
    );
    assert_eq!(progress.last(), Some(&100.0), "progress ends at 100");
    let thumbnails = events
        .iter()
        .filter(|e| **e == Event::ThumbnailReady)
        .count();
    assert_eq!(thumbnails, 1, "one thumbnail event: {events:?}");
    let thumbnail = events
        .iter()
        .position(|e| *e == Event::ThumbnailReady)
        .expect("thumbnail reported");
    let encode_progress = events
        .iter()
        .position(|e| matches!(e, Event::Progress(p) if *p > 5.0))
        .expect("encode progress reported");
    assert!(
        thumbnail < encode_progress,
        "thumbnail announced after encode progress: {events:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Checking what was published

fn assert_published(env: &TestEnv, id: &VideoId, published: &Published, want: &Expected<'_>) {
    let got: Vec<(&str, u32, u32)> = published
        .rungs
        .iter()
        .map(|r| (r.name.as_str(), r.width, r.height))
        .collect();
    assert_eq!(got, want.rungs, "rungs reported by the job");
    let video_dir = env.layout.video_dir(id);
    assert_master(&video_dir.join("master.m3u8"), want);
    let mut keys = HashSet::new();
    for &(rung, width, height) in want.rungs {
        let key = assert_rung(env, id, rung, (width, height), want.audio);
        assert!(keys.insert(key.0), "rung {rung} shares its key");
    }
    let served_keys: Vec<_> = e2e::files::files_under(&env.layout.hls_root())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert!(
        served_keys.is_empty(),
        "keys in the served tree: {served_keys:?}"
    );
    assert_thumbnails(&env.layout, id);
    assert_tmp_empty(&env.layout);
}

/// One `#EXT-X-STREAM-INF` per rung with every attribute a player needs.
fn assert_master(path: &Path, want: &Expected<'_>) {
    let text = std::fs::read_to_string(path).expect("master.m3u8 is published");
    assert!(text.starts_with("#EXTM3U\n"), "{text}");
    let mut variants = HashMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(list) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let uri = lines.next().expect("a URI follows #EXT-X-STREAM-INF");
            variants.insert(uri.to_owned(), attributes(list));
        }
    }
    assert_eq!(variants.len(), want.rungs.len(), "variants in\n{text}");
    for &(rung, width, height) in want.rungs {
        let attrs = variants
            .get(&format!("{rung}/index.m3u8"))
            .unwrap_or_else(|| panic!("rung {rung} missing from\n{text}"));
        let number = |name: &str| -> u64 {
            attrs
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{rung}: no numeric {name} in\n{text}"))
        };
        let (peak, average) = (number("BANDWIDTH"), number("AVERAGE-BANDWIDTH"));
        assert!(
            0 < average && average <= peak,
            "{rung}: BANDWIDTH {peak}, AVERAGE {average}"
        );
        assert_eq!(
            attrs.get("RESOLUTION"),
            Some(&format!("{width}x{height}")),
            "{rung}"
        );
        let codecs = attrs.get("CODECS").expect("CODECS present");
        let codecs = codecs.trim_matches('"');
        let list: Vec<&str> = codecs.split(',').collect();
        assert!(
            list[0].starts_with("avc1.") && list[0].len() == "avc1.640028".len(),
            "{rung}: video codec {codecs}"
        );
        let expected_len = if want.audio { 2 } else { 1 };
        assert_eq!(list.len(), expected_len, "{rung}: CODECS {codecs}");
        assert_eq!(
            list.contains(&"mp4a.40.2"),
            want.audio,
            "{rung}: CODECS {codecs}"
        );
        let fps: f64 = attrs
            .get("FRAME-RATE")
            .and_then(|v| v.parse().ok())
            .expect("FRAME-RATE present");
        assert!((fps - want.fps).abs() < 0.01, "{rung}: FRAME-RATE {fps}");
    }
}

/// `A=1,B="x,y"` into a map (quoted values keep their quotes; commas inside them are kept).
fn attributes(list: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in list.char_indices().chain([(list.len(), ',')]) {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if let Some((k, v)) = list[start..i].split_once('=') {
                    out.insert(k.to_owned(), v.to_owned());
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// The variant playlist, its key, and every segment: unreadable as stored, a keyframe-first
/// H.264 stream of the right size once decrypted with the rung key and its own IV (the media
/// sequence number), and garbage with any other IV. Returns the rung's key.
fn assert_rung(
    env: &TestEnv,
    id: &VideoId,
    rung: &str,
    size: (u32, u32),
    audio: bool,
) -> ContentKey {
    let path = env.layout.video_dir(id).join(rung).join("index.m3u8");
    let text = std::fs::read_to_string(&path).expect("variant playlist is published");
    let key_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#EXT-X-KEY"))
        .collect();
    assert_eq!(
        key_lines,
        [format!("#EXT-X-KEY:METHOD=AES-128,URI=\"key:{rung}\"")],
        "{rung}: exactly one key tag, without an IV attribute\n{text}"
    );
    let key_at = text.find("#EXT-X-KEY").expect("key tag present");
    let first_segment_at = text.find("#EXTINF").expect("segments present");
    assert!(key_at < first_segment_at, "{rung}: key after a segment");
    assert!(
        text.contains("#EXT-X-ENDLIST"),
        "{rung}: not a VOD playlist"
    );
    let sequence: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .map_or(0, |v| v.parse().expect("numeric media sequence"));
    let uris: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(!uris.is_empty(), "{rung}: no segments");

    let raw = std::fs::read(env.layout.key_file(id, rung)).expect("rung key exists");
    let key = ContentKey(raw.try_into().expect("keys are 16 bytes"));
    let scratch = env.scratch();
    let mut first_blocks = HashSet::new();
    for (i, uri) in uris.iter().enumerate() {
        let segment = path.with_file_name(uri);
        let what = format!("{rung}/{uri}");
        let cipher = std::fs::read(&segment).expect("segment exists");
        assert_eq!(cipher.len() % 16, 0, "{what}: not whole AES blocks");
        assert!(
            first_blocks.insert(cipher[..16].to_vec()),
            "{what}: same first cipher block as another segment"
        );
        // Ciphertext is noise: ffprobe occasionally "finds" a tiny raw h263 stream in it, so the
        // check is that the real picture is not there, and that the bytes are not MPEG-TS.
        let stored = support::probe_streams(&segment);
        assert!(
            stored
                .as_ref()
                .map_or(true, |s| s.video.as_ref().is_none_or(|v| v.codec != "h264")),
            "{what}: decodable without the key: {stored:?}"
        );
        assert!(
            !support::opens_with_valid_psi(&cipher),
            "{what}: ciphertext still parses as MPEG-TS"
        );

        let own_iv = sequence + i as u64;
        let plain = decrypt_segment(&key, own_iv, &cipher)
            .unwrap_or_else(|| panic!("{what}: does not decrypt with IV {own_iv}"));
        assert_eq!(plain.len() % support::TS_PACKET, 0, "{what}: not MPEG-TS");
        assert!(
            support::opens_with_valid_psi(&plain),
            "{what}: decrypted segment does not open with a PSI table"
        );
        // A neighbour's IV: CBC then garbles the first block, which holds that table.
        let other_iv = own_iv + 1;
        let wrong = decrypt_segment(&key, other_iv, &cipher);
        assert!(
            wrong.is_none_or(|w| !support::opens_with_valid_psi(&w)),
            "{what}: also decrypts with IV {other_iv}"
        );

        let plain_path = scratch.join(format!("{rung}-{uri}"));
        std::fs::write(&plain_path, &plain).expect("can write the decrypted segment");
        let streams = support::probe_streams(&plain_path)
            .unwrap_or_else(|e| panic!("{what}: decrypted segment unreadable: {e}"));
        let video = streams.video.expect("decrypted segment has video");
        assert_eq!(video.codec, "h264", "{what}");
        assert_eq!((video.width, video.height), size, "{what}: coded size");
        assert_eq!(
            streams.audio.as_deref(),
            audio.then_some("aac"),
            "{what}: audio"
        );
        let first = support::first_video_frame(&plain_path);
        assert_eq!(
            first,
            Some((true, "I".to_owned())),
            "{what}: first frame is not a keyframe"
        );
    }
    key
}

/// The poster is a JPEG no wider than configured; the storyboard track points at tiles inside
/// sheets that exist.
fn assert_thumbnails(layout: &Layout, id: &VideoId) {
    let dir = layout.thumbs_dir(id);
    let poster = std::fs::read(dir.join("poster.jpg")).expect("poster.jpg exists");
    assert!(
        poster.starts_with(&[0xff, 0xd8, 0xff]) && poster.ends_with(&[0xff, 0xd9]),
        "poster is not a JPEG"
    );
    let poster_video = support::probe_streams(&dir.join("poster.jpg"))
        .expect("poster readable")
        .video
        .expect("poster is an image");
    assert!(poster_video.width <= 640, "poster {poster_video:?}");

    let vtt = std::fs::read_to_string(dir.join("storyboard.vtt")).expect("storyboard.vtt exists");
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    let mut sheet_sizes = HashMap::new();
    let mut cues = 0;
    for target in vtt.lines().filter(|l| l.contains("#xywh=")) {
        cues += 1;
        let (sheet, xywh) = target.split_once("#xywh=").expect("fragment present");
        let numbered = sheet
            .strip_prefix("storyboard_")
            .and_then(|s| s.strip_suffix(".jpg"))
            .is_some_and(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()));
        assert!(numbered, "unexpected sheet name {sheet}");
        let (sheet_w, sheet_h) = *sheet_sizes.entry(sheet.to_owned()).or_insert_with(|| {
            let image = support::probe_streams(&dir.join(sheet))
                .unwrap_or_else(|e| panic!("sheet {sheet} unreadable: {e}"))
                .video
                .expect("sheet is an image");
            (image.width, image.height)
        });
        let v: Vec<u32> = xywh
            .split(',')
            .map(|n| n.parse().expect("numeric #xywh"))
            .collect();
        let [x, y, w, h] = v[..] else {
            panic!("bad fragment {target}");
        };
        assert!(
            w > 0 && h > 0 && x + w <= sheet_w && y + h <= sheet_h,
            "{target} outside its {sheet_w}x{sheet_h} sheet"
        );
    }
    assert!(cues > 0, "no storyboard cues:\n{vtt}");
}

fn assert_tmp_empty(layout: &Layout) {
    let left = e2e::files::entries(&layout.tmp_root());
    assert!(left.is_empty(), "left in tmp: {left:?}");
}
