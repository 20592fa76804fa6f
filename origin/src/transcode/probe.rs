//! Probe a source with `ffprobe -print_format json`: what the ladder and the encoder need.
//!
//! Sources are opened only through the container and protocol allow-lists of [`input`]; what
//! ffprobe says about a refused file is turned into a short reason, never passed on raw.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::input::{self, Source};
use super::tracks::{self, AudioTrack, SubtitleTrack};

/// What the pipeline knows about a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// Seconds.
    pub duration: f64,
    /// Coded size of the video stream.
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation to apply for display, in degrees (0, 90, 180, 270).
    pub rotation: u32,
    /// Frames per second (average).
    pub fps: f64,
    pub video_codec: String,
    /// Container format names as ffprobe lists them (e.g. `mov,mp4,m4a,3gp,3g2,mj2`).
    pub format: String,
    /// Streams in the container, of every kind.
    pub streams: usize,
    /// Every audio track, in order.
    pub audio: Vec<AudioTrack>,
    /// Every subtitle track, in order.
    pub subtitles: Vec<SubtitleTrack>,
}

impl SourceInfo {
    /// The first audio track's codec; `None` when the source has no audio.
    pub fn audio_codec(&self) -> Option<&str> {
        self.audio.first().map(|a| a.codec.as_str())
    }

    /// Size as displayed (rotation applied): what players show and the ladder compares.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Why a file is not a usable video. The message is shown to the uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the file is empty")]
    Empty,
    /// The reason is one of ours (see [`reason`]), never ffprobe's own text.
    #[error("not a readable media file: {0}")]
    Unreadable(String),
    /// A container outside [`input::CONTAINERS`]; carries the demuxer ffprobe detected.
    #[error("the container format {0:?} is not accepted; upload {containers}", containers = input::CONTAINERS_FOR_HUMANS)]
    Format(String),
    /// Larger than a configured limit; the message names the limit.
    #[error("{0}")]
    Limit(String),
    #[error("the file has no video stream (audio-only or data)")]
    NoVideo,
    #[error("the video has no usable duration (truncated or still being written?)")]
    NoDuration,
    #[error("the video stream has no size")]
    NoSize,
    #[error("could not run ffprobe: {0}")]
    Spawn(String),
}

/// A hostile file must not keep a probe (and the upload waiting on it) busy for long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most ffprobe may print about a file. Its JSON holds every tag of every stream, and a
/// container's tags can be as long as the file: a few streams' worth is some kilobytes.
const MAX_PROBE_OUTPUT: usize = 1 << 20;

/// Runs ffprobe on `source`, through the allow-lists.
pub async fn probe(ffprobe: &Path, source: Source<'_>) -> Result<SourceInfo, ProbeError> {
    // A presigned bucket URL was probed as a file when it was uploaded.
    if let Source::File(path) = source {
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|_| ProbeError::Unreadable("the file cannot be read".into()))?
            .len();
        if len == 0 {
            return Err(ProbeError::Empty);
        }
    }
    let json = ffprobe_json(
        ffprobe,
        &["-show_format", "-show_streams"],
        Opened::Source(source),
    )
    .await?;
    parse(&json)
}

/// How ffprobe opens its input.
#[derive(Clone, Copy)]
enum Opened<'a> {
    /// User media: only through [`input::source_input`]'s allow-lists.
    Source(Source<'a>),
    /// A file the pipeline wrote itself (segments, storyboard sheets).
    Own(&'a Path),
}

/// Runs `ffprobe -v error -of json <args> <input>` and returns its JSON; a failure becomes one
/// of [`ProbeError`]'s own reasons (ffprobe's text names server paths and internals).
async fn ffprobe_json(
    ffprobe: &Path,
    args: &[&str],
    opened: Opened<'_>,
) -> Result<Vec<u8>, ProbeError> {
    let mut command = tokio::process::Command::new(ffprobe);
    command.args(["-v", "error", "-of", "json"]).args(args);
    match opened {
        Opened::Source(source) => command.args(input::source_input(source)),
        Opened::Own(path) => command.arg(path),
    };
    let run = super::child::output_within(&mut command, MAX_PROBE_OUTPUT);
    let out = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(ProbeError::Unreadable(format!(
                "its metadata is larger than {} MiB",
                MAX_PROBE_OUTPUT >> 20
            )))
        }
        Ok(out) => out.map_err(|e| ProbeError::Spawn(e.to_string()))?,
        Err(_) => {
            return Err(ProbeError::Unreadable(format!(
                "probing took longer than {} s",
                PROBE_TIMEOUT.as_secs()
            )))
        }
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if let Some(container) = input::refused_container(&err) {
            return Err(ProbeError::Format(container));
        }
        tracing::debug!(
            stderr = %super::input::redact_queries(err.trim()),
            "ffprobe refused a file"
        );
        return Err(ProbeError::Unreadable(reason(&err).to_owned()));
    }
    Ok(out.stdout)
}

