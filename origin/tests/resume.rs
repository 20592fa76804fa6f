//! Crash-resume with real ffmpeg: an attempt dies in the middle of its encode, leaving its work
//! directory behind (as a `kill -9` would); the next attempt reuses every segment the dead one
//! completed, encodes only the rest, and publishes a stream whose timestamps run on exactly as
//! an uninterrupted encode's would: video on the segment grid, audio with neither overlap nor
//! gap at the seam, and ffmpeg reading the segments in a row without a warning.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use e2e::process::run_bounded;
use origin::transcode::encoder::EncoderPreference;
use origin::transcode::encrypt::{decrypt_segment, ContentKey};
use origin::transcode::ffmpeg::TS_ORIGIN;
use origin::transcode::input::Source;
use origin::transcode::pipeline::{Events, Job, PipelineError, Profile};
use origin::transcode::playlist;
use origin::transcode::progress::Stage;
use shared::media::VideoId;
use support::TestEnv;

/// Copies the running attempt's work directory aside once the encode is half done (what a
/// killed worker leaves on the shared media store), then cancels the attempt.
struct CrashHalfway {
    tmp: PathBuf,
    video: VideoId,
    cancel: Mutex<Option<shared::shutdown::Trigger>>,
}

impl Events for CrashHalfway {
    fn stage(&self, _: Stage) {}
    fn progress(&self, percent: f64) {
        if percent < 50.0 {
            return;
        }
        let Some(tx) = self.cancel.lock().expect("lock").take() else {
            return;
        };
        let prefix = format!("{}-", self.video);
        let work = std::fs::read_dir(&self.tmp)
            .expect("tmp")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .expect("the attempt's work directory");
        let copied = Command::new("cp")
            .arg("-a")
            .arg(&work)
            .arg(self.tmp.join(format!("{}-crashed", self.video)))
            .status()
            .expect("cp runs");
        assert!(copied.success());
        tx.fire();
    }
    fn thumbnail_ready(&self) {}
}

#[derive(Default)]
struct Resumed(Mutex<Option<u32>>);

impl Events for Resumed {
    fn stage(&self, _: Stage) {}
    fn progress(&self, _: f64) {}
    fn thumbnail_ready(&self) {}
    fn resumed(&self, segments: u32) {
        *self.0.lock().expect("lock") = Some(segments);
    }
}

/// Limit for one ffprobe or ffmpeg reading a segment.
const PROBE_LIMIT: Duration = Duration::from_secs(60);

fn start_time(ts: &Path) -> f64 {
    let out = run_bounded(
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=start_time",
                "-of",
                "csv=p=0",
            ])
            .arg(ts),
        PROBE_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // One line per program the stream belongs to; they agree.
    let first = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .trim_end_matches(',');
    first
        .parse()
        .unwrap_or_else(|_| panic!("no start time for {}: {text:?}", ts.display()))
}

/// The audio packets of a segment: (pts, duration) in 90 kHz ticks.
fn audio_packets(ts: &Path) -> Vec<(i64, i64)> {
    let out = run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "a:0"])
            .args(["-show_entries", "packet=pts,duration", "-of", "csv=p=0"])
            .arg(ts),
        PROBE_LIMIT,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let packets: Vec<(i64, i64)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect();
    assert!(
        !packets.is_empty(),
        "no audio in {}: {text:?}",
        ts.display()
    );
    packets
}

