//! The hot cache: small, hot files (playlists, segments) served from memory.
//!
//! Bounded in bytes by a weigher, filled single-flight (one request reads the file, concurrent
//! misses for the same path wait for it), and never stale: every hit is revalidated with one
//! `stat` against the file's identity (device, inode, size, mtime), so a replaced or deleted
//! file is never served from memory. Purge drops entries by path prefix.
//!
//! An evicted body stays in memory for as long as a response is still sending it. Over TLS,
//! where every segment comes from memory, 1,000 players cycling through more than the budget
//! would keep nearly all of it alive that way; so the cache counts the bytes of bodies alive
//! outside it and stops filling ([`HotCache::reserve`]) while they pass a sixteenth of the
//! budget: those misses are read from the file a chunk at a time, bounded per connection.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use moka::future::Cache;
use moka::notification::RemovalCause;

use crate::metrics::Metrics;
use crate::resolve::FileMeta;

/// A cached file with its precomputed response headers.
#[derive(Debug)]
pub struct Cached {
    pub body: Bytes,
    pub meta: FileMeta,
    pub etag: Arc<str>,
    pub last_modified: Arc<str>,
}

/// Accounting overhead per entry beyond its body (key, headers, moka bookkeeping).
const ENTRY_OVERHEAD: u32 = 256;

/// The cache, keyed by `$uri`.
#[derive(Clone)]
pub struct HotCache {
    inner: Cache<Arc<[u8]>, Arc<Cached>>,
    max_object: u64,
    /// Most bytes of bodies alive outside the cache before fills stop.
    max_outside: u64,
    bytes: Arc<BodyBytes>,
}

/// Body bytes read by fills: all still alive, and those the cache holds.
#[derive(Debug, Default)]
struct BodyBytes {
    alive: AtomicU64,
    cached: AtomicU64,
}

/// Bytes counted as alive before a fill reads them, so concurrent misses cannot all pass the
/// check at once; they stay counted until the filled body (or a failed fill) is dropped.
pub struct Reservation {
    bytes: Arc<BodyBytes>,
    len: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.bytes.alive.fetch_sub(self.len, Ordering::Relaxed);
    }
}

/// A filled body, alive until the last response sending it is done.
struct Counted {
    buf: Vec<u8>,
    _reserved: Reservation,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl HotCache {
    /// A cache of at most `max_bytes`, holding files up to `max_object` bytes.
    pub fn new(max_bytes: u64, max_object: u64, metrics: Arc<Metrics>) -> Self {
        let bytes = Arc::new(BodyBytes::default());
        let evicted = bytes.clone();
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<[u8]>, v: &Arc<Cached>| {
                let w = v.body.len() + k.len() + ENTRY_OVERHEAD as usize;
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_k, v: Arc<Cached>, cause| {
                metrics.cache_bytes.sub(v.body.len() as i64);
                evicted
                    .cached
                    .fetch_sub(v.body.len() as u64, Ordering::Relaxed);
                if cause == RemovalCause::Size {
                    metrics.cache_evictions.inc();
                }
            })
            .build();
        Self {
            inner,
            max_object,
            // Never below one object: else an object above a sixteenth of the budget could
            // never be filled, and each request for it would hold a descriptor of its own.
            max_outside: (max_bytes / 16).max(max_object),
            bytes,
        }
    }

    /// Whether a file of `size` bytes belongs in the cache.
    pub fn admits(&self, size: u64) -> bool {
        size <= self.max_object && self.max_object > 0
    }

    /// Room for a fill of `size` bytes, unless evicted bodies still being sent and fills in
    /// progress already hold more than a sixteenth of the budget.
    pub fn reserve(&self, size: u64) -> Option<Reservation> {
        let mut alive = self.bytes.alive.load(Ordering::Relaxed);
        loop {
            let cached = self.bytes.cached.load(Ordering::Relaxed);
            if alive.saturating_sub(cached) + size > self.max_outside {
                return None;
            }
            match self.bytes.alive.compare_exchange_weak(
                alive,
                alive + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(Reservation {
                        bytes: self.bytes.clone(),
                        len: size,
                    })
                }
                Err(now) => alive = now,
            }
        }
    }

    /// The cached entry for `uri`, if any (not yet revalidated).
    pub async fn get(&self, uri: &[u8]) -> Option<Arc<Cached>> {
        self.inner.get(uri).await
    }

    /// Drops `uri` (found stale).
    pub async fn invalidate(&self, uri: &[u8]) {
        self.inner.invalidate(uri).await;
    }

    /// Returns the entry for `uri`, reading `file` into memory unless another request is
    /// already doing so, in which case this waits for its result (and `room` goes back).
    pub async fn fill(
        &self,
        uri: &[u8],
        file: File,
        meta: FileMeta,
        room: Reservation,
        metrics: &Metrics,
    ) -> Result<Arc<Cached>, Arc<std::io::Error>> {
        let key: Arc<[u8]> = Arc::from(uri);
        let bytes = self.bytes.clone();
        let entry = self
            .inner
            .try_get_with(key, async move {
                let buf = tokio::task::spawn_blocking(move || read_exact_size(&file, meta.size))
                    .await
                    .map_err(std::io::Error::other)??;
                bytes.cached.fetch_add(buf.len() as u64, Ordering::Relaxed);
                let body = Bytes::from_owner(Counted {
                    buf,
                    _reserved: room,
                });
                metrics.cache_bytes.add(body.len() as i64);
                Ok::<_, std::io::Error>(Arc::new(Cached {
                    body,
                    meta,
                    etag: meta.etag().into(),
                    last_modified: meta.last_modified().into(),
                }))
            })
            .await?;
        // moka evicts in batched maintenance; running it now keeps the cache within its byte
        // budget under a burst of misses instead of overshooting until the next batch.
        self.inner.run_pending_tasks().await;
        Ok(entry)
    }

    /// Drops every entry whose `$uri` starts with `prefix`; returns how many.
    pub async fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let keys: Vec<Arc<Arc<[u8]>>> = self
            .inner
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        for k in &keys {
            self.inner.invalidate(k.as_ref()).await;
        }
        keys.len()
    }

    /// Entries currently held.
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }
}

/// Reads exactly `size` bytes; a file that shrank or grew while being read is an error rather
/// than a cached half-file.
fn read_exact_size(file: &File, size: u64) -> std::io::Result<Vec<u8>> {
    let len = usize::try_from(size).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    let mut probe = [0u8; 1];
    if file.read_at(&mut probe, size)? != 0 {
        return Err(std::io::Error::other("file grew while being cached"));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_stop_while_bodies_outside_the_cache_pass_a_sixteenth_of_the_budget() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let cache = HotCache::new(1600, 60, metrics);
        let first = cache.reserve(60).expect("room");
        let second = cache.reserve(40).expect("room up to 100 bytes");
        assert!(cache.reserve(1).is_none(), "100 bytes outside the cache");
        drop(first);
        let third = cache.reserve(60).expect("room again once a body is gone");
        // Bytes the cache holds do not count against the allowance.
        cache.bytes.cached.fetch_add(100, Ordering::Relaxed);
        assert!(cache.reserve(100).is_some());
        drop((second, third));
        assert_eq!(cache.bytes.alive.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_object_above_a_sixteenth_of_the_budget_can_still_be_filled() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let cache = HotCache::new(1600, 800, metrics);
        let room = cache
            .reserve(800)
            .expect("room for the largest object admitted");
        assert!(cache.reserve(1).is_none(), "but not beside it");
        drop(room);
    }
}
