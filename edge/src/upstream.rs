//! Pull-through: with an `[upstream]` the content root is a disk cache in front of a bucket
//! or another HTTP server (a shield edge).
//!
//! The service verifies the signature first, so a forged or expired URL never causes an
//! upstream request. Then a path the [`disk`] index holds (fresh: playlists only for
//! `playlist_ttl`) is served from the root exactly like local content (open-file cache, hot
//! cache, sendfile); anything else is pulled: one [`fill`] per object, every concurrent
//! request for it streamed from that fill, at most [`FILLS_MAX`] fills at once; a request that waited `lock_timeout` for the fill
//! to answer fetches the object itself, uncached, while fewer than [`DIRECT_MAX`] do so (the
//! others keep waiting for the fill). An object the upstream does not have is
//! answered 404 from memory for `playlist_ttl` (nginx's `proxy_cache_valid 404`), so players
//! retrying a deleted video do not turn into a bucket request each. The cache key is the
//! normalised path (`$uri` below the prefix), never the query string.
//!
//! # Layout
//! - [`source`]: one GET against the bucket or the HTTP upstream, errors as 404/502/504.
//! - [`fill`]: single-flight fills into temporary files, and the bodies streamed from them.
//! - [`disk`]: the index of what was pulled: LRU within a byte budget, rescanned at start.

/// Requests that gave up waiting on a fill and fetch for themselves at once, edge-wide. More
/// would wait for their fills: a bucket slow to answer one object is not sent one request per
/// waiting viewer (the fill, answering first, serves them sooner anyway).
const DIRECT_MAX: usize = 16;
/// Objects pulled from the upstream at once, edge-wide; more wait for a place. A fill runs on
/// after the request that started it (a HEAD, a client that left), so without a bound one
/// connection asking for many cold objects would start a bucket download and a temporary file
/// per request, past the disk budget (nginx's fills are bounded by its connections).
pub const FILLS_MAX: usize = 64;
/// Bytes of paths remembered as missing at most, each weighed with its bookkeeping: a path
/// may be as long as a request line (8 KiB), so a count would not bound the memory.
const MISSING_BYTES: u64 = 16 << 20;
/// What moka and the map spend on an entry besides its path, roughly.
const MISSING_OVERHEAD: u32 = 64;

pub mod disk;
pub mod fill;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::Instrument;

use crate::config::upstream::UpstreamSettings;
use crate::metrics::Metrics;
use disk::DiskCache;
use fill::{Fill, Head, Progress};
use source::{FetchError, Fetched, Source};
use tokio::sync::watch;

/// The upstream, its fills in flight and the disk cache.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

/// What the fill tasks share with the service.
pub struct Inner {
    source: Source,
    disk: DiskCache,
    /// Fills in flight, by path below the prefix.
    fills: Mutex<HashMap<Arc<[u8]>, Arc<Fill>>>,
    metrics: Arc<Metrics>,
    timeout: Duration,
    lock_timeout: Duration,
    playlist_ttl: Duration,
    /// Requests fetching for themselves after `lock_timeout`, at most [`DIRECT_MAX`] at once.
    direct: Arc<tokio::sync::Semaphore>,
    /// Places for fills, [`FILLS_MAX`].
    fill_places: tokio::sync::Semaphore,
    /// Paths the upstream answered 404 for, remembered for `playlist_ttl`.
    missing: moka::sync::Cache<Arc<[u8]>, ()>,
    describe: String,
}

/// How a pulled object is answered.
pub enum Pulled {
    /// From a fill (this request's or another's), as its bytes arrive.
    Filling(Head, watch::Receiver<Progress>),
    /// Straight from the upstream, uncached: the fill it waited for did not answer in time.
    Direct(Fetched),
}

