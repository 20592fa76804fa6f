//! Subtitles as segmented WebVTT renditions (RFC 8216 §3.5).
//!
//! A subtitle track comes from the source (a text track extracted by ffmpeg as WebVTT) or from a
//! file uploaded for the video (WebVTT or SRT, validated here). Either way it is parsed into
//! cues and cut on the video's segment grid: segment `i` holds every cue that overlaps
//! `[i * segment_secs, (i + 1) * segment_secs)`, and carries
//! `X-TIMESTAMP-MAP=MPEGTS:<TS_ORIGIN>,LOCAL:00:00:00.000` so that a cue at source time `t`
//! shows when the video (whose MPEG-TS clock starts at `TS_ORIGIN`) is at `t`.

use std::fmt::Write;
use std::path::Path;

pub mod extract;
pub mod tracks;

use super::ffmpeg::{TS_ORIGIN, VARIANT};
use super::growing::write_atomically;
use super::thumbnails::vtt_time;

/// The largest subtitle file accepted, bytes.
pub const MAX_BYTES: usize = 512 * 1024;
/// The most cues accepted in one file.
const MAX_CUES: usize = 20_000;
/// The longest cue accepted, seconds: a cue is copied into every segment it overlaps, so a
/// file of hours-long cues would otherwise write its whole text once per segment.
const MAX_CUE_SECS: f64 = 600.0;
/// The longest text of one cue, bytes.
const MAX_CUE_TEXT: usize = 4096;
/// The largest hour a timestamp may name.
const MAX_HOURS: u64 = 999;
/// How many times over a track's segments may hold its text ([`check_copies`])...
const MAX_COPIES: u64 = 4;
/// ...though a small track may always fill this many bytes of segments.
const MIN_COPY_BUDGET: u64 = 4 << 20;
/// Bytes a cue takes in a segment besides its text: its timing line and blank line.
const CUE_OVERHEAD: u64 = 32;

/// One cue: seconds of source time, and its text (WebVTT cue payload).
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Why a subtitle file was refused; the message is for its uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubtitleError {
    #[error("the subtitle file is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("the subtitle file is not UTF-8 text")]
    NotText,
    #[error("the subtitle file has no cues")]
    Empty,
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: String },
    #[error("the subtitle file has more than {MAX_CUES} cues")]
    TooManyCues,
    #[error(
        "its cues would fill {copied} bytes of segments, more than {budget}: a cue is repeated \
         in every segment it spans, so long cues with long texts multiply"
    )]
    TooRepetitive { copied: u64, budget: u64 },
}

/// Parses a WebVTT (starts with `WEBVTT`) or SRT file.
pub fn parse(bytes: &[u8]) -> Result<Vec<Cue>, SubtitleError> {
    if bytes.len() > MAX_BYTES {
        return Err(SubtitleError::TooLarge);
    }
    parse_any_size(bytes)
}