/// What an uploader is told about a file ffprobe could not read: a fixed phrase per known
/// failure, never ffprobe's text (which carries server paths).
pub fn reason(stderr: &str) -> &'static str {
    let known = [
        (
            "moov atom not found",
            "the file is incomplete (its MP4 index is missing)",
        ),
        (
            "Invalid data found",
            "the data is not a recognised media format",
        ),
        ("End of file", "the file ends too early"),
        ("Permission denied", "the file cannot be read"),
        ("No such file", "the file cannot be read"),
    ];
    known
        .iter()
        .find(|(needle, _)| stderr.contains(needle))
        .map_or("the file could not be parsed", |(_, reason)| reason)
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    format: Option<Format>,
}

#[derive(Deserialize)]
struct Format {
    duration: Option<String>,
    #[serde(default)]
    format_name: String,
}

#[derive(Deserialize)]
struct Stream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    tags: std::collections::HashMap<String, String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
    #[serde(default)]
    disposition: std::collections::HashMap<String, i64>,
}

#[derive(Deserialize)]
struct SideData {
    side_data_type: Option<String>,
    rotation: Option<f64>,
}

/// Parses ffprobe's JSON.
pub fn parse(json: &[u8]) -> Result<SourceInfo, ProbeError> {
    let out: Output =
        serde_json::from_slice(json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    let video = out
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                // Cover art in audio files is a "video" stream with attached_pic set.
                && s.disposition.get("attached_pic").copied().unwrap_or(0) == 0
        })
        .ok_or(ProbeError::NoVideo)?;
    let of_kind = |kind: &'static str| {
        out.streams
            .iter()
            .filter(move |s| s.codec_type.as_deref() == Some(kind))
    };
    let audio_tracks: Vec<AudioTrack> = of_kind("audio")
        .enumerate()
        .map(|(index, s)| {
            let language = tracks::language(s.tags.get("language").map(String::as_str));
            AudioTrack {
                index,
                codec: s.codec_name.clone().unwrap_or_default(),
                name: tracks::display_name(
                    s.tags.get("title").map(String::as_str),
                    &language,
                    format!("Audio {}", index + 1),
                ),
                language,
            }
        })
        .collect();
    let subtitles: Vec<SubtitleTrack> = of_kind("subtitle")
        .enumerate()
        .map(|(index, s)| {
            let language = tracks::language(s.tags.get("language").map(String::as_str));
            SubtitleTrack {
                index,
                codec: s.codec_name.clone().unwrap_or_default(),
                name: tracks::display_name(
                    s.tags.get("title").map(String::as_str),
                    &language,
                    format!("Subtitles {}", index + 1),
                ),
                language,
            }
        })
        .collect();
    let (width, height) = match (video.width, video.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => return Err(ProbeError::NoSize),
    };
    let format = out.format.as_ref();
    let duration = format
        .and_then(|f| f.duration.as_deref())
        .or(video.duration.as_deref())
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0)
        .ok_or(ProbeError::NoDuration)?;
    let fps = [&video.avg_frame_rate, &video.r_frame_rate]
        .into_iter()
        .filter_map(|r| r.as_deref().and_then(parse_rate))
        .next()
        .unwrap_or(30.0);
    Ok(SourceInfo {
        duration,
        width,
        height,
        rotation: rotation(video),
        fps,
        video_codec: video.codec_name.clone().unwrap_or_default(),
        format: format.map(|f| f.format_name.clone()).unwrap_or_default(),
        streams: out.streams.len(),
        audio: audio_tracks,
        subtitles,
    })
}

