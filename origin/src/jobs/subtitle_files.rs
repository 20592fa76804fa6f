//! Subtitle files uploaded for a video (`POST /api/videos/{id}/subtitles`): changes to them
//! take turns across machines ([`EditLease`]), and a finished video's master names exactly the
//! files there are ([`sync_master`]).
//!
//! The files are the API's. A worker pulls them when a job starts ([`pull_files`]), and its
//! encode publishes them as it has them but never sends or sweeps them
//! (`storage::published_dirs`). The API syncs a finished video after each change; a change
//! made while the video encodes is left to the worker, which syncs once more after the job is
//! recorded and before it announces it ([`after_publish`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shared::media::{Layout, VideoId};
use tokio::task::JoinHandle;

use super::model::{unix_now, Job, LeaseStep};
use super::store::{JobStore, StoreError};
use crate::storage::{MediaStore, StorageError};
use crate::transcode::ffmpeg::MASTER;
use crate::transcode::growing::write_atomically;
use crate::transcode::playlist;
use crate::transcode::subtitles::tracks::{self, SubtitleRendition, UPLOADED_PREFIX};
use crate::transcode::subtitles::write_rendition;

/// How long the lease lasts unless renewed (every third of it while held): how long a machine
/// that died holding it delays the video's next change.
const LEASE_SECS: i64 = 60;

/// How long a change waits for another one on the same video.
const WAIT: Duration = Duration::from_secs(30);

/// When a lease is given back a second time (longer than a store call may take).
const REASK_UNLOCK: Duration = Duration::from_secs(15);

/// The first and the longest pause between two asks for the lease.
const POLL: (Duration, Duration) = (Duration::from_millis(25), Duration::from_millis(400));

/// A video's edit lease ([`JobStore::edit_lease`]), held for one change of its subtitle files
/// (or one read of them by an encode, or a delete). A change numbers its file after those
/// there are, and reads, edits and writes back the master, so two at once (on any machines)
/// could take one number or lose one's edit; a read pulls the bucket's copy over the working
/// copy a change on the same machine is writing. Renewed while held; given back when dropped,
/// whichever way the change ends.
pub struct EditLease<S: JobStore> {
    store: Arc<S>,
    video: VideoId,
    holder: String,
    renewal: Option<JoinHandle<()>>,
}

impl<S: JobStore> EditLease<S> {
    /// Waits up to 30 s for the lease on `video`; `None` if another change still holds it.
    pub async fn take(store: &Arc<S>, video: &VideoId) -> Result<Option<Self>, StoreError> {
        static CHANGES: AtomicU64 = AtomicU64::new(0);
        // Built before the first ask: a request dropped while an ask is in flight (its client
        // left) still gives back what the store may have granted.
        let mut lease = Self {
            store: store.clone(),
            video: video.clone(),
            holder: format!(
                "{}-edit-{}",
                crate::roles::worker_name(),
                CHANGES.fetch_add(1, Ordering::Relaxed)
            ),
            renewal: None,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut pause = POLL.0;
        while !store
            .edit_lease(
                video,
                &lease.holder,
                LeaseStep::Take(LEASE_SECS),
                unix_now(),
            )
            .await?
        {
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL.1);
        }
        lease.renewal = Some(tokio::spawn(renew(
            store.clone(),
            video.clone(),
            lease.holder.clone(),
        )));
        Ok(Some(lease))
    }
}

/// Keeps the lease while a change outlasts it (a slow bucket).
async fn renew<S: JobStore>(store: Arc<S>, video: VideoId, holder: String) {
    let every = Duration::from_secs((LEASE_SECS / 3) as u64);
    loop {
        tokio::time::sleep(every).await;
        match store
            .edit_lease(&video, &holder, LeaseStep::Renew(LEASE_SECS), unix_now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%video, "the subtitle edit lease ran out and was taken");
                return;
            }
            Err(error) => tracing::warn!(%video, %error, "subtitle edit lease not renewed"),
        }
    }
}