/// [`parse`] without the upload's size limit: a file kept after it was accepted (written in
/// full `HH:MM:SS.mmm` form, it may have grown past the limit).
pub fn parse_any_size(bytes: &[u8]) -> Result<Vec<Cue>, SubtitleError> {
    let text = std::str::from_utf8(bytes).map_err(|_| SubtitleError::NotText)?;
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let webvtt = text.starts_with("WEBVTT");
    let mut cues = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    if webvtt {
        // The header block ends at the first blank line.
        for (_, l) in lines.by_ref() {
            if l.trim().is_empty() {
                break;
            }
        }
    }
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if webvtt
            && (line.starts_with("NOTE") || line.starts_with("STYLE") || line.starts_with("REGION"))
        {
            // A comment or style block: skipped to its end.
            while lines.next_if(|(_, l)| !l.trim().is_empty()).is_some() {}
            continue;
        }
        // An identifier (SRT's counter, WebVTT's optional id) precedes the timing line.
        let (n, timing) = if line.contains("-->") {
            (n, line.to_owned())
        } else {
            match lines.next() {
                Some((m, next)) if next.contains("-->") => (m, next.trim().to_owned()),
                _ => {
                    return Err(SubtitleError::Malformed {
                        line: n + 1,
                        what: format!(
                            "expected a timing line like 00:00:01.000 --> 00:00:02.000, found {:?}",
                            truncate(line)
                        ),
                    })
                }
            }
        };
        let (start, end) = timing_line(&timing).ok_or_else(|| SubtitleError::Malformed {
            line: n + 1,
            what: format!("bad timing {:?}", truncate(&timing)),
        })?;
        let mut body = Vec::new();
        while let Some((_, l)) = lines.next_if(|(_, l)| !l.trim().is_empty()) {
            body.push(l.trim_end());
        }
        let problem = if end <= start {
            Some("the cue ends before it starts".to_owned())
        } else if end - start > MAX_CUE_SECS {
            Some(format!("the cue lasts more than {MAX_CUE_SECS} s"))
        } else if body.iter().map(|l| l.len() + 1).sum::<usize>() > MAX_CUE_TEXT {
            Some(format!(
                "the cue's text is longer than {MAX_CUE_TEXT} bytes"
            ))
        } else {
            None
        };
        if let Some(what) = problem {
            return Err(SubtitleError::Malformed { line: n + 1, what });
        }
        cues.push(Cue {
            start,
            end,
            text: sanitize(&body.join("\n")),
        });
        if cues.len() > MAX_CUES {
            return Err(SubtitleError::TooManyCues);
        }
    }
    if cues.is_empty() {
        return Err(SubtitleError::Empty);
    }
    cues.sort_by(|a, b| a.start.total_cmp(&b.start));
    Ok(cues)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// `HH:MM:SS.mmm --> HH:MM:SS.mmm [settings]` (SRT uses a comma before the milliseconds).
fn timing_line(line: &str) -> Option<(f64, f64)> {
    let (a, rest) = line.split_once("-->")?;
    let b = rest.split_whitespace().next()?;
    Some((timestamp(a.trim())?, timestamp(b)?))
}

fn timestamp(t: &str) -> Option<f64> {
    let t = t.replace(',', ".");
    let (hms, ms) = t.split_once('.')?;
    if ms.len() != 3 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = hms.split(':').collect();
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let secs = match nums.as_slice() {
        [h, m, s] if *h <= MAX_HOURS && *m < 60 && *s < 60 => h * 3600 + m * 60 + s,
        [m, s] if *m < 60 && *s < 60 => m * 60 + s,
        _ => return None,
    };
    Some(secs as f64 + ms.parse::<f64>().ok()? / 1000.0)
}

/// Cue text that cannot end a cue early (`-->` or a blank line would) and carries no markup
/// a player could mistake for structure.
fn sanitize(text: &str) -> String {
    text.replace("-->", "->")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Appends one cue.
fn push_cue(out: &mut String, c: &Cue) {
    let _ = write!(
        out,
        "{} --> {}\n{}\n\n",
        vtt_time(c.start),
        vtt_time(c.end),
        c.text
    );
}

/// The whole track as one WebVTT file (what is kept for an uploaded file).
pub fn to_vtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for c in cues {
        push_cue(&mut out, c);
    }
    out
}

/// Refuses a track whose segments would hold far more than the track itself. Each cue is
/// copied into every segment it overlaps ([`segments`]): within [`MAX_CUE_SECS`] and the
/// size limits, a file of long cues with long texts would otherwise turn 512 KiB into 50 MB
/// of segments, and an embedded track of 8 MiB into 800 MiB, all of it built in memory first.
/// Ordinary subtitles (cues of a few seconds) are copied less than twice over.
pub fn check_copies(cues: &[Cue], segment_secs: u32) -> Result<(), SubtitleError> {
    let (own, copied) = copied_bytes(cues, segment_secs);
    let budget = own.saturating_mul(MAX_COPIES).max(MIN_COPY_BUDGET);
    match copied > budget {
        true => Err(SubtitleError::TooRepetitive { copied, budget }),
        false => Ok(()),
    }
}

