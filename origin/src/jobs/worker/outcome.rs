//! How an attempt's end is recorded and announced when the store's answer cannot be trusted
//! at face value: a completion whose reply was lost, a job the claim gave up on.

use std::time::Duration;

use super::{JobEvent, WorkerPool};
use crate::jobs::model::{unix_now, Job, JobState};
use crate::jobs::store::{JobStore, StoreError};
use crate::transcode::pipeline::Published;

/// How many times a completion without an answer is looked up, [`RECHECK`] apart.
const CHECKS: u32 = 5;
const RECHECK: Duration = Duration::from_secs(2);

impl<S: JobStore> WorkerPool<S> {
    /// Records `job` (this worker's attempt) complete. A store that did not answer may have
    /// recorded it all the same (Redis ran the script and the reply was lost): the job is then
    /// looked up, so that a completion that happened is announced, and one that did not is
    /// made again (the store refuses it if the lease ran out meanwhile). `LeaseLost` or
    /// `NotFound` are final.
    pub(super) async fn record_completion(
        &self,
        worker: &str,
        job: &Job,
        published: Published,
    ) -> Result<(), StoreError> {
        let video = &job.video;
        let complete = || {
            self.store
                .complete(video, worker, published.clone(), unix_now())
        };
        let mut result = complete().await;
        let mut checks = 0;
        loop {
            let error = match result {
                Ok(()) => return Ok(()),
                Err(e @ (StoreError::LeaseLost(_) | StoreError::NotFound(_))) => return Err(e),
                Err(e) if checks == CHECKS => return Err(e),
                Err(e) => e,
            };
            tracing::warn!(%error, "completion not confirmed; asking the store");
            tokio::time::sleep(RECHECK).await;
            checks += 1;
            result = match self.store.get(video).await {
                // Ready with this attempt's count and result: no other worker took it over.
                Ok(Some(now))
                    if now.state == JobState::Ready
                        && now.attempts == job.attempts
                        && now.result.as_ref() == Some(&published) =>
                {
                    Ok(())
                }
                // Whether the lease still holds is for the store to judge, in its own clock.
                Ok(Some(now)) if now.state == JobState::Processing => complete().await,
                Ok(Some(_)) => Err(StoreError::LeaseLost(video.clone())),
                Ok(None) => Err(StoreError::NotFound(video.clone())),
                Err(e) => Err(e),
            };
        }
    }

    /// A job the claim failed because its workers died on every attempt ends as any final
    /// failure does: what its last attempt published while growing is withdrawn, and its
    /// owner hears of it (webhook and event). Its dead worker could announce nothing.
    pub(super) async fn announce_worn_out(&self, job: Job) {
        self.pipeline.withdraw(&job.video).await;
        self.announce(&job.video).await;
        let reason = job.error.clone().unwrap_or_default();
        let _ = self.events.send(JobEvent::Failed {
            video: job.video,
            error: reason,
            retrying: false,
        });
    }
}
