//! Subtitle files uploaded for a video: `POST /api/videos/{id}/subtitles?lang=..&name=..`
//! (WebVTT or SRT, size-limited, validated) and `DELETE /api/videos/{id}/subtitles/{sub}`.
//!
//! A file is kept in the subtitle store; a video that is already playable gets the rendition
//! at once (its segments, then its master naming it); one still being processed gets it when
//! its encode publishes (`transcode::subtitles`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use shared::media::VideoId;

use super::auth::User;
use super::error::ApiError;
use super::AppState;
use super::Store;
use crate::jobs::model::{unix_now, Job};
use crate::jobs::store::JobStore;
use crate::transcode::ffmpeg::MASTER;
use crate::transcode::growing::write_atomically;
use crate::transcode::subtitles::tracks::{self, SubtitleRendition};
use crate::transcode::subtitles::{self as subs, write_rendition};
use crate::transcode::{playlist, tracks as track_names};

#[derive(Debug, Deserialize)]
pub struct NewSubtitle {
    /// Language (ISO 639 / RFC 5646), e.g. `fra`.
    pub lang: Option<String>,
    /// Name players show, e.g. `Français`.
    pub name: Option<String>,
}

/// Uploaded subtitle files one video may have.
const MAX_FILES: usize = 32;

/// How long one subtitle change may hold its video's edit lease: far longer than one takes (a
/// few small files to and from the bucket, each under its own timeouts), and how long a
/// machine that died holding it delays the video's next change.
const EDIT_LEASE_SECS: i64 = 120;

/// How long a change waits for another one on the same video before answering 409.
const EDIT_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting change asks again.
const EDIT_POLL: Duration = Duration::from_millis(50);

/// A video's edit lease ([`JobStore::lock_edits`]), held for one subtitle change. Each change
/// numbers its file after those there are, and reads, edits and writes back the master, so two
/// at once (on any API machines) could take one number or lose one's edit. Given back when
/// dropped, whichever way the change ends.
struct EditLease {
    store: Arc<Store>,
    video: VideoId,
    holder: String,
}

impl EditLease {
    /// Waits for the lease on `job`'s video, then reads the job again: an encode may have
    /// published, or another change finished, while this waited.
    async fn take(state: &AppState, job: Job) -> Result<(Self, Job), ApiError> {
        static CHANGES: AtomicU64 = AtomicU64::new(0);
        let holder = format!(
            "{}-edit-{}",
            crate::roles::worker_name(),
            CHANGES.fetch_add(1, Ordering::Relaxed)
        );
        let video = job.video;
        let deadline = tokio::time::Instant::now() + EDIT_WAIT;
        loop {
            let now = unix_now();
            if state
                .store
                .lock_edits(&video, &holder, EDIT_LEASE_SECS, now)
                .await?
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Conflict(
                    "another change to this video's subtitles is still under way; try again later"
                        .into(),
                ));
            }
            tokio::time::sleep(EDIT_POLL).await;
        }
        let lease = Self {
            store: state.store.clone(),
            video,
            holder,
        };
        let job = state
            .store
            .get(&lease.video)
            .await?
            .ok_or(ApiError::NotFound)?;
        Ok((lease, job))
    }
}

