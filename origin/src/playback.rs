//! Signed manifests: the stored playlists rewritten per viewer.
//!
//! The master's variant URIs get a short-lived playback credential scoped to the video (the
//! user's own JWT never goes into a URL); a variant's segment URIs become absolute edge URLs
//! signed with the edge's secure_link scheme, and its key placeholder becomes the origin's key
//! endpoint with the same credential. Expiry is rounded up to a bucket so the same request
//! yields the same bytes within the bucket.

use std::fmt::Write;

use shared::media::VideoId;
use shared::secure_link::SecureLink;

use crate::transcode::playlist::{key_placeholder, quoted_attribute};

/// `now + ttl`, rounded up to a multiple of `bucket`.
pub fn bucketed_expiry(now: i64, ttl: i64, bucket: i64) -> i64 {
    let bucket = bucket.max(1);
    (now + ttl + bucket - 1) / bucket * bucket
}

/// Appends `?pt=<credential>` to every playlist URI of a master playlist: its variants, and
/// the `URI="..."` of its audio and subtitle renditions.
pub fn sign_master(master: &str, credential: &str) -> String {
    let mut out = String::with_capacity(master.len() + 256);
    for line in master.lines() {
        if is_uri(line) {
            let _ = writeln!(out, "{line}?pt={credential}");
        } else if let (true, Some(uri)) = (
            line.starts_with("#EXT-X-MEDIA:"),
            quoted_attribute(line, "URI"),
        ) {
            let _ = writeln!(
                out,
                "{}?pt={credential}{}",
                &line[..uri.end],
                &line[uri.end..]
            );
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Where a variant's segments and key point.
pub struct VariantSigning<'a> {
    pub link: &'a SecureLink,
    /// e.g. `https://edge.example.com` (no trailing slash).
    pub edge_base_url: &'a str,
    /// e.g. `/hls/`.
    pub edge_prefix: &'a str,
    pub video: &'a VideoId,
    pub rung: &'a str,
    pub expires: i64,
    /// The key URI to put in `EXT-X-KEY`.
    pub key_uri: &'a str,
}

/// Rewrites a stored variant playlist: segment URIs -> signed edge URLs, key placeholder ->
/// key endpoint.
pub fn sign_variant(variant: &str, s: &VariantSigning<'_>) -> String {
    let placeholder = format!("URI=\"{}\"", key_placeholder(s.rung));
    let key = format!("URI=\"{}\"", s.key_uri);
    let expires = s.expires.to_string();
    // A signed edge URL is ~5x its segment's lines; reserving once avoids regrowth.
    let mut out = String::with_capacity(variant.len() * 6);
    let mut path = String::with_capacity(128);
    for line in variant.lines() {
        if is_uri(line) {
            path.clear();
            let _ = write!(
                path,
                "{}{}/{}/{}",
                s.edge_prefix,
                s.video,
                s.rung,
                line.trim()
            );
            out.push_str(s.edge_base_url);
            s.link.append_signed_url(&mut out, &path, &expires, "");
            out.push('\n');
        } else if line.starts_with("#EXT-X-KEY:") {
            out.push_str(&line.replace(&placeholder, &key));
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn is_uri(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::secure_link::{LinkRequest, Secret};

    #[test]
    fn expiry_buckets_make_identical_bytes() {
        assert_eq!(bucketed_expiry(1000, 100, 300), 1200);
        assert_eq!(bucketed_expiry(1001, 100, 300), 1200);
        assert_eq!(bucketed_expiry(1100, 100, 300), 1200);
        assert_eq!(bucketed_expiry(1101, 100, 300), 1500);
    }

    #[test]
    fn master_gets_credentials() {
        let m = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8\n";
        assert_eq!(
            sign_master(m, "T"),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n720p/index.m3u8?pt=T\n"
        );
        let m =
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"A\",URI=\"audio_0/index.m3u8\"\n";
        assert_eq!(
            sign_master(m, "T"),
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"A\",URI=\"audio_0/index.m3u8?pt=T\"\n"
        );
        // A track's name is the uploader's: one that reads like an attribute stays a name.
        let m = "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"xURI=\",URI=\"audio_0/index.m3u8\"\n";
        assert_eq!(
            sign_master(m, "T"),
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"xURI=\",URI=\"audio_0/index.m3u8?pt=T\"\n"
        );
    }

    #[test]
    fn variant_segments_are_signed_for_the_edge() {
        let link = SecureLink::new(vec![Secret::new("s")]).expect("link");
        let video: VideoId = "v1".parse().expect("id");
        let v = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-KEY:METHOD=AES-128,URI=\"key:720p\"\n#EXTINF:6.0,\nsegment_000.ts\n#EXT-X-ENDLIST\n";
        let out = sign_variant(
            v,
            &VariantSigning {
                link: &link,
                edge_base_url: "http://edge:8080",
                edge_prefix: "/hls/",
                video: &video,
                rung: "720p",
                expires: 2000,
                key_uri: "key?pt=T",
            },
        );
        assert!(
            out.contains("#EXT-X-KEY:METHOD=AES-128,URI=\"key?pt=T\"\n"),
            "{out}"
        );
        let seg = out
            .lines()
            .find(|l| l.starts_with("http://"))
            .expect("segment line");
        let (url, query) = seg.split_once('?').expect("query");
        assert_eq!(url, "http://edge:8080/hls/v1/720p/segment_000.ts");
        let req = LinkRequest {
            uri: b"/hls/v1/720p/segment_000.ts",
            args: query.as_bytes(),
            remote_addr: "",
        };
        assert_eq!(link.verify(&req, 2000), Ok(()), "the edge accepts it");
        assert!(link.verify(&req, 2001).is_err(), "and expires it");
    }
}
