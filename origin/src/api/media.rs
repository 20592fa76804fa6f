//! Poster, storyboard (WebVTT + sprite sheets) and the progressive fallback (seed 001's
//! "progressive" format) with single-range support, for clients without HLS.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use shared::range::{self, RangeDecision};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::auth::User;
use super::error::ApiError;
use super::AppState;

async fn file_response(
    path: std::path::PathBuf,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            bytes,
        )
            .into_response()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/videos/{id}/thumbnail.jpg` (available as soon as the job reported it).
pub async fn thumbnail(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    file_response(
        state.layout.thumbs_dir(&job.video).join("poster.jpg"),
        "image/jpeg",
    )
    .await
}

/// `GET /api/videos/{id}/storyboard.vtt`; sheet references point at the sheet endpoint and
/// carry the caller's `token` so an `<img>` can load them.
pub async fn storyboard_vtt(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    let text =
        match tokio::fs::read_to_string(state.layout.thumbs_dir(&job.video).join("storyboard.vtt"))
            .await
        {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::NotFound),
            Err(e) => return Err(e.into()),
        };
    let token = uri
        .query()
        .and_then(|q| q.split('&').find(|kv| kv.starts_with("token=")));
    let suffix = token.map(|t| format!("?{t}")).unwrap_or_default();
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

/// `GET /api/videos/{id}/storyboard/{sheet}`.
pub async fn storyboard_sheet(
    State(state): State<AppState>,
    user: User,
    Path((id, sheet)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let job = state.owned_job(&user, &id).await?;
    let valid = sheet.starts_with("storyboard_")
        && sheet.ends_with(".jpg")
        && sheet[11..sheet.len() - 4]
            .bytes()
            .all(|b| b.is_ascii_digit());
    if !valid {
        return Err(ApiError::NotFound);
    }
    file_response(
        state.layout.thumbs_dir(&job.video).join(sheet),
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
    let path = state.layout.source_file(&job.video);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ApiError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let size = file.metadata().await?.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match range::decide(range.map(str::as_bytes), size) {
        RangeDecision::Full => (StatusCode::OK, 0, size),
        RangeDecision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeDecision::Unsatisfiable => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
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
    let mut response = Response::new(Body::from_stream(stream));
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
    Ok(response)
}
