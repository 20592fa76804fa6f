//! The media store: where uploads, published HLS, keys, thumbnails and subtitle files live.
//!
//! With `[storage] backend = "fs"` (the default) it is the data directory itself: what the
//! pipeline renames into `<data>/hls` is published, and every process of the deployment must
//! see that one disk. With `backend = "s3"` it is a bucket, and each machine's data directory
//! is only its working copy: the pipeline still produces and publishes into the local layout
//! (so every step keeps its atomic renames), and [`MediaStore`] copies what became visible
//! into the bucket in an order that never shows anything incomplete; the API reads from the
//! bucket, so it needs no disk shared with the workers.
//!
//! # Bucket layout (under the configured prefix)
//! ```text
//! hls/<video>/master.m3u8, <rung>/index.m3u8, <rung>/segment_000.ts   what the edge pulls
//! private/keys/<video>/<rung>.key             never under hls/: the edge's prefix cannot reach it
//! private/thumbs/<video>/...                  poster and storyboard (served by the origin)
//! private/subtitles/<video>/...               uploaded subtitle files
//! private/sources/<video>                     the upload
//! private/work/<video>/<attempt>/...          resume checkpoints of a running encode
//! private/published/<video>.json              the marker: present only once all the rest is
//! ```
//! The edge's `[upstream]` prefix is `<prefix>hls/`; give it credentials that can read only
//! that prefix.
//!
//! # Layout
//! - [`bucket`]: verified bucket operations (put confirmed by ETag or size, multipart with flat
//!   memory, downloads renamed into place, paged prefix deletes that report what is left).
//! - [`tree`]: a video's published files, pushed in publishing order and pulled back.
//! - [`checkpoint`]: an encode's complete segments saved as it runs, for crash-resume on
//!   another machine.
//! - [`recent`]: finished videos' playlists and keys kept in memory for playback.
//! - [`leftovers`]: what a killed process left half-written, removed at the next start.

pub mod bucket;
pub mod checkpoint;
pub mod leftovers;
pub mod recent;
pub mod tree;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use shared::media::{Layout, VideoId};
use shared::objects::Objects;

pub use bucket::Bucket;

use crate::config::storage::SourceAccess;
use crate::transcode::input::Source;

/// Why a media-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bucket: {op} {name}: {source}")]
    Bucket {
        op: &'static str,
        name: String,
        source: shared::objects::object_store::Error,
    },
    #[error("bucket: {name}: {what}")]
    Mismatch { name: String, what: String },
    #[error("bucket: {left} objects are left under {dir} ({first})")]
    Left {
        dir: String,
        left: usize,
        first: String,
    },
    #[error("not a valid object name: {0:?}")]
    BadName(String),
}

/// How long a presigned source URL stays valid: longer than any encode may take (S3 allows up
/// to 7 days).
pub const SOURCE_URL_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Where an upload can be read, once fetched ([`MediaStore::fetch_source`]). `Debug` shows a
/// URL without its query, as [`Source`] does.
#[derive(Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A file on this machine.
    File(PathBuf),
    /// A presigned URL of the bucket's object; its query is a credential.
    Presigned(String),
}

impl Fetched {
    /// What ffmpeg reads.
    pub fn source(&self) -> Source<'_> {
        match self {
            Fetched::File(path) => Source::File(path),
            Fetched::Presigned(url) => Source::Url(url),
        }
    }
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source().fmt(f)
    }
}

/// Size and modification time of a local file as it was pushed.
type Stamp = (u64, std::time::SystemTime);

/// Where media lives: the data directory, or a bucket with the data directory as working copy.
#[derive(Debug, Clone)]
pub struct MediaStore {
    layout: Layout,
    remote: Option<Arc<Remote>>,
}

#[derive(Debug)]
struct Remote {
    bucket: Bucket,
    /// How workers read uploads: downloaded, or through a presigned URL.
    source_access: SourceAccess,
    /// Files this process pushed (object name -> stamp), so a growing publish sends each
    /// segment once however often the tree is pushed.
    pushed: Mutex<HashMap<String, Stamp>>,
    /// Objects of finished videos read for playback.
    recent: recent::Recent,
}

impl MediaStore {
    /// The data directory is the store.
    pub fn local(layout: Layout) -> Self {
        Self {
            layout,
            remote: None,
        }
    }

