//! Operations: readiness, the OpenAPI document, and the migration run.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use std::time::{Duration, Instant};

use super::auth::Admin;
use super::error::ApiError;
use super::AppState;
use crate::jobs::store::JobStore;
use crate::transcode::child;

/// How long a readiness verdict is reused: probes (and load balancers) may ask many times a
/// second, and each check runs ffmpeg and writes a file.
const READY_FOR: Duration = Duration::from_secs(5);

/// The last readiness verdict; concurrent requests wait for one check instead of each
/// running their own.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
}

impl Readiness {
    /// Problems found by a check at most [`READY_FOR`] old.
    async fn problems(&self, state: &AppState) -> Vec<String> {
        let mut last = self.last.lock().await;
        if let Some((at, problems)) = last.as_ref() {
            if at.elapsed() < READY_FOR {
                return problems.clone();
            }
        }
        let problems = check(state).await;
        *last = Some((Instant::now(), problems.clone()));
        problems
    }
}

/// ffmpeg runs, the store answers, the data directory is writable. Returns what fails, by name
/// only: `/readyz` answers anyone who reaches the API, so the details (a store's address, an
/// error of the filesystem) go to the log.
async fn check(state: &AppState) -> Vec<String> {
    let mut problems = Vec::new();
    let mut ffmpeg = tokio::process::Command::new(&state.settings.worker.media.transcode.ffmpeg);
    ffmpeg
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if !child::output(&mut ffmpeg)
        .await
        .is_ok_and(|o| o.status.success())
    {
        problems.push("ffmpeg is not runnable".to_owned());
    }
    if let Err(error) = state.store.list("", 0, 1).await {
        tracing::warn!(%error, "not ready: the job store fails");
        problems.push("the job store fails".to_owned());
    }
    let probe = state.layout.tmp_root().join(".readyz");
    if let Err(e) = tokio::fs::write(&probe, b"ok")
        .await
        .and(tokio::fs::remove_file(&probe).await)
    {
        tracing::warn!(error = %e, "not ready: the data directory is not writable");
        problems.push("the data directory is not writable".to_owned());
    }
    problems
}

/// `GET /readyz`: the verdict of [`check`], cached for a few seconds.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let problems = state.readiness.problems(&state).await;
    if problems.is_empty() {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not ready", "error": problems.join("; ") })),
        )
            .into_response()
    }
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// `GET /api/admin/migration`.
pub async fn migration_status(
    State(state): State<AppState>,
    _admin: Admin,
) -> Json<crate::migration::MigrationStatus> {
    Json(state.migration.status())
}

/// `POST /api/admin/migration`: starts a run in the background.
pub async fn migration_start(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<(StatusCode, Json<crate::migration::MigrationStatus>), ApiError> {
    if !state.migration.enabled() {
        return Err(ApiError::Conflict(
            "neither migration.import_dir nor migration.import_prefix is configured".into(),
        ));
    }
    if !state.migration.begin() {
        return Err(ApiError::Conflict("a migration is already running".into()));
    }
    let s = state.clone();
    tokio::spawn(async move {
        s.migration
            .run(s.store.as_ref(), &s.layout, &s.pipeline)
            .await
    });
    Ok((StatusCode::ACCEPTED, Json(state.migration.status())))
}
