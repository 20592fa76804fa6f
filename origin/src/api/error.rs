//! The API's one error type and its one mapping to HTTP: `{"error": "<what was wrong>"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::jobs::store::StoreError;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or owned by someone else (the API never reveals another user's video).
    #[error("video not found")]
    NotFound,
    /// Something inside a visible video is missing (a subtitle, a rendition).
    #[error("{0}")]
    NotFoundWhat(&'static str),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Conflict(String),
    #[error("upload larger than {0} bytes")]
    TooLarge(u64),
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    InsufficientStorage(String),
    /// A fault of ours: logged once with its whole source chain, answered without detail.
    #[error("internal error")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NotFoundWhat(_) => StatusCode::NOT_FOUND,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A request body that broke off while read: 413 when it outgrew the `max_bytes` limit
    /// (a body sent in chunks announces no length to refuse it by), else 400.
    pub fn body(e: &axum::Error, max_bytes: u64) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(error) = source {
            if error.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge(max_bytes);
            }
            source = error.source();
        }
        ApiError::BadRequest(format!("upload interrupted: {e}"))
    }

    /// An internal fault: logged once (with its source chain) when answered, without detail.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(e.into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => ApiError::NotFound,
            StoreError::Exists(v) => ApiError::Conflict(format!("video {v} already exists")),
            StoreError::Changed(v) => {
                ApiError::Conflict(format!("video {v} changed meanwhile; look again"))
            }
            StoreError::Unavailable(why) => {
                ApiError::Unavailable(format!("job store unavailable: {why}"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError;
        match e {
            StorageError::Io(e) => ApiError::internal(e),
            // The bucket's name and its answer go to the log; the client learns what to do.
            StorageError::Left { left, .. } => {
                tracing::warn!(error = %e, "delete incomplete");
                ApiError::Unavailable(format!(
                    "the media store kept {left} objects of this video; retry the delete"
                ))
            }
            other => {
                tracing::warn!(error = %other, "media store unavailable");
                ApiError::Unavailable("the media store is unavailable; retry later".into())
            }
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(source) = &self {
            tracing::error!(error = %Chain(source.as_ref()), "internal error");
        } else {
            tracing::debug!(%status, error = %self, "request refused");
        }
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if let ApiError::Timeout(_) = self {
            // A body that did not arrive: the rest of it must not be read as the next request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Gives the answers axum makes itself (no such route, a method the route lacks, an
/// extractor's rejection such as a query that does not parse, a body over the limit) the API's
/// shape: `{"error": "<its text>"}` with the same status and headers (`Allow` stays). Handlers'
/// own errors are JSON already and pass through untouched.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // axum's own messages are a line or two; anything longer is not one of them.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
        text => text.to_owned(),
    };
    tracing::debug!(%status, error = %message, "request refused");
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": message }).to_string();
    Response::from_parts(parts, body.into())
}

/// `/api/...` and everything else no route matches.
pub async fn no_route() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": "no such route" })),
    )
        .into_response()
}

/// An error and every `source()` under it, `: `-separated, so the log says why and not only
/// what.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a source, like most of ours.
    #[derive(Debug, thiserror::Error)]
    #[error("writing the upload")]
    struct Wrapped(#[source] std::io::Error);

    #[tokio::test]
    async fn axums_own_answers_become_json_and_ours_pass_untouched() {
        let plain = (
            StatusCode::BAD_REQUEST,
            [(header::ALLOW, "GET")],
            "Failed to deserialize query string",
        )
            .into_response();
        let mapped = json_errors(plain).await;
        assert_eq!(mapped.status(), StatusCode::BAD_REQUEST);
        assert_eq!(mapped.headers()[header::ALLOW], "GET");
        let body = axum::body::to_bytes(mapped.into_body(), 1024).await;
        assert_eq!(
            body.expect("body").as_ref(),
            br#"{"error":"Failed to deserialize query string"}"#
        );
        let empty = json_errors(StatusCode::METHOD_NOT_ALLOWED.into_response()).await;
        let body = axum::body::to_bytes(empty.into_body(), 1024).await;
        assert_eq!(
            body.expect("body").as_ref(),
            br#"{"error":"method not allowed"}"#
        );
        let ours = json_errors(ApiError::NotFound.into_response()).await;
        let body = axum::body::to_bytes(ours.into_body(), 1024).await;
        assert_eq!(
            body.expect("body").as_ref(),
            br#"{"error":"video not found"}"#
        );
        let fine = json_errors("ok".into_response()).await;
        let body = axum::body::to_bytes(fine.into_body(), 1024).await;
        assert_eq!(body.expect("body").as_ref(), b"ok");
    }

    #[test]
    fn internal_errors_keep_their_chain_for_the_log_only() {
        let io = std::io::Error::other("disk on fire");
        let e: ApiError = std::io::Error::other(Wrapped(io)).into();
        assert_eq!(e.to_string(), "internal error");
        let ApiError::Internal(source) = &e else {
            panic!("internal")
        };
        let logged = Chain(source.as_ref()).to_string();
        assert!(
            logged.contains("writing the upload: disk on fire"),
            "{logged}"
        );
    }
}
