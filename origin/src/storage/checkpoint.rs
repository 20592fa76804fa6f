//! Resume checkpoints in the bucket: an encode's complete segments, saved while it runs, so
//! a worker on another machine can take over a dead attempt without encoding them again.
//!
//! Locally an attempt's work directory is its checkpoint (see `transcode::resume`). With a
//! bucket, [`Checkpoint::save`] copies each rung's complete segments (ffmpeg renames a segment
//! into place only once it is whole) and the attempt's manifest to
//! `private/work/<video>/<attempt>/`; [`MediaStore::restore_attempts`] brings other machines'
//! attempts back as local work directories, where the local resume finds them unchanged.

use std::path::{Path, PathBuf};

use shared::media::VideoId;

use super::{Bucket, MediaStore, StorageError};
use crate::transcode::growing::write_atomically;
use crate::transcode::resume::{segment_name, MANIFEST};

/// One attempt's checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    bucket: Bucket,
    /// `private/work/<video>/<attempt>`.
    dir: String,
    work: PathBuf,
    rungs: Vec<String>,
    /// Segments saved per rung (consecutive from 0).
    saved: Vec<u32>,
}

impl MediaStore {
    /// Starts the checkpoint of the attempt working in `work` (`<data>/tmp/<video>-<attempt>`),
    /// saving its manifest; `None` on the data directory, where the work directory is enough.
    pub async fn checkpoint(
        &self,
        video: &VideoId,
        work: &Path,
        rungs: &[String],
    ) -> Result<Option<Checkpoint>, StorageError> {
        let Some(bucket) = self.remote() else {
            return Ok(None);
        };
        let attempt = attempt_of(video, work)
            .ok_or_else(|| StorageError::BadName(work.display().to_string()))?;
        let checkpoint = Checkpoint {
            bucket: bucket.clone(),
            dir: format!("private/work/{video}/{attempt}"),
            work: work.to_owned(),
            rungs: rungs.to_vec(),
            saved: vec![0; rungs.len()],
        };
        checkpoint
            .bucket
            .put_file(
                &format!("{}/{MANIFEST}", checkpoint.dir),
                &work.join(MANIFEST),
            )
            .await?;
        Ok(Some(checkpoint))
    }

    /// Brings every attempt of `video` saved in the bucket by another machine back as a local
    /// work directory (its manifest and complete segments), for the local resume to consider.
    /// An attempt is downloaded only if its manifest is still there (a withdrawn one went on
    /// to publish) and `resumable` accepts it: one this encode cannot continue costs one
    /// small read, not its segments.
    pub async fn restore_attempts(
        &self,
        video: &VideoId,
        resumable: impl Fn(&[u8]) -> bool,
    ) -> Result<usize, StorageError> {
        let Some(bucket) = self.remote() else {
            return Ok(0);
        };
        let base = format!("private/work/{video}");
        let mut restored = 0;
        for attempt in bucket.subdirectories(&base).await? {
            let local = self.layout.tmp_root().join(format!("{video}-{attempt}"));
            if local.exists() {
                continue;
            }
            let dir = format!("{base}/{attempt}");
            let Some(manifest) = bucket.get(&format!("{dir}/{MANIFEST}")).await? else {
                continue;
            };
            if !resumable(&manifest) {
                continue;
            }
            // Segments first, the manifest last: a half-restored directory is never a candidate.
            for (name, _) in bucket.list(&format!("{dir}/hls")).await? {
                let Some(tail) = name.strip_prefix(&format!("{dir}/")) else {
                    continue;
                };
                bucket.download(&name, &local.join(tail)).await?;
            }
            std::fs::create_dir_all(&local)?;
            write_atomically(&local.join(MANIFEST), &manifest)?;
            restored += 1;
        }
        Ok(restored)
    }

    /// Withdraws the attempt working in `work` as a resume candidate (its segments are about
    /// to be encrypted in place).
    pub async fn forget_attempt(&self, video: &VideoId, work: &Path) -> Result<(), StorageError> {
        let (Some(bucket), Some(attempt)) = (self.remote(), attempt_of(video, work)) else {
            return Ok(());
        };
        bucket
            .delete(&format!("private/work/{video}/{attempt}/{MANIFEST}"))
            .await
    }

    /// Removes every checkpoint of `video` (it is published, or gone).
    pub async fn drop_attempts(&self, video: &VideoId) -> Result<(), StorageError> {
        match self.remote() {
            Some(bucket) => bucket.delete_dir(&format!("private/work/{video}")).await,
            None => Ok(()),
        }
    }
}

impl Checkpoint {
    /// Saves the segments every rung completed since the last call.
    pub async fn save(&mut self) -> Result<(), StorageError> {
        for (rung, saved) in self.rungs.iter().zip(self.saved.iter_mut()) {
            let dir = self.work.join("hls").join(rung);
            loop {
                let name = segment_name(*saved);
                let path = dir.join(&name);
                if !path.is_file() {
                    break;
                }
                self.bucket
                    .put_file(&format!("{}/hls/{rung}/{name}", self.dir), &path)
                    .await?;
                *saved += 1;
            }
        }
        Ok(())
    }

    /// Segments saved of rung `name`.
    pub fn saved(&self, name: &str) -> u32 {
        self.rungs
            .iter()
            .position(|r| r == name)
            .map_or(0, |i| self.saved[i])
    }

    /// Segments a successor would resume from: those every rung has saved. A growing publish
    /// shows no more than that.
    pub fn resumable(&self) -> u32 {
        self.saved.iter().copied().min().unwrap_or(0)
    }

    /// Forgets the segments from `from` on (an encode redone from there overwrites them).
    pub fn rewind(&mut self, from: u32) {
        for saved in &mut self.saved {
            *saved = (*saved).min(from);
        }
    }
}

/// The attempt tag of a work directory `<video>-<attempt>`.
fn attempt_of(video: &VideoId, work: &Path) -> Option<String> {
    let name = work.file_name()?.to_str()?;
    let attempt = name.strip_prefix(video.as_str())?.strip_prefix('-')?;
    (!attempt.is_empty() && attempt.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| attempt.to_owned())
}
