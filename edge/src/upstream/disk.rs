//! The disk cache: which files under the content root were pulled, how large, and in what
//! order they were used, within a byte budget.
//!
//! An index (moka, least-recently-used eviction, weighed in bytes) is the truth about what may
//! be served: a file under the root that is not in it (a fill's temporary file, anything
//! stray) is never served, it is pulled again. Evicting an entry deletes its file (only if
//! it is still the same inode: a newer fill may have replaced it). Fills write under
//! `<root>/.edge-fill/` and rename into place once flushed to the disk, so a partial file
//! never has a servable name, not even after a power cut; at
//! start that directory is emptied and the rest of the root is scanned back into the index,
//! oldest use first, so the cache survives a restart.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::metrics::Metrics;

/// Where fills write, under the root.
pub const FILL_DIR: &str = ".edge-fill";

/// One cached file.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub size: u64,
    pub ino: u64,
    /// When it was pulled (`None`: found at start, age unknown).
    pub fetched: Option<Instant>,
}

/// The file that marks a directory as an edge's disk cache.
pub const MARKER: &str = ".edge-cache";
/// What `mkfs` leaves in an empty filesystem: neither content nor cache.
const LOST_FOUND: &str = "lost+found";

/// The index of the disk cache.
pub struct DiskCache {
    root: PathBuf,
    index: Cache<Arc<[u8]>, Entry>,
    /// The largest object it takes: the budget, and what one entry can weigh.
    max_object: u64,
}

impl DiskCache {
    /// Opens the cache at `root`: empties the fill directory and indexes what is there.
    pub fn open(root: &Path, max_bytes: u64, metrics: Arc<Metrics>) -> io::Result<Self> {
        let root = root.to_owned();
        let metrics_for_scan = metrics.clone();
        let listener_root = root.clone();
        let index = Cache::builder()
            .max_capacity(max_bytes)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|_k: &Arc<[u8]>, e: &Entry| u32::try_from(e.size.max(1)).unwrap_or(u32::MAX))
            .eviction_listener(move |rel: Arc<Arc<[u8]>>, e: Entry, cause| {
                metrics.disk_cache_bytes.sub(e.size as i64);
                match cause {
                    // A newer fill took the name: its file is the one on disk now.
                    RemovalCause::Replaced => {}
                    RemovalCause::Size => {
                        metrics.disk_cache_evictions.inc();
                        remove_if_same(&listener_root, &rel, e.ino);
                    }
                    RemovalCause::Explicit | RemovalCause::Expired => {
                        remove_if_same(&listener_root, &rel, e.ino)
                    }
                }
            })
            .build();
        let cache = Self {
            root,
            index,
            max_object: max_bytes.min(u64::from(u32::MAX)),
        };
        let scan_metrics = metrics_for_scan;
        cache.claim()?;
        let fill_dir = cache.fill_dir();
        match fs::remove_dir_all(&fill_dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(&fill_dir)?;
        cache.rescan(&scan_metrics)?;
        Ok(cache)
    }

    /// Whether an object of `size` bytes can be cached at all (checked before its fill writes
    /// anything: the size is the upstream's word).
    pub fn admits(&self, size: u64) -> bool {
        size <= self.max_object
    }

    /// Makes sure `root` is this cache's own: it evicts (deletes) files, so a root that holds
    /// anything else (an operator's content tree given by mistake) is refused, not emptied.
    /// An empty directory becomes a cache by getting the marker.
    fn claim(&self) -> io::Result<()> {
        let marker = self.root.join(MARKER);
        if marker.is_file() {
            return Ok(());
        }
        let fill_dir = self.fill_dir();
        // A fresh filesystem's lost+found is not content.
        let foreign = fs::read_dir(&self.root)?
            .flatten()
            .any(|e| e.path() != fill_dir && e.path() != self.root.join(LOST_FOUND));
        if foreign {
            return Err(io::Error::other(format!(
                "{} is not empty and has no {MARKER} marker: with an upstream the root is a \
                 disk cache whose files get evicted, so give it a directory of its own (empty, \
                 or one this edge cached into)",
                self.root.display()
            )));
        }
        fs::write(
            &marker,
            b"a disk cache of hls-edge: its files may be evicted at any time\n",
        )
    }

    /// Where fills write their temporary files.
    pub fn fill_dir(&self) -> PathBuf {
        self.root.join(FILL_DIR)
    }

