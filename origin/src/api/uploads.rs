//! `POST /api/videos`: the upload streams to a temporary file (memory stays flat whatever the
//! size), is probed through the container allow-list and the media limits, and only a real
//! video becomes a source and a queued job. A refused or interrupted upload leaves nothing
//! behind; once the whole body is in, the upload is finished (probed, stored, queued) even if
//! the client leaves before the answer.
//!
//! Before a byte is kept: at most `uploads.max_concurrent_per_user` uploads per user (429), and
//! the data filesystem must keep `uploads.min_free_bytes` free (507), checked against the
//! declared length and again as the body streams in ([`guard`]).

pub mod guard;

use std::path::{Path, PathBuf};

use axum::extract::multipart::MultipartError;
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
use crate::config::UploadLimits;
use crate::jobs::model::{unix_now, Job};
use crate::jobs::store::{JobStore, StoreError};
use crate::storage::leftovers;
use crate::transcode::input::Source;
use crate::transcode::pipeline::Profile;
use crate::transcode::probe::ProbeError;

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    pub title: Option<String>,
    /// `ladder` (default) or `passthrough` (copy, single rendition).
    #[serde(default)]
    pub profile: Profile,
}

/// A temporary upload file, deleted unless kept, and held while it lives: if this process is
/// killed, the next start of any role removes it (`storage::leftovers`).
struct TempUpload {
    path: PathBuf,
    keep: bool,
    _held: leftovers::Held,
}

impl TempUpload {
    /// Creates the file for `video` in `tmp_root`; returns it with the file to write.
    fn create(tmp_root: &Path, video: &VideoId) -> std::io::Result<(Self, std::fs::File)> {
        let path = tmp_root.join(format!("upload-{video}.{}", leftovers::writer()));
        let (file, held) = leftovers::create_held(&path)?;
        let tmp = Self {
            path,
            keep: false,
            _held: held,
        };
        Ok((tmp, file))
    }
}

impl Drop for TempUpload {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where and how an upload is written.
struct Sink<'a> {
    path: &'a Path,
    max_bytes: u64,
    limits: &'a UploadLimits,
}

type Accepted = (StatusCode, Json<serde_json::Value>);

/// Streams the body to a temporary file within the limits, then [`admit`]s it. It runs to its
/// end even if the client leaves after its last byte (see `api::detached`).
pub async fn create(
    State(state): State<AppState>,
    user: User,
    Query(query): Query<UploadQuery>,
    req: Request,
) -> Result<Accepted, ApiError> {
    let limits = &state.settings.uploads;
    let max_bytes = state.settings.max_upload_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(ApiError::TooLarge(max_bytes));
    }
    let mut title = query.title;
    check_title(title.as_deref(), limits)?;
    let slot = state
        .upload_slots
        .take(&user.id, limits.max_concurrent_per_user)
        .await?;
    let tmp_root = state.layout.tmp_root();
    guard::ensure_room(&tmp_root, declared.unwrap_or(0), limits.min_free_bytes)?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let video = VideoId::random();
    let (tmp, file) = TempUpload::create(&tmp_root, &video)?;
    let mut file = tokio::fs::File::from_std(file);
    let sink = Sink {
        path: &tmp.path,
        max_bytes,
        limits,
    };
    let received = if multipart {
        let mut form = Multipart::from_request(req, &state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?;
        let mut received = None;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| multipart_error(&e, max_bytes))?
        {
            match field.name() {
                Some("file") if received.is_none() => {
                    let stream = field.map(|r| r.map_err(|e| multipart_error(&e, max_bytes)));
                    received = Some(write_stream(stream, &mut file, &sink).await?);
                }
                Some("title") => title = Some(read_title(field, limits).await?),
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
            .map(|r| r.map_err(|e| ApiError::body(&e, max_bytes)));
        write_stream(stream, &mut file, &sink).await?
    };
    if received == 0 {
        return Err(ApiError::BadRequest("the upload is empty".into()));
    }
    let upload = Received {
        tmp,
        video,
        title,
        profile: query.profile,
        bytes: received,
        _slot: slot,
    };
    admit(state, user, upload).await
}

/// An upload whose body has been written to its temporary file.
struct Received {
    tmp: TempUpload,
    video: VideoId,
    title: Option<String>,
    profile: Profile,
    bytes: u64,
    /// The user's upload slot, held until the upload is a job or refused.
    _slot: crate::api::user_slots::Slot,
}

/// Probes a received upload and makes it a source and a queued job, or refuses it leaving
/// nothing behind.
async fn admit(state: AppState, user: User, mut upload: Received) -> Result<Accepted, ApiError> {
    let video = upload.video.clone();
    let info = state
        .pipeline
        .probe(Source::File(&upload.tmp.path))
        .await
        .map_err(|e| match e {
            ProbeError::Spawn(why) => ApiError::internal(why),
            ProbeError::NoVideo | ProbeError::Format(_) => {
                ApiError::UnsupportedMedia(e.to_string())
            }
            ProbeError::Limit(why) => ApiError::Unprocessable(why),
            other => ApiError::Unprocessable(format!("not a usable video: {other}")),
        })?;
    // Its URLs' credential, before anything is kept: nothing to undo if it fails.
    let pt = state.credential_for(&video, &user.id)?;
    let source = state.layout.source_file(&video);
    // The lock moves with the file and is held until `upload` is dropped, once the job exists
    // (or the source is removed): a role starting meanwhile leaves a held upload alone.
    std::fs::rename(&upload.tmp.path, &source)?;
    upload.tmp.keep = true;
    // Probed, so it may enter the store (a bucket: uploaded in parts, the local copy dropped).
    if let Err(e) = state.media.store_source(&video).await {
        let _ = std::fs::remove_file(&source);
        return Err(e.into());
    }
    let title = upload.title.filter(|t| !t.trim().is_empty());
    let job = Job::new(video.clone(), &user.id, title, upload.profile, unix_now());
    if let Err(e) = state.store.create(job).await {
        match created_after_all(&*state.store, &video, &e).await {
            // The answer was lost, not the job.
            Some(true) => {}
            Some(false) => {
                if let Err(error) = state.media.remove_video(&video).await {
                    tracing::warn!(%error, %video, "cannot remove the upload of a job that was not created");
                }
                return Err(e.into());
            }
            // Unknown: the upload stays (a start removes it if no job names it).
            None => return Err(e.into()),
        }
    }
    // Counted once accepted: a refused upload (not a video, store error) is not an upload.
    let received = upload.bytes;
    state.metrics.upload(received);
    tracing::info!(%video, user = %user.id, bytes = received, duration = info.duration, "upload queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "id": video,
            "status": "queued",
            "status_url": format!("/api/videos/{video}"),
            "events_url": format!("/api/videos/{video}/events?pt={pt}"),
            "thumbnail_url": format!("/api/videos/{video}/thumbnail.jpg?pt={pt}"),
        })),
    ))
}

