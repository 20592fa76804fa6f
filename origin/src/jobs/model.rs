//! The job record.

use serde::{Deserialize, Serialize};
use shared::media::VideoId;

use crate::transcode::encoder::EncoderPreference;
use crate::transcode::pipeline::{Profile, Published};
use crate::transcode::progress::Stage;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Known (e.g. imported) but not queued: processing starts on first play (seed 004).
    Registered,
    /// Waiting for a worker (also after a retryable failure, once `not_before` passes).
    Queued,
    /// A worker holds the lease.
    Processing,
    /// Published.
    Ready,
    /// Gave up; `error` says why.
    Failed,
}

impl JobState {
    /// The name in the API and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Registered => "registered",
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Ready => "ready",
            JobState::Failed => "failed",
        }
    }
}

/// A worker's claim on a job (or an API request's on its subtitle files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub worker: String,
    /// Unix seconds after which another worker may take the job over.
    pub expires_at: i64,
}

/// What to do with a job's subtitle edit lease ([`Job::editor`]) for one holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStep {
    /// Take it for this many seconds, unless someone else holds a live one (its holder takes
    /// it again).
    Take(i64),
    /// Extend it by this many seconds from now, only if the holder still has it: a renewal
    /// that lands after the lease was given back takes nothing.
    Renew(i64),
    /// Give it back, if the holder still has it.
    GiveBack,
}

/// How a job ended, as its owner's webhook receiver hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    Ready,
    Failed,
}

/// A final outcome not yet delivered to the webhook receiver: the outbox entry, written with
/// the outcome itself, so a process that dies before (or while) delivering it loses nothing
/// ([`crate::jobs::announcer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Announcement {
    pub ending: Ending,
    /// Unix seconds of the outcome (the store's clock).
    pub at: i64,
    /// Drawn when the outcome is recorded (a random start per process, then counted): with the
    /// video, the ending and `at`, what the event id is derived from, so every delivery of
    /// this outcome carries the same id, and another outcome of the video in the same second
    /// has another.
    #[serde(default)]
    pub nonce: u32,
}

impl Announcement {
    /// A new outcome's announcement.
    pub fn new(ending: Ending, at: i64) -> Self {
        static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        static DRAWN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let start = *START.get_or_init(|| {
            let mut bytes = [0u8; 4];
            shared::media::fill_random(&mut bytes);
            u32::from_le_bytes(bytes)
        });
        let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            ending,
            at,
            nonce: start.wrapping_add(n),
        }
    }
}

/// A job's attempts, last update (unix seconds) and revision.
pub type Version = (u32, i64, u64);

/// Everything known about one video's processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub video: VideoId,
    pub owner: String,
    pub title: Option<String>,
    pub state: JobState,
    pub stage: Stage,
    /// Whole-job percent, 0-100.
    pub progress: f64,
    pub error: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    pub profile: Profile,
    pub encoder: EncoderPreference,
    /// Rungs whose output is complete (resume skips them where the backend can).
    pub checkpoints: Vec<String>,
    pub lease: Option<Lease>,
    /// A retried job is not claimed before this unix time (backoff).
    pub not_before: i64,
    pub thumbnail_ready: bool,
    /// Published far enough to be watched while the encode goes on (growing playlists).
    #[serde(default)]
    pub playable: bool,
    pub result: Option<Published>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Counts the changes made to its published playlists outside an encode (a subtitle file
    /// added or removed) and requeues: copies kept in memory know from it they are stale.
    #[serde(default)]
    pub revision: u64,
    /// Who holds its uploaded subtitle files right now (an API request changing them, an
    /// encode reading them, a worker bringing the master in line once its job is recorded, a
    /// delete), so that these run one at a time across machines ([`JobStore::edit_lease`]).
    ///
    /// [`JobStore::edit_lease`]: super::store::JobStore::edit_lease
    #[serde(default)]
    pub editor: Option<Lease>,
    /// Its final outcome, until the webhook receiver took it or it was given up (only while
    /// the store announces outcomes: [`JobStore::announce_outcomes`]).
    ///
    /// [`JobStore::announce_outcomes`]: super::store::JobStore::announce_outcomes
    #[serde(default)]
    pub announce: Option<Announcement>,
}

/// Why a job whose workers all died running it was failed (its owner's message).
pub const WORKERS_DIED: &str =
    "processing stopped: the worker running it stopped on every attempt (it may need more memory)";

impl Job {
    /// A new queued job.
    pub fn new(
        video: VideoId,
        owner: &str,
        title: Option<String>,
        profile: Profile,
        now: i64,
    ) -> Self {
        Self {
            video,
            owner: owner.to_owned(),
            title,
            state: JobState::Queued,
            stage: Stage::Queued,
            progress: 0.0,
            error: None,
            attempts: 0,
            profile,
            encoder: EncoderPreference::Auto,
            checkpoints: Vec::new(),
            lease: None,
            not_before: 0,
            thumbnail_ready: false,
            playable: false,
            result: None,
            created_at: now,
            updated_at: now,
            revision: 0,
            editor: None,
            announce: None,
        }
    }

    /// What a copy of its published files is valid for: another attempt, any update of the
    /// job, or a revision changes it.
    pub fn version(&self) -> Version {
        (self.attempts, self.updated_at, self.revision)
    }

    /// Applies `step` to its edit lease for `holder` at `now`: whether it took, renewed or gave
    /// it back. The stores write the record only then; Redis applies the same rules in a
    /// script (`EDIT_LEASE`).
    pub fn edit_lease(&mut self, holder: &str, step: LeaseStep, now: i64) -> bool {
        let mine = self.editor.as_ref().is_some_and(|e| e.worker == holder);
        let free = self
            .editor
            .as_ref()
            .is_none_or(|e| mine || e.expires_at < now);
        let until = |secs: i64| {
            Some(Lease {
                worker: holder.to_owned(),
                expires_at: now + secs,
            })
        };
        match step {
            LeaseStep::Take(secs) if free => self.editor = until(secs),
            LeaseStep::Renew(secs) if mine => self.editor = until(secs),
            LeaseStep::GiveBack if mine => self.editor = None,
            _ => return false,
        }
        true
    }

    /// Whether its lease ran out after its last allowed attempt: no worker gets it again.
    pub fn worn_out(&self, now: i64, max_attempts: u32) -> bool {
        self.state == JobState::Processing && self.claimable(now) && self.attempts >= max_attempts
    }

    /// Whether a worker may claim it at `now`: queued and due, or processing under an
    /// expired lease (its worker died).
    pub fn claimable(&self, now: i64) -> bool {
        match self.state {
            JobState::Queued => self.not_before <= now,
            JobState::Processing => self.lease.as_ref().is_none_or(|l| l.expires_at < now),
            JobState::Registered | JobState::Ready | JobState::Failed => false,
        }
    }

    /// Whether it can be watched: published in full, or growing while it is encoded.
    pub fn is_playable(&self) -> bool {
        match self.state {
            JobState::Ready => true,
            JobState::Processing => self.playable,
            _ => false,
        }
    }

    /// Whether `worker` holds a live lease at `now`.
    pub fn leased_by(&self, worker: &str, now: i64) -> bool {
        self.state == JobState::Processing
            && self
                .lease
                .as_ref()
                .is_some_and(|l| l.worker == worker && l.expires_at >= now)
    }
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