impl<S: JobStore> Drop for EditLease<S> {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // shutting down: the lease runs out by itself
        };
        let store = self.store.clone();
        let (video, holder) = (self.video.clone(), std::mem::take(&mut self.holder));
        runtime.spawn(async move {
            if let Err(error) = store
                .edit_lease(&video, &holder, LeaseStep::GiveBack, unix_now())
                .await
            {
                tracing::warn!(%video, %error, "subtitle edit lease not given back; it runs out");
            }
            // An ask still in flight when its request was dropped may land after that: give
            // back once more when any call has ended (holder names are never reused).
            tokio::time::sleep(REASK_UNLOCK).await;
            let _ = store
                .edit_lease(&video, &holder, LeaseStep::GiveBack, unix_now())
                .await;
        });
    }
}

/// Makes `job`'s published master name exactly its uploaded files (the subtitle directory,
/// pulled by the caller under the [`EditLease`]), starting from the bucket's: a file's
/// rendition is written and sent before the master names it, and a deleted file's goes after
/// the master stops naming it. Only what changed is sent. Answers whether anything changed.
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
    // What is kept follows the descriptions: a file whose cues cannot be read now stays as
    // it was published.
    let files: Vec<(u32, SubtitleRendition)> = tracks::sidecars(layout, video)
        .iter()
        .map(|s| (s.id, s.rendition()))
        .collect();
    let uploaded = |uri: &str| uri.starts_with(UPLOADED_PREFIX);
    let kept = |uri: &str| files.iter().any(|(_, r)| uri == r.media().uri);
    let mut removed: Vec<String> = named
        .iter()
        .filter(|m| uploaded(&m.uri) && !kept(&m.uri))
        .filter_map(|m| m.uri.split('/').next().map(str::to_owned))
        .collect();
    // And a rendition the master does not name: a growing encode wrote it at its start for a
    // file deleted since.
    for id in rendition_dirs(&dir) {
        if !files.iter().any(|(_, r)| r.id == id) && !removed.contains(&id) {
            removed.push(id);
        }
    }
    let duration = job
        .result
        .as_ref()
        .map(|r| r.duration)
        .or_else(|| playlist_duration(&dir))
        .unwrap_or(0.0);
    let added: Vec<&(u32, SubtitleRendition)> = files
        .iter()
        .filter(|(_, r)| !named.iter().any(|m| m.uri == r.media().uri))
        .collect();
    let (mut segments, mut playlists) = (Vec::new(), Vec::new());
    for (number, rendition) in added {
        let cues = match tracks::sidecar_cues(layout, video, *number) {
            Ok(cues) => cues,
            Err(error) => {
                let subtitle = &rendition.id;
                tracing::warn!(%video, %error, %subtitle, "a kept subtitle file is left out");
                continue;
            }
        };
        write_rendition(&dir.join(&rendition.id), &cues, duration, segment_secs)?;
        segments.extend(rendition_files(&dir, video, &rendition.id, ".vtt"));
        playlists.extend(rendition_files(&dir, video, &rendition.id, ".m3u8"));
        named.push(rendition.media());
    }
    if removed.is_empty() && playlists.is_empty() {
        return Ok(false);
    }
    named.retain(|m| !uploaded(&m.uri) || kept(&m.uri));
    write_atomically(
        &master_path,
        playlist::with_subtitles(&master, &named).as_bytes(),
    )?;
    // The segments (a long video's file has a thousand), then their playlists, then the master.
    media.push_files_together(&segments).await?;
    playlists.push(format!("hls/{video}/{MASTER}"));
    media.push_files(&playlists).await?;
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

/// The uploaded files' rendition directories in a video's directory `dir`.
fn rendition_dirs(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.starts_with(UPLOADED_PREFIX))
        .collect()
}

/// The files of rendition `id` ending in `ext`, relative to the data directory.
fn rendition_files(dir: &std::path::Path, video: &VideoId, id: &str, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(id))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| name.ends_with(ext))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| format!("hls/{video}/{id}/{name}"))
        .collect()
}

/// Brings `video`'s uploaded files here as the bucket has them, under the lease: a pull makes
/// this copy match the bucket, and must not undo a change on this machine (an API sharing the
/// working copy) that has written its file but not sent it yet. Without the lease after its
/// wait, the pull goes ahead: the sync after the job puts the master right.
pub async fn pull_files<S: JobStore>(
    store: &Arc<S>,
    media: &MediaStore,
    video: &VideoId,
) -> Result<(), StorageError> {
    let _lease = match EditLease::take(store, video).await {
        Ok(lease) => lease,
        Err(error) => {
            tracing::warn!(%error, "pulling the subtitle files without their lease");
            None
        }
    };
    media.pull_subtitles(video).await
}