impl Upstream {
    /// Builds the client and opens the disk cache at `root` (emptying its fill directory and
    /// indexing what is already there).
    pub fn new(
        settings: &UpstreamSettings,
        root: &std::path::Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, source::SetupError> {
        let source = Source::new(&settings.source)?;
        let disk = DiskCache::open(root, settings.cache_max_bytes, metrics.clone())?;
        let timeout = settings.source.timeout();
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                disk,
                fills: Mutex::new(HashMap::new()),
                metrics,
                timeout,
                lock_timeout: settings.lock_timeout,
                playlist_ttl: settings.playlist_ttl,
                direct: Arc::new(tokio::sync::Semaphore::new(DIRECT_MAX)),
                fill_places: tokio::sync::Semaphore::new(FILLS_MAX),
                missing: missing_memory(settings.playlist_ttl),
                describe: settings.source.describe(),
            }),
        })
    }

    /// The bucket or URL, for logs.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// Files in the disk cache.
    pub fn cached_files(&self) -> u64 {
        self.inner.disk.entry_count()
    }

    /// Tries the upstream once.
    pub async fn check(&self) -> Result<(), String> {
        self.inner.source.check().await
    }

    /// Whether `rel` may be served from the root as it is: cached, and for a playlist
    /// (`playlist`) pulled less than `playlist_ttl` ago. Counts a disk-cache hit or miss.
    pub fn fresh(&self, rel: &[u8], playlist: bool) -> bool {
        let ttl = playlist.then_some(self.inner.playlist_ttl);
        let fresh = self.inner.disk.fresh(rel, ttl);
        let m = &self.inner.metrics;
        match fresh {
            true => m.disk_cache_hits.inc(),
            false => m.disk_cache_misses.inc(),
        }
        fresh
    }

    /// Whether a copy of `rel` is on disk, fresh or stale (served when the upstream fails).
    pub fn holds(&self, rel: &[u8]) -> bool {
        self.inner.disk.holds(rel)
    }

    /// Drops `rel` from the index (its file is gone).
    pub fn forget(&self, rel: &[u8]) {
        self.inner.disk.remove(rel);
    }

    /// Drops cached files under `prefix` (below the content prefix); returns how many. What
    /// was missing there may exist now: that memory goes too.
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let inner = &self.inner;
        // Fills in flight there may hold the very bytes purged: they finish for the requests
        // that joined them but keep nothing (nor remember a 404), and later requests start
        // fills of their own. One still waiting for its place pulls what follows the purge,
        // and stays. Marked before the files are dropped: a fill that indexes its
        // object after the mark sees it and drops it, one that indexed before has it dropped
        // below.
        let mut fills = inner.fills.lock().unwrap_or_else(PoisonError::into_inner);
        fills.retain(|rel, fill| !(rel.starts_with(prefix) && fill.purge()));
        drop(fills);
        // After the marks: a fill that remembers a 404 does so under the fills' lock, and
        // only unmarked, so every 404 remembered under the prefix before the purge is here.
        let forgotten: Vec<_> = inner
            .missing
            .iter()
            .filter(|(rel, _)| rel.starts_with(prefix))
            .map(|(rel, _)| rel)
            .collect();
        for rel in forgotten {
            inner.missing.invalidate(rel.as_ref());
        }
        inner.disk.purge_prefix(prefix)
    }

    /// Pulls `rel` (a valid path below the prefix; `args`, the request's query, goes to an
    /// HTTP upstream): joins the fill in flight or starts one, and waits for its head.
    pub async fn pull(&self, rel: &str, args: &[u8]) -> Result<Pulled, FetchError> {
        let inner = &self.inner;
        if inner.missing.contains_key(rel.as_bytes()) {
            inner.metrics.upstream_missing_remembered.inc();
            return Err(FetchError::NotFound);
        }
        let (fill, started) = {
            let mut fills = inner.fills.lock().unwrap_or_else(PoisonError::into_inner);
            match fills.get(rel.as_bytes()) {
                Some(fill) => (fill.clone(), false),
                None => {
                    let fill = Arc::new(Fill::default());
                    fills.insert(Arc::from(rel.as_bytes()), fill.clone());
                    (fill, true)
                }
            }
        };
        let mut rx = fill.subscribe();
        if started {
            // Its own span: it outlives the request that started it, and its log lines name
            // the object.
            let span = tracing::info_span!(parent: None, "fill", path = rel);
            tokio::spawn(
                fill::run(inner.clone(), fill, rel.to_owned(), args.to_owned()).instrument(span),
            );
            let head = fill::head(&mut rx).await?;
            return Ok(Pulled::Filling(head, rx));
        }
        inner.metrics.upstream_coalesced.inc();
        if let Ok(head) = tokio::time::timeout(inner.lock_timeout, fill::head(&mut rx)).await {
            return Ok(Pulled::Filling(head?, rx));
        }
        // nginx's proxy_cache_lock_timeout: go upstream alone, uncached, while few do; the
        // others keep waiting for the fill, which has its own timeout.
        inner.metrics.upstream_lock_timeouts.inc();
        let Ok(slot) = inner.direct.clone().try_acquire_owned() else {
            return Ok(Pulled::Filling(fill::head(&mut rx).await?, rx));
        };
        let fetched = inner.source.fetch(rel, args, inner.timeout).await;
        inner
            .metrics
            .upstream_request(fetched.as_ref().map_or_else(|e| e.outcome(), |_| "ok"));
        let mut fetched = fetched?;
        // The slot is held until the body has been sent (or dropped).
        fetched.body = Box::pin(futures_util::StreamExt::inspect(fetched.body, move |_| {
            let _ = &slot;
        }));
        Ok(Pulled::Direct(fetched))
    }
}

