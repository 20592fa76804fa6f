//! The ffmpeg command lines, built by pure functions so they can be golden-tested.
//!
//! One process per job decodes the source once and encodes every rung (`split` + `scale` in a
//! `filter_complex`, `var_stream_map`), with keyframes forced on segment boundaries so that all
//! rungs switch cleanly and every segment starts with a keyframe.
//!
//! Every read of the user's source goes through [`source_input`]'s allow-lists.

mod stills;

pub use stills::{poster_args, storyboard_args, tile_args, Storyboard};

use std::ffi::OsString;
use std::path::Path;

use super::input::{source_input, Source};
use super::ladder::Rung;
use super::probe::SourceInfo;
use super::tracks::audio_rendition;

/// The video encoder of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoder {
    /// libx264 on the CPU with this preset (`veryfast`, `medium`, ...).
    X264 { preset: String },
    /// NVIDIA NVENC with this preset (`p1`..`p7`). `full_gpu`: decode, split and scale on the
    /// GPU too; off for rotated sources, whose autorotation filters run on the CPU.
    Nvenc { preset: String, full_gpu: bool },
}

impl Encoder {
    /// Short name for logs and job records.
    pub fn name(&self) -> &'static str {
        match self {
            Encoder::X264 { .. } => "libx264",
            Encoder::Nvenc { .. } => "h264_nvenc",
        }
    }
}

/// Everything an encode needs besides the source path.
#[derive(Debug, Clone)]
pub struct EncodePlan<'a> {
    pub source: &'a SourceInfo,
    pub rungs: &'a [Rung],
    pub encoder: &'a Encoder,
    /// Target segment duration, seconds.
    pub segment_secs: u32,
    /// Storyboard sprites produced by the same decode, when wanted.
    pub storyboard: Option<Storyboard<'a>>,
    /// Resume after a crash: earlier segments exist already (muxed audio only).
    pub resume: Option<&'a Resume>,
    /// Every audio track of the source as its own rendition (`audio_N`), the video rungs
    /// without audio; otherwise the first audio track is muxed into every rung.
    pub separate_audio: bool,
}

/// Where a resumed encode starts, so that its output continues the reused segments exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    /// The first segment this run writes.
    pub segment: u32,
    /// Where that segment starts in the source (`segment * segment_secs`): the video is cut
    /// here, on a keyframe boundary of the earlier attempt.
    pub seconds: f64,
    /// Per rung, where the reused segments' audio ends in the source (seconds): the resumed
    /// audio is cut exactly there. The muxer puts every audio packet whose DTS comes before
    /// the DTS of a segment's first video packet in the previous segment, so the reused audio
    /// ends on the AAC frame grid near `seconds`: before it by up to the video encoder's
    /// reordering delay (74.7 ms at 4 s with x264 `veryfast`, 25 fps, 48 kHz) or after it by
    /// less than a frame (10.7 ms with `ultrafast`, which does not reorder). Measured from the
    /// reused segments ([`super::resume::ResumePoint::measure`]).
    pub audio_from: Vec<f64>,
}

/// Where every ladder encode starts its MPEG-TS clock, seconds (the same 1.4 s that ffmpeg's
/// mpegts muxer adds by default, which is turned off).
///
/// Left to itself, ffmpeg shifts a whole output later until no timestamp is negative: by the
/// AAC encoder's priming (1024 samples, 21.3 ms at 48 kHz) or by the B-frame reordering delay
/// (80 ms with x264 `veryfast` at 25 fps), whichever is larger. A resumed run starts at a
/// positive offset and is not shifted, so its part of the video landed that much early and its
/// audio overlapped the reused segments'. With this explicit origin no output is ever shifted:
/// every attempt writes source time plus `TS_ORIGIN`, and a resumed run writes exactly what an
/// uninterrupted one would have.
pub const TS_ORIGIN: f64 = 1.4;

