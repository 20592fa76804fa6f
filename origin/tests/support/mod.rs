//! Helpers shared by the origin's integration tests, on top of the workspace's test kit
//! (`e2e`, in `tests/support`), which provides the clips, bounded process runs, process and
//! file listings (`e2e::process`, `e2e::files`), ports and waits.
//!
//! - [`clips`]: the kit's cached source videos; [`bad_inputs`]: files an uploader might send
//!   that are not usable videos.
//! - [`TestEnv`]: a throwaway data directory and a [`Pipeline`] configured like production,
//!   except for libx264 `ultrafast` (the machine running the tests may have 2 cores).
//! - [`Recorder`]: an [`Events`] sink that keeps everything the pipeline reports, and can fire
//!   a cancellation when the encode starts.
//! - ffprobe queries and MPEG-TS checks.
//!
//! Every external process runs under a time limit, so a wedged ffmpeg fails a test instead of
//! hanging it.

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use e2e::clips::catalog as clips;
use e2e::process::run_bounded;
use origin::transcode::encoder::EncoderSelector;
use origin::transcode::ladder::default_ladder;
use origin::transcode::pipeline::{
    Cancel, Events, Job, Pipeline, PipelineError, Published, Settings,
};
use origin::transcode::progress::Stage;
use shared::media::Layout;
use shared::shutdown::Trigger;

pub const FFMPEG: &str = "ffmpeg";
pub const FFPROBE: &str = "ffprobe";

/// Limit for one ffprobe.
const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// Limit for one pipeline job on these clips, generous for a loaded 2-core machine.
pub const JOB_LIMIT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Source clips

/// Unusable uploads, written into `dir`: (description, path).
pub fn bad_inputs(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    std::fs::create_dir_all(dir).expect("can create the bad-input directory");
    let text = dir.join("notes.mp4");
    std::fs::write(
        &text,
        "these are my holiday notes, not a video\n".repeat(50),
    )
    .expect("can write the text file");
    // Our clips are written without `+faststart`, so the index (moov) is at the end: cutting
    // the file is what an upload interrupted part way looks like.
    let whole = std::fs::read(&clips().h264_aac).expect("can read the H.264 clip");
    let truncated = dir.join("truncated.mp4");
    std::fs::write(&truncated, &whole[..whole.len() * 3 / 10])
        .expect("can write the truncated file");
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").expect("can write the empty file");
    vec![
        ("text file named .mp4", text),
        ("first 30% of an mp4", truncated),
        ("zero-byte file", empty),
        ("audio-only .m4a", clips().audio_only.clone()),
    ]
}

// ---------------------------------------------------------------------------------------------
// The pipeline under test

/// A data directory of its own and a pipeline writing into it; removed on drop.
pub struct TestEnv {
    pub layout: Layout,
    pub pipeline: Pipeline,
    dir: tempfile::TempDir,
}

impl TestEnv {
    /// A pipeline that publishes while it encodes (the default).
    pub fn new() -> Self {
        Self::with_publishing(true)
    }

    /// A pipeline that publishes the whole ladder at once when the encode is done.
    pub fn all_at_once() -> Self {
        Self::with_publishing(false)
    }

    fn with_publishing(publish_while_encoding: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("origin-pipeline-")
            .tempdir()
            .expect("can create a temporary directory");
        let layout = Layout::new(dir.path().join("data"));
        layout.ensure().expect("can create the data layout");
        let settings = Settings {
            ffmpeg: FFMPEG.into(),
            ffprobe: FFPROBE.into(),
            ladder: default_ladder(),
            segment_secs: 2,
            stall_timeout: Duration::from_secs(60),
            poster_width: 640,
            storyboard_tiles: 100,
            limits: Default::default(),
            publish_while_encoding,
            source_rung: origin::transcode::ladder::SourceRung::Auto { margin: 0.1 },
            audio_layout: Default::default(),
        };
        let encoders = EncoderSelector::new(false, 3, "ultrafast", "p4");
        let pipeline = Pipeline::new(settings, layout.clone(), encoders);
        Self {
            layout,
            pipeline,
            dir,
        }
    }

    /// The whole temporary directory: any process mentioning it belongs to this test.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A directory outside the data layout for the test's own files (decrypted segments).
    pub fn scratch(&self) -> PathBuf {
        let dir = self.dir.path().join("scratch");
        std::fs::create_dir_all(&dir).expect("can create the scratch directory");
        dir
    }

    /// Runs one job under [`JOB_LIMIT`].
    pub async fn run(
        &self,
        job: &Job<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<Published, PipelineError> {
        tokio::time::timeout(JOB_LIMIT, self.pipeline.run(job, events, cancel))
            .await
            .unwrap_or_else(|_| panic!("job on {} took over {JOB_LIMIT:?}", job.source))
    }
}

/// Something the pipeline reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Stage(Stage),
    Progress(f64),
    ThumbnailReady,
}

