//! Every track and every pixel of the source reaches the viewer, with real ffmpeg: several
//! audio tracks become audio renditions (encoded once each, encrypted, on the video's segment
//! grid), text subtitles become segmented WebVTT renditions whose clock lines up with the
//! video's, a source between two rungs gets a rung at its own size, and the copy path keeps
//! every AAC track.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::clips::{multitrack_clip, Tracks};
use e2e::process::run_bounded;
use origin::transcode::encoder::EncoderPreference;
use origin::transcode::encrypt::{decrypt_segment, ContentKey};
use origin::transcode::input::Source;
use origin::transcode::pipeline::{Job, Profile, Published};
use origin::transcode::playlist;
use shared::media::VideoId;
use support::TestEnv;

const SECS: u32 = 6;

async fn transcode(env: &TestEnv, source: &Path, profile: Profile) -> (VideoId, Published) {
    let video = VideoId::random();
    let (_keep, mut cancel) = shared::shutdown::channel();
    let job = Job {
        video: &video,
        source: Source::File(source),
        profile,
        encoder: EncoderPreference::Cpu,
    };
    let published = env
        .run(&job, &support::Recorder::default(), &mut cancel)
        .await
        .expect("published");
    (video, published)
}

/// Decrypts every segment of `rendition` into one MPEG-TS file in the scratch directory.
fn decrypted(env: &TestEnv, video: &VideoId, rendition: &str) -> std::path::PathBuf {
    let dir = env.layout.video_dir(video).join(rendition);
    let text = std::fs::read_to_string(dir.join("index.m3u8")).expect("playlist");
    let raw = std::fs::read(env.layout.key_file(video, rendition)).expect("key");
    let key = ContentKey(raw.try_into().expect("16 bytes"));
    let mut whole = Vec::new();
    for (i, seg) in playlist::segments(&text).iter().enumerate() {
        let cipher = std::fs::read(dir.join(&seg.uri)).expect("segment");
        whole.extend(decrypt_segment(&key, i as u64, &cipher).expect("decrypts"));
    }
    let path = env.scratch().join(format!("{video}-{rendition}.ts"));
    std::fs::write(&path, whole).expect("write");
    path
}