/// Every run: no banner, no stdin, overwrite, errors only, and machine-readable progress on
/// stdout (which also proves liveness to the stall detector).
const QUIET_WITH_PROGRESS: [&str; 8] = [
    "-hide_banner",
    "-nostdin",
    "-y",
    "-loglevel",
    "error",
    "-nostats",
    "-progress",
    "pipe:1",
];

/// Name of the master playlist ffmpeg writes (replaced by ours after verification).
pub const MASTER: &str = "master.m3u8";
/// Variant playlist name inside each rung directory.
pub const VARIANT: &str = "index.m3u8";

/// Arguments for the one-pass ladder encode of `input` into `out_dir/<rung>/`.
pub fn ladder_args(plan: &EncodePlan<'_>, input: Source<'_>, out_dir: &Path) -> Vec<OsString> {
    let mut a = Args::default();
    a.push_all(QUIET_WITH_PROGRESS);
    let full_gpu = matches!(plan.encoder, Encoder::Nvenc { full_gpu: true, .. });
    if full_gpu {
        a.push_all(["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]);
    }
    let separate = plan.separate_audio && !plan.source.audio.is_empty();
    let audio = plan.source.audio_codec().is_some() && !separate;
    if let Some(resume) = plan.resume {
        // Input seeking: decoding starts at the keyframe before, output starts exactly here.
        a.push("-ss");
        a.push(format!("{:.3}", resume.seconds));
    }
    a.push_all(source_input(input));
    let resumed_audio = plan.resume.filter(|_| audio);
    if let Some(resume) = resumed_audio {
        // The audio comes from a second reading of the source, so that it can start before the
        // video's cut. It is seeked to a whole second before the earliest audio cut (the AAC
        // decoder's first frames after a seek are discarded that way), without ffmpeg's own
        // trim at the seek point, and `-itsoffset` puts it on the first input's clock; `atrim`
        // (per rung, below) then cuts it to the sample.
        let earliest = resume
            .audio_from
            .iter()
            .copied()
            .fold(resume.seconds, f64::min);
        let seek = (earliest.floor() - 1.0).max(0.0);
        a.push_all(["-noaccurate_seek", "-ss"]);
        a.push(format!("{seek:.3}"));
        a.push("-itsoffset");
        a.push(format!("{:.3}", seek - resume.seconds));
        a.push_all(source_input(input));
    }

    let n = plan.rungs.len();
    let scale = if full_gpu { "scale_cuda" } else { "scale" };
    let branches = n + usize::from(plan.storyboard.is_some());
    let mut graph = format!("[0:v]split={branches}");
    for i in 0..branches {
        graph.push_str(&format!("[s{i}]"));
    }
    if let Some(sb) = &plan.storyboard {
        let download = if full_gpu {
            "hwdownload,format=nv12,"
        } else {
            ""
        };
        graph.push_str(&format!(";[s{n}]{download}{}[sb]", sb.filter()));
    }
    for (i, r) in plan.rungs.iter().enumerate() {
        let pix = if full_gpu { "" } else { ",format=yuv420p" };
        graph.push_str(&format!(
            ";[s{i}]{scale}={}:{}{pix}[v{i}]",
            r.width, r.height
        ));
    }
    a.push("-filter_complex");
    a.push(graph);

    let audio_input = if resumed_audio.is_some() {
        "1:a:0"
    } else {
        "0:a:0"
    };
    for i in 0..n {
        a.push("-map");
        a.push(format!("[v{i}]"));
        if audio {
            a.push_all(["-map", audio_input]);
        }
    }
    if separate {
        for track in &plan.source.audio {
            a.push("-map");
            a.push(format!("0:a:{}", track.index));
        }
    }

    let seg = plan.segment_secs.max(1);
    let gop = ((plan.source.fps * f64::from(seg)).round() as u32).max(1);
    match plan.encoder {
        Encoder::X264 { preset } => {
            a.push_all(["-c:v", "libx264", "-preset"]);
            a.push(preset.as_str());
            a.push_all(["-profile:v", "high", "-sc_threshold", "0"]);
        }
        Encoder::Nvenc { preset, .. } => {
            a.push_all(["-c:v", "h264_nvenc", "-preset"]);
            a.push(preset.as_str());
            a.push_all([
                "-profile:v",
                "high",
                "-rc",
                "vbr",
                "-forced-idr",
                "1",
                "-no-scenecut",
                "1",
            ]);
        }
    }
    a.push_all(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()]);
    a.push("-force_key_frames");
    a.push(format!("expr:gte(t,n_forced*{seg})"));
    for (i, r) in plan.rungs.iter().enumerate() {
        a.push_all([
            format!("-b:v:{i}"),
            format!("{}k", r.video_kbps),
            format!("-maxrate:v:{i}"),
            format!("{}k", r.maxrate_kbps),
            format!("-bufsize:v:{i}"),
            format!("{}k", r.bufsize_kbps),
        ]);
    }
    if audio {
        a.push_all(["-c:a", "aac", "-ac", "2"]);
        for (i, r) in plan.rungs.iter().enumerate() {
            a.push_all([format!("-b:a:{i}"), format!("{}k", r.audio_kbps)]);
        }
    }
    if separate {
        // Encoded once per track, not once per rung, at the best rung's rate.
        let kbps = plan.rungs.iter().map(|r| r.audio_kbps).max().unwrap_or(128);
        a.push_all(["-c:a", "aac", "-ac", "2", "-b:a"]);
        a.push(format!("{kbps}k"));
    }
    if let Some(resume) = resumed_audio {
        // Each rung's audio starts where its reused audio ends (relative to the video's cut,
        // which is time 0 of this run). The AAC encoder's first packet is its priming: 1024
        // samples (21.3 ms at 48 kHz) of encoder delay, stamped one frame before the first
        // sample, so it would overlap the reused audio's last frame. It is dropped: the decoder
        // overlaps the first resumed frame with the reused segments' last packet instead, which
        // transforms the same source samples, and the resumed packets get exactly the
        // timestamps (and frame grid) of an uninterrupted encode.
        for i in 0..n {
            let from = resume.audio_from.get(i).copied().unwrap_or(resume.seconds);
            a.push(format!("-filter:a:{i}"));
            a.push(format!("atrim=start={:.6}", from - resume.seconds));
        }
        a.push_all(["-bsf:a", "noise=drop=not(n)"]);
    }
    let mut map: Vec<String> = plan
        .rungs
        .iter()
        .enumerate()
        .map(|(i, r)| match (audio, separate) {
            (true, _) => format!("v:{i},a:{i},name:{}", r.name),
            (false, true) => format!("v:{i},agroup:audio,name:{}", r.name),
            (false, false) => format!("v:{i},name:{}", r.name),
        })
        .collect();
    if separate {
        map.extend(
            (0..plan.source.audio.len())
                .map(|j| format!("a:{j},agroup:audio,name:{}", audio_rendition(j))),
        );
    }
    // Timestamps are source time plus `TS_ORIGIN` in every attempt (see there); the mpegts
    // muxer adds nothing.
    let start = plan.resume.map_or(0.0, |r| r.seconds);
    a.push("-output_ts_offset");
    a.push(format!("{:.3}", TS_ORIGIN + start));
    a.push("-hls_ts_options");
    if let Some(resume) = plan.resume {
        // Numbering continues too. This run's MPEG-TS continuity counters start again at 0,
        // which demuxers reading the segments in a row report as corrupt packets at the seam
        // unless the first packets say the discontinuity is intended.
        a.push("mpegts_copyts=1:mpegts_flags=+initial_discontinuity");
        a.push("-start_number");
        a.push(resume.segment.to_string());
    } else {
        a.push("mpegts_copyts=1");
    }
    hls_output(&mut a, seg, &out_dir.join("%v"));
    a.push_all(["-master_pl_name", MASTER, "-var_stream_map"]);
    a.push(map.join(" "));
    a.push(out_dir.join("%v").join(VARIANT));
    if let Some(sb) = &plan.storyboard {
        a.push_all(["-map", "[sb]", "-q:v", "5", "-fps_mode", "passthrough"]);
        a.push(sb.pattern);
    }
    a.0
}

/// Arguments for the copy fast path (seed 004): an H.264/AAC source remuxed, not re-encoded,
/// into a single rendition at `out_dir/<rung_name>/`, with its audio muxed in, or with every
/// audio track copied into its own rendition (`separate_audio`).
pub fn passthrough_args(
    source: &SourceInfo,
    segment_secs: u32,
    input: Source<'_>,
    out_dir: &Path,
    rung_name: &str,
    separate_audio: bool,
) -> Vec<OsString> {
    let mut a = Args::default();
    a.push_all(QUIET_WITH_PROGRESS);
    a.push_all(source_input(input));
    a.push_all(["-map", "0:v:0"]);
    if separate_audio {
        for track in &source.audio {
            a.push("-map");
            a.push(format!("0:a:{}", track.index));
        }
    } else if source.audio_codec().is_some() {
        a.push_all(["-map", "0:a:0"]);
    }
    a.push_all(["-c", "copy"]);
    if !separate_audio {
        let dir = out_dir.join(rung_name);
        hls_output(&mut a, segment_secs.max(1), &dir);
        a.push(dir.join(VARIANT));
        return a.0;
    }
    hls_output(&mut a, segment_secs.max(1), &out_dir.join("%v"));
    let mut map = vec![format!("v:0,agroup:audio,name:{rung_name}")];
    map.extend(
        (0..source.audio.len()).map(|j| format!("a:{j},agroup:audio,name:{}", audio_rendition(j))),
    );
    a.push_all(["-master_pl_name", MASTER, "-var_stream_map"]);
    a.push(map.join(" "));
    a.push(out_dir.join("%v").join(VARIANT));
    a.0
}

/// Whether a source can take the copy fast path: H.264 with AAC audio (every track). Rotated
/// sources cannot: MPEG-TS carries no display matrix, so the copy would play sideways.
pub fn can_passthrough(source: &SourceInfo) -> bool {
    source.video_codec == "h264"
        && source.rotation == 0
        && matches!(source.audio_codec(), None | Some("aac"))
        && source.audio.iter().all(|t| t.codec == "aac")
}

/// HLS muxer options; segments go to `segment_dir` (which may contain `%v`).
///
/// An EVENT playlist is rewritten after every segment (a VOD one only at the end), so it says
/// which segments are complete while the encode runs; `temp_file` renames each segment and
/// playlist into place only once written, so a file under its final name is always whole
/// (what publishing while encoding and crash-resume rely on). The origin writes the playlists
/// it publishes itself (`playlist::variant`).
fn hls_output(a: &mut Args, seg: u32, segment_dir: &Path) {
    a.push_all([
        "-f",
        "hls",
        "-hls_time",
        &seg.to_string(),
        "-hls_playlist_type",
        "event",
    ]);
    a.push_all([
        "-hls_flags",
        "independent_segments+temp_file",
        "-hls_segment_type",
        "mpegts",
    ]);
    a.push("-hls_segment_filename");
    a.push(segment_dir.join("segment_%03d.ts"));
}

/// A tiny real encode that succeeds only where NVENC can open a session.
pub fn nvenc_probe_args() -> Vec<OsString> {
    let mut a = Args::default();
    a.push_all([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=black:s=256x256:d=0.2",
        "-c:v",
        "h264_nvenc",
        "-f",
        "null",
        "-",
    ]);
    a.0
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push(&mut self, v: impl Into<OsString>) {
        self.0.push(v.into());
    }

    fn push_all<I: IntoIterator<Item = S>, S: Into<OsString>>(&mut self, items: I) {
        self.0.extend(items.into_iter().map(Into::into));
    }
}

#[cfg(test)]
mod tests;
