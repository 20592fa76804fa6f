//! The job store contract, shared by the embedded store and (later) Redis.
//!
//! Delivery is at-least-once: a claimed job carries a lease that its worker renews with
//! heartbeats; when the worker dies the lease runs out and the job is claimable again. Every
//! write that only the lease holder may make (progress, checkpoint, complete, fail) is refused
//! with [`StoreError::LeaseLost`] once the lease has passed to someone else, so a worker that
//! lost its job stops and never publishes over the new owner.

use std::future::Future;

use shared::media::VideoId;

use super::model::{Announcement, Job, JobState, LeaseStep};
use crate::transcode::pipeline::Published;
use crate::transcode::progress::Stage;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(VideoId),
    #[error("job {0} already exists")]
    Exists(VideoId),
    #[error("the lease on job {0} is no longer held by this worker")]
    LeaseLost(VideoId),
    /// The job is no longer in the state the change was asked for: another request got there
    /// first.
    #[error("job {0} changed meanwhile")]
    Changed(VideoId),
    /// The backend is unreachable (answered 503 by the API).
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    #[error("job store: {0}")]
    Backend(String),
}

/// What a claim did.
#[derive(Debug, Default)]
pub struct Claim {
    /// The job it took, if one was due.
    pub job: Option<Job>,
    /// The jobs it failed on its way, their workers having died on every attempt
    /// ([`crate::jobs::model::WORKERS_DIED`]): the claimer announces them, as the worker of a
    /// final failure would have.
    pub worn_out: Vec<Job>,
}

/// Which announcements [`JobStore::take_announcements`] takes.
#[derive(Debug, Clone, Copy)]
pub enum Pending<'a> {
    /// Those due (their hold, or their last taker's lease, ran out), at most this many.
    Due(usize),
    /// This video's, unless another taker has it: its own worker's, once the outcome is
    /// settled (within the hold, before anyone else took it, or once due).
    Held(&'a VideoId),
    /// This video's, whoever has it, if it is still this announcement: a taker renewing its
    /// lease as the delivery starts (the time it waited in the queue does not count), or
    /// giving it back (a lease of 0) when its delivery was cut short.
    Taken(&'a VideoId, &'a Announcement),
}

/// How a failed attempt ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Queue again, not before this unix time.
    RetryAt(i64),
    /// Give up.
    Final,
}

/// The operations every backend provides. `now` is always passed in, so tests control time.
pub trait JobStore: Send + Sync + 'static {
    /// Records a new queued job.
    fn create(&self, job: Job) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The job of `video`.
    fn get(&self, video: &VideoId) -> impl Future<Output = Result<Option<Job>, StoreError>> + Send;
    /// `owner`'s jobs, newest first.
    fn list(
        &self,
        owner: &str,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;
    /// Claims the oldest claimable job for `worker` with a lease of `lease_secs`, counting an
    /// attempt. A job whose lease ran out after `max_attempts` attempts (its workers died
    /// running it, every time: a video that gets its process killed) is failed instead, with
    /// [`crate::jobs::model::WORKERS_DIED`]: taken over again it would take down one more.
    fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        max_attempts: u32,
        now: i64,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;
    /// Extends the lease; `LeaseLost` if `worker` no longer holds it.
    fn heartbeat(
        &self,
        video: &VideoId,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Persists progress (the caller throttles).
    fn progress(
        &self,
        video: &VideoId,
        worker: &str,
        stage: Stage,
        percent: f64,
        thumbnail_ready: bool,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks a rung complete.
    fn checkpoint(
        &self,
        video: &VideoId,
        worker: &str,
        rung: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records whether the video can be watched while its encode goes on: true once a growing
    /// publish has its master, false before an attempt withdraws what it published.
    fn playable(
        &self,
        video: &VideoId,
        worker: &str,
        playable: bool,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks the job ready.
    fn complete(
        &self,
        video: &VideoId,
        worker: &str,
        result: Published,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records a failed attempt.
    fn fail(
        &self,
        video: &VideoId,
        worker: &str,
        error: &str,
        failure: Failure,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts a change to a published video's playlists made outside an encode
    /// ([`Job::revision`]).
    fn revise(&self, video: &VideoId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Queues the job again from scratch (a revision too) if it is still `from` (a failed job
    /// retried, a registered one played), or answers `Changed`: two requests that both saw it
    /// so must not reset a job a worker has claimed in between.
    fn requeue(
        &self,
        video: &VideoId,
        from: JobState,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Applies `step` to the lease on `video`'s uploaded subtitle files for `holder`
    /// ([`Job::editor`], [`Job::edit_lease`]): whether it took, renewed or gave it back. A
    /// change numbers a file and rewrites the master, so two at once on different machines
    /// could take one number or lose an edit. A job that is gone holds nothing to give back.
    fn edit_lease(
        &self,
        video: &VideoId,
        holder: &str,
        step: LeaseStep,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// From now on with `Some`, each final outcome this store records (a completion, a final
    /// failure, a job the claim gives up) records its [`Announcement`] with it, held
    /// `hold_secs` for the worker that recorded it before any process may take it. Turned on
    /// by a process that sends webhooks; off, nothing is recorded, so turning it on later
    /// announces no old outcome.
    fn announce_outcomes(&self, hold_secs: Option<i64>);
    /// Takes announcements for `lease_secs` (no other taker gets them until then) and returns
    /// their jobs. A job requeued or deleted meanwhile has none.
    fn take_announcements(
        &self,
        pending: Pending<'_>,
        now: i64,
        lease_secs: i64,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;
    /// Clears `video`'s announcement if it is still `announcement` (delivered, or given up):
    /// a newer outcome's stays.
    fn announced(
        &self,
        video: &VideoId,
        announcement: &Announcement,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Forgets the job.
    fn delete(&self, video: &VideoId) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// How many jobs are in each state (metrics; `queued` is the queue depth).
    fn counts(&self) -> impl Future<Output = Result<Vec<(JobState, usize)>, StoreError>> + Send;
}

/// What [`JobStore::edit_lease`] answers for a job that is gone: nothing to give back, and
/// nothing to take or renew.
pub fn lease_of_missing(video: &VideoId, step: LeaseStep) -> Result<bool, StoreError> {
    match step {
        LeaseStep::GiveBack => Ok(false),
        LeaseStep::Take(_) | LeaseStep::Renew(_) => Err(StoreError::NotFound(video.clone())),
    }
}

/// Backoff before retry `attempt` (1-based): 5 s, 20 s, 80 s, ... capped at 10 minutes.
pub fn backoff_secs(attempt: u32) -> i64 {
    let exp = attempt.saturating_sub(1).min(8);
    (5i64 << (2 * exp)).min(600)
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(super::backoff_secs(1), 5);
        assert_eq!(super::backoff_secs(2), 20);
        assert_eq!(super::backoff_secs(3), 80);
        assert_eq!(super::backoff_secs(9), 600);
    }
}

/// The behaviour every backend must show; run by each backend's tests.
#[cfg(test)]
pub mod contract;
