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

/// An alternative rendition: one audio track or one subtitle track (`#EXT-X-MEDIA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Its playlist, relative to the master (`audio_0/index.m3u8`).
    pub uri: String,
    pub name: String,
    /// RFC 5646 / ISO 639-2; `und` is left out.
    pub language: String,
}

/// The group every variant names when the video has separate audio renditions.
pub const AUDIO_GROUP: &str = "audio";
/// The group of the subtitle renditions.
pub const SUBTITLES_GROUP: &str = "subs";

/// Renders a master playlist: the alternative renditions (the first audio track is the
/// default), then the variants, highest bandwidth first, each naming the groups there are.
pub fn master(variants: &[Variant], audio: &[Media], subtitles: &[Media]) -> String {
    let mut v: Vec<&Variant> = variants.iter().collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.bandwidth));
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, m) in audio.iter().enumerate() {
        media_line(&mut out, "AUDIO", AUDIO_GROUP, m, i == 0, ",CHANNELS=\"2\"");
    }
    for m in subtitles {
        subtitle_line(&mut out, m);
    }
    for x in v {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\",FRAME-RATE={:.3}",
            x.bandwidth, x.average_bandwidth, x.width, x.height, x.codecs, x.frame_rate
        );
        if !audio.is_empty() {
            let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
        }
        if !subtitles.is_empty() {
            let _ = write!(out, ",SUBTITLES=\"{SUBTITLES_GROUP}\"");
        }
        let _ = writeln!(out, "\n{}", x.uri);
    }
    out
}

/// One rendition's tag. Every name and language passes here, whoever produced it (a probed
/// track, an upload's query, a description read back from the bucket): nothing in them can
/// end the attribute or the line.
fn media_line(out: &mut String, kind: &str, group: &str, m: &Media, default: bool, extra: &str) {
    let name: String = m
        .name
        .chars()
        .map(|c| if c == '"' { '\'' } else { c })
        .filter(|c| super::tracks::fits_a_name(*c))
        .collect();
    let _ = write!(
        out,
        "#EXT-X-MEDIA:TYPE={kind},GROUP-ID=\"{group}\",NAME=\"{name}\""
    );
    let language = super::tracks::language(Some(&m.language));
    if language != "und" {
        let _ = write!(out, ",LANGUAGE=\"{language}\"");
    }
    let yes = |b: bool| if b { "YES" } else { "NO" };
    let _ = writeln!(
        out,
        ",DEFAULT={},AUTOSELECT=YES{extra},URI=\"{}\"",
        yes(default),
        m.uri
    );
}

fn subtitle_line(out: &mut String, m: &Media) {
    media_line(out, "SUBTITLES", SUBTITLES_GROUP, m, false, ",FORCED=NO");
}

/// The subtitle renditions a master playlist names.
pub fn subtitle_media(master: &str) -> Vec<Media> {
    master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .filter_map(|l| {
            Some(Media {
                uri: attribute(l, "URI")?,
                name: attribute(l, "NAME")?,
                language: attribute(l, "LANGUAGE").unwrap_or_else(|| "und".into()),
            })
        })
        .collect()
}

/// A quoted attribute's value in a tag line.
fn attribute(line: &str, name: &str) -> Option<String> {
    quoted_attribute(line, name).map(|at| line[at].to_owned())
}

/// Where the quoted value of attribute `name` lies in a tag line (`#EXT-X-MEDIA:...`), read
/// as an attribute list (RFC 8216 §4.2): a name counts only outside quoted strings, so a track
/// named `xURI=` or `a,URI=` is not taken for the rendition's URI.
pub fn quoted_attribute(line: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let mut at = line.find(':')? + 1;
    loop {
        let eq = line[at..].find('=')? + at;
        let value = eq + 1;
        let end = match line[value..].starts_with('"') {
            true => {
                let close = line[value + 1..].find('"')? + value + 1;
                if &line[at..eq] == name {
                    return Some(value + 1..close);
                }
                close + 1
            }
            false => value,
        };
        at = line[end..].find(',')? + end + 1;
    }
}