    /// A bucket is the store; `layout` is this machine's working copy; workers read uploads
    /// as `source_access` says.
    pub fn bucket(layout: Layout, objects: Objects, source_access: SourceAccess) -> Self {
        Self {
            layout,
            remote: Some(Arc::new(Remote {
                bucket: Bucket::new(objects),
                source_access,
                pushed: Mutex::new(HashMap::new()),
                recent: recent::Recent::default(),
            })),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The bucket, when media lives in one.
    pub fn remote(&self) -> Option<&Bucket> {
        self.remote.as_deref().map(|r| &r.bucket)
    }

    /// Reads `rel` (a path relative to the data directory, such as `hls/<video>/master.m3u8`):
    /// `None` when it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<Bytes>, StorageError> {
        match self.remote() {
            Some(bucket) => bucket.get(&object_name(rel)).await,
            None => match tokio::fs::read(self.layout.root().join(rel)).await {
                Ok(bytes) => Ok(Some(bytes.into())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Reads `rel` of a finished video whose job is at `version`, as [`read`](Self::read)
    /// does; with a bucket, from memory when this process read it for the same version less
    /// than [`recent::TTL`] ago (the data directory needs no such help: the page cache is it).
    pub async fn read_finished(
        &self,
        rel: &str,
        version: recent::Version,
    ) -> Result<Option<Bytes>, StorageError> {
        let Some(remote) = self.remote.as_deref() else {
            return self.read(rel).await;
        };
        let name = object_name(rel);
        if let Some(body) = remote.recent.get(&name, version) {
            return Ok(Some(body));
        }
        let read = remote.bucket.get(&name).await?;
        if let Some(body) = &read {
            remote.recent.put(&name, version, body.clone());
        }
        Ok(read)
    }

    /// Makes a new upload durable in the store: with a bucket, the probed local file is
    /// uploaded (multipart for a large one) and the local copy removed.
    pub async fn store_source(&self, video: &VideoId) -> Result<(), StorageError> {
        let Some(bucket) = self.remote() else {
            return Ok(());
        };
        let path = self.layout.source_file(video);
        let result = bucket.put_file(&source_name(video), &path).await;
        remove_file(&path)?;
        result
    }

    /// Where ffmpeg reads `video`'s upload: its local path (downloaded from the bucket first
    /// when needed), or with `source_access = "presigned"` a presigned URL valid for
    /// [`SOURCE_URL_TTL`]. `Ok(None)`: there is no upload.
    pub async fn fetch_source(&self, video: &VideoId) -> Result<Option<Fetched>, StorageError> {
        let path = self.layout.source_file(video);
        let here = tokio::fs::try_exists(&path).await?;
        let Some(remote) = self.remote.as_deref().filter(|_| !here) else {
            return Ok(here.then_some(Fetched::File(path)));
        };
        let name = source_name(video);
        if remote.source_access == SourceAccess::Presigned {
            if !remote.bucket.exists(&name).await? {
                return Ok(None);
            }
            return remote
                .bucket
                .presign_get(&name, SOURCE_URL_TTL)
                .await
                .map(|url| Some(Fetched::Presigned(url)));
        }
        let downloaded = remote.bucket.download(&name, &path).await?;
        Ok(downloaded.then_some(Fetched::File(path)))
    }

    /// Drops this machine's copy of an upload kept in the bucket (after a job).
    pub fn release_source(&self, video: &VideoId) {
        if self.remote.is_some() {
            if let Err(error) = remove_file(&self.layout.source_file(video)) {
                tracing::warn!(%error, "cannot remove the local copy of an upload");
            }
        }
    }

    /// Whether `video`'s upload is kept.
    pub async fn has_source(&self, video: &VideoId) -> Result<bool, StorageError> {
        match self.remote() {
            Some(bucket) => bucket.exists(&source_name(video)).await,
            None => Ok(tokio::fs::try_exists(self.layout.source_file(video)).await?),
        }
    }

    /// Whether `video` is completely published: its marker exists (a bucket), or its master
    /// playlist (the data directory, where publishing is a rename).
    pub async fn is_published(&self, video: &VideoId) -> Result<bool, StorageError> {
        match self.remote() {
            Some(bucket) => bucket.exists(&marker_name(video)).await,
            None => {
                Ok(tokio::fs::try_exists(self.layout.video_dir(video).join("master.m3u8")).await?)
            }
        }
    }

    /// Removes everything of `video`: its published media and keys, thumbnails, subtitle
    /// files, upload and resume checkpoints, here and in the bucket (the marker first, so it
    /// stops counting as published before anything else goes). A failure names what is left;
    /// calling again continues.
    pub async fn remove_video(&self, video: &VideoId) -> Result<(), StorageError> {
        crate::transcode::publish::unpublish(&self.layout, video)?;
        remove_file(&self.layout.source_file(video))?;
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        remote.forget(video);
        let bucket = &remote.bucket;
        bucket.delete(&marker_name(video)).await?;
        let mut first_error = None;
        for dir in video_dirs(video)
            .into_iter()
            .chain([format!("private/work/{video}")])
        {
            if let Err(e) = bucket.delete_dir(&dir).await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = bucket.delete(&source_name(video)).await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Remote {
    /// Forgets what was pushed for `video` (its objects are gone or replaced).
    fn forget(&self, video: &VideoId) {
        let needle = format!("/{video}/");
        self.pushed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| !name.contains(&needle));
    }
}

/// The object name of `rel`, a path relative to the data directory: the published tree keeps
/// its place (the edge pulls it), everything else lives under `private/`.
pub fn object_name(rel: &str) -> String {
    if rel.starts_with("hls/") {
        rel.to_owned()
    } else {
        format!("private/{rel}")
    }
}

fn source_name(video: &VideoId) -> String {
    object_name(&format!("sources/{video}"))
}

fn marker_name(video: &VideoId) -> String {
    format!("private/published/{video}.json")
}

/// The directories an encode publishes, relative to the data directory (`hls/`, `keys/`,
/// `thumbs/`). A video's uploaded subtitle files (`subtitles/`) are the API's: an encode reads
/// them but never pushes them nor sweeps them, so a file another machine adds or deletes
/// meanwhile stays as it was made.
fn published_dirs(video: &VideoId) -> [String; 3] {
    [
        format!("hls/{video}"),
        format!("keys/{video}"),
        format!("thumbs/{video}"),
    ]
}

/// Every directory of a video, its subtitle files too, as object prefixes.
fn video_dirs(video: &VideoId) -> [String; 4] {
    let [hls, keys, thumbs] = published_dirs(video);
    [hls, keys, thumbs, format!("subtitles/{video}")].map(|d| object_name(&d))
}

/// Removes `dir` and what it holds; already gone is fine.
pub(crate) fn remove_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes `path`; already gone is fine.
pub(crate) fn remove_file(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
