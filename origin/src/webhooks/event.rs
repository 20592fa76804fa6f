//! The JSON body of a webhook: one final outcome of one video.

use serde::Serialize;
use shared::media::VideoId;

use crate::jobs::model::Job;

/// What happened. Only final outcomes are sent: a failed attempt that will be retried is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventKind {
    /// Published and playable.
    #[serde(rename = "video.ready")]
    Ready,
    /// Given up after the retry limit (or a non-retryable error); `error` says why.
    #[serde(rename = "video.failed")]
    Failed,
}

impl EventKind {
    /// The `event` field, also the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ready => "video.ready",
            EventKind::Failed => "video.failed",
        }
    }
}

/// The body POSTed to the receiver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unique per event and the same on every attempt (UUID-v4 shaped), so receivers can
    /// deduplicate retries.
    pub id: String,
    pub event: EventKind,
    pub video_id: VideoId,
    /// The uploader's user id.
    pub owner: String,
    /// `null` when the upload had none.
    pub title: Option<String>,
    /// Why processing failed (`video.failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds of the outcome (not of the delivery attempt).
    pub occurred_at: i64,
}

impl Event {
    /// `job` was published.
    pub fn ready(job: &Job, now: i64) -> Self {
        Self::new(job, EventKind::Ready, None, now)
    }

    /// `job` failed for good with `error`.
    pub fn failed(job: &Job, error: &str, now: i64) -> Self {
        Self::new(job, EventKind::Failed, Some(error.to_owned()), now)
    }

    fn new(job: &Job, event: EventKind, error: Option<String>, now: i64) -> Self {
        Self {
            // Same generator and shape as video ids: 128 random bits from the OS.
            id: VideoId::random().as_str().to_owned(),
            event,
            video_id: job.video.clone(),
            owner: job.owner.clone(),
            title: job.title.clone(),
            error,
            occurred_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::pipeline::Profile;
    use serde_json::json;

    fn job(title: Option<&str>) -> Job {
        let video = "vid-1".parse().expect("valid id");
        Job::new(
            video,
            "alice",
            title.map(str::to_owned),
            Profile::Ladder,
            10,
        )
    }

    #[test]
    fn ready_shape() {
        let e = Event::ready(&job(Some("Holiday")), 1_700_000_000);
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(
            v,
            json!({
                "id": e.id,
                "event": "video.ready",
                "video_id": "vid-1",
                "owner": "alice",
                "title": "Holiday",
                "occurred_at": 1_700_000_000,
            })
        );
        assert_eq!(e.id.len(), 36, "UUID shaped: {}", e.id);
    }

    #[test]
    fn failed_shape_carries_the_error() {
        let e = Event::failed(&job(None), "ffmpeg exited with 1", 5);
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(v["event"], "video.failed");
        assert_eq!(v["error"], "ffmpeg exited with 1");
        assert_eq!(v["title"], serde_json::Value::Null);
        assert_ne!(e.id, Event::failed(&job(None), "x", 5).id, "ids are unique");
    }
}