/// Whether a job whose creation failed with `error` exists all the same: a store that timed
/// out may have made it and lost only its answer, and a create sent again then finds it
/// (ids are random: it is this upload's). `None` when the store cannot tell.
async fn created_after_all<S: JobStore>(
    store: &S,
    video: &VideoId,
    error: &StoreError,
) -> Option<bool> {
    match error {
        StoreError::Exists(_) => return Some(true),
        StoreError::Unavailable(_) | StoreError::Backend(_) => {}
        _ => return Some(false),
    }
    match store.get(video).await {
        Ok(found) => Some(found.is_some()),
        Err(error) => {
            tracing::warn!(%error, %video, "cannot tell whether the upload's job was created; the upload is kept");
            None
        }
    }
}

fn check_title(title: Option<&str>, limits: &UploadLimits) -> Result<(), ApiError> {
    match title {
        Some(t) if t.len() > limits.max_title_bytes => Err(title_too_long(limits)),
        _ => Ok(()),
    }
}

fn title_too_long(limits: &UploadLimits) -> ApiError {
    ApiError::BadRequest(format!(
        "the title is longer than {} bytes",
        limits.max_title_bytes
    ))
}

/// The multipart `title` field, read chunk by chunk and refused as soon as it is too long (a
/// hostile client could otherwise send gigabytes as a "title").
async fn read_title(
    mut field: axum::extract::multipart::Field<'_>,
    limits: &UploadLimits,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        if bytes.len() + chunk.len() > limits.max_title_bytes {
            return Err(title_too_long(limits));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::BadRequest("the title is not UTF-8".into()))
}

/// A form that broke off: 413 when it outgrew the body limit (a form sent in chunks announces
/// no length to refuse it by), else 400.
fn multipart_error(e: &MultipartError, max_bytes: u64) -> ApiError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(max_bytes),
        _ => ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text())),
    }
}

/// How often (bytes) the free-space floor is checked again while an upload streams in.
const ROOM_CHECK_EVERY: u64 = 64 << 20;

/// Writes a body stream to the sink's file, refusing more than `max_bytes` and a disk falling
/// below its floor. The file is flushed to disk before it is probed. A body that goes silent
/// fails here like anywhere else (`api::body_deadline`), and the request is answered 408.
async fn write_stream<S>(
    mut stream: S,
    file: &mut tokio::fs::File,
    sink: &Sink<'_>,
) -> Result<u64, ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, ApiError>> + Unpin,
{
    let mut total: u64 = 0;
    let mut next_check = ROOM_CHECK_EVERY;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        total += chunk.len() as u64;
        if total > sink.max_bytes {
            return Err(ApiError::TooLarge(sink.max_bytes));
        }
        if total >= next_check {
            next_check = total + ROOM_CHECK_EVERY;
            let dir = sink.path.parent().unwrap_or(sink.path);
            guard::ensure_room(dir, ROOM_CHECK_EVERY, sink.limits.min_free_bytes)?;
        }
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::embedded::EmbeddedStore;

    /// A create that timed out may have been made: the upload is removed only when the store
    /// says there is no job, never when it was made after all.
    #[tokio::test]
    async fn a_create_whose_answer_was_lost_keeps_its_upload() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = EmbeddedStore::open(dir.path()).expect("store");
        let made: VideoId = "made".parse().expect("id");
        let job = Job::new(made.clone(), "alice", None, Profile::Ladder, 0);
        store.create(job).await.expect("create");
        let lost = StoreError::Unavailable("timed out".into());
        assert_eq!(created_after_all(&store, &made, &lost).await, Some(true));
        let never: VideoId = "never".parse().expect("id");
        assert_eq!(created_after_all(&store, &never, &lost).await, Some(false));
        let again = StoreError::Exists(made.clone());
        assert_eq!(
            created_after_all(&store, &made, &again).await,
            Some(true),
            "a create sent again finds its own job"
        );
        let other = StoreError::Changed(never.clone());
        assert_eq!(created_after_all(&store, &never, &other).await, Some(false));
    }
}
