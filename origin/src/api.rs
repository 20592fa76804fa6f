//! The HTTP API: uploads, video records, signed playback, live progress, admin.
//!
//! # Layout
//! - [`auth`]: user JWTs and playback credentials; [`error`]: the one error-to-HTTP mapping
//!   (axum's own refusals included: every error is `{"error": "..."}`).
//! - [`uploads`]: streaming upload -> probe -> job.
//! - [`videos`]: list, status, delete, retry; [`subtitles`]: subtitle files uploaded for a video.
//! - [`playback`]: stream-info, signed master/variant playlists, key delivery.
//! - [`events`]: Server-Sent Events relaying job progress.
//! - [`media`]: poster, storyboard, progressive MP4.
//! - [`admin`]: readiness, the OpenAPI document, migration.
//! - [`web`]: the web app (page, hls.js, the development-only token endpoint).
//!
//! Another user's video answers 404, exactly like a missing one: the API never confirms that a
//! video id exists to someone who may not see it. A request that changes something runs to
//! its end even if its client leaves ([`detached`]).

pub mod admin;
pub mod auth;
mod body_deadline;
pub mod error;
pub mod events;
pub mod media;
pub mod playback;
pub mod subtitles;
pub mod uploads;
pub mod user_slots;
pub mod videos;
pub mod web;

use std::sync::Arc;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use shared::media::{Layout, VideoId};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::config::ServeSettings;
use crate::jobs::model::{unix_now, Job, JobState};
use crate::jobs::store::{JobStore, StoreError};
use crate::jobs::worker::{JobEvent, WorkerPool};
use crate::migration::Migration;
use crate::transcode::pipeline::Pipeline;
use auth::{Auth, User};
use error::ApiError;

/// The job store backing the API.
pub type Store = crate::jobs::any::AnyStore;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<ServeSettings>,
    pub auth: Arc<Auth>,
    pub store: Arc<Store>,
    pub layout: Layout,
    /// Where published media, keys, thumbnails and uploads are read and removed.
    pub media: crate::storage::MediaStore,
    pub pipeline: Pipeline,
    /// In-process workers, when this process runs any (cancel on delete).
    pub pool: Option<Arc<WorkerPool<Store>>>,
    pub events: broadcast::Sender<JobEvent>,
    pub migration: Arc<Migration>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The cached `/readyz` verdict.
    pub readiness: Arc<admin::Readiness>,
    /// Uploads in progress per user.
    pub upload_slots: Arc<user_slots::UserSlots>,
    /// Event streams open per user.
    pub event_streams: Arc<user_slots::UserSlots>,
    /// Fires when the server begins to drain: long-lived responses (event streams) end so the
    /// drain can finish.
    pub draining: shared::shutdown::Switch,
    /// Requests running on after their clients left ([`detached`]), awaited at shutdown.
    pub detached: Detached,
}

impl AppState {
    /// The job of `id` if `user` may see it (owner or admin); 404 otherwise.
    pub async fn owned_job(&self, user: &User, id: &str) -> Result<Job, ApiError> {
        let video: VideoId = id.parse().map_err(|_| ApiError::NotFound)?;
        match self.store.get(&video).await? {
            Some(job) if job.owner == user.id || user.admin => Ok(job),
            _ => Err(ApiError::NotFound),
        }
    }

    /// A playback credential for `job`'s owner, expiring with the segment URLs (and the same
    /// for everyone within an expiry bucket, so URLs that carry it stay cacheable). The URLs a
    /// page loads without headers (poster, storyboard, events) carry it: a URL ends up in
    /// logs and histories, so it never holds the user's own token.
    pub fn credential(&self, job: &Job) -> Result<String, ApiError> {
        self.credential_for(&job.video, &job.owner)
    }

    /// `job` as the API shows it, its URLs carrying [`Self::credential`].
    pub fn view(&self, job: &Job) -> Result<videos::VideoView, ApiError> {
        Ok(videos::VideoView::of(job, &self.credential(job)?))
    }

    /// [`Self::credential`] for `owner`'s `video`, whose job may not exist yet.
    pub fn credential_for(&self, video: &VideoId, owner: &str) -> Result<String, ApiError> {
        let s = &self.settings.playback;
        let expires =
            crate::playback::bucketed_expiry(unix_now(), s.url_ttl_secs, s.expiry_bucket_secs);
        self.auth.playback_token(video, owner, expires)
    }

    /// The job of `id` for a read of its media: by a playback credential for it (`?pt=`), or
    /// as [`Self::owned_job`] by a user token. 404 for anyone else.
    pub async fn viewed_job(
        &self,
        parts: &mut axum::http::request::Parts,
        id: &str,
    ) -> Result<Job, ApiError> {
        use axum::extract::FromRequestParts;
        let Some(pt) = auth::query_param(parts, "pt") else {
            let user = User::from_request_parts(parts, self).await?;
            return self.owned_job(&user, id).await;
        };
        let video: VideoId = id.parse().map_err(|_| ApiError::NotFound)?;
        let owner = self.auth.verify_playback(&pt, &video)?;
        match self.store.get(&video).await? {
            Some(job) if job.owner == owner => Ok(job),
            _ => Err(ApiError::NotFound),
        }
    }

