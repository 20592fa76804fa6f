//! The open-file cache: descriptors of recently served files, like nginx's `open_file_cache`,
//! so a hot segment on plain HTTP costs one `stat` and one `sendfile`, with no open, no read
//! into memory and no user-space copy.
//!
//! Bounded in entries (descriptors), dropped after an idle period, and never stale: every hit
//! is revalidated with `stat` against the identity recorded when the file was opened.
//! `sendfile` takes an explicit offset, so one descriptor serves any number of concurrent
//! responses.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use crate::resolve::FileMeta;

/// An open file with its precomputed validators.
#[derive(Debug)]
pub struct OpenFile {
    pub file: Arc<File>,
    pub meta: FileMeta,
    pub etag: Arc<str>,
    pub last_modified: Arc<str>,
}

impl OpenFile {
    pub fn new(file: File, meta: FileMeta) -> Self {
        Self {
            file: Arc::new(file),
            meta,
            etag: meta.etag().into(),
            last_modified: meta.last_modified().into(),
        }
    }
}

/// The cache, keyed by `$uri`.
#[derive(Clone)]
pub struct OpenFiles {
    inner: Cache<Arc<[u8]>, Arc<OpenFile>>,
}

impl OpenFiles {
    /// Up to `max` descriptors, each closed after `idle` without use.
    pub fn new(max: u64, idle: Duration) -> Self {
        Self {
            inner: Cache::builder()
                .max_capacity(max)
                .time_to_idle(idle)
                .build(),
        }
    }

    pub fn get(&self, uri: &[u8]) -> Option<Arc<OpenFile>> {
        self.inner.get(uri)
    }

    pub fn insert(&self, uri: &[u8], file: Arc<OpenFile>) {
        self.inner.insert(Arc::from(uri), file);
    }

    pub fn invalidate(&self, uri: &[u8]) {
        self.inner.invalidate(uri);
    }

    /// Drops every entry under `prefix`; returns how many.
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let keys: Vec<Arc<Arc<[u8]>>> = self
            .inner
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        for k in &keys {
            self.inner.invalidate(k.as_ref());
        }
        keys.len()
    }
}
