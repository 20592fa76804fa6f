//! Reading and writing the HLS playlists the pipeline produces.

use std::fmt::Write;

/// A media segment line of a variant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub uri: String,
    /// `#EXTINF` duration, seconds.
    pub duration: f64,
}

/// The segments of a variant playlist, in order.
pub fn segments(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut pending: Option<f64> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            pending = rest.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push(Segment {
                uri: line.to_owned(),
                duration: pending.take().unwrap_or(0.0),
            });
        }
    }
    out
}

/// `#EXT-X-MEDIA-SEQUENCE`, 0 when absent (RFC 8216 §4.3.3.2).
pub fn media_sequence(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Placeholder key URI stored in playlists on disk; the origin replaces it per viewer.
pub fn key_placeholder(rung: &str) -> String {
    format!("key:{rung}")
}

/// Inserts `#EXT-X-KEY:METHOD=AES-128,URI="<uri>"` (no IV attribute: the IV is the media
/// sequence number) before the first segment's tags.
pub fn with_key(text: &str, uri: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut inserted = false;
    for line in text.lines() {
        let t = line.trim();
        if !inserted && (t.starts_with("#EXTINF:") || (!t.is_empty() && !t.starts_with('#'))) {
            let _ = writeln!(out, "#EXT-X-KEY:METHOD=AES-128,URI=\"{uri}\"");
            inserted = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether a variant playlist may still grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Still being encoded: segments are only ever appended; players start at the beginning
    /// (`#EXT-X-START:TIME-OFFSET=0`, or they would start near the "live" end) and reload it.
    Event,
    /// Complete (`#EXT-X-ENDLIST`).
    Vod,
}

/// `#EXT-X-TARGETDURATION`: every segment's duration rounded to the nearest integer must not
/// exceed it (RFC 8216 §4.3.3.1), and in an EVENT playlist it must never change, so it starts
/// at the configured segment length (forced keyframes keep every segment within a frame of it).
pub fn target_duration(segment_secs: u32, segments: &[Segment]) -> u32 {
    segments
        .iter()
        .map(|s| s.duration.round() as u32)
        .fold(segment_secs, u32::max)
}

/// A variant playlist as the origin publishes it: the same text for the same segments whether
/// it was published while encoding or all at once. Segment `i` has media sequence number `i`
/// (its IV, RFC 8216 §5.2); `key_uri` is the rung's key placeholder.
pub fn variant(kind: Kind, segment_secs: u32, segments: &[Segment], key_uri: &str) -> String {
    let mut out = String::with_capacity(256 + segments.len() * 40);
    let kind_name = match kind {
        Kind::Event => "EVENT",
        Kind::Vod => "VOD",
    };
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:{kind_name}\n#EXT-X-INDEPENDENT-SEGMENTS\n",
        target_duration(segment_secs, segments)
    );
    if kind == Kind::Event {
        out.push_str("#EXT-X-START:TIME-OFFSET=0\n");
    }
    let _ = writeln!(out, "#EXT-X-KEY:METHOD=AES-128,URI=\"{key_uri}\"");
    for s in segments {
        let _ = write!(out, "#EXTINF:{:.6},\n{}\n", s.duration, s.uri);
    }
    if kind == Kind::Vod {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

/// Whether a stored variant playlist is complete.
pub fn is_complete(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "#EXT-X-ENDLIST")
}

/// One variant of the master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    /// Peak segment bit rate, bit/s.
    pub bandwidth: u64,
    /// Average bit rate over the whole rendition, bit/s.
    pub average_bandwidth: u64,
    pub width: u32,
    pub height: u32,
    /// RFC 6381 codecs, e.g. `avc1.640028,mp4a.40.2`.
    pub codecs: String,
    pub frame_rate: f64,
}

/// Renders a master playlist, highest bandwidth first.
pub fn master(variants: &[Variant]) -> String {
    let mut v: Vec<&Variant> = variants.iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.bandwidth));
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for x in v {
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\",FRAME-RATE={:.3}\n{}",
            x.bandwidth, x.average_bandwidth, x.width, x.height, x.codecs, x.frame_rate, x.uri
        );
    }
    out
}

/// RFC 6381 `avc1.PPCCLL` from ffprobe's H.264 profile name and level (e.g. `High`, 40).
pub fn avc1_codec(profile: &str, level: u32) -> String {
    let (p, c) = match profile {
        "Baseline" | "Constrained Baseline" => (0x42, 0xE0),
        "Main" => (0x4D, 0x40),
        "High 10" => (0x6E, 0x00),
        _ => (0x64, 0x00),
    };
    format!("avc1.{p:02x}{c:02x}{level:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOD: &str =
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
        #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:6.000000,\nsegment_000.ts\n\
        #EXTINF:2.500000,\nsegment_001.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn reads_segments_and_sequence() {
        let s = segments(VOD);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[1],
            Segment {
                uri: "segment_001.ts".into(),
                duration: 2.5
            }
        );
        assert_eq!(media_sequence(VOD), 0);
        assert_eq!(media_sequence("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n"), 7);
    }

    #[test]
    fn key_goes_before_the_first_segment() {
        let out = with_key(VOD, "key:720p");
        let key_at = out
            .find("#EXT-X-KEY:METHOD=AES-128,URI=\"key:720p\"\n#EXTINF:6.000000,")
            .expect("inserted");
        assert!(key_at > out.find("#EXT-X-INDEPENDENT-SEGMENTS").expect("header"));
        assert_eq!(out.matches("#EXT-X-KEY").count(), 1);
        assert!(!out.contains("IV="));
        assert_eq!(segments(&out), segments(VOD));
    }

    #[test]
    fn growing_and_final_playlists() {
        let segs = segments(VOD);
        let event = variant(Kind::Event, 6, &segs[..1], "key:720p");
        assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{event}");
        assert!(event.contains("#EXT-X-START:TIME-OFFSET=0\n"));
        assert!(!is_complete(&event));
        assert_eq!(segments(&event), segs[..1]);
        let vod = variant(Kind::Vod, 6, &segs, "key:720p");
        assert!(is_complete(&vod) && vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(!vod.contains("EXT-X-START"));
        assert_eq!(segments(&vod), segs);
        assert_eq!(media_sequence(&vod), 0);
        assert!(vod.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"key:720p\"\n#EXTINF:6.000000,"));
        assert_eq!(target_duration(6, &segs), 6);
        let long = [Segment {
            uri: "s".into(),
            duration: 6.6,
        }];
        assert_eq!(target_duration(6, &long), 7);
    }

    #[test]
    fn master_has_every_attribute() {
        let v = Variant {
            uri: "720p/index.m3u8".into(),
            bandwidth: 3_500_000,
            average_bandwidth: 3_100_000,
            width: 1280,
            height: 720,
            codecs: avc1_codec("High", 31) + ",mp4a.40.2",
            frame_rate: 29.97,
        };
        let m = master(&[v]);
        assert!(m.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=3500000,AVERAGE-BANDWIDTH=3100000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",FRAME-RATE=29.970\n720p/index.m3u8\n"
        ), "{m}");
        assert_eq!(avc1_codec("Main", 30), "avc1.4d401e");
    }
}