impl Drop for EditLease {
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

/// `POST /api/videos/{id}/subtitles`: 201 with the new rendition.
pub async fn add(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    Query(q): Query<NewSubtitle>,
    body: Bytes,
) -> Result<(StatusCode, Json<SubtitleRendition>), ApiError> {
    let job = state.owned_job(&user, &id).await?;
    if body.len() > subs::MAX_BYTES {
        return Err(ApiError::TooLarge(subs::MAX_BYTES as u64));
    }
    let cues = subs::parse(&body)
        .map_err(|e| ApiError::Unprocessable(format!("not a usable subtitle file: {e}")))?;
    let language = track_names::language(q.lang.as_deref());
    let fallback = format!("Subtitles ({language})");
    let name = track_names::display_name(q.name.as_deref(), &language, fallback);
    let (_lease, job) = EditLease::take(&state, job).await?;
    let dir = format!("subtitles/{}", job.video);
    // Numbered after every file the store holds, wherever it was uploaded.
    state.media.pull_dir(&dir, |_| true).await?;
    if tracks::sidecars(&state.layout, &job.video).len() >= MAX_FILES {
        return Err(ApiError::Conflict(format!(
            "a video has at most {MAX_FILES} subtitle files; delete one first"
        )));
    }
    let sidecar = tracks::add_sidecar(&state.layout, &job.video, &cues, &language, &name)?;
    // The cues first, the description (which lists it) last.
    state
        .media
        .push_files(&[
            format!("{dir}/u{}.vtt", sidecar.id),
            format!("{dir}/u{}.json", sidecar.id),
        ])
        .await?;
    let rendition = sidecar.rendition();
    if job.is_playable() {
        publish_now(&state, &job, Some((&rendition, &cues)), None).await?;
    }
    tracing::info!(video = %job.video, subtitle = %rendition.id, "subtitle file added");
    Ok((StatusCode::CREATED, Json(rendition)))
}

/// `DELETE /api/videos/{id}/subtitles/{sub}`: an uploaded file (`subs_uN`) goes, with its
/// rendition.
pub async fn delete(
    State(state): State<AppState>,
    user: User,
    Path((id, sub)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    let n: u32 = sub
        .strip_prefix(tracks::UPLOADED_PREFIX)
        .and_then(|n| n.parse().ok())
        // Only the name it was given (`subs_u01` is not `subs_u1`).
        .filter(|n: &u32| sub == format!("{}{n}", tracks::UPLOADED_PREFIX))
        .ok_or_else(|| {
            ApiError::NotFoundWhat("no such uploaded subtitle (only uploaded files can be deleted)")
        })?;
    let (_lease, job) = EditLease::take(&state, job).await?;
    let dir = format!("subtitles/{}", job.video);
    state.media.pull_dir(&dir, |_| true).await?;
    if !tracks::remove_sidecar(&state.layout, &job.video, n)? {
        return Err(ApiError::NotFoundWhat("no such uploaded subtitle"));
    }
    // The tombstone first: a file is never missing both.
    state
        .media
        .push_files(&[format!("{dir}/{}", tracks::tombstone(n))])
        .await?;
    state
        .media
        .remove_files(&[format!("{dir}/u{n}.json"), format!("{dir}/u{n}.vtt")])
        .await?;
    if job.is_playable() {
        publish_now(&state, &job, None, Some(&sub)).await?;
    }
    tracing::info!(video = %job.video, subtitle = %sub, "subtitle file removed");
    Ok(StatusCode::NO_CONTENT)
}

/// Adds `added` to, or removes `removed` from, a published video: the rendition's segments
/// first, then the master naming the new set. With a bucket, the playlists are brought here
/// first and what changed goes back in the same order.
async fn publish_now(
    state: &AppState,
    job: &Job,
    added: Option<(&SubtitleRendition, &[subs::Cue])>,
    removed: Option<&str>,
) -> Result<(), ApiError> {
    let video = &job.video;
    state
        .media
        .pull_dir(&format!("hls/{video}"), |name| name.ends_with(".m3u8"))
        .await?;
    edit_master(state, job, added, removed)?;
    state
        .media
        .push_video(video, crate::storage::tree::Phase::Growing)
        .await?;
    // Before a removed rendition's files go: until then, copies of the old master kept in
    // memory (`storage::recent`) still name it.
    if let Err(error) = state.store.revise(video).await {
        // The change is made and stays; only those copies live on until they expire.
        tracing::warn!(%video, %error, "could not revise the job after a subtitle change");
    }
    if let Some(id) = removed {
        state.media.remove_dir(&format!("hls/{video}/{id}")).await?;
    }
    Ok(())
}

fn edit_master(
    state: &AppState,
    job: &Job,
    added: Option<(&SubtitleRendition, &[subs::Cue])>,
    removed: Option<&str>,
) -> Result<(), ApiError> {
    let dir = state.layout.video_dir(&job.video);
    let master_path = dir.join(MASTER);
    let master = std::fs::read_to_string(&master_path)?;
    let mut media = playlist::subtitle_media(&master);
    if let Some((rendition, cues)) = added {
        let duration = job
            .result
            .as_ref()
            .map(|r| r.duration)
            .or_else(|| playlist_duration(&dir))
            .unwrap_or(0.0);
        let seg = state.settings.worker.media.transcode.segment_secs;
        write_rendition(&dir.join(&rendition.id), cues, duration, seg)?;
        media.push(rendition.media());
    }
    if let Some(id) = removed {
        let prefix = format!("{id}/");
        media.retain(|m| !m.uri.starts_with(&prefix));
    }
    write_atomically(
        &master_path,
        playlist::with_subtitles(&master, &media).as_bytes(),
    )?;
    if let Some(id) = removed {
        // After the master stops naming it.
        crate::storage::remove_dir(&dir.join(id))?;
    }
    Ok(())
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
