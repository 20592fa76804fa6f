//! The configured backend behind one type: the embedded store on a single machine, Redis when
//! several processes share the queue. (The trait's async methods make it unusable as `dyn`.)

use shared::media::VideoId;

use super::embedded::EmbeddedStore;
use super::model::{Announcement, Job, JobState, LeaseStep};
use super::redis::RedisStore;
use super::store::{Claim, Failure, JobStore, Pending, StoreError};
use crate::transcode::pipeline::Published;
use crate::transcode::progress::Stage;

/// Either backend.
#[derive(Clone)]
pub enum AnyStore {
    Embedded(EmbeddedStore),
    Redis(RedisStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Embedded($s) => $e,
            AnyStore::Redis($s) => $e,
        }
    };
}

impl AnyStore {
    /// The Redis store, when that is the backend (cross-process events).
    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            AnyStore::Redis(r) => Some(r),
            AnyStore::Embedded(_) => None,
        }
    }
}

impl JobStore for AnyStore {
    async fn create(&self, job: Job) -> Result<(), StoreError> {
        each!(self, s => s.create(job).await)
    }
    async fn get(&self, video: &VideoId) -> Result<Option<Job>, StoreError> {
        each!(self, s => s.get(video).await)
    }
    async fn list(&self, owner: &str, offset: usize, limit: usize) -> Result<Vec<Job>, StoreError> {
        each!(self, s => s.list(owner, offset, limit).await)
    }
    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        max_attempts: u32,
        now: i64,
    ) -> Result<Claim, StoreError> {
        each!(self, s => s.claim(worker, lease_secs, max_attempts, now).await)
    }
    async fn heartbeat(
        &self,
        video: &VideoId,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.heartbeat(video, worker, lease_secs, now).await)
    }
    async fn progress(
        &self,
        video: &VideoId,
        worker: &str,
        stage: Stage,
        percent: f64,
        thumbnail_ready: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.progress(video, worker, stage, percent, thumbnail_ready, now).await)
    }
    async fn playable(
        &self,
        video: &VideoId,
        worker: &str,
        playable: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.playable(video, worker, playable, now).await)
    }
    async fn checkpoint(
        &self,
        video: &VideoId,
        worker: &str,
        rung: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.checkpoint(video, worker, rung, now).await)
    }
    async fn complete(
        &self,
        video: &VideoId,
        worker: &str,
        result: Published,
        now: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.complete(video, worker, result, now).await)
    }
    async fn fail(
        &self,
        video: &VideoId,
        worker: &str,
        error: &str,
        failure: Failure,
        now: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.fail(video, worker, error, failure, now).await)
    }
    async fn revise(&self, video: &VideoId) -> Result<(), StoreError> {
        each!(self, s => s.revise(video).await)
    }

    async fn edit_lease(
        &self,
        video: &VideoId,
        holder: &str,
        step: LeaseStep,
        now: i64,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.edit_lease(video, holder, step, now).await)
    }
    async fn requeue(&self, video: &VideoId, from: JobState, now: i64) -> Result<(), StoreError> {
        each!(self, s => s.requeue(video, from, now).await)
    }
    fn announce_outcomes(&self, hold_secs: Option<i64>) {
        each!(self, s => s.announce_outcomes(hold_secs))
    }
    async fn take_announcements(
        &self,
        pending: Pending<'_>,
        now: i64,
        lease_secs: i64,
    ) -> Result<Vec<Job>, StoreError> {
        each!(self, s => s.take_announcements(pending, now, lease_secs).await)
    }
    async fn announced(
        &self,
        video: &VideoId,
        announcement: &Announcement,
    ) -> Result<(), StoreError> {
        each!(self, s => s.announced(video, announcement).await)
    }
    async fn delete(&self, video: &VideoId) -> Result<(), StoreError> {
        each!(self, s => s.delete(video).await)
    }
    async fn counts(&self) -> Result<Vec<(JobState, usize)>, StoreError> {
        each!(self, s => s.counts().await)
    }
}
