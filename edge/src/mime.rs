//! Content-Type by extension: Debian's nginx `mime.types` for what it lists, the registered
//! types for what HLS needs and it lacks (`.m4s`, `.vtt`), `application/octet-stream` otherwise
//! (Debian's `default_type`).

/// The extension of the last path segment, as nginx's `$exten` (after the last `.`).
pub fn extension(uri: &[u8]) -> &[u8] {
    let name = uri.rsplit(|&b| b == b'/').next().unwrap_or_default();
    match name.iter().rposition(|&b| b == b'.') {
        Some(dot) => &name[dot + 1..],
        None => b"",
    }
}

/// The Content-Type for a path.
pub fn content_type(uri: &[u8]) -> &'static str {
    let ext = extension(uri);
    // nginx matches extensions case-sensitively first, then lower-cased; one pass over
    // lower-case names covers both.
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return DEFAULT;
    }
    for (l, e) in lower.iter_mut().zip(ext) {
        *l = e.to_ascii_lowercase();
    }
    match &lower[..ext.len()] {
        b"m3u8" => "application/vnd.apple.mpegurl",
        b"ts" => "video/mp2t",
        b"m4s" => "video/iso.segment",
        b"mp4" => "video/mp4",
        b"m4a" => "audio/x-m4a",
        b"vtt" => "text/vtt",
        b"jpg" | b"jpeg" => "image/jpeg",
        b"png" => "image/png",
        b"webp" => "image/webp",
        b"json" => "application/json",
        _ => DEFAULT,
    }
}

const DEFAULT: &str = "application/octet-stream";

/// Whether the path is a playlist (short cache lifetime) rather than immutable media.
pub fn is_playlist(uri: &[u8]) -> bool {
    extension(uri).eq_ignore_ascii_case(b"m3u8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        assert_eq!(content_type(b"/hls/v/720p/segment_000.ts"), "video/mp2t");
        assert_eq!(
            content_type(b"/hls/v/master.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(content_type(b"/hls/v/enc.key"), "application/octet-stream");
        assert_eq!(content_type(b"/hls/v/init.m4s"), "video/iso.segment");
        assert_eq!(content_type(b"/hls/v/story.vtt"), "text/vtt");
        assert_eq!(content_type(b"/hls/v/poster.JPG"), "image/jpeg");
        assert_eq!(content_type(b"/hls/v.d/noext"), "application/octet-stream");
        assert!(is_playlist(b"/a/index.m3u8"));
        assert!(!is_playlist(b"/a/seg.ts"));
    }
}