/// Once a job is recorded ready: under the lease, brings its master in line with the files
/// there are now. Answers whether anything changed; a video that never had an uploaded file
/// costs one listing of the bucket.
pub async fn after_publish<S: JobStore>(
    store: &Arc<S>,
    media: &MediaStore,
    layout: &Layout,
    video: &VideoId,
    segment_secs: u32,
) -> Result<bool, String> {
    let _lease = match EditLease::take(store, video).await {
        Ok(Some(lease)) => lease,
        Ok(None) => return Err("another change holds the edit lease".into()),
        Err(StoreError::NotFound(_)) => return Ok(false), // deleted meanwhile
        Err(e) => return Err(e.to_string()),
    };
    media
        .pull_subtitles(video)
        .await
        .map_err(|e| e.to_string())?;
    let none = std::fs::read_dir(layout.subtitles_dir(video))
        .map_or(true, |mut files| files.next().is_none());
    if none {
        return Ok(false); // not one file, not even a deleted one
    }
    let job = match store.get(video).await {
        Ok(Some(job)) => job,
        Ok(None) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    sync_master(media, layout, &**store, &job, segment_secs)
        .await
        .map_err(|e| e.to_string())
}

/// A growing video's duration is not known yet: the probe's is in the job's source, but the
/// first rung's playlist says how long the source is once complete; before that, the segments
/// listed so far (later cues are added when the encode publishes everything).
fn playlist_duration(dir: &std::path::Path) -> Option<f64> {
    let master = std::fs::read_to_string(dir.join(MASTER)).ok()?;
    let first = master
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())?;
    let text = std::fs::read_to_string(dir.join(first)).ok()?;
    Some(playlist::segments(&text).iter().map(|s| s.duration).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::embedded::EmbeddedStore;
    use crate::transcode::pipeline::Profile;
    use crate::transcode::playlist::{subtitle_media, with_subtitles, Media};
    use crate::transcode::subtitles::parse;

    #[tokio::test]
    async fn the_master_follows_the_files_and_keeps_one_it_cannot_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        let store = EmbeddedStore::open(&dir.path().join("store")).expect("store");
        let video: VideoId = "v".parse().expect("id");
        let job = Job::new(video.clone(), "alice", None, Profile::Ladder, 0);
        store.create(job.clone()).await.expect("create");
        let cues = parse(b"WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n").expect("cues");
        let add =
            |lang: &str| tracks::add_sidecar(&layout, &video, &cues, lang, lang).expect("add");
        let (kept, unreadable, gone) = (add("ita"), add("nld"), add("fin"));
        // Published naming `gone` (deleted since) and `unreadable`, whose cues went missing.
        let media = |s: &tracks::Sidecar| s.rendition().media();
        let embedded = Media {
            uri: "subs_0/index.m3u8".into(),
            name: "English".into(),
            language: "eng".into(),
        };
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p/index.m3u8\n";
        let published = [embedded.clone(), media(&unreadable), media(&gone)];
        let video_dir = layout.video_dir(&video);
        for m in &published[1..] {
            std::fs::create_dir_all(video_dir.join(m.uri.split('/').next().expect("dir")))
                .expect("rendition dir");
        }
        std::fs::write(video_dir.join(MASTER), with_subtitles(master, &published)).expect("master");
        assert!(tracks::remove_sidecar(&layout, &video, gone.id).expect("remove"));
        let subs = layout.subtitles_dir(&video);
        std::fs::remove_file(subs.join(format!("u{}.vtt", unreadable.id))).expect("cues gone");

        let local = MediaStore::local(layout.clone());
        let sync = || sync_master(&local, &layout, &store, &job, 2);
        assert!(sync().await.expect("sync"));
        let synced = std::fs::read_to_string(video_dir.join(MASTER)).expect("master");
        assert_eq!(
            subtitle_media(&synced),
            [embedded, media(&unreadable), media(&kept)],
            "{synced}"
        );
        assert!(video_dir
            .join(&kept.rendition().id)
            .join("index.m3u8")
            .is_file());
        assert!(!video_dir.join(gone.rendition().id).exists());
        assert_eq!(
            store.get(&video).await.expect("get").expect("job").revision,
            1
        );
        assert!(!sync().await.expect("sync"), "in line: nothing to do");
    }
}
