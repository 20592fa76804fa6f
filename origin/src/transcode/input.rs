//! What may be read as user media: the container and protocol allow-lists that every ffprobe
//! and ffmpeg opening a source is given.
//!
//! ffprobe and ffmpeg choose a demuxer from the content, and some demuxers open further inputs
//! named inside the file: HLS and concat playlists, image2 patterns, SDP. Without these lists a
//! 150-byte playlist uploaded as a "video" makes the origin read any file it can see (another
//! user's media, an import directory) or any URL it can reach. With `-format_whitelist` only
//! real containers are opened, and `-protocol_whitelist` keeps them to the one way the source
//! is meant to be read.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// Demuxers a source may be opened with (ffmpeg matches each name against the demuxer's list
/// of names, so `mov` admits `mov,mp4,m4a,3gp,3g2,mj2` and `matroska` admits `matroska,webm`):
/// MP4/MOV, Matroska/WebM, AVI, MPEG-TS, FLV, MPEG-PS, ASF/WMV and Ogg. None of them opens
/// other files or URLs named inside the file.
pub const CONTAINERS: &str = "mov,matroska,avi,mpegts,flv,mpeg,asf,ogg";

/// What users are told they may upload.
pub const CONTAINERS_FOR_HUMANS: &str =
    "MP4/MOV, Matroska/WebM, AVI, MPEG-TS, FLV, MPEG-PS, ASF/WMV or Ogg";

/// Protocols a local source may be read through.
pub const LOCAL_PROTOCOLS: &str = "file";

/// Where a job's upload is read from. Shown (`Display` and `Debug` alike), a URL loses its
/// query.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A file on this machine.
    File(&'a Path),
    /// A presigned URL of the media bucket (`https://` or `http://`); its query is a
    /// credential, so it is never logged whole ([`redact_queries`]).
    Url(&'a str),
}

impl Source<'_> {
    /// The protocols ffmpeg may use to read it: exactly its own.
    fn protocols(self) -> &'static str {
        match self {
            Source::File(_) => LOCAL_PROTOCOLS,
            Source::Url(url) if url.starts_with("https://") => "https,tls,tcp",
            // Any other scheme than http is refused by ffmpeg with this list.
            Source::Url(_) => "http,tcp",
        }
    }

    fn as_os_str(&self) -> &OsStr {
        match self {
            Source::File(path) => path.as_os_str(),
            Source::Url(url) => OsStr::new(url),
        }
    }
}

/// A file by its path, a URL without its query.
impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => path.display().fmt(f),
            Source::Url(url) => f.write_str(&redact_queries(url)),
        }
    }
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => f.debug_tuple("File").field(path).finish(),
            Source::Url(url) => f.debug_tuple("Url").field(&redact_queries(url)).finish(),
        }
    }
}

/// The options that restrict how the next `-i` is opened, followed by `-i <source>`. A source
/// read from the media bucket through a presigned URL is admitted through exactly its scheme
/// and what carries it; the container allow-list still keeps it from naming any other input.
pub fn source_input(source: Source<'_>) -> [OsString; 6] {
    [
        "-format_whitelist".into(),
        CONTAINERS.into(),
        "-protocol_whitelist".into(),
        source.protocols().into(),
        "-i".into(),
        source.as_os_str().into(),
    ]
}

/// The demuxer ffmpeg detected for a file it then refused because of [`CONTAINERS`], read from
/// its error line `[hls @ 0x55d0c0a0] Format not on whitelist '...'`.
pub fn refused_container(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("Format not on whitelist"))?;
    let name = line.strip_prefix('[')?.split(" @ ").next()?;
    let valid = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b',');
    Some(if valid { name } else { "unknown" }.to_owned())
}

/// `text` with the query of every URL in it cut off: ffmpeg names its input in errors, and a
/// presigned source URL carries a credential valid for hours that must not reach the logs.
pub fn redact_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"]
        .iter()
        .filter_map(|scheme| rest.find(scheme))
        .min()
    {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(rest.len());
        match rest[..end].split_once('?') {
            Some((url, _)) => {
                out.push_str(url);
                out.push_str("?<redacted>");
            }
            None => out.push_str(&rest[..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_container_from_the_refusal() {
        let stderr = "[hls @ 0x55a4da2832c0] Format not on whitelist 'mov,matroska'\n\
                      evil.mp4: Invalid argument\n";
        assert_eq!(refused_container(stderr).as_deref(), Some("hls"));
        let odd = "[a b @ 0x1] Format not on whitelist 'mov'\n";
        assert_eq!(refused_container(odd).as_deref(), Some("unknown"));
        assert_eq!(refused_container("x: Invalid data found"), None);
    }

    #[test]
    fn a_presigned_source_is_read_through_its_scheme_only() {
        let https = source_input(Source::Url("https://bucket.example/v?X-Amz-Signature=1"));
        assert_eq!(https[3], "https,tls,tcp");
        assert_eq!(https[5], "https://bucket.example/v?X-Amz-Signature=1");
        let http = source_input(Source::Url(
            "http://127.0.0.1:8333/media/v?X-Amz-Signature=1",
        ));
        assert_eq!(http[3], "http,tcp");
        let odd = source_input(Source::Url("file:///etc/passwd"));
        assert_eq!(odd[3], "http,tcp", "ffmpeg refuses any other scheme");
        // A file is a file, whatever its name looks like.
        let file = source_input(Source::File(Path::new("http://x/y")));
        assert_eq!(file[3], "file");
        let url = Source::Url("https://b.example/v?X-Amz-Signature=secret");
        assert_eq!(url.to_string(), "https://b.example/v?<redacted>");
        assert!(!format!("{url:?}").contains("secret"), "{url:?}");
    }

    #[test]
    fn every_source_read_is_restricted() {
        let args = source_input(Source::File(Path::new("/data/sources/v.mp4")));
        let line: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            line,
            [
                "-format_whitelist",
                CONTAINERS,
                "-protocol_whitelist",
                "file",
                "-i",
                "/data/sources/v.mp4"
            ]
        );
    }

    #[test]
    fn presigned_queries_never_reach_the_log() {
        let line =
            "https://s3.example/b/private/sources/v?X-Amz-Signature=abc&X-Amz-Credential=k: \
                    Input/output error | at 'http://h/x?y=1' then file.mp4";
        let out = redact_queries(line);
        assert!(!out.contains("X-Amz") && !out.contains("y=1"), "{out}");
        assert!(
            out.contains("https://s3.example/b/private/sources/v?<redacted> Input/output error"),
            "{out}"
        );
        assert!(
            out.contains("'http://h/x?<redacted>' then file.mp4"),
            "{out}"
        );
    }
}
