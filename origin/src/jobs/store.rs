//! The job store contract, shared by the embedded store and (later) Redis.
//!
//! Delivery is at-least-once: a claimed job carries a lease that its worker renews with
//! heartbeats; when the worker dies the lease runs out and the job is claimable again. Every
//! write that only the lease holder may make (progress, checkpoint, complete, fail) is refused
//! with [`StoreError::LeaseLost`] once the lease has passed to someone else, so a worker that
//! lost its job stops and never publishes over the new owner.

use std::future::Future;

use shared::media::VideoId;

use super::model::{Job, JobState, LeaseStep};
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
pub mod contract {
    use super::*;
    use crate::jobs::model::Job;
    use crate::transcode::pipeline::Profile;

    fn id(s: &str) -> VideoId {
        s.parse().expect("valid id")
    }

    fn published() -> Published {
        Published {
            duration: 1.0,
            encoder: "libx264".into(),
            audio: Vec::new(),
            subtitles: Vec::new(),
            skipped_subtitles: Vec::new(),
            rungs: Vec::new(),
        }
    }

    pub async fn run(store: &impl JobStore) {
        let t0 = 1_000;
        for (n, v) in ["a", "b", "c"].into_iter().enumerate() {
            let job = Job::new(id(v), "alice", None, Profile::Ladder, t0 + n as i64);
            store.create(job).await.expect("create");
        }
        assert!(matches!(
            store
                .create(Job::new(id("a"), "alice", None, Profile::Ladder, t0))
                .await,
            Err(StoreError::Exists(_))
        ));
        store
            .create(Job::new(id("bob1"), "bob", None, Profile::Ladder, t0 + 10))
            .await
            .expect("create");
        let listed = store.list("alice", 0, 10).await.expect("list");
        assert_eq!(
            listed.iter().map(|j| j.video.as_str()).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        assert_eq!(store.list("alice", 1, 1).await.expect("page").len(), 1);

        // Oldest first, one worker per job.
        let j = store
            .claim("w1", 30, 3, t0 + 20)
            .await
            .expect("claim")
            .job
            .expect("a job");
        assert_eq!(
            (j.video.as_str(), j.attempts, j.state),
            ("a", 1, JobState::Processing)
        );
        let k = store
            .claim("w2", 30, 3, t0 + 20)
            .await
            .expect("claim")
            .job
            .expect("a job");
        assert_eq!(k.video.as_str(), "b");

        // Progress and checkpoints only from the lease holder.
        store
            .progress(&id("a"), "w1", Stage::Encode, 40.0, true, t0 + 21)
            .await
            .expect("progress");
        store
            .checkpoint(&id("a"), "w1", "720p", t0 + 21)
            .await
            .expect("checkpoint");
        assert!(matches!(
            store
                .progress(&id("a"), "w2", Stage::Encode, 50.0, false, t0 + 21)
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        let a = store.get(&id("a")).await.expect("get").expect("exists");
        assert_eq!(
            (a.progress, a.thumbnail_ready, a.checkpoints.clone()),
            (40.0, true, vec!["720p".to_owned()])
        );

        // A dead worker's lease runs out and another worker takes over; the old one is locked out.
        store
            .heartbeat(&id("b"), "w2", 30, t0 + 40)
            .await
            .expect("heartbeat");
        let taken = store
            .claim("w3", 30, 3, t0 + 60)
            .await
            .expect("claim")
            .job
            .expect("expired lease");
        assert_eq!((taken.video.as_str(), taken.attempts), ("a", 2));
        assert_eq!(
            taken.checkpoints,
            ["720p"],
            "checkpoints survive the takeover"
        );
        assert!(matches!(
            store.complete(&id("a"), "w1", published(), t0 + 61).await,
            Err(StoreError::LeaseLost(_))
        ));
        store
            .complete(&id("a"), "w3", published(), t0 + 61)
            .await
            .expect("complete");
        assert_eq!(
            store
                .get(&id("a"))
                .await
                .expect("get")
                .expect("exists")
                .state,
            JobState::Ready
        );

        // Retry with backoff, then a final failure.
        store
            .fail(
                &id("b"),
                "w2",
                "ffmpeg crashed",
                Failure::RetryAt(t0 + 100),
                t0 + 62,
            )
            .await
            .expect("fail");
        let next = store
            .claim("w2", 30, 3, t0 + 63)
            .await
            .expect("claim")
            .job
            .expect("c is due");
        assert_eq!(next.video.as_str(), "c");
        let bob = store
            .claim("w2", 30, 3, t0 + 63)
            .await
            .expect("claim")
            .job
            .expect("bob1");
        assert_eq!(bob.video.as_str(), "bob1");
        assert!(
            store
                .claim("w2", 30, 3, t0 + 64)
                .await
                .expect("claim")
                .job
                .is_none(),
            "b waits for its backoff"
        );
        let b = store
            .claim("w2", 30, 3, t0 + 100)
            .await
            .expect("claim")
            .job
            .expect("b is due");
        assert_eq!(
            (b.video.as_str(), b.attempts, b.error.as_deref()),
            ("b", 2, Some("ffmpeg crashed"))
        );
        // Watchable while it encodes; only the lease holder may say so.
        assert!(!b.is_playable());
        assert!(matches!(
            store.playable(&id("b"), "w9", true, t0 + 100).await,
            Err(StoreError::LeaseLost(_))
        ));
        store
            .playable(&id("b"), "w2", true, t0 + 100)
            .await
            .expect("playable");
        let b = store.get(&id("b")).await.expect("get").expect("exists");
        assert!(b.playable && b.is_playable());
        // An attempt that starts over withdraws the publish, and says so first.
        store
            .playable(&id("b"), "w2", false, t0 + 100)
            .await
            .expect("not playable");
        let b = store.get(&id("b")).await.expect("get").expect("exists");
        assert!(!b.playable && !b.is_playable());
        store
            .playable(&id("b"), "w2", true, t0 + 100)
            .await
            .expect("playable again");
        store
            .fail(&id("b"), "w2", "still broken", Failure::Final, t0 + 101)
            .await
            .expect("fail");
        let b = store.get(&id("b")).await.expect("get").expect("exists");
        assert_eq!(
            (b.state, b.error.as_deref(), b.playable),
            (JobState::Failed, Some("still broken"), false),
            "a failure takes the growing publish back"
        );

        // A revision changes the job's version and nothing else.
        let before = store.get(&id("a")).await.expect("get").expect("exists");
        store.revise(&id("a")).await.expect("revise");
        let after = store.get(&id("a")).await.expect("get").expect("exists");
        assert_eq!(after.revision, before.revision + 1);
        assert_ne!(after.version(), before.version());
        assert_eq!(
            Job {
                revision: before.revision,
                ..after
            },
            before,
            "a revision changes nothing else"
        );

        // Subtitle changes, one holder at a time, and not part of the job's version.
        let before = store.get(&id("a")).await.expect("get").expect("exists");
        let a = &id("a");
        let lease = |holder, step, at| async move {
            let done = store.edit_lease(a, holder, step, at).await;
            done.expect("edit lease")
        };
        let (take, renew) = (LeaseStep::Take(60), LeaseStep::Renew(60));
        assert!(lease("api1", take, t0 + 150).await);
        assert!(!lease("api2", take, t0 + 150).await);
        assert!(lease("api1", take, t0 + 151).await, "the holder renews");
        lease("api2", LeaseStep::GiveBack, t0).await;
        assert!(
            !lease("api2", take, t0 + 152).await,
            "only the holder gives it back"
        );
        let locked = store.get(&id("a")).await.expect("get").expect("exists");
        assert_eq!(
            locked
                .editor
                .as_ref()
                .map(|l| (l.worker.as_str(), l.expires_at)),
            Some(("api1", t0 + 211))
        );
        assert_eq!(locked.version(), before.version());
        assert!(
            lease("api2", take, t0 + 212).await,
            "a holder that died loses it when its lease runs out"
        );
        assert!(lease("api2", renew, t0 + 212).await);
        assert!(!lease("api1", renew, t0 + 212).await);
        lease("api2", LeaseStep::GiveBack, t0).await;
        assert!(
            !lease("api2", renew, t0 + 213).await,
            "a renewal after the lease was given back takes nothing"
        );
        assert!(lease("api1", take, t0 + 213).await);
        lease("api1", LeaseStep::GiveBack, t0).await;
        assert_eq!(
            store.get(&id("a")).await.expect("get").as_ref(),
            Some(&before),
            "given back, nothing of it is left"
        );
        assert!(matches!(
            store
                .edit_lease(&id("nobody"), "api1", LeaseStep::Take(60), t0)
                .await,
            Err(StoreError::NotFound(_))
        ));
        store
            .edit_lease(&id("nobody"), "api1", LeaseStep::GiveBack, t0)
            .await
            .expect("nothing to give back");
        assert!(store.get(&id("nobody")).await.expect("get").is_none());

        // Retry from scratch (a revision too), delete.
        let failed = store.get(&id("b")).await.expect("get").expect("exists");
        assert!(matches!(
            store
                .requeue(&id("b"), JobState::Registered, t0 + 200)
                .await,
            Err(StoreError::Changed(_))
        ));
        assert_eq!(
            store.get(&id("b")).await.expect("get").as_ref(),
            Some(&failed),
            "a requeue from another state changes nothing"
        );
        store
            .requeue(&id("b"), JobState::Failed, t0 + 200)
            .await
            .expect("requeue");
        let b = store.get(&id("b")).await.expect("get").expect("exists");
        assert_eq!((b.state, b.attempts, b.error), (JobState::Queued, 0, None));
        assert_eq!(b.revision, failed.revision + 1);
        // A retry that saw a job failed, once a worker has it, leaves it be.
        let processing = store.get(&id("c")).await.expect("get").expect("exists");
        assert_eq!(processing.state, JobState::Processing);
        assert!(matches!(
            store.requeue(&id("c"), JobState::Failed, t0 + 202).await,
            Err(StoreError::Changed(_))
        ));
        assert_eq!(
            store.get(&id("c")).await.expect("get"),
            Some(processing),
            "the worker's job was not reset"
        );
        store.delete(&id("bob1")).await.expect("delete");
        assert!(store.get(&id("bob1")).await.expect("get").is_none());
        assert!(matches!(
            store.requeue(&id("bob1"), JobState::Failed, t0).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(
            matches!(
                store.revise(&id("bob1")).await,
                Err(StoreError::NotFound(_))
            ),
            "revising a job that is gone does not create one"
        );
        assert!(store.get(&id("bob1")).await.expect("get").is_none());
    }

    /// On a store of its own: a job whose workers all died running it ends failed once its
    /// attempts are spent, and the next job is claimed in its place.
    pub async fn workers_that_die_every_time(store: &impl JobStore) {
        let t0 = 5_000;
        for (n, v) in ["doomed", "next"].into_iter().enumerate() {
            let job = Job::new(id(v), "alice", None, Profile::Ladder, t0 + n as i64);
            store.create(job).await.expect("create");
        }
        for attempt in 1..=2 {
            let at = t0 + 10 * attempt;
            let job = store
                .claim("w", 5, 2, at)
                .await
                .expect("claim")
                .job
                .expect("a job");
            assert_eq!(
                (job.video.as_str(), job.attempts),
                ("doomed", attempt as u32)
            );
        }
        // Its second lease ran out too: no third attempt, and the claimer is told.
        let claim = store.claim("w", 5, 2, t0 + 40).await.expect("claim");
        let next = claim.job.expect("a job");
        assert_eq!((next.video.as_str(), next.attempts), ("next", 1));
        let told: Vec<_> = claim
            .worn_out
            .iter()
            .map(|j| (j.video.as_str(), j.state))
            .collect();
        assert_eq!(told, [("doomed", JobState::Failed)]);
        let doomed = store.get(&id("doomed")).await.expect("get").expect("kept");
        assert_eq!(
            (doomed.state, doomed.attempts, doomed.error.as_deref()),
            (JobState::Failed, 2, Some(crate::jobs::model::WORKERS_DIED))
        );
        assert!(doomed.lease.is_none());
        assert!(store
            .claim("w", 5, 2, t0 + 41)
            .await
            .expect("claim")
            .job
            .is_none());
    }
}