/// The bytes of a track's cues, and at most how many its segments hold on a grid of
/// `segment_secs` (as many for a video that lasts at least as long as its cues).
fn copied_bytes(cues: &[Cue], segment_secs: u32) -> (u64, u64) {
    let seg = f64::from(segment_secs.max(1));
    let (mut own, mut copied) = (0u64, 0u64);
    for c in cues {
        let bytes = c.text.len() as u64 + CUE_OVERHEAD;
        // The segments `i` with `i * seg < end` and `(i + 1) * seg > start`.
        let copies = ((c.end / seg).ceil() - (c.start / seg).floor()).max(1.0) as u64;
        own += bytes;
        copied = copied.saturating_add(bytes.saturating_mul(copies));
    }
    (own, copied)
}

/// The WebVTT segments of a track on the grid of a `duration`-second video cut every
/// `segment_secs`, each with its duration.
pub fn segments(cues: &[Cue], duration: f64, segment_secs: u32) -> Vec<(String, f64)> {
    let seg = f64::from(segment_secs.max(1));
    let count = (duration / seg).ceil().max(1.0) as usize;
    let mpegts = (TS_ORIGIN * 90_000.0).round() as u64;
    (0..count)
        .map(|i| {
            let from = i as f64 * seg;
            let to = ((i + 1) as f64 * seg).min(duration.max(from));
            let mut out = format!("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000\n\n");
            for c in cues.iter().filter(|c| c.start < to && c.end > from) {
                push_cue(&mut out, c);
            }
            (out, to - from)
        })
        .collect()
}

