//! The parts of HLS playlists a player needs to play: the renditions of a master playlist, and
//! the segments (with durations and keys) of a media playlist.

/// One rendition listed in a master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendition {
    /// The rung's name: the first path segment of its URI (`720p/index.m3u8` -> `720p`).
    pub name: String,
    pub bandwidth: u64,
    pub uri: String,
}

/// One media segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub duration: f64,
    pub uri: String,
    /// The key URI in force for this segment (`EXT-X-KEY` before it), if encrypted.
    pub key: Option<String>,
}

/// The renditions of a master playlist, in playlist order.
pub fn renditions(master: &str) -> Vec<Rendition> {
    let mut out = Vec::new();
    let mut pending: Option<u64> = None;
    for line in master.lines().map(str::trim) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            pending = Some(
                attribute(attrs, "BANDWIDTH")
                    .and_then(|b| b.parse().ok())
                    .unwrap_or(0),
            );
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(bandwidth) = pending.take() {
                let name = line.split(['/', '?']).next().unwrap_or(line).to_owned();
                out.push(Rendition {
                    name,
                    bandwidth,
                    uri: line.to_owned(),
                });
            }
        }
    }
    out
}

/// The segments of a media playlist.
pub fn segments(variant: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut key: Option<String> = None;
    let mut duration: Option<f64> = None;
    for line in variant.lines().map(str::trim) {
        if let Some(attrs) = line.strip_prefix("#EXT-X-KEY:") {
            key = match attribute(attrs, "METHOD") {
                Some("NONE") => None,
                _ => attribute(attrs, "URI").map(str::to_owned),
            };
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest.split(',').next().and_then(|d| d.trim().parse().ok());
        } else if !line.is_empty() && !line.starts_with('#') {
            out.push(Segment {
                duration: duration.take().unwrap_or(0.0),
                uri: line.to_owned(),
                key: key.clone(),
            });
        }
    }
    out
}

/// The value of `name` in an attribute list (`A=1,B="x,y"`), without quotes.
fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = attrs;
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], quoted[end + 1..].trim_start_matches(','))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], after[end..].trim_start_matches(','))
        };
        if key == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_renditions_keep_order_name_and_bandwidth() {
        let master = "#EXTM3U\n#EXT-X-VERSION:3\n\
            #EXT-X-STREAM-INF:BANDWIDTH=3300000,AVERAGE-BANDWIDTH=2000000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720\n\
            720p/index.m3u8?pt=T\n\
            #EXT-X-STREAM-INF:CODECS=\"avc1.4d401e\",BANDWIDTH=880000\n\
            360p/index.m3u8?pt=T\n";
        let r = renditions(master);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].name.as_str(), r[0].bandwidth), ("720p", 3_300_000));
        assert_eq!((r[1].name.as_str(), r[1].bandwidth), ("360p", 880_000));
        assert_eq!(r[1].uri, "360p/index.m3u8?pt=T");
    }

    #[test]
    fn variant_segments_carry_duration_and_key() {
        let variant = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n\
            #EXT-X-KEY:METHOD=AES-128,URI=\"key?pt=T\"\n\
            #EXTINF:6.000000,\nhttp://e/hls/v/720p/segment_000.ts?md5=a&expires=9\n\
            #EXTINF:2.5,\nhttp://e/hls/v/720p/segment_001.ts?md5=b&expires=9\n\
            #EXT-X-ENDLIST\n";
        let s = segments(variant);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].duration, 6.0);
        assert_eq!(s[1].duration, 2.5);
        assert_eq!(s[0].key.as_deref(), Some("key?pt=T"));
        assert!(s[1].uri.ends_with("segment_001.ts?md5=b&expires=9"));
    }

    #[test]
    fn attributes_handle_quotes_and_missing_names() {
        let attrs = "METHOD=AES-128,URI=\"a,b=c\",IV=0x1";
        assert_eq!(attribute(attrs, "URI"), Some("a,b=c"));
        assert_eq!(attribute(attrs, "IV"), Some("0x1"));
        assert_eq!(attribute(attrs, "KEYFORMAT"), None);
    }
}
