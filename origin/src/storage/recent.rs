//! Finished videos' playlists and keys, kept in memory for a while so that playback
//! does not read the bucket on every request: each viewer's player asks for a variant per
//! rendition and its key, so a video many watch asks for the same few small objects over and
//! over, and each bucket read costs a round trip (and, on S3, money).
//!
//! An entry answers only for the version of the job that read it ([`Version`]: its attempts,
//! last update and revision): a video published again, or changed in any way (a subtitle file
//! added or removed revises it), misses and is read afresh, on every API machine alike since
//! they share the job store. Entries also expire after [`TTL`], and together weigh at most
//! [`MAX_BYTES`].

use std::time::Duration;

use bytes::Bytes;
use moka::sync::Cache;

/// How long an entry answers at most.
pub const TTL: Duration = Duration::from_secs(60);
/// What the entries may weigh together: names, bodies and bookkeeping.
pub const MAX_BYTES: u64 = 32 << 20;
/// A body larger than this is never kept (a long video's playlist is some tens of KiB).
const MAX_BODY: usize = 1 << 20;
/// What an entry weighs beyond its name and body.
const OVERHEAD: usize = 64;

pub use crate::jobs::model::Version;

/// Recently read objects of finished videos, by object name.
#[derive(Debug, Clone)]
pub struct Recent {
    cache: Cache<String, (Version, Bytes)>,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new(TTL, MAX_BYTES)
    }
}

impl Recent {
    pub fn new(ttl: Duration, max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|name: &String, (_, body): &(Version, Bytes)| {
                u32::try_from(name.len() + body.len() + OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        Self { cache }
    }

    /// `name` as read for `version`, if that was less than the time to live ago.
    pub fn get(&self, name: &str, version: Version) -> Option<Bytes> {
        let (kept, body) = self.cache.get(name)?;
        (kept == version).then_some(body)
    }

    /// Keeps `body`, just read as `name` for `version`.
    pub fn put(&self, name: &str, version: Version, body: Bytes) {
        if body.len() <= MAX_BODY {
            self.cache.insert(name.to_owned(), (version, body));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_answers_for_its_version_only() {
        let recent = Recent::default();
        recent.put("hls/v/master.m3u8", (1, 100, 0), Bytes::from_static(b"m"));
        assert_eq!(
            recent.get("hls/v/master.m3u8", (1, 100, 0)).as_deref(),
            Some(&b"m"[..])
        );
        assert_eq!(recent.get("hls/v/master.m3u8", (2, 100, 0)), None);
        assert_eq!(recent.get("hls/v/master.m3u8", (1, 101, 0)), None);
        assert_eq!(
            recent.get("hls/v/master.m3u8", (1, 100, 1)),
            None,
            "a revision is another version"
        );
        assert_eq!(recent.get("hls/w/master.m3u8", (1, 100, 0)), None);
        recent.put(
            "hls/v/master.m3u8",
            (2, 105, 0),
            Bytes::from_static(b"again"),
        );
        assert_eq!(recent.get("hls/v/master.m3u8", (1, 100, 0)), None);
        assert_eq!(
            recent.get("hls/v/master.m3u8", (2, 105, 0)).as_deref(),
            Some(&b"again"[..])
        );
    }

    #[test]
    fn an_entry_expires() {
        let recent = Recent::new(Duration::from_millis(50), MAX_BYTES);
        recent.put("k", (1, 1, 0), Bytes::from_static(b"key"));
        assert!(recent.get("k", (1, 1, 0)).is_some());
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(recent.get("k", (1, 1, 0)), None);
    }

    #[test]
    fn what_is_kept_stays_bounded() {
        let recent = Recent::new(TTL, 1 << 20);
        let body = Bytes::from(vec![b'#'; 64 << 10]);
        for i in 0..100 {
            recent.put(&format!("hls/{i}/index.m3u8"), (1, 1, 0), body.clone());
        }
        recent.cache.run_pending_tasks();
        assert!(
            recent.cache.weighted_size() <= 1 << 20,
            "{}",
            recent.cache.weighted_size()
        );
        recent.put("huge", (1, 1, 0), Bytes::from(vec![0; MAX_BODY + 1]));
        assert_eq!(recent.get("huge", (1, 1, 0)), None, "too large to keep");
    }
}