/// Writes a subtitle rendition into `dir`: its segments, then its (complete, VOD) playlist.
pub fn write_rendition(
    dir: &Path,
    cues: &[Cue],
    duration: f64,
    segment_secs: u32,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{segment_secs}\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    );
    for (i, (text, secs)) in segments(cues, duration, segment_secs).iter().enumerate() {
        let name = format!("segment_{i:03}.vtt");
        write_atomically(&dir.join(&name), text.as_bytes())?;
        let _ = write!(playlist, "#EXTINF:{secs:.6},\n{name}\n");
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    write_atomically(&dir.join(VARIANT), playlist.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRT: &str = "1\r\n00:00:01,500 --> 00:00:03,000\r\nHello\r\nworld\r\n\r\n2\r\n00:00:05,250 --> 00:00:07,000\r\nBye --> now\r\n";

    /// `count` cues of `text_len` bytes, each lasting `secs`, one every `every` seconds.
    fn track(count: usize, text_len: usize, secs: f64, every: f64) -> Vec<Cue> {
        (0..count)
            .map(|i| Cue {
                start: i as f64 * every,
                end: i as f64 * every + secs,
                text: "a".repeat(text_len),
            })
            .collect()
    }

    #[test]
    fn cues_that_would_multiply_into_the_segments_are_refused() {
        // A file within every other limit (400 KB, cues of 600 s): 40 MB of 6 s segments.
        let long = track(100, 4000, 600.0, 0.0);
        let file = to_vtt(&long);
        assert!(file.len() < MAX_BYTES, "{}", file.len());
        let parsed = parse(file.as_bytes()).expect("within the parser's limits");
        let refused = check_copies(&parsed, 6);
        assert!(
            matches!(refused, Err(SubtitleError::TooRepetitive { copied, .. }) if copied > 40_000_000),
            "{refused:?}"
        );
        // Ordinary subtitles: two hours of 2.5 s cues, and a few long ones, on any grid.
        let mut ordinary = track(2880, 80, 2.5, 2.5);
        ordinary.extend(track(10, 200, 60.0, 700.0));
        for seg in [1, 2, 6, 10] {
            assert_eq!(check_copies(&ordinary, seg), Ok(()), "{seg} s segments");
        }
    }

    #[test]
    fn the_copy_count_covers_what_the_segments_hold() {
        let mut cues = track(300, 50, 7.3, 3.1);
        cues.extend(track(5, 900, 95.0, 40.0));
        cues.sort_by(|a, b| a.start.total_cmp(&b.start));
        let header = segments(&[], 1.0, 1)[0].0.len() as u64;
        for seg in [1, 2, 4, 6, 10] {
            let written: u64 = segments(&cues, 1000.0, seg)
                .iter()
                .map(|(text, _)| text.len() as u64 - header)
                .sum();
            let (_, counted) = copied_bytes(&cues, seg);
            assert!(
                written <= counted,
                "{seg} s: {written} written, {counted} counted"
            );
            assert!(
                counted - written < counted / 10,
                "{seg} s: {written} of {counted}"
            );
        }
    }

    #[test]
    fn hostile_cues_are_refused_with_where() {
        let long = b"WEBVTT\n\n00:00:01.000 --> 05:00:00.000\nforever\n";
        assert!(matches!(
            parse(long),
            Err(SubtitleError::Malformed { line: 3, .. })
        ));
        let wordy = format!(
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n{}\n",
            "a".repeat(5000)
        );
        assert!(matches!(
            parse(wordy.as_bytes()),
            Err(SubtitleError::Malformed { line: 3, .. })
        ));
        // An hour field that would overflow is a bad timing, not a panic.
        let huge = b"WEBVTT\n\n99999999999999999:00:01.000 --> 99999999999999999:00:02.000\nx\n";
        assert!(matches!(
            parse(huge),
            Err(SubtitleError::Malformed { line: 3, .. })
        ));
    }

    #[test]
    fn srt_and_webvtt_parse_to_the_same_cues() {
        let from_srt = parse(SRT.as_bytes()).expect("srt");
        assert_eq!(from_srt.len(), 2);
        assert_eq!((from_srt[0].start, from_srt[0].end), (1.5, 3.0));
        assert_eq!(from_srt[0].text, "Hello\nworld");
        assert_eq!(
            from_srt[1].text, "Bye -> now",
            "no cue can end another early"
        );
        let vtt = to_vtt(&from_srt);
        assert_eq!(parse(vtt.as_bytes()).expect("vtt"), from_srt);
        let with_extras = "WEBVTT - a title\n\nNOTE a comment\nspanning lines\n\nid-1\n00:01.500 --> 00:03.000 align:start\nHello\nworld\n\n00:05.250 --> 00:00:07.000\nBye -> now\n";
        assert_eq!(parse(with_extras.as_bytes()).expect("vtt"), from_srt);
    }

    #[test]
    fn malformed_files_say_where() {
        assert_eq!(parse(b""), Err(SubtitleError::Empty));
        assert_eq!(parse(&[0xff, 0xfe]), Err(SubtitleError::NotText));
        assert_eq!(
            parse(&vec![b'a'; MAX_BYTES + 1]),
            Err(SubtitleError::TooLarge)
        );
        let bad = parse(b"1\n00:00:01,000 -> 00:00:02,000\nhi\n");
        assert!(
            matches!(bad, Err(SubtitleError::Malformed { line: 1, .. })),
            "{bad:?}"
        );
        let bad = parse(b"1\n00:00:03,000 --> 00:00:02,000\nhi\n");
        assert!(
            matches!(bad, Err(SubtitleError::Malformed { line: 2, .. })),
            "{bad:?}"
        );
        assert!(matches!(
            parse(b"WEBVTT\n\n00:00:61.000 --> 00:01:02.000\nx\n"),
            Err(SubtitleError::Malformed { .. })
        ));
    }

    #[test]
    fn segments_follow_the_video_grid_and_map_the_clock() {
        let cues = parse(SRT.as_bytes()).expect("srt");
        let segs = segments(&cues, 7.5, 2);
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[3].1, 1.5);
        assert!(segs[0]
            .0
            .starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n"));
        // The first cue (1.5-3.0) is in segments 0 and 1; the second (5.25-7) in 2 and 3.
        assert!(segs[0]
            .0
            .contains("00:00:01.500 --> 00:00:03.000\nHello\nworld"));
        assert!(segs[1].0.contains("Hello"));
        assert!(!segs[2].0.contains("Hello") && segs[2].0.contains("Bye"));
        assert!(segs[3].0.contains("Bye"));
    }
}
