//! Helpers shared by the origin's integration tests.
//!
//! - [`clips`]: source videos made with ffmpeg's lavfi generators, once per test binary and
//!   cached under Cargo's target tmp dir (keyed by the exact ffmpeg arguments).
//! - [`bad_inputs`]: files an uploader might send that are not usable videos.
//! - [`TestEnv`]: a throwaway data directory and a [`Pipeline`] configured like production,
//!   except for libx264 `ultrafast` (the machine running the tests may have 2 cores).
//! - [`Recorder`]: an [`Events`] sink that keeps everything the pipeline reports, and can fire
//!   a cancellation when the encode starts.
//! - ffprobe queries, MPEG-TS checks, bounded process runs, filesystem and process listings.
//!
//! Every external process runs under a time limit, so a wedged ffmpeg fails a test instead of
//! hanging it.

// Each test binary that includes this module uses a different subset of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// Limit for one helper process (clip generation, ffprobe).
const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// Limit for one pipeline job on these clips, generous for a loaded 2-core machine.
pub const JOB_LIMIT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// Processes

/// Runs `cmd` to completion and returns its output; kills it and panics after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain both pipes on their own threads: a child blocked on a full pipe would never exit.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("can poll a child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader does not panic"),
        stderr: stderr.join().expect("stderr reader does not panic"),
    }
}

/// Processes (`pid: cmdline`) whose command line mentions `needle`, from `/proc`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            // A process may exit between listing and reading; that is not an error here.
            let raw = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline
                .contains(needle)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Source clips

/// The generated sources. All video is 25 fps.
pub struct Clips {
    /// 1920x1080, 4 s, H.264 + AAC.
    pub landscape: PathBuf,
    /// 720x1280, 3 s, H.264, no audio.
    pub portrait: PathBuf,
    /// 320x240, 3 s, MPEG-4 Part 2 (not H.264) + AAC: below the smallest rung.
    pub tiny: PathBuf,
    /// Coded 1280x720 with a 90° display matrix, 3 s, H.264 + AAC: a phone held upright,
    /// displayed 720x1280.
    pub rotated: PathBuf,
    /// 640x360, 4 s, H.264 + AAC with a keyframe every 2 s: copyable as is.
    pub h264_aac: PathBuf,
    /// The landscape clip looped to 20 s (a stream copy, so it costs nothing to make).
    pub long: PathBuf,
    /// A sine tone in an `.m4a`: valid media, but no video.
    pub audio_only: PathBuf,
}

/// The clips, generated on first use (and reused from earlier runs when still cached).
pub fn clips() -> &'static Clips {
    static CLIPS: OnceLock<Clips> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("origin-clips");
        std::fs::create_dir_all(&dir).expect("can create the clip cache directory");
        let x264 = owned([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ]);
        let aac = owned(["-c:a", "aac", "-shortest"]);
        let landscape = generate(
            &dir,
            "landscape.mp4",
            &[
                lavfi_video("1920x1080", 4),
                lavfi_sine(4),
                x264.clone(),
                aac.clone(),
            ]
            .concat(),
        );
        let rotated_coded = generate(
            &dir,
            "rotated-coded.mp4",
            &[
                lavfi_video("1280x720", 3),
                lavfi_sine(3),
                x264.clone(),
                aac.clone(),
            ]
            .concat(),
        );
        Clips {
            portrait: generate(
                &dir,
                "portrait.mp4",
                &[lavfi_video("720x1280", 3), x264.clone()].concat(),
            ),
            tiny: generate(
                &dir,
                "tiny.mp4",
                &[
                    lavfi_video("320x240", 3),
                    lavfi_sine(3),
                    owned(["-c:v", "mpeg4", "-q:v", "5"]),
                    aac.clone(),
                ]
                .concat(),
            ),
            // ffmpeg 5.1 ignores a `rotate` tag set while encoding; a stream-copy remux
            // turns it into the display matrix phones write.
            rotated: generate(
                &dir,
                "rotated.mp4",
                &[
                    input(&rotated_coded),
                    owned(["-c", "copy", "-metadata:s:v:0", "rotate=90"]),
                ]
                .concat(),
            ),
            h264_aac: generate(
                &dir,
                "h264-aac.mp4",
                &[
                    lavfi_video("640x360", 4),
                    lavfi_sine(4),
                    x264.clone(),
                    owned(["-g", "50"]),
                    aac.clone(),
                ]
                .concat(),
            ),
            long: generate(
                &dir,
                "long.mp4",
                &[
                    owned(["-stream_loop", "4"]),
                    input(&landscape),
                    owned(["-c", "copy"]),
                ]
                .concat(),
            ),
            audio_only: generate(
                &dir,
                "audio-only.m4a",
                &[lavfi_sine(2), owned(["-c:a", "aac"])].concat(),
            ),
            landscape,
        }
    })
}

fn owned<const N: usize>(args: [&str; N]) -> Vec<String> {
    args.map(str::to_owned).to_vec()
}

fn lavfi_video(size: &str, secs: u32) -> Vec<String> {
    let source = format!("testsrc2=size={size}:rate=25:duration={secs}");
    owned(["-f", "lavfi", "-i", &source])
}

fn lavfi_sine(secs: u32) -> Vec<String> {
    let source = format!("sine=frequency=440:sample_rate=48000:duration={secs}");
    owned(["-f", "lavfi", "-i", &source])
}

fn input(path: &Path) -> Vec<String> {
    vec!["-i".to_owned(), path.display().to_string()]
}

/// Runs ffmpeg with `args` into `dir/<stem>-<hash of args>.<ext>` unless that file exists.
/// The output is written under a temporary name and renamed, so an interrupted run never
/// leaves a half-written clip in the cache.
fn generate(dir: &Path, name: &str, args: &[String]) -> PathBuf {
    let (stem, ext) = name.rsplit_once('.').expect("clip names have an extension");
    let key = fnv1a(args.join("\0").as_bytes());
    let out = dir.join(format!("{stem}-{key:016x}.{ext}"));
    if out.is_file() {
        return out;
    }
    // ffmpeg picks the muxer from the last extension, so keep it last.
    let part = dir.join(format!(
        "{stem}-{key:016x}.part{}.{ext}",
        std::process::id()
    ));
    let result = run_bounded(
        Command::new(FFMPEG)
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(args)
            .arg(&part),
        PROCESS_LIMIT,
    );
    assert!(
        result.status.success(),
        "generating {name} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&part, &out).expect("can move a generated clip into place");
    out
}

/// FNV-1a: a stable hash for cache keys (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

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
    pub fn new() -> Self {
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
            publish_while_encoding: true,
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
            .unwrap_or_else(|_| panic!("job on {} took over {JOB_LIMIT:?}", job.source.display()))
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

// ---------------------------------------------------------------------------------------------
// Files

/// Every file under `dir`, recursively (empty when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The names directly inside `dir` (empty when `dir` does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
