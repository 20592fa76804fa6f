//! `POST /api/videos`: the upload streams to a temporary file (memory stays flat whatever the
//! size), is probed, and only a real video becomes a source and a queued job. A refused or
//! interrupted upload leaves nothing behind.

use std::path::{Path, PathBuf};

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use shared::media::VideoId;
use tokio::io::AsyncWriteExt;

use super::auth::User;
use super::error::ApiError;
use super::AppState;
use crate::jobs::model::{unix_now, Job};
use crate::jobs::store::JobStore;
use crate::transcode::pipeline::Profile;
use crate::transcode::probe::ProbeError;

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    pub title: Option<String>,
    /// `ladder` (default) or `passthrough` (copy, single rendition).
    #[serde(default)]
    pub profile: Profile,
}

/// A temporary upload file, deleted unless kept.
struct TempUpload {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    user: User,
    Query(query): Query<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let limit = state.settings.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let video = VideoId::random();
    let mut tmp = TempUpload {
        path: state.layout.tmp_root().join(format!("upload-{video}")),
        keep: false,
    };
    let mut title = query.title;
    let received = if multipart {
        let mut form = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
        let mut received = None;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
        {
            match field.name() {
                Some("file") if received.is_none() => {
                    let stream = field.map(|r| r.map_err(|e| e.to_string()));
                    received = Some(write_stream(stream, &tmp.path, limit).await?);
                }
                Some("title") => {
                    title = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
                    );
                }
                _ => {}
            }
        }
        received.ok_or_else(|| {
            ApiError::BadRequest("multipart upload has no field named file".into())
        })?
    } else {
        let stream = req
            .into_body()
            .into_data_stream()
            .map(|r| r.map_err(|e| e.to_string()));
        write_stream(stream, &tmp.path, limit).await?
    };
    if received == 0 {
        return Err(ApiError::BadRequest("the upload is empty".into()));
    }
    let info = state.pipeline.probe(&tmp.path).await.map_err(|e| match e {
        ProbeError::Spawn(why) => ApiError::internal(why),
        ProbeError::NoVideo => ApiError::UnsupportedMedia(e.to_string()),
        other => ApiError::Unprocessable(format!("not a usable video: {other}")),
    })?;
    let source = state.layout.source_file(&video);
    std::fs::rename(&tmp.path, &source)?;
    tmp.keep = true;
    let title = title
        .map(|t| t.chars().take(200).collect::<String>())
        .filter(|t| !t.trim().is_empty());
    let job = Job::new(video.clone(), &user.id, title, query.profile, unix_now());
    if let Err(e) = state.store.create(job).await {
        let _ = std::fs::remove_file(&source);
        return Err(e.into());
    }
    // Counted once accepted: a refused upload (not a video, store error) is not an upload.
    state.metrics.upload(received);
    tracing::info!(%video, user = %user.id, bytes = received, duration = info.duration, "upload queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "id": video,
            "status": "queued",
            "status_url": format!("/api/videos/{video}"),
            "events_url": format!("/api/videos/{video}/events"),
        })),
    ))
}

/// Writes a body stream to `path`, refusing more than `limit` bytes. The file is flushed to
/// disk before it is probed.
async fn write_stream<S>(mut stream: S, path: &Path, limit: u64) -> Result<u64, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, String>> + Unpin,
{
    let mut file = tokio::fs::File::create(path).await?;
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("upload interrupted: {e}")))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(ApiError::TooLarge(limit));
        }
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    Ok(total)
}
