//! `GET /api/videos/{id}/events`: Server-Sent Events. The first event is the current status, so
//! a late subscriber misses nothing; then progress, stage changes, `thumbnail_ready`, and a final
//! `ready` or `failed`, after which the stream ends.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast;

use super::error::ApiError;
use super::AppState;
use crate::jobs::model::JobState;
use crate::jobs::store::JobStore;
use crate::jobs::worker::JobEvent;
use axum::http::request::Parts;

/// By the owner's token or with `?pt=` (the URL the video's record gives: `EventSource` sends
/// no header, and a URL must not carry the user's token).
pub async fn sse(
    State(state): State<AppState>,
    Path(id): Path<String>,
    mut parts: Parts,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading the snapshot, so nothing falls between the two.
    let rx = state.events.subscribe();
    let job = state.viewed_job(&mut parts, &id).await?;
    // A stream of a video still encoding stays open for as long as the encode: each one holds
    // a connection, so one user may hold only so many.
    let slot = state
        .event_streams
        .take(&job.owner, state.settings.http.max_event_streams_per_user)
        .await?;
    let video = job.video.clone();
    let finished = matches!(job.state, JobState::Ready | JobState::Failed);
    let snapshot = Event::default()
        .event("status")
        .json_data(state.view(&job)?)
        .unwrap_or_default();
    let first = stream::iter([Ok(snapshot)]);
    let rest = stream::unfold(
        (rx, finished, state.clone()),
        move |(mut rx, done, state)| {
            let video = video.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    match tokio::time::timeout(RECHECK, rx.recv()).await {
                        Ok(Ok(event)) => {
                            let Some((name, is_last)) = matches(&event, &video) else {
                                continue;
                            };
                            let sse = Event::default()
                                .event(name)
                                .json_data(&event)
                                .unwrap_or_default();
                            return Some((Ok(sse), (rx, is_last, state)));
                        }
                        Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                        // Events skipped (a slow subscriber) or none for a while: the last one may
                        // have been lost on the way (a relay that dropped it), and the store has
                        // the truth.
                        Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => {
                            match recheck(&state, &video).await {
                                Recheck::Going => continue,
                                Recheck::Gone => return None,
                                Recheck::Ended(sse) => return Some((Ok(sse), (rx, true, state))),
                            }
                        }
                    }
                }
            }
        },
    );
    let mut draining = state.draining.clone();
    let drained = async move {
        draining.fired().await;
    };
    let events = first
        .chain(rest)
        .take_until(Box::pin(drained))
        // The slot is given back when the stream is dropped: it ended, or its client left.
        .map(move |event| {
            let _held = &slot;
            event
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// How long a stream waits for an event before it asks the store how the video stands.
const RECHECK: Duration = Duration::from_secs(30);

/// What the store says of a followed video.
enum Recheck {
    /// Still in the works (or the store does not answer): keep following.
    Going,
    /// Deleted: the stream ends.
    Gone,
    /// Finished while its last event was lost: its status, which ends the stream.
    Ended(Event),
}

async fn recheck(state: &AppState, video: &shared::media::VideoId) -> Recheck {
    match state.store.get(video).await {
        Ok(None) => Recheck::Gone,
        Ok(Some(job)) if matches!(job.state, JobState::Ready | JobState::Failed) => {
            let Ok(view) = state.view(&job) else {
                return Recheck::Going;
            };
            let status = Event::default()
                .event("status")
                .json_data(view)
                .unwrap_or_default();
            Recheck::Ended(status)
        }
        Ok(Some(_)) | Err(_) => Recheck::Going,
    }
}

/// The SSE event name for `event` if it concerns `video`, and whether it ends the stream.
fn matches(event: &JobEvent, video: &shared::media::VideoId) -> Option<(&'static str, bool)> {
    let (v, name, last) = match event {
        JobEvent::Stage { video, .. } => (video, "stage", false),
        JobEvent::Progress { video, .. } => (video, "progress", false),
        JobEvent::ThumbnailReady { video } => (video, "thumbnail_ready", false),
        JobEvent::Playable { video } => (video, "playable", false),
        JobEvent::Ready { video } => (video, "ready", true),
        JobEvent::Failed {
            video, retrying, ..
        } => (video, "failed", !retrying),
    };
    (v == video).then_some((name, last))
}

use futures_util::StreamExt as _;