/// `codec_type` of every stream, and the audio duration decoded from `ts`, in seconds.
fn streams_and_audio_seconds(ts: &Path) -> (Vec<String>, f64) {
    let probe = run_bounded(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_type",
                "-of",
                "csv=p=0",
            ])
            .arg(ts),
        Duration::from_secs(60),
    );
    // ffprobe lists a stream once per program it is in and once on its own: the kinds, once.
    let mut kinds: Vec<String> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    kinds.dedup();
    if !kinds.iter().any(|k| k == "audio") {
        return (kinds, 0.0);
    }
    let url = ts.to_str().expect("a UTF-8 path");
    let scratch = ts.parent().expect("the segment's directory");
    (
        kinds,
        e2e::origin::ffmpeg_audio_seconds(url, "0:a:0", scratch),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audio_and_subtitle_track_becomes_a_rendition() {
    let env = TestEnv::new();
    let source = env.scratch().join("three-languages.mkv");
    multitrack_clip(
        &source,
        SECS,
        &Tracks {
            audio: &[("eng", None), ("fra", Some("Fran\u{e7}ais")), ("deu", None)],
            subtitles: &[
                (
                    "eng",
                    &[(1.0, 2.5, "Hello there"), (4.0, 5.0, "Second line")],
                ),
                ("spa", &[(0.5, 2.0, "Hola")]),
            ],
        },
    );
    let (video, published) = transcode(&env, &source, Profile::Ladder).await;
    let languages: Vec<(Option<&str>, &str, &str)> = published
        .audio
        .iter()
        .map(|a| (a.id.as_deref(), a.language.as_str(), a.name.as_str()))
        .collect();
    assert_eq!(
        languages,
        [
            (Some("audio_0"), "eng", "English"),
            (Some("audio_1"), "fra", "Fran\u{e7}ais"),
            (Some("audio_2"), "deu", "German"),
        ]
    );
    let subs: Vec<(&str, &str)> = published
        .subtitles
        .iter()
        .map(|s| (s.id.as_str(), s.language.as_str()))
        .collect();
    assert_eq!(subs, [("subs_0", "eng"), ("subs_1", "spa")]);

    let dir = env.layout.video_dir(&video);
    let master = std::fs::read_to_string(dir.join("master.m3u8")).expect("master");
    assert_eq!(
        master.matches("#EXT-X-MEDIA:TYPE=AUDIO").count(),
        3,
        "{master}"
    );
    assert!(
        master.contains("NAME=\"English\",LANGUAGE=\"eng\",DEFAULT=YES"),
        "{master}"
    );
    assert!(master.contains("LANGUAGE=\"fra\",DEFAULT=NO"), "{master}");
    assert_eq!(
        master.matches("#EXT-X-MEDIA:TYPE=SUBTITLES").count(),
        2,
        "{master}"
    );
    for line in master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
    {
        assert!(
            line.contains("AUDIO=\"audio\",SUBTITLES=\"subs\""),
            "{line}"
        );
        assert!(line.contains(",mp4a.40.2\""), "{line}");
    }

    // The video rungs carry video only; each audio rendition its whole track, once.
    for rung in &published.rungs {
        let (kinds, _) = streams_and_audio_seconds(&decrypted(&env, &video, &rung.name));
        assert_eq!(kinds, ["video"], "{}", rung.name);
    }
    for n in 0..3 {
        let rendition = format!("audio_{n}");
        let (kinds, seconds) = streams_and_audio_seconds(&decrypted(&env, &video, &rendition));
        assert_eq!(kinds, ["audio"], "{rendition}");
        assert!(
            (seconds - f64::from(SECS)).abs() < 0.1,
            "{rendition}: {seconds} s of audio"
        );
        let text = std::fs::read_to_string(dir.join(&rendition).join("index.m3u8")).expect("pl");
        assert!(
            text.contains(&format!("URI=\"key:{rendition}\"")),
            "encrypted: {text}"
        );
    }

    // Subtitles: WebVTT segments on the video's grid, their clock mapped onto the video's.
    let text = std::fs::read_to_string(dir.join("subs_0/index.m3u8")).expect("subtitle playlist");
    let segments = playlist::segments(&text);
    assert_eq!(segments.len(), published.rungs[0].segments, "{text}");
    assert!(!text.contains("EXT-X-KEY"));
    let first = std::fs::read_to_string(dir.join("subs_0").join(&segments[0].uri)).expect("vtt");
    assert!(first.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n"));
    assert!(first.contains("Hello there"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_between_two_rungs_keeps_its_own_size() {
    let env = TestEnv::new();
    let source = env.scratch().join("almost-480p.mp4");
    e2e::clips::generate_clip(&source, 2, 852, 478);
    let (video, published) = transcode(&env, &source, Profile::Ladder).await;
    let top = &published.rungs[0];
    assert_eq!(
        (top.name.as_str(), top.width, top.height),
        ("478p", 852, 478)
    );
    assert!(env
        .layout
        .video_dir(&video)
        .join("478p/index.m3u8")
        .is_file());
    assert_eq!(published.rungs[1].name, "360p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_path_keeps_every_aac_track() {
    let env = TestEnv::new();
    let source = env.scratch().join("two-languages.mkv");
    multitrack_clip(
        &source,
        SECS,
        &Tracks {
            audio: &[("eng", None), ("ita", None)],
            subtitles: &[],
        },
    );
    let (video, published) = transcode(&env, &source, Profile::Passthrough).await;
    assert_eq!(published.encoder, "copy");
    assert_eq!(published.audio.len(), 2, "{:?}", published.audio);
    for n in 0..2 {
        let (kinds, seconds) =
            streams_and_audio_seconds(&decrypted(&env, &video, &format!("audio_{n}")));
        assert_eq!(kinds, ["audio"]);
        assert!((seconds - f64::from(SECS)).abs() < 0.1, "{seconds}");
    }
    let (kinds, _) = streams_and_audio_seconds(&decrypted(&env, &video, "source"));
    assert_eq!(kinds, ["video"]);
}