/// What ffmpeg says, at warning level, decoding `ts` to the end.
fn decode_warnings(ts: &Path) -> String {
    let out = run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "warning", "-i"])
            .arg(ts)
            .args(["-map", "0", "-f", "null", "-"]),
        PROBE_LIMIT,
    );
    assert!(
        out.status.success(),
        "ffmpeg cannot decode {}",
        ts.display()
    );
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_attempt_reuses_the_segments_a_crashed_one_completed() {
    let env = TestEnv::new();
    let video = VideoId::random();
    let source = support::clips().long.clone();
    let job = Job {
        video: &video,
        source: Source::File(&source),
        profile: Profile::Ladder,
        encoder: EncoderPreference::Cpu,
    };

    let (tx, mut cancel) = shared::shutdown::channel();
    let crash = CrashHalfway {
        tmp: env.layout.tmp_root(),
        video: video.clone(),
        cancel: Mutex::new(Some(tx)),
    };
    let first = tokio::time::timeout(
        Duration::from_secs(180),
        env.pipeline.run(&job, &crash, &mut cancel),
    )
    .await;
    assert!(
        matches!(first, Ok(Err(PipelineError::Cancelled))),
        "the first attempt died: {first:?}"
    );
    assert!(env
        .layout
        .tmp_root()
        .join(format!("{video}-crashed"))
        .is_dir());
    // What the dead attempt had published while it encoded (a growing publish): each rung's
    // segments and their bytes.
    let published_before: Vec<(String, Vec<Vec<u8>>)> =
        std::fs::read_dir(env.layout.video_dir(&video))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| {
                        let dir = e.path();
                        let text =
                            std::fs::read_to_string(dir.join("index.m3u8")).unwrap_or_default();
                        let bytes = playlist::segments(&text)
                            .iter()
                            .map(|s| std::fs::read(dir.join(&s.uri)).expect("a listed segment"))
                            .collect();
                        (e.file_name().to_string_lossy().into_owned(), bytes)
                    })
                    .collect()
            })
            .unwrap_or_default();

    let resumed = Resumed::default();
    let (_tx, mut cancel) = shared::shutdown::channel();
    let published = tokio::time::timeout(
        Duration::from_secs(180),
        env.pipeline.run(&job, &resumed, &mut cancel),
    )
    .await
    .expect("in time")
    .expect("the second attempt publishes");
    let reused = resumed
        .0
        .lock()
        .expect("lock")
        .expect("the second attempt resumed");
    assert!(reused >= 2, "reused {reused} segments");
    // The growing playlists went on from where the dead attempt left them: what it published,
    // up to what this attempt reused, is still there, byte for byte.
    let mut compared = 0;
    for (rung, segments) in &published_before {
        eprintln!(
            "resume: {rung}: {} segments published before the crash, {reused} reused",
            segments.len()
        );
        for (i, before) in segments.iter().enumerate().take(reused as usize) {
            let now = std::fs::read(
                env.layout
                    .video_dir(&video)
                    .join(rung)
                    .join(format!("segment_{i:03}.ts")),
            )
            .expect("still published");
            assert!(&now == before, "{rung} segment {i} was published again");
            compared += 1;
        }
    }
    assert!(
        compared > 0,
        "nothing was published before the crash to compare: {:?}",
        published_before
            .iter()
            .map(|(rung, s)| (rung, s.len()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read_dir(env.layout.tmp_root())
            .expect("tmp")
            .count(),
        0,
        "old attempts cleaned up"
    );

    // Every segment of every rung decrypts, and timestamps continue across the seam.
    for rung in &published.rungs {
        let dir = env.layout.video_dir(&video).join(&rung.name);
        let text = std::fs::read_to_string(dir.join("index.m3u8")).expect("playlist");
        let segments = playlist::segments(&text);
        assert_eq!(segments.len(), rung.segments);
        assert!(
            segments.len() > reused as usize,
            "{}: {} segments",
            rung.name,
            segments.len()
        );
        let raw = std::fs::read(env.layout.key_file(&video, &rung.name)).expect("key");
        let key = ContentKey(raw.try_into().expect("16 bytes"));
        let scratch = env.scratch();
        let mut previous: Option<(i64, i64)> = None;
        let mut whole = Vec::new();
        for (i, seg) in segments.iter().enumerate() {
            let cipher = std::fs::read(dir.join(&seg.uri)).expect("segment");
            let plain = decrypt_segment(&key, i as u64, &cipher).expect("decrypts with its own IV");
            let path = scratch.join(format!("{}-{i}.ts", rung.name));
            std::fs::write(&path, &plain).expect("write");
            whole.extend_from_slice(&plain);
            // Audio runs on from the previous segment's: no overlap (which players and ffmpeg
            // report as non-monotonic timestamps), no gap of an AAC frame or more.
            let audio = audio_packets(&path);
            let first = audio.iter().map(|p| p.0).min().expect("audio");
            let last = *audio.iter().max().expect("audio");
            if let Some((pts, duration)) = previous {
                let gap = first - (pts + duration);
                assert!(
                    (0..duration).contains(&gap),
                    "{} segment {i} (reused {reused}): audio starts {:+.1} ms after the previous \
                     segment's ends (tick {first} after {pts} + {duration})",
                    rung.name,
                    gap as f64 / 90.0
                );
            }
            // Every attempt puts source time plus TS_ORIGIN on its segments: the resumed ones
            // land on the grid of the reused ones, not a frame or an audio priming earlier.
            let t = start_time(&path);
            let expected = TS_ORIGIN + 2.0 * i as f64;
            if i == reused as usize {
                let (pts, duration) = previous.expect("a reused segment");
                eprintln!(
                    "resume: {} seam at segment {i}: video {:+.3} ms off the grid, audio gap \
                     {:+.3} ms",
                    rung.name,
                    (t - expected) * 1000.0,
                    (first - pts - duration) as f64 / 90.0
                );
            }
            assert!(
                (t - expected).abs() < 0.001,
                "{} segment {i} (reused {reused}) starts at {t}, expected {expected}",
                rung.name
            );
            previous = Some(last);
        }
        // Read in a row, as a player does: the seam needs no excuse from the demuxer (the
        // continuity counters start again there) nor from the decoder.
        let path = scratch.join(format!("{}-all.ts", rung.name));
        std::fs::write(&path, &whole).expect("write");
        let warnings = decode_warnings(&path);
        assert!(
            warnings.is_empty(),
            "{} (reused {reused}) decodes with warnings:\n{warnings}",
            rung.name
        );
    }
}
