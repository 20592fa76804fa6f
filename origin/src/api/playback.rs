//! Playback: stream-info (seeds 001/004), the signed master and variant playlists, and key
//! delivery. Players that send no headers and no cookies (hls.js, Safari, ffmpeg) can follow
//! every URI: the master takes the user's token as `?token=`, everything below it carries a
//! playback credential scoped to the video.

use std::time::Instant;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use shared::media::VideoId;

use super::auth::User;
use super::error::ApiError;
use super::AppState;
use crate::jobs::model::{unix_now, Job, JobState};
use crate::jobs::store::JobStore;
use crate::playback::{bucketed_expiry, sign_master, sign_variant, VariantSigning};

const PLAYLIST: &str = "application/vnd.apple.mpegurl";

/// `GET /api/videos/{id}/stream-info`.
pub async fn stream_info(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    if job.is_playable() {
        // The URL carries a credential for this video alone: the user's own token never has
        // to travel in a URL to play.
        let credential = state.credential(&job)?;
        let complete = job.state == JobState::Ready;
        let mut body = serde_json::json!({
            "format": "hls",
            "manifest_url": format!("/api/videos/{}/hls/master.m3u8?pt={credential}", job.video),
            "thumbnail_url": format!("/api/videos/{}/thumbnail.jpg?pt={credential}", job.video),
            "ready": complete,
            "playable": true,
            "complete": complete,
        });
        if !complete {
            // Watchable now; ask again for the finished video.
            body["status"] = serde_json::json!(job.state);
            body["stage"] = serde_json::json!(job.stage);
            body["progress"] = serde_json::json!(job.progress);
            body["retry_after"] = serde_json::json!(3);
        }
        return Ok(Json(body).into_response());
    }
    let body = match job.state {
        JobState::Failed => {
            let reason = job
                .error
                .clone()
                .unwrap_or_else(|| "processing failed".into());
            return Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(serde_json::json!({ "error": reason, "status": "failed", "ready": false })),
            )
                .into_response());
        }
        JobState::Registered => {
            // On-demand generation (seed 004): the first request queues it.
            state.requeue(&job, JobState::Registered).await?;
            serde_json::json!({ "ready": false, "status": "queued", "progress": 0.0, "retry_after": 5 })
        }
        JobState::Ready | JobState::Queued | JobState::Processing => serde_json::json!({
            "ready": false,
            "playable": false,
            "complete": false,
            "status": job.state,
            "stage": job.stage,
            "progress": job.progress,
            "retry_after": 3,
        }),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
    Ok(response)
}

/// Playlists and keys exist for a video that is ready, or growing while it encodes.
fn ready(job: &Job) -> Result<(), ApiError> {
    if job.is_playable() {
        Ok(())
    } else {
        Err(ApiError::Conflict(
            "video is not playable yet; see stream-info".into(),
        ))
    }
}

/// `GET /api/videos/{id}/hls/master.m3u8?pt=<credential>` (the URL stream-info gives), or
/// `?token=<user JWT>` for players built on that older contract.
pub async fn master(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Credential>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let (job, credential) = match q.pt {
        Some(pt) => (authorize(&state, &id, Some(&pt)).await?, pt),
        None => {
            let user = User::from_request_parts(&mut parts, &state).await?;
            let job = state.owned_job(&user, &id).await?;
            ready(&job)?;
            let credential = state.credential(&job)?;
            (job, credential)
        }
    };
    let rel = format!("hls/{}/master.m3u8", job.video);
    let text = read_playlist(&state, &job, &rel).await?;
    let started = Instant::now();
    let body = sign_master(&text, &credential);
    state
        .metrics
        .manifest_signing_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(playlist_response(body))
}

#[derive(Debug, Deserialize)]
pub struct Credential {
    pub pt: Option<String>,
}