    /// The final path of `rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Whether `rel` is cached and, for a playlist, younger than `ttl`. A hit counts as a use.
    pub fn fresh(&self, rel: &[u8], playlist_ttl: Option<Duration>) -> bool {
        match (self.index.get(rel), playlist_ttl) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(e), Some(ttl)) => e.fetched.is_some_and(|t| t.elapsed() < ttl),
        }
    }

    /// Whether `rel` is in the index, fresh or not (a stale playlist still on disk).
    pub fn holds(&self, rel: &[u8]) -> bool {
        self.index.contains_key(rel)
    }

    /// Records a completed fill (already renamed into place).
    pub fn insert(&self, rel: &[u8], entry: Entry, metrics: &Metrics) {
        metrics.disk_cache_bytes.add(entry.size as i64);
        self.index.insert(Arc::from(rel), entry);
        // moka evicts in batched maintenance: run it now so the budget holds after each fill.
        self.index.run_pending_tasks();
    }

    /// Drops `rel` and its file.
    pub fn remove(&self, rel: &[u8]) {
        self.index.invalidate(rel);
        self.index.run_pending_tasks();
    }

    /// Drops every entry under `prefix` (relative to the root) and its file; returns how many.
    pub fn purge_prefix(&self, prefix: &[u8]) -> usize {
        let keys: Vec<Arc<Arc<[u8]>>> = self
            .index
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        for k in &keys {
            self.index.invalidate(k.as_ref());
        }
        self.index.run_pending_tasks();
        keys.len()
    }

    /// Entries held.
    pub fn entry_count(&self) -> u64 {
        self.index.run_pending_tasks();
        self.index.entry_count()
    }

    /// Indexes every regular file under the root (outside the fill directory), least recently
    /// used first (access time, else modification time), so eviction order survives a restart.
    fn rescan(&self, metrics: &Metrics) -> io::Result<()> {
        let mut found = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let path = entry.path();
                let meta = match fs::symlink_metadata(&path) {
                    Ok(m) => m,
                    Err(_) => continue,
                };
                if meta.is_dir() {
                    if path != self.fill_dir() && path != self.root.join(LOST_FOUND) {
                        dirs.push(path);
                    }
                } else if meta.is_file() && path != self.root.join(MARKER) {
                    let Ok(rel) = path.strip_prefix(&self.root) else {
                        continue;
                    };
                    let Some(rel) = rel.to_str() else { continue };
                    let used = meta.atime().max(meta.mtime());
                    found.push((used, rel.to_owned(), meta.size(), meta.ino()));
                }
            }
        }
        found.sort();
        for (_, rel, size, ino) in found {
            let entry = Entry {
                size,
                ino,
                fetched: None,
            };
            self.insert(rel.as_bytes(), entry, metrics);
        }
        Ok(())
    }
}

/// Deletes `<root>/<rel>` if it is still the file with inode `ino`.
fn remove_if_same(root: &Path, rel: &[u8], ino: u64) {
    let Ok(rel) = std::str::from_utf8(rel) else {
        return;
    };
    let path = root.join(rel);
    if fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
        match fs::remove_file(&path) {
            Ok(()) => remove_empty_parents(root, &path),
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "cannot delete an evicted file")
            }
        }
    }
}

/// Removes the directories above `path` that are left empty, up to `root`: a directory of
/// evicted files would otherwise stay for good, and its name could never be cached as a file.
fn remove_empty_parents(root: &Path, path: &Path) {
    for dir in path.ancestors().skip(1) {
        // remove_dir fails on a directory that is not empty: the walk stops there.
        if dir == root || !dir.starts_with(root) || fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_left_empty_by_an_eviction_go_up_to_the_root() {
        let root = tempfile::tempdir().expect("root");
        let root = root.path();
        for file in ["v/720p/a.ts", "v/360p/b.ts", "v/360p/c.ts"] {
            let path = root.join(file);
            fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            fs::write(path, b"x").expect("write");
        }
        let ino = |rel: &str| fs::metadata(root.join(rel)).expect("meta").ino();
        remove_if_same(root, b"v/360p/b.ts", ino("v/360p/b.ts"));
        assert!(root.join("v/360p").is_dir(), "c.ts is still there");
        remove_if_same(root, b"v/720p/a.ts", ino("v/720p/a.ts"));
        assert!(!root.join("v/720p").exists());
        assert!(root.join("v").is_dir());
        remove_if_same(root, b"v/360p/c.ts", ino("v/360p/c.ts"));
        assert!(!root.join("v").exists(), "emptied to the root");
        assert!(root.is_dir(), "never the root itself");
    }
}
