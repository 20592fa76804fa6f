//! Video ids and the on-disk layout both services agree on.
//!
//! ```text
//! <data>/hls/<video>/master.m3u8          published tree: the edge's --root is <data>/hls
//! <data>/hls/<video>/<rung>/index.m3u8
//! <data>/hls/<video>/<rung>/segment_000.ts
//! <data>/keys/<video>/<rung>.key          never under hls/: the edge cannot serve a key
//! <data>/thumbs/<video>/poster.jpg        poster and storyboard, served by the origin
//! <data>/sources/<video>                  uploaded originals
//! <data>/tmp/                             work directories, same filesystem (atomic rename)
//! <data>/store/                           the embedded job store
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// A video id: 1-64 characters of `[A-Za-z0-9_-]`, so it is always a single safe path
/// component and URL segment.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct VideoId(String);

/// A string that is not a valid [`VideoId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid video id {0:?}: 1-64 characters of A-Z a-z 0-9 _ -")]
pub struct BadVideoId(pub String);

impl VideoId {
    /// A new random id (128 bits, hex, UUID-v4 shaped).
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        fill_random(&mut b);
        Self(uuid_shaped(b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `b` as a UUID-v4 shaped string (8-4-4-4-12 lowercase hex, version and variant bits set).
pub fn uuid_shaped(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Fills `buf` from the OS random source (`/dev/urandom`).
pub fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    // Without an OS random source nothing secure can be produced; stopping is the safe answer.
    if let Err(e) = ok {
        panic!("cannot read /dev/urandom: {e}");
    }
}

impl TryFrom<String> for VideoId {
    type Error = BadVideoId;
    fn try_from(s: String) -> Result<Self, BadVideoId> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(BadVideoId(s))
        }
    }
}

impl std::str::FromStr for VideoId {
    type Err = BadVideoId;
    fn from_str(s: &str) -> Result<Self, BadVideoId> {
        Self::try_from(s.to_owned())
    }
}

impl From<VideoId> for String {
    fn from(v: VideoId) -> String {
        v.0
    }
}

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The published tree (the edge's content root).
    pub fn hls_root(&self) -> PathBuf {
        self.root.join("hls")
    }

    pub fn video_dir(&self, id: &VideoId) -> PathBuf {
        self.hls_root().join(id.as_str())
    }

    pub fn keys_dir(&self, id: &VideoId) -> PathBuf {
        self.root.join("keys").join(id.as_str())
    }

    pub fn key_file(&self, id: &VideoId, rung: &str) -> PathBuf {
        self.keys_dir(id).join(format!("{rung}.key"))
    }

    pub fn thumbs_dir(&self, id: &VideoId) -> PathBuf {
        self.root.join("thumbs").join(id.as_str())
    }

    /// Subtitle files uploaded for a video (the originals behind its subtitle renditions).
    pub fn subtitles_dir(&self, id: &VideoId) -> PathBuf {
        self.root.join("subtitles").join(id.as_str())
    }

    pub fn source_file(&self, id: &VideoId) -> PathBuf {
        self.root.join("sources").join(id.as_str())
    }

    pub fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn store_dir(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Creates every top-level directory.
    pub fn ensure(&self) -> std::io::Result<()> {
        for d in [
            "hls",
            "keys",
            "thumbs",
            "sources",
            "subtitles",
            "tmp",
            "store",
        ] {
            std::fs::create_dir_all(self.root.join(d))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_safe_path_components() {
        let id = VideoId::random();
        assert_eq!(id.as_str().len(), 36);
        assert_ne!(id, VideoId::random());
        for bad in ["", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(bad.parse::<VideoId>().is_err(), "{bad:?}");
        }
        assert!("53a9021a-c042-409b-ba4c-10853a45cbd9"
            .parse::<VideoId>()
            .is_ok());
    }

    #[test]
    fn keys_live_outside_the_served_tree() {
        let l = Layout::new("/data");
        let id: VideoId = "v1".parse().expect("valid");
        assert!(!l.key_file(&id, "720p").starts_with(l.hls_root()));
        assert!(!l.thumbs_dir(&id).starts_with(l.hls_root()));
        assert_eq!(l.video_dir(&id), Path::new("/data/hls/v1"));
    }
}