/// Checks a playback credential for `id`: the video must still exist and be ready.
async fn authorize(state: &AppState, id: &str, pt: Option<&str>) -> Result<Job, ApiError> {
    let video: VideoId = id.parse().map_err(|_| ApiError::NotFound)?;
    let pt = pt.ok_or_else(|| ApiError::Unauthorized("missing playback credential".into()))?;
    let owner = state.auth.verify_playback(pt, &video)?;
    match state.store.get(&video).await? {
        Some(job) if job.owner == owner => {
            ready(&job)?;
            Ok(job)
        }
        _ => Err(ApiError::NotFound),
    }
}

fn valid_rung(rung: &str) -> Result<(), ApiError> {
    match crate::transcode::ladder::is_rung_name(rung) {
        true => Ok(()),
        false => Err(ApiError::NotFound),
    }
}

/// `GET /api/videos/{id}/hls/{rung}/index.m3u8?pt=<credential>`.
pub async fn variant(
    State(state): State<AppState>,
    Path((id, rung)): Path<(String, String)>,
    Query(q): Query<Credential>,
) -> Result<Response, ApiError> {
    valid_rung(&rung)?;
    let job = authorize(&state, &id, q.pt.as_deref()).await?;
    let pt = q.pt.unwrap_or_default();
    let rel = format!("hls/{}/{rung}/index.m3u8", job.video);
    let text = read_playlist(&state, &job, &rel).await?;
    let s = &state.settings.playback;
    let key_uri = format!("key?pt={pt}");
    let started = Instant::now();
    let body = sign_variant(
        &text,
        &VariantSigning {
            link: &s.link,
            edge_base_url: &s.edge_base_url,
            edge_prefix: &s.edge_prefix,
            video: &job.video,
            rung: &rung,
            expires: bucketed_expiry(unix_now(), s.url_ttl_secs, s.expiry_bucket_secs),
            key_uri: &key_uri,
        },
    );
    state
        .metrics
        .manifest_signing_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(playlist_response(body))
}

/// `GET /api/videos/{id}/hls/{rung}/key?pt=<credential>`: the 16-byte AES key, never cached.
pub async fn key(
    State(state): State<AppState>,
    Path((id, rung)): Path<(String, String)>,
    Query(q): Query<Credential>,
) -> Result<Response, ApiError> {
    valid_rung(&rung)?;
    let job = authorize(&state, &id, q.pt.as_deref()).await?;
    let rel = format!("keys/{}/{rung}.key", job.video);
    let key = match read_stored(&state, &job, &rel).await? {
        Some(k) if k.len() == 16 => k,
        Some(_) => return Err(ApiError::internal("stored key is not 16 bytes")),
        None => return Err(ApiError::NotFound),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        key,
    )
        .into_response())
}

/// A stored playlist (`rel` under the data directory or in the bucket).
async fn read_playlist(state: &AppState, job: &Job, rel: &str) -> Result<String, ApiError> {
    let bytes = read_stored(state, job, rel)
        .await?
        .ok_or(ApiError::NotFound)?;
    String::from_utf8(bytes.into())
        .map_err(|_| ApiError::internal("a stored playlist is not UTF-8"))
}

/// A playlist or key of `job`. A finished video's may come from memory for as long as the job
/// stays as it is ([`MediaStore::read_finished`]; a subtitle file added or removed revises
/// it); a growing video's changes as it grows.
///
/// [`MediaStore::read_finished`]: crate::storage::MediaStore::read_finished
async fn read_stored(state: &AppState, job: &Job, rel: &str) -> Result<Option<Bytes>, ApiError> {
    let read = if job.state == JobState::Ready {
        state.media.read_finished(rel, job.version()).await?
    } else {
        state.media.read(rel).await?
    };
    Ok(read)
}

fn playlist_response(body: String) -> Response {
    // Private: the body carries a credential for one user. A playlist that still grows must
    // be fetched again within a target duration, or players would not see new segments.
    let cache = if body.contains("#EXT-X-PLAYLIST-TYPE:EVENT") {
        "private, max-age=1"
    } else {
        "private, max-age=60"
    };
    (
        [
            (header::CONTENT_TYPE, PLAYLIST),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}