/// Clockwise display rotation from the display matrix (counter-clockwise degrees in ffprobe)
/// or the legacy `rotate` tag (clockwise).
fn rotation(s: &Stream) -> u32 {
    let from_matrix = s
        .side_data_list
        .iter()
        .find(|d| d.side_data_type.as_deref() == Some("Display Matrix"))
        .and_then(|d| d.rotation)
        .map(|ccw| -ccw);
    let from_tag = s.tags.get("rotate").and_then(|r| r.parse::<f64>().ok());
    let deg = from_matrix.or(from_tag).unwrap_or(0.0).round() as i64;
    (deg.rem_euclid(360) as u32 / 90) * 90
}

fn parse_rate(r: &str) -> Option<f64> {
    let (n, d) = r.split_once('/').unwrap_or((r, "1"));
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d > 0.0 && n > 0.0).then(|| n / d)
}

/// RFC 6381 `CODECS` of an encoded segment, from ffprobe (e.g. `avc1.64001f,mp4a.40.2`).
pub async fn codecs(ffprobe: &Path, segment: &Path) -> Result<String, ProbeError> {
    codecs_from_json(&ffprobe_json(ffprobe, &["-show_streams"], Opened::Own(segment)).await?)
}

#[derive(Deserialize)]
struct CodecStreams {
    #[serde(default)]
    streams: Vec<CodecStream>,
}

#[derive(Deserialize)]
struct CodecStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    profile: Option<String>,
    level: Option<i64>,
}