/// `master` with its subtitle renditions replaced by `subtitles` (a subtitle file was uploaded
/// or deleted after the video was published): every other line stays as it was.
pub fn with_subtitles(master: &str, subtitles: &[Media]) -> String {
    let mut out = String::with_capacity(master.len() + 256);
    let group = format!(",SUBTITLES=\"{SUBTITLES_GROUP}\"");
    let mut renditions_written = false;
    for line in master.lines() {
        if line.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES") {
            continue;
        }
        if line.starts_with("#EXT-X-STREAM-INF:") {
            // The renditions go before the first variant.
            if !renditions_written {
                for m in subtitles {
                    subtitle_line(&mut out, m);
                }
                renditions_written = true;
            }
            out.push_str(&line.replace(&group, ""));
            if !subtitles.is_empty() {
                out.push_str(&group);
            }
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
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

    #[test]
    fn attributes_are_read_outside_quoted_strings() {
        let line = "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"a,URI=\",LANGUAGE=\"fra\",URI=\"subs_u1/index.m3u8\"";
        assert_eq!(
            attribute(line, "URI").as_deref(),
            Some("subs_u1/index.m3u8")
        );
        assert_eq!(attribute(line, "NAME").as_deref(), Some("a,URI="));
        assert_eq!(attribute(line, "LANGUAGE").as_deref(), Some("fra"));
        assert_eq!(attribute(line, "TYPE"), None, "not quoted");
        assert_eq!(attribute(line, "FORCED"), None);
        let media = Media {
            uri: "subs_u2/index.m3u8".into(),
            name: "xURI=".into(),
            language: "ita".into(),
        };
        let mut master = String::new();
        subtitle_line(&mut master, &media);
        assert_eq!(subtitle_media(&master), [media]);
    }

    const VOD: &str =
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
        #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXTINF:6.000000,\nsegment_000.ts\n\
        #EXTINF:2.500000,\nsegment_001.ts\n#EXT-X-ENDLIST\n";

    #[test]
    fn a_hostile_name_or_language_stays_inside_its_tag() {
        let m = Media {
            uri: "subs_u0/index.m3u8".into(),
            name: "a\"b\n#EXT-X-ENDLIST\rc".into(),
            language: "en\"\n#EVIL".into(),
        };
        let out = master(&[], &[], &[m]);
        let tag = out
            .lines()
            .find(|l| l.starts_with("#EXT-X-MEDIA"))
            .expect("the tag");
        // No `#` either: hls.js finds a tag anywhere in a line.
        assert!(tag.contains("NAME=\"a'bEXT-X-ENDLISTc\""), "{tag}");
        assert!(!tag.contains("LANGUAGE"), "{tag}");
        assert_eq!(out.lines().count(), 4, "{out}");
    }

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
        let m = master(std::slice::from_ref(&v), &[], &[]);
        assert!(m.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=3500000,AVERAGE-BANDWIDTH=3100000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",FRAME-RATE=29.970\n720p/index.m3u8\n"
        ), "{m}");
        assert_eq!(avc1_codec("Main", 30), "avc1.4d401e");
        // Several audio tracks and subtitles: renditions first, groups on every variant.
        let audio = [
            Media {
                uri: "audio_0/index.m3u8".into(),
                name: "English".into(),
                language: "eng".into(),
            },
            Media {
                uri: "audio_1/index.m3u8".into(),
                name: "Fran\u{e7}ais".into(),
                language: "fra".into(),
            },
        ];
        let subs = [Media {
            uri: "subs_0/index.m3u8".into(),
            name: "English".into(),
            language: "und".into(),
        }];
        let m = master(std::slice::from_ref(&v), &audio, &subs);
        assert!(m.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"English\",LANGUAGE=\"eng\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio_0/index.m3u8\"\n"), "{m}");
        assert!(m.contains("LANGUAGE=\"fra\",DEFAULT=NO,"), "{m}");
        assert!(m.contains("#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI=\"subs_0/index.m3u8\"\n"), "{m}");
        assert!(
            m.contains("FRAME-RATE=29.970,AUDIO=\"audio\",SUBTITLES=\"subs\"\n720p/index.m3u8\n"),
            "{m}"
        );
        // Subtitles added and removed after publication, nothing else touched.
        let without = master(std::slice::from_ref(&v), &audio, &[]);
        assert_eq!(with_subtitles(&without, &subs), m);
        assert_eq!(subtitle_media(&m), subs);
        assert_eq!(with_subtitles(&m, &[]), without);
    }
}