/// The paths the upstream answered 404 for, each for `ttl`, within [`MISSING_BYTES`].
fn missing_memory(ttl: Duration) -> moka::sync::Cache<Arc<[u8]>, ()> {
    moka::sync::Cache::builder()
        .max_capacity(MISSING_BYTES)
        .weigher(|path: &Arc<[u8]>, _: &()| {
            u32::try_from(path.len())
                .unwrap_or(u32::MAX)
                .saturating_add(MISSING_OVERHEAD)
        })
        .time_to_live(ttl)
        .build()
}

impl Inner {
    /// `fill` of `rel` is over: the next miss starts a new one. A newer fill of `rel` (one
    /// started after a purge) stays. `missing`: the upstream has no `rel`, answered 404 from
    /// memory for a while, unless a purge came meanwhile (it may be there now).
    fn forget(&self, rel: &[u8], fill: &Arc<Fill>, missing: bool) {
        let mut fills = self.fills.lock().unwrap_or_else(PoisonError::into_inner);
        // Under the lock a purge marks fills with: it comes before, or after and forgets this.
        if missing && !fill.purged() {
            self.missing.insert(Arc::from(rel), ());
        }
        if fills.get(rel).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            fills.remove(rel);
        }
    }
}

/// `rel` as a path that may be pulled and stored: UTF-8, no empty, `.` or `..` segment, no
/// control byte, not the cache's marker or inside its fill directory.
pub fn valid_rel(rel: &[u8]) -> Option<&str> {
    let rel = std::str::from_utf8(rel).ok()?;
    let bad_segment = rel
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..");
    let bad_byte = rel.bytes().any(|b| b < 0x20 || b == 0x7f);
    let internal = rel == disk::MARKER
        || rel
            .strip_prefix(disk::FILL_DIR)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'));
    (!rel.is_empty() && !bad_segment && !bad_byte && !internal).then_some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_missing_paths_are_remembered_within_the_memory_bound() {
        let missing = missing_memory(Duration::from_secs(60));
        for i in 0..10_000u32 {
            let mut path = vec![b'a'; 8_000];
            path[..4].copy_from_slice(&i.to_be_bytes());
            missing.insert(Arc::from(path), ());
        }
        missing.run_pending_tasks();
        let held: u64 = missing.iter().map(|(path, ())| path.len() as u64).sum();
        assert!(held <= MISSING_BYTES, "{held} bytes of paths held");
        assert!(
            held >= MISSING_BYTES / 2,
            "only {held} bytes held: the bound is too eager"
        );
    }

    #[test]
    fn only_plain_paths_are_pulled() {
        assert_eq!(valid_rel(b"v/720p/seg_000.ts"), Some("v/720p/seg_000.ts"));
        for bad in [
            &b""[..],
            b"v//a.ts",
            b"v/../a.ts",
            b"./a.ts",
            b"v/",
            b"a\x01.ts",
            b"\xff.ts",
            b".edge-fill/123-4",
            b".edge-fill",
            b".edge-cache",
        ] {
            assert_eq!(valid_rel(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
