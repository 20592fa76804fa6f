//! The hot cache: small, hot files (playlists, segments) served from memory.
//!
//! Bounded in bytes by a weigher, filled single-flight (one request reads the file, concurrent
//! misses for the same path wait for it), and never stale: every hit is revalidated with one
//! `stat` against the file's identity (device, inode, size, mtime), so a replaced or deleted
//! file is never served from memory. Purge drops entries by path prefix.

use std::fs::File;
use std::os::unix::fs::FileExt;
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
}

impl HotCache {
    /// A cache of at most `max_bytes`, holding files up to `max_object` bytes.
    pub fn new(max_bytes: u64, max_object: u64, metrics: Arc<Metrics>) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<[u8]>, v: &Arc<Cached>| {
                let w = v.body.len() + k.len() + ENTRY_OVERHEAD as usize;
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .eviction_listener(move |_k, v: Arc<Cached>, cause| {
                metrics.cache_bytes.sub(v.body.len() as i64);
                if cause == RemovalCause::Size {
                    metrics.cache_evictions.inc();
                }
            })
            .build();
        Self { inner, max_object }
    }

    /// Whether a file of `size` bytes belongs in the cache.
    pub fn admits(&self, size: u64) -> bool {
        size <= self.max_object && self.max_object > 0
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
    /// already doing so, in which case this waits for its result.
    pub async fn fill(
        &self,
        uri: &[u8],
        file: File,
        meta: FileMeta,
        metrics: &Metrics,
    ) -> Result<Arc<Cached>, Arc<std::io::Error>> {
        let key: Arc<[u8]> = Arc::from(uri);
        let entry = self
            .inner
            .try_get_with(key, async move {
                let body = tokio::task::spawn_blocking(move || read_exact_size(&file, meta.size))
                    .await
                    .map_err(std::io::Error::other)??;
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
fn read_exact_size(file: &File, size: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(size).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0)?;
    let mut probe = [0u8; 1];
    if file.read_at(&mut probe, size)? != 0 {
        return Err(std::io::Error::other("file grew while being cached"));
    }
    Ok(Bytes::from(buf))
}
