//! Video records: list, status, delete, retry.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::User;
use super::error::ApiError;
use super::AppState;
use crate::jobs::model::{Job, JobState};
use crate::jobs::store::JobStore;
use crate::jobs::subtitle_files::EditLease;
use crate::transcode::subtitles::tracks::SubtitleRendition;

/// A video as the API shows it.
#[derive(Debug, Serialize)]
pub struct VideoView {
    pub id: String,
    pub title: Option<String>,
    pub status: JobState,
    pub stage: crate::transcode::progress::Stage,
    pub progress: f64,
    /// Watchable now: complete, or growing while it encodes.
    pub playable: bool,
    /// Published in full.
    pub complete: bool,
    pub duration: Option<f64>,
    pub rungs: Vec<RungView>,
    /// These three carry a playback credential (`?pt=`) for this video alone: a page loads
    /// them without headers, and a URL must not hold the user's token.
    pub thumbnail_url: Option<String>,
    pub storyboard_url: Option<String>,
    pub events_url: String,
    pub error: Option<String>,
    /// Audio tracks: separate renditions (`id`), or the one muxed into the rungs (no `id`).
    pub audio_tracks: Vec<crate::transcode::pipeline::PublishedAudio>,
    /// Subtitle renditions: the source's text tracks and the files uploaded for it.
    pub subtitles: Vec<SubtitleRendition>,
    /// Source subtitle tracks that could not be published (image formats), with the reason.
    pub skipped_subtitles: Vec<crate::transcode::subtitles::tracks::SkippedTrack>,
    pub attempts: u32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize)]
pub struct RungView {
    pub name: String,
    pub resolution: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
}

impl VideoView {
    /// `job` as the API shows it; `pt` is a playback credential for it
    /// ([`AppState::credential`]).
    pub fn of(job: &Job, pt: &str) -> Self {
        let id = job.video.to_string();
        let result = job.result.as_ref();
        Self {
            thumbnail_url: job
                .thumbnail_ready
                .then(|| format!("/api/videos/{id}/thumbnail.jpg?pt={pt}")),
            storyboard_url: (job.state == JobState::Ready)
                .then(|| format!("/api/videos/{id}/storyboard.vtt?pt={pt}")),
            events_url: format!("/api/videos/{id}/events?pt={pt}"),
            id,
            title: job.title.clone(),
            status: job.state,
            stage: job.stage,
            progress: (job.progress * 10.0).round() / 10.0,
            playable: job.is_playable(),
            complete: job.state == JobState::Ready,
            duration: result.map(|r| r.duration),
            rungs: result
                .map(|r| {
                    r.rungs
                        .iter()
                        .map(|g| RungView {
                            name: g.name.clone(),
                            resolution: format!("{}x{}", g.width, g.height),
                            bandwidth: g.bandwidth,
                            average_bandwidth: g.average_bandwidth,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            error: job.error.clone(),
            audio_tracks: result.map(|r| r.audio.clone()).unwrap_or_default(),
            subtitles: result.map(|r| r.subtitles.clone()).unwrap_or_default(),
            skipped_subtitles: result
                .map(|r| r.skipped_subtitles.clone())
                .unwrap_or_default(),
            attempts: job.attempts,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    pub offset: usize,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    20
}

/// `GET /api/videos`: the caller's videos, newest first.
pub async fn list(
    State(state): State<AppState>,
    user: User,
    Query(page): Query<Page>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = page.limit.clamp(1, 100);
    let jobs = state.store.list(&user.id, page.offset, limit).await?;
    let videos = jobs
        .iter()
        .map(|job| state.view(job))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(
        serde_json::json!({ "videos": videos, "offset": page.offset, "limit": limit }),
    ))
}

/// `GET /api/videos/{id}`.
pub async fn get(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Json<VideoView>, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    let mut view = state.view(&job)?;
    view.subtitles.extend(
        crate::transcode::subtitles::tracks::sidecars(&state.layout, &job.video)
            .iter()
            .map(|s| s.rendition()),
    );
    Ok(Json(view))
}

/// `DELETE /api/videos/{id}`: cancels the job, removes source, output, keys and thumbnails,
/// purges the edge cache.
pub async fn delete(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    let video = job.video;
    if let Some(pool) = &state.pool {
        // A growing publish writes until its encode has stopped: wait for that (bounded), so
        // nothing it publishes lands after the files are removed. A worker elsewhere removes
        // its own stragglers when it finds the job gone.
        pool.cancel_and_wait(&video, std::time::Duration::from_secs(10))
            .await;
    }
    // No subtitle change (an API's, a worker's last sync) sends a file between the removal and
    // the record's end; one waiting meanwhile then finds the video gone.
    let _edits = EditLease::take(&state.store, &video).await.ok().flatten();
    // Files first, record last: if removing a file fails, the video is still listed and the
    // delete can be retried instead of leaving orphans nobody can reach.
    // With a bucket, every object of the video (listed and deleted in batches); a partial
    // failure answers 503 with how many are left.
    state.media.remove_video(&video).await?;
    state.store.delete(&video).await?;
    crate::purge::purge_edge(
        &state.settings.purge,
        &format!("{}{video}/", state.settings.playback.edge_prefix),
    )
    .await;
    tracing::info!(%video, user = %user.id, "video deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/videos/{id}/retry`: queues a failed video again.
pub async fn retry(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<VideoView>), ApiError> {
    let job = state.owned_job(&user, &id).await?;
    if !matches!(job.state, JobState::Failed) {
        return Err(ApiError::Conflict(
            format!(
                "video is {:?}, only failed videos can be retried",
                job.state
            )
            .to_lowercase(),
        ));
    }
    if !state.media.has_source(&job.video).await? {
        return Err(ApiError::Conflict(
            "the source file is gone; upload again".into(),
        ));
    }
    state.requeue(&job, JobState::Failed).await?;
    let job = state.owned_job(&user, &id).await?;
    let view = state.view(&job)?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}
