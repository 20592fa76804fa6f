//! Subtitle files uploaded for a video (`POST /api/videos/{id}/subtitles`), once it can be
//! watched: changes to them take turns across machines ([`EditLease`]), and the master names
//! exactly the files there are ([`sync_master`]). The API syncs after each change; a worker
//! syncs once more after its encode is recorded, for a file that came while it published.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shared::media::{Layout, VideoId};

use super::model::{unix_now, Job};
use super::store::{JobStore, StoreError};
use crate::storage::tree::Phase;
use crate::storage::{MediaStore, StorageError};
use crate::transcode::ffmpeg::MASTER;
use crate::transcode::growing::write_atomically;
use crate::transcode::playlist;
use crate::transcode::subtitles::tracks::{self, UPLOADED_PREFIX};
use crate::transcode::subtitles::write_rendition;

/// How long one change may hold a video's edit lease: far longer than one takes (a few small
/// files to and from the bucket, each under its own timeouts), and how long a machine that
/// died holding it delays the video's next change.
const LEASE_SECS: i64 = 120;

/// How long a change waits for another one on the same video.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a waiting change asks again.
const POLL: Duration = Duration::from_millis(50);

/// A video's edit lease ([`JobStore::lock_edits`]), held for one change of its subtitle files.
/// A change numbers its file after those there are, and reads, edits and writes back the
/// master, so two at once (on any machines) could take one number or lose one's edit. Given
/// back when dropped, whichever way the change ends.
pub struct EditLease<S: JobStore> {
    store: Arc<S>,
    video: VideoId,
    holder: String,
}

impl<S: JobStore> EditLease<S> {
    /// Waits up to [`WAIT`] for the lease on `video`; `None` if another change still holds it.
    pub async fn take(store: &Arc<S>, video: &VideoId) -> Result<Option<Self>, StoreError> {
        static CHANGES: AtomicU64 = AtomicU64::new(0);
        let holder = format!(
            "{}-edit-{}",
            crate::roles::worker_name(),
            CHANGES.fetch_add(1, Ordering::Relaxed)
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if store
                .lock_edits(video, &holder, LEASE_SECS, unix_now())
                .await?
            {
                return Ok(Some(Self {
                    store: store.clone(),
                    video: video.clone(),
                    holder,
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl<S: JobStore> Drop for EditLease<S> {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // shutting down: the lease runs out by itself
        };
        let store = self.store.clone();
        let (video, holder) = (self.video.clone(), std::mem::take(&mut self.holder));
        runtime.spawn(async move {
            if let Err(error) = store.unlock_edits(&video, &holder).await {
                tracing::warn!(%video, %error, "subtitle edit lease not given back; it runs out");
            }
        });
    }
}

/// Makes `job`'s published master name exactly its uploaded files (the subtitle directory,
/// pulled by the caller under the [`EditLease`]): a file's rendition is written before the
/// master names it, and a deleted file's goes after the master stops naming it. Answers
/// whether anything changed.
pub async fn sync_master<S: JobStore>(
    media: &MediaStore,
    layout: &Layout,
    store: &S,
    job: &Job,
    segment_secs: u32,
) -> Result<bool, StorageError> {
    let video = &job.video;
    media
        .pull_dir(&format!("hls/{video}"), |name| name.ends_with(".m3u8"))
        .await?;
    let dir = layout.video_dir(video);
    let master_path = dir.join(MASTER);
    let master = std::fs::read_to_string(&master_path)?;
    let mut named = playlist::subtitle_media(&master);
    let files = tracks::uploaded(layout, video);
    let uploaded = |uri: &str| uri.starts_with(UPLOADED_PREFIX);
    let kept = |uri: &str| files.iter().any(|(r, _)| uri == r.media().uri);
    let removed: Vec<String> = named
        .iter()
        .filter(|m| uploaded(&m.uri) && !kept(&m.uri))
        .filter_map(|m| m.uri.split('/').next().map(str::to_owned))
        .collect();
    let added: Vec<_> = files
        .iter()
        .filter(|(r, _)| !named.iter().any(|m| m.uri == r.media().uri))
        .collect();
    if removed.is_empty() && added.is_empty() {
        return Ok(false);
    }
    let duration = job
        .result
        .as_ref()
        .map(|r| r.duration)
        .or_else(|| playlist_duration(&dir))
        .unwrap_or(0.0);
    for (rendition, cues) in &added {
        write_rendition(&dir.join(&rendition.id), cues, duration, segment_secs)?;
        named.push(rendition.media());
    }
    named.retain(|m| !uploaded(&m.uri) || kept(&m.uri));
    write_atomically(
        &master_path,
        playlist::with_subtitles(&master, &named).as_bytes(),
    )?;
    media.push_video(video, Phase::Growing).await?;
    // Before a removed rendition's files go: until then, copies of the old master kept in
    // memory (`storage::recent`) still name it.
    if let Err(error) = store.revise(video).await {
        // The change is made and stays; only those copies live on until they expire.
        tracing::warn!(%video, %error, "could not revise the job after a subtitle change");
    }
    for id in removed {
        media.remove_dir(&format!("hls/{video}/{id}")).await?;
    }
    Ok(true)
}

/// A growing video's duration is not known yet: the probe's is in the job's source, but the
/// first rung's playlist says how long the source is once complete; before that, the segments
/// listed so far (later cues are added when the encode publishes everything).
fn playlist_duration(dir: &Path) -> Option<f64> {
    let master = std::fs::read_to_string(dir.join(MASTER)).ok()?;
    let first = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())?;
    let text = std::fs::read_to_string(dir.join(first)).ok()?;
    Some(playlist::segments(&text).iter().map(|s| s.duration).sum())
}
