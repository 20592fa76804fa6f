//! Subtitle files uploaded for a video: `POST /api/videos/{id}/subtitles?lang=..&name=..`
//! (WebVTT or SRT, size-limited, validated) and `DELETE /api/videos/{id}/subtitles/{sub}`.
//!
//! A file is kept in the subtitle store; a finished video gets the rendition at once
//! (`jobs::subtitle_files`: its segments, then its master naming it). One still being encoded,
//! even if it can be watched already, gets it when its encode publishes: a change made while
//! that goes on is left to it (`subtitle_files::after_publish`). Changes to one video's files
//! take turns across machines.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tracing::Instrument;

use super::auth::User;
use super::error::ApiError;
use super::{AppState, Store};
use crate::jobs::model::{Job, JobState};
use crate::jobs::store::JobStore;
use crate::jobs::subtitle_files::{sync_master, EditLease};
use crate::transcode::subtitles as subs;
use crate::transcode::subtitles::tracks::{self, SubtitleRendition};
use crate::transcode::tracks as track_names;

#[derive(Debug, Deserialize)]
pub struct NewSubtitle {
    /// Language (ISO 639 / RFC 5646), e.g. `fra`.
    pub lang: Option<String>,
    /// Name players show, e.g. `Français`.
    pub name: Option<String>,
}

/// Uploaded subtitle files one video may have.
const MAX_FILES: usize = 32;

/// Waits for the edit lease on `job`'s video, then reads the job again: an encode may have
/// published, or another change finished, while this waited.
async fn take_lease(state: &AppState, job: Job) -> Result<(EditLease<Store>, Job), ApiError> {
    let lease = EditLease::take(&state.store, &job.video)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(
                "another change to this video's subtitles is still under way; try again later"
                    .into(),
            )
        })?;
    let job = state
        .store
        .get(&job.video)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((lease, job))
}

/// A subtitle file's body, read once its video was found to be the user's: it must arrive
/// whole within `within` (the body's own deadline bounds only the gaps between its pieces, and
/// a file sent a byte a minute would hold its connection for months).
async fn read_file(body: Body, within: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(within, axum::body::to_bytes(body, subs::MAX_BYTES)).await {
        Ok(read) => read.map_err(|e| ApiError::body(&e, subs::MAX_BYTES as u64)),
        Err(_) => Err(ApiError::Timeout(format!(
            "the subtitle file did not arrive within {} s",
            within.as_secs()
        ))),
    }
}

/// `POST /api/videos/{id}/subtitles`: 201 with the new rendition.
pub async fn add(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    Query(q): Query<NewSubtitle>,
    body: Body,
) -> Result<(StatusCode, Json<SubtitleRendition>), ApiError> {
    let job = state.owned_job(&user, &id).await?;
    // Twice the gap a body may leave: a file that goes silent is answered by the body's own
    // deadline, one that trickles by this.
    let within = Duration::from_secs(2 * state.settings.uploads.body_timeout_secs);
    let body = read_file(body, within).await?;
    let segment_secs = state.settings.worker.media.transcode.segment_secs;
    let cues = subs::parse(&body)
        .and_then(|cues| subs::check_copies(&cues, segment_secs).map(|()| cues))
        .map_err(|e| ApiError::Unprocessable(format!("not a usable subtitle file: {e}")))?;
    let language = track_names::language(q.lang.as_deref());
    let fallback = format!("Subtitles ({language})");
    let name = track_names::display_name(q.name.as_deref(), &language, fallback);
    let added = apply(
        &state,
        job,
        Change::Add {
            cues,
            language,
            name,
        },
    )
    .await?;
    let rendition = added.ok_or_else(|| ApiError::internal("an add made no file"))?;
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
    apply(&state, job, Change::Delete(n)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a request changes.
enum Change {
    Add {
        cues: Vec<subs::Cue>,
        language: String,
        name: String,
    },
    Delete(u32),
}

/// Makes `change` under the video's lease, in a task of its own: a client that leaves while
/// it is made does not leave a file stored and the master not naming it. The new rendition,
/// for an add.
async fn apply(
    state: &AppState,
    job: Job,
    change: Change,
) -> Result<Option<SubtitleRendition>, ApiError> {
    let state = state.clone();
    let made = async move { make(&state, job, change).await };
    tokio::spawn(made.instrument(tracing::Span::current()))
        .await
        .map_err(ApiError::internal)?
}

async fn make(
    state: &AppState,
    job: Job,
    change: Change,
) -> Result<Option<SubtitleRendition>, ApiError> {
    let (_lease, job) = take_lease(state, job).await?;
    // Numbered after every file the store holds, wherever it was uploaded.
    state.media.pull_subtitles(&job.video).await?;
    let dir = format!("subtitles/{}", job.video);
    let added = match change {
        Change::Add {
            cues,
            language,
            name,
        } => {
            if tracks::sidecars(&state.layout, &job.video).len() >= MAX_FILES {
                return Err(ApiError::Conflict(format!(
                    "a video has at most {MAX_FILES} subtitle files; delete one first"
                )));
            }
            if tracks::numbers_taken(&state.layout, &job.video) >= tracks::MAX_NUMBER {
                return Err(ApiError::Conflict(format!(
                    "a video takes at most {} subtitle files over its life, deleted ones \
                     included; upload the video again for more",
                    tracks::MAX_NUMBER
                )));
            }
            let file = tracks::add_sidecar(&state.layout, &job.video, &cues, &language, &name)?;
            // The cues first, the description (which lists it) last.
            let sent = [
                format!("{dir}/u{}.vtt", file.id),
                format!("{dir}/u{}.json", file.id),
            ];
            state.media.push_files(&sent).await?;
            let rendition = file.rendition();
            tracing::info!(video = %job.video, subtitle = %rendition.id, "subtitle file added");
            Some(rendition)
        }
        Change::Delete(n) => {
            if !tracks::remove_sidecar(&state.layout, &job.video, n)? {
                return Err(ApiError::NotFoundWhat("no such uploaded subtitle"));
            }
            // The tombstone reaches the bucket before the file leaves it: the number is never
            // free.
            let gone = format!("{dir}/{}", tracks::tombstone(n));
            state.media.push_files(&[gone]).await?;
            let files = [format!("{dir}/u{n}.json"), format!("{dir}/u{n}.vtt")];
            state.media.remove_files(&files).await?;
            tracing::info!(video = %job.video, subtitle = n, "subtitle file removed");
            None
        }
    };
    if job.state == JobState::Ready {
        sync(state, &job).await?;
    }
    Ok(added)
}

/// Brings a finished video's master in line with its files.
async fn sync(state: &AppState, job: &Job) -> Result<(), ApiError> {
    let segment_secs = state.settings.worker.media.transcode.segment_secs;
    sync_master(
        &state.media,
        &state.layout,
        &*state.store,
        job,
        segment_secs,
    )
    .await?;
    Ok(())
}
