//! The JSON body of a webhook: one final outcome of one video.

use ring::digest;
use serde::Serialize;
use shared::media::{uuid_shaped, VideoId};

use crate::jobs::model::{Announcement, Ending, Job};

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
    /// Unique per outcome and the same on every attempt, from any process (UUID shaped), so
    /// receivers can deduplicate retries and redeliveries.
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
    /// The event of `job`'s announcement ([`Job::announce`]), if it has one.
    pub fn announcing(job: &Job) -> Option<Self> {
        let announcement = job.announce?;
        let (event, error) = match announcement.ending {
            Ending::Ready => (EventKind::Ready, None),
            Ending::Failed => (
                EventKind::Failed,
                Some(job.error.clone().unwrap_or_default()),
            ),
        };
        Some(Self {
            id: event_id(&job.video, &announcement),
            event,
            video_id: job.video.clone(),
            owner: job.owner.clone(),
            title: job.title.clone(),
            error,
            occurred_at: announcement.at,
        })
    }
}

/// The id of one outcome of one video: derived from the outcome as recorded (its ending, time
/// and nonce), so whichever process delivers it, and however often, it carries the same id.
fn event_id(video: &VideoId, announcement: &Announcement) -> String {
    let name = format!(
        "{video}\n{:?}\n{}\n{}",
        announcement.ending, announcement.at, announcement.nonce
    );
    let digest = digest::digest(&digest::SHA256, name.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest.as_ref()[..16]);
    uuid_shaped(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::pipeline::Profile;
    use serde_json::json;

    pub(crate) fn announced(title: Option<&str>, ending: Ending, at: i64) -> Job {
        let video = "vid-1".parse().expect("valid id");
        let mut job = Job::new(
            video,
            "alice",
            title.map(str::to_owned),
            Profile::Ladder,
            10,
        );
        job.announce = Some(Announcement::new(ending, at));
        job
    }

    #[test]
    fn ready_shape() {
        let job = announced(Some("Holiday"), Ending::Ready, 1_700_000_000);
        let e = Event::announcing(&job).expect("an event");
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
        assert!(Event::announcing(&Job {
            announce: None,
            ..job
        })
        .is_none());
    }

    #[test]
    fn failed_shape_carries_the_error() {
        let mut job = announced(None, Ending::Failed, 5);
        job.error = Some("ffmpeg exited with 1".into());
        let e = Event::announcing(&job).expect("an event");
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(v["event"], "video.failed");
        assert_eq!(v["error"], "ffmpeg exited with 1");
        assert_eq!(v["title"], serde_json::Value::Null);
    }

    #[test]
    fn one_outcome_has_one_id_and_the_next_another() {
        let job = announced(None, Ending::Failed, 5);
        let id = |job: &Job| Event::announcing(job).expect("an event").id;
        let later = |change: fn(&mut Job)| {
            let mut other = job.clone();
            change(&mut other);
            id(&other)
        };
        // Every delivery, from any process, whatever changed in the record since.
        assert_eq!(id(&job), id(&job.clone()));
        assert_eq!(id(&job), later(|j| j.revision += 1));
        assert_eq!(id(&job), later(|j| j.title = Some("Renamed".into())));
        // Another outcome: another video, another ending, another time, or just another draw.
        let announcement = job.announce.expect("announced");
        assert_ne!(id(&job), later(|j| j.video = "vid-2".parse().expect("id")));
        for other in [
            Announcement {
                ending: Ending::Ready,
                ..announcement
            },
            Announcement {
                at: 6,
                ..announcement
            },
            Announcement {
                nonce: announcement.nonce.wrapping_add(1),
                ..announcement
            },
        ] {
            let mut changed = job.clone();
            changed.announce = Some(other);
            assert_ne!(id(&job), id(&changed), "{other:?}");
        }
    }
}