    /// Queues `job` again if it is still `from` (a failed video retried, a registered one
    /// played). A request that raced another one and lost finds it queued already, which is
    /// all it asked: not an error.
    pub async fn requeue(&self, job: &Job, from: JobState) -> Result<(), ApiError> {
        match self.store.requeue(&job.video, from, unix_now()).await {
            Ok(()) | Err(StoreError::Changed(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    let max_body = usize::try_from(state.settings.max_upload_bytes).unwrap_or(usize::MAX);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(admin::readyz))
        .route("/api/openapi.json", get(admin::openapi))
        .route("/", get(web::index))
        .route("/app.js", get(web::asset))
        .route("/app.css", get(web::asset))
        .route("/js/{module}", get(web::asset))
        .route("/vendor/{file}", get(web::vendor))
        .route("/api/dev/token", get(web::dev_token))
        .route("/api/videos", post(uploads::create).get(videos::list))
        .route("/api/videos/{id}", get(videos::get).delete(videos::delete))
        .route("/api/videos/{id}/retry", post(videos::retry))
        .route(
            "/api/videos/{id}/subtitles",
            // A subtitle file is small: the handler never buffers more than it may be.
            post(subtitles::add),
        )
        .route(
            "/api/videos/{id}/subtitles/{sub}",
            axum::routing::delete(subtitles::delete),
        )
        .route("/api/videos/{id}/stream-info", get(playback::stream_info))
        .route("/api/videos/{id}/hls/master.m3u8", get(playback::master))
        .route(
            "/api/videos/{id}/hls/{rung}/index.m3u8",
            get(playback::variant),
        )
        .route("/api/videos/{id}/hls/{rung}/key", get(playback::key))
        .route("/api/videos/{id}/events", get(events::sse))
        .route("/api/videos/{id}/thumbnail.jpg", get(media::thumbnail))
        .route(
            "/api/videos/{id}/storyboard.vtt",
            get(media::storyboard_vtt),
        )
        .route(
            "/api/videos/{id}/storyboard/{sheet}",
            get(media::storyboard_sheet),
        )
        .route("/api/videos/{id}/stream", get(media::progressive))
        .route(
            "/api/admin/migration",
            get(admin::migration_status).post(admin::migration_start),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.detached.clone(),
            detached,
        ))
        .fallback(error::no_route)
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.settings.uploads.body_timeout(),
            body_deadline::body_deadline,
        ))
        // Last, so it sees every answer: the body limit's 413 and axum's rejections too.
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::map_response(never_a_document))
        .with_state(state)
}

/// Every answer but the page (which has a policy of its own) is never sniffed, nor rendered as
/// a document with script: `/stream` serves an uploaded file's own bytes from the origin's name,
/// where the page keeps its users' tokens, and one wrong content type must not make it HTML.
async fn never_a_document(mut response: Response) -> Response {
    use axum::http::{header, HeaderValue};
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("default-src 'none'; sandbox"));
    response
}

/// Requests that changed something and run in tasks of their own ([`detached`]): the drain at
/// shutdown waits for them too, not only for connections.
#[derive(Debug, Clone, Default)]
pub struct Detached(Arc<tokio::sync::RwLock<()>>);

impl Detached {
    /// Waits until every detached request has finished, or `grace` passed; returns whether all
    /// did.
    pub async fn finished(&self, grace: std::time::Duration) -> bool {
        tokio::time::timeout(grace, self.0.write()).await.is_ok()
    }
}

/// Runs every request but GET and HEAD in a task of its own. hyper drops a request whose
/// client closed its connection; an upload whose last byte is in, a delete or a subtitle must
/// not stop half-way for that (a source without a job, a half-deleted video). A body cut short
/// still fails where it is read, and leaves nothing.
async fn detached(
    axum::extract::State(running): axum::extract::State<Detached>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let held = running.0.clone().read_owned().await;
    let task = tokio::spawn(
        async move {
            let response = next.run(req).await;
            drop(held);
            response
        }
        .in_current_span(),
    );
    task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "request task failed");
        ApiError::internal(format!("request task: {e}")).into_response()
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Detached;

    #[tokio::test]
    async fn the_drain_waits_for_detached_requests() {
        let running = Detached::default();
        let request = running.0.clone().read_owned().await;
        assert!(!running.finished(Duration::from_millis(20)).await);
        drop(request);
        assert!(running.finished(Duration::from_millis(20)).await);
    }
}
