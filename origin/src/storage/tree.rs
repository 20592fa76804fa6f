//! A video's published files, pushed from the working copy to the bucket in publishing order
//! and pulled back.
//!
//! Pushing keeps the publishing guarantee the data directory gets from renames: keys, segments,
//! thumbnails and subtitle cues first, then the rungs' playlists, then the master, and only
//! for a finished video, after every object was confirmed, the stale objects of an earlier
//! publish are removed and the marker written. A player that finds a playlist finds every file
//! it names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use shared::media::VideoId;

use super::{marker_name, object_name, published_dirs, MediaStore, Remote, Stamp, StorageError};

/// Objects sent at once.
const PARALLEL_PUTS: usize = 4;

/// What a push is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A growing publish: what is new, no marker.
    Growing,
    /// The finished video: everything, stale objects removed, then the marker.
    Final,
}

impl MediaStore {
    /// Pushes `video`'s published files (`hls/`, `keys/`, `thumbs/`) to the bucket; nothing to do
    /// on the data directory.
    pub async fn push_video(&self, video: &VideoId, phase: Phase) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let root = self.layout.root();
        let mut files = Vec::new();
        for dir in published_dirs(video) {
            walk(root, &root.join(&dir), &mut files)?;
        }
        // Publishing order: media, then rung playlists, then the master.
        let master = format!("hls/{video}/master.m3u8");
        let rank = |rel: &str| match rel {
            r if r == master => 2,
            r if r.ends_with(".m3u8") => 1,
            _ => 0,
        };
        for step in 0..=2 {
            let batch = files.iter().filter(|(rel, _)| rank(rel) == step);
            push_together(remote.clone(), batch.cloned().collect()).await?;
        }
        if phase == Phase::Final {
            let wanted: std::collections::HashSet<String> =
                files.iter().map(|(rel, _)| object_name(rel)).collect();
            for dir in published_dirs(video).map(|d| object_name(&d)) {
                for (name, _) in remote.bucket.list(&dir).await? {
                    if !wanted.contains(&name) {
                        remote.bucket.delete(&name).await?;
                    }
                }
            }
            let marker = serde_json::json!({
                "video": video,
                "objects": files.len(),
                "published_at": crate::jobs::model::unix_now(),
            });
            remote
                .bucket
                .put_bytes(&marker_name(video), marker.to_string().into())
                .await?;
            remote.forget(video);
        }
        Ok(())
    }

    /// Withdraws `video`'s published media from the bucket (marker, playlists, segments and
    /// keys; not its poster or subtitle files): a failed or restarted encode.
    pub async fn withdraw(&self, video: &VideoId) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        remote.forget(video);
        remote.bucket.delete(&marker_name(video)).await?;
        // The master first: from then on no player starts on what is being removed.
        remote
            .bucket
            .delete(&format!("hls/{video}/master.m3u8"))
            .await?;
        remote.bucket.delete_dir(&format!("hls/{video}")).await?;
        remote
            .bucket
            .delete_dir(&format!("private/keys/{video}"))
            .await
    }

    /// Pulls the bucket's copy of the directory `rel` (relative to the data directory, such as
    /// `hls/<video>`) into the working copy: the files whose name `wanted` accepts, replacing
    /// what differs in size.
    pub async fn pull_dir(
        &self,
        rel: &str,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let root = self.layout.root();
        let object_dir = object_name(rel);
        let listed = remote.bucket.list(&object_dir).await?;
        // A file the bucket no longer holds (deleted on another machine) goes here too.
        let mut here = Vec::new();
        walk(root, &root.join(rel), &mut here)?;
        for (local, path) in here {
            let tail = local.strip_prefix(rel).unwrap_or(&local);
            if wanted(tail) && !listed.iter().any(|(n, _)| *n == object_name(&local)) {
                super::remove_file(&path)?;
            }
        }
        for (name, size) in listed {
            let Some(tail) = name.strip_prefix(&object_dir) else {
                continue;
            };
            if !wanted(tail) {
                continue;
            }
            let path = root.join(rel).join(tail.trim_start_matches('/'));
            let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == size);
            if !same {
                remote.bucket.download(&name, &path).await?;
            }
            // Already in the bucket as it is here: a later push need not send it again.
            if let Ok(m) = std::fs::metadata(&path) {
                remote.remember(&name, stamp(&m));
            }
        }
        Ok(())
    }

    /// Pulls `video`'s published media and keys (to continue a growing publish elsewhere).
    pub async fn pull_video(&self, video: &VideoId) -> Result<(), StorageError> {
        self.pull_dir(&format!("hls/{video}"), |_| true).await?;
        self.pull_dir(&format!("keys/{video}"), |_| true).await
    }

    /// Pulls the subtitle files uploaded for `video` (`subtitles/<video>`), tombstones included.
    pub async fn pull_subtitles(&self, video: &VideoId) -> Result<(), StorageError> {
        self.pull_dir(&format!("subtitles/{video}"), |_| true).await
    }

    /// Removes single files (paths relative to the data directory) here and in the bucket.
    pub async fn remove_files(&self, rels: &[String]) -> Result<(), StorageError> {
        for rel in rels {
            super::remove_file(&self.layout.root().join(rel))?;
            if let Some(bucket) = self.remote() {
                bucket.delete(&object_name(rel)).await?;
            }
        }
        Ok(())
    }

    /// Pushes single files (paths relative to the data directory), in the order given.
    pub async fn push_files(&self, rels: &[String]) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        for rel in rels {
            remote.push_file(rel, &self.layout.root().join(rel)).await?;
        }
        Ok(())
    }

    /// Sends `rels` like [`Self::push_files`], several at once: files none of which names
    /// another (a rendition's segments).
    pub async fn push_files_together(&self, rels: &[String]) -> Result<(), StorageError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let root = self.layout.root();
        let files = rels.iter().map(|r| (r.clone(), root.join(r))).collect();
        push_together(remote.clone(), files).await
    }

    /// Removes the directory `rel` (relative to the data directory) here and in the bucket.
    pub async fn remove_dir(&self, rel: &str) -> Result<(), StorageError> {
        super::remove_dir(&self.layout.root().join(rel))?;
        match self.remote() {
            Some(bucket) => bucket.delete_dir(&object_name(rel)).await,
            None => Ok(()),
        }
    }
}

impl Remote {
    /// Sends one file unless this process already sent it unchanged.
    async fn push_file(&self, rel: &str, path: &Path) -> Result<(), StorageError> {
        let name = object_name(rel);
        let now = stamp(&tokio::fs::metadata(path).await?);
        let known = self
            .pushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            == Some(&now);
        if !known {
            self.bucket.put_file(&name, path).await?;
            self.remember(&name, now);
        }
        Ok(())
    }

    fn remember(&self, name: &str, stamp: Stamp) {
        self.pushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), stamp);
    }
}

/// Sends `files` (relative name, local path) [`PARALLEL_PUTS`] at a time, in no set order.
async fn push_together(
    remote: Arc<Remote>,
    files: Vec<(String, PathBuf)>,
) -> Result<(), StorageError> {
    stream::iter(files)
        .map(move |(rel, path)| {
            let remote = remote.clone();
            async move { remote.push_file(&rel, &path).await }
        })
        .buffer_unordered(PARALLEL_PUTS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH))
}

/// Every file under `dir` as (path relative to `root`, path), skipping files being written
/// (`*.part`, `*.tmp`).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".part") || name.ends_with(".tmp") {
            continue;
        }
        if let Ok(rel) = path.strip_prefix(root) {
            out.push((rel.to_string_lossy().into_owned(), path));
        }
    }
    Ok(())
}