fn codecs_from_json(json: &[u8]) -> Result<String, ProbeError> {
    let s: CodecStreams =
        serde_json::from_slice(json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    let mut parts = Vec::new();
    for st in &s.streams {
        match (st.codec_type.as_deref(), st.codec_name.as_deref()) {
            (Some("video"), Some("h264")) => {
                let level = u32::try_from(st.level.unwrap_or(40)).unwrap_or(40);
                parts.push(super::playlist::avc1_codec(
                    st.profile.as_deref().unwrap_or("High"),
                    level,
                ));
            }
            (Some("audio"), Some("aac")) => parts.push(match st.profile.as_deref() {
                Some("HE-AAC") => "mp4a.40.5".to_owned(),
                _ => "mp4a.40.2".to_owned(),
            }),
            (Some("audio"), Some("mp3")) => parts.push("mp4a.40.34".to_owned()),
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(ProbeError::NoVideo);
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod codec_tests {
    use super::codecs_from_json;

    #[test]
    fn codecs_string() {
        let json =
            br#"{"streams":[{"codec_type":"video","codec_name":"h264","profile":"High","level":31},
            {"codec_type":"audio","codec_name":"aac","profile":"LC"}]}"#;
        assert_eq!(
            codecs_from_json(json).as_deref(),
            Ok("avc1.64001f,mp4a.40.2")
        );
    }
}

/// Width and height of an image (storyboard sheets).
pub async fn image_size(ffprobe: &Path, image: &Path) -> Result<(u32, u32), ProbeError> {
    let json = ffprobe_json(ffprobe, &["-show_streams"], Opened::Own(image)).await?;
    let parsed: Output =
        serde_json::from_slice(&json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    parsed
        .streams
        .iter()
        .find_map(|s| Some((s.width?, s.height?)))
        .ok_or(ProbeError::NoSize)
}

/// Where the audio of an MPEG-TS segment ends (the end of its last audio packet), in seconds
/// of the segment's clock and on its sample grid; `None` when the segment has no audio.
pub async fn audio_end(ffprobe: &Path, segment: &Path) -> Result<Option<f64>, ProbeError> {
    let entries = "packet=pts,duration:stream=sample_rate,time_base";
    let args = ["-select_streams", "a:0", "-show_entries", entries];
    audio_end_from_json(&ffprobe_json(ffprobe, &args, Opened::Own(segment)).await?)
}

#[derive(Deserialize)]
struct AudioPackets {
    #[serde(default)]
    packets: Vec<AudioPacket>,
    #[serde(default)]
    streams: Vec<AudioStream>,
}

#[derive(Deserialize)]
struct AudioPacket {
    pts: Option<i64>,
    duration: Option<i64>,
}

#[derive(Deserialize)]
struct AudioStream {
    sample_rate: Option<String>,
    time_base: Option<String>,
}

fn audio_end_from_json(json: &[u8]) -> Result<Option<f64>, ProbeError> {
    let parsed: AudioPackets =
        serde_json::from_slice(json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    let Some(stream) = parsed.streams.first() else {
        return Ok(None);
    };
    let unreadable = |what: &str| ProbeError::Unreadable(format!("audio stream without {what}"));
    let rate: f64 = stream
        .sample_rate
        .as_deref()
        .and_then(|r| r.parse().ok())
        .filter(|r: &f64| *r > 0.0)
        .ok_or_else(|| unreadable("a sample rate"))?;
    let tick = stream
        .time_base
        .as_deref()
        .and_then(parse_rate)
        .ok_or_else(|| unreadable("a time base"))?;
    // An AAC frame is 1024 samples; ffprobe's duration says the same in clock ticks.
    let end = parsed
        .packets
        .iter()
        .filter_map(|p| {
            let pts = p.pts? as f64 * tick;
            Some(pts + p.duration.map_or(1024.0 / rate, |d| d as f64 * tick))
        })
        .fold(None, |max: Option<f64>, end| {
            Some(max.map_or(end, |m| m.max(end)))
        });
    // 90 kHz ticks do not fall on samples (44.1 kHz): back to the sample the encoder cut at.
    Ok(end.map(|e| (e * rate).round() / rate))
}

#[cfg(test)]
mod audio_end_tests {
    use super::audio_end_from_json;

    #[test]
    fn end_of_the_last_audio_packet_on_the_sample_grid() {
        let json = br#"{"packets":[{"pts":483120,"duration":1920},{"pts":485040,"duration":1920}],
            "streams":[{"sample_rate":"48000","time_base":"1/90000"}]}"#;
        let end = audio_end_from_json(json).expect("parses").expect("audio");
        assert!((end - 486960.0 / 90000.0).abs() < 1e-9, "{end}");
        // 44.1 kHz: 1024 samples are 2089.8 ticks, written as 2089; the end is sample 238892
        // (173 frames after the 1.4 s origin), not 238891.66.
        let json = br#"{"packets":[{"pts":485445,"duration":2089}],
            "streams":[{"sample_rate":"44100","time_base":"1/90000"}]}"#;
        let end = audio_end_from_json(json).expect("parses").expect("audio");
        assert!((end * 44100.0 - 238892.0).abs() < 1e-6, "{end}");
        assert_eq!(audio_end_from_json(br#"{"packets":[]}"#), Ok(None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: &str = r#"{"streams":[
        {"codec_type":"video","codec_name":"h264","width":1920,"height":1080,
         "avg_frame_rate":"30000/1001","r_frame_rate":"30000/1001",
         "side_data_list":[{"side_data_type":"Display Matrix","rotation":-90}]},
        {"codec_type":"audio","codec_name":"aac"}],
        "format":{"duration":"12.5","format_name":"mov,mp4,m4a,3gp,3g2,mj2"}}"#;

    #[test]
    fn rotated_phone_clip() {
        let info = parse(PHONE.as_bytes()).expect("valid");
        assert_eq!(info.rotation, 90);
        assert_eq!(info.display_size(), (1080, 1920));
        assert!((info.fps - 29.97).abs() < 0.01);
        assert_eq!(info.audio_codec(), Some("aac"));
        assert_eq!(info.duration, 12.5);
    }

    #[test]
    fn legacy_rotate_tag_and_no_audio() {
        let json = r#"{"streams":[{"codec_type":"video","codec_name":"h264","width":640,"height":480,
            "avg_frame_rate":"0/0","r_frame_rate":"25/1","tags":{"rotate":"270"}}],
            "format":{"duration":"3.0","format_name":"mp4"}}"#;
        let info = parse(json.as_bytes()).expect("valid");
        assert_eq!(info.rotation, 270);
        assert_eq!(info.fps, 25.0);
        assert_eq!(info.audio_codec(), None);
    }

    #[test]
    fn refusals() {
        let audio_only = r#"{"streams":[{"codec_type":"audio","codec_name":"mp3"},
            {"codec_type":"video","codec_name":"mjpeg","width":300,"height":300,"disposition":{"attached_pic":1}}],
            "format":{"duration":"3.0"}}"#;
        assert_eq!(parse(audio_only.as_bytes()), Err(ProbeError::NoVideo));
        let no_duration =
            r#"{"streams":[{"codec_type":"video","width":2,"height":2}],"format":{}}"#;
        assert_eq!(parse(no_duration.as_bytes()), Err(ProbeError::NoDuration));
        assert!(matches!(parse(b"not json"), Err(ProbeError::Unreadable(_))));
    }
}
