//! Poster, storyboard (WebVTT + sprite sheets) and the progressive fallback (seed 001's
//! "progressive" format) with single-range support, for clients without HLS.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use shared::range::{self, RangeDecision};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::auth::User;
use super::error::ApiError;
use super::AppState;

/// A stored file (`rel` under the data directory or in the bucket).
async fn stored_response(
    state: &AppState,
    rel: &str,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    let bytes = state.media.read(rel).await?.ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /api/videos/{id}/thumbnail.jpg` (available as soon as the job reported it), by the
/// owner's token or with `?pt=` (the URL the video's record gives).
pub async fn thumbnail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let job = state.viewed_job(&mut parts, &id).await?;
    stored_response(
        &state,
        &format!("thumbs/{}/poster.jpg", job.video),
        "image/jpeg",
    )
    .await
}

/// `GET /api/videos/{id}/storyboard.vtt`; sheet references point at the sheet endpoint and
/// carry a playback credential so an `<img>` can load them (never the caller's token: the
/// sheets' URLs end up in caches and logs).
pub async fn storyboard_vtt(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let job = state.viewed_job(&mut parts, &id).await?;
    let bytes = state
        .media
        .read(&format!("thumbs/{}/storyboard.vtt", job.video))
        .await?
        .ok_or(ApiError::NotFound)?;
    let text = String::from_utf8_lossy(&bytes);
    let suffix = format!("?pt={}", state.credential(&job)?);
    let body: String = text
        .lines()
        .map(|l| match l.split_once("#xywh=") {
            Some((sheet, xywh)) => format!("storyboard/{sheet}{suffix}#xywh={xywh}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "text/vtt"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/videos/{id}/storyboard/{sheet}`, by token or `?pt=`.
pub async fn storyboard_sheet(
    State(state): State<AppState>,
    Path((id, sheet)): Path<(String, String)>,
    mut parts: Parts,
) -> Result<Response, ApiError> {
    let job = state.viewed_job(&mut parts, &id).await?;
    let valid = sheet.starts_with("storyboard_")
        && sheet.ends_with(".jpg")
        && sheet[11..sheet.len() - 4]
            .bytes()
            .all(|b| b.is_ascii_digit());
    if !valid {
        return Err(ApiError::NotFound);
    }
    stored_response(
        &state,
        &format!("thumbs/{}/{sheet}", job.video),
        "image/jpeg",
    )
    .await
}

/// `GET /api/videos/{id}/stream`: the source file, with `Range` (206/416).
pub async fn progressive(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    if let Some(bucket) = state.media.remote() {
        let name = crate::storage::object_name(&format!("sources/{}", job.video));
        let (size, found) = bucket.open_range(&name, range).await?;
        let found = found.ok_or(ApiError::NotFound)?;
        return Ok(match found {
            Some((start, end, stream)) => ranged(size, start, end, Body::from_stream(stream)),
            None => unsatisfiable(size),
        });
    }
    let path = state.layout.source_file(&job.video);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let size = file.metadata().await?.len();
    let (start, end) = match range::decide(range.map(str::as_bytes), size) {
        RangeDecision::Full => (0, size),
        RangeDecision::Partial { start, end } => (start, end),
        RangeDecision::Unsatisfiable => return Ok(unsatisfiable(size)),
    };
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let reader = file.take(end - start);
    let stream = futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    });
    Ok(ranged(size, start, end, Body::from_stream(stream)))
}

fn unsatisfiable(size: u64) -> Response {
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [(header::CONTENT_RANGE, format!("bytes */{size}"))],
    )
        .into_response()
}

/// `body` as bytes `start..end` of a `size`-byte source: 200 when that is all of it, 206
/// otherwise.
fn ranged(size: u64, start: u64, end: u64, body: Body) -> Response {
    let status = if start == 0 && end == size {
        StatusCode::OK
    } else {
        StatusCode::PARTIAL_CONTENT
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("video/mp4"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    h.insert(header::CONTENT_LENGTH, (end - start).into());
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) = header::HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}