/// Records every event; optionally fires a cancellation at the first encode progress.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    cancel_on_encode: Mutex<Option<Trigger>>,
    cancelled_at: Mutex<Option<Instant>>,
}

impl Recorder {
    /// A recorder that sends `true` on `cancel` once ffmpeg reports encode progress.
    pub fn cancelling(cancel: Trigger) -> Self {
        Self {
            cancel_on_encode: Mutex::new(Some(cancel)),
            ..Self::default()
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("recorder lock").clone()
    }

    /// When the cancellation was fired, if it was.
    pub fn cancelled_at(&self) -> Option<Instant> {
        *self.cancelled_at.lock().expect("recorder lock")
    }

    fn push(&self, event: Event) {
        self.events.lock().expect("recorder lock").push(event);
    }

    fn in_encode(&self) -> bool {
        let events = self.events.lock().expect("recorder lock");
        let last_stage = events.iter().rev().find_map(|e| match e {
            Event::Stage(s) => Some(*s),
            _ => None,
        });
        last_stage == Some(Stage::Encode)
    }
}

impl Events for Recorder {
    fn stage(&self, stage: Stage) {
        self.push(Event::Stage(stage));
    }

    fn progress(&self, percent: f64) {
        self.push(Event::Progress(percent));
        if self.in_encode() {
            if let Some(tx) = self.cancel_on_encode.lock().expect("recorder lock").take() {
                *self.cancelled_at.lock().expect("recorder lock") = Some(Instant::now());
                tx.fire();
            }
        }
    }

    fn thumbnail_ready(&self) {
        self.push(Event::ThumbnailReady);
    }
}

// ---------------------------------------------------------------------------------------------
// ffprobe

/// The video stream of a file, as ffprobe sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoStream {
    pub codec: String,
    pub width: u32,
    pub height: u32,
}

/// The first video stream and first audio codec of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streams {
    pub video: Option<VideoStream>,
    pub audio: Option<String>,
}

/// ffprobe's `-show_streams`; `Err` with its message when ffprobe cannot read the file.
pub fn probe_streams(path: &Path) -> Result<Streams, String> {
    let json = ffprobe_json(path, &["-show_streams"])?;
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let of_type = |t: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == t)
            .map(|s| (s["codec_name"].as_str().unwrap_or("").to_owned(), s))
    };
    let dim = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    Ok(Streams {
        // A stream ffprobe could not size is not a decodable video.
        video: of_type("video").and_then(|(codec, s)| {
            Some(VideoStream {
                codec,
                width: dim(&s["width"]).filter(|w| *w > 0)?,
                height: dim(&s["height"]).filter(|h| *h > 0)?,
            })
        }),
        audio: of_type("audio").map(|(codec, _)| codec),
    })
}

/// `(key_frame, pict_type)` of the first decoded video frame, if any.
pub fn first_video_frame(path: &Path) -> Option<(bool, String)> {
    let json = ffprobe_json(
        path,
        &[
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame,pict_type",
        ],
    )
    .ok()?;
    let frame = json["frames"].as_array()?.first()?.clone();
    Some((
        frame["key_frame"].as_i64()? == 1,
        frame["pict_type"].as_str()?.to_owned(),
    ))
}

fn ffprobe_json(path: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = run_bounded(
        Command::new(FFPROBE)
            .args(["-v", "error", "-print_format", "json"])
            .args(args)
            .arg(path),
        PROCESS_LIMIT,
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe printed bad JSON: {e}"))
}

// ---------------------------------------------------------------------------------------------
// MPEG-TS

pub const TS_PACKET: usize = 188;

/// Whether `ts` opens with a PSI table (PAT, PMT or SDT, as ffmpeg starts every segment) whose
/// CRC-32 checks out. The section lies in the first cipher blocks, so this tells a segment
/// decrypted with the right IV from one decrypted with a wrong IV, which CBC garbles only in
/// the first 16 bytes (the sync byte may even survive).
pub fn opens_with_valid_psi(ts: &[u8]) -> bool {
    let Some(packet) = ts.get(..TS_PACKET) else {
        return false;
    };
    let payload_unit_start = packet[1] & 0x40 != 0;
    let payload_only = packet[3] & 0x30 == 0x10;
    if packet[0] != 0x47 || !payload_unit_start || !payload_only {
        return false;
    }
    let start = 5 + usize::from(packet[4]);
    let Some(header) = packet.get(start..start + 3) else {
        return false;
    };
    let len = (usize::from(header[1] & 0x0f) << 8) | usize::from(header[2]);
    // Over a whole section including its trailing CRC, CRC-32/MPEG-2 comes out as zero.
    len >= 4
        && packet
            .get(start..start + 3 + len)
            .is_some_and(|section| crc32_mpeg2(section) == 0)
}

fn crc32_mpeg2(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0xffff_ffff, |mut crc: u32, &b| {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
        crc
    })
}
