//! The [`JobStore`] contract on the embedded store: each operation one transaction over the
//! jobs table (see the parent module).

use redb::ReadableTable;
use shared::media::VideoId;

use super::{backend, decode, lock, put, scanned, EmbeddedStore, JOBS};
use crate::jobs::model::{Announcement, Ending, Job, JobState, Lease, LeaseStep, WORKERS_DIED};
use crate::jobs::store::{lease_of_missing, Claim, Failure, JobStore, Pending, StoreError};
use crate::transcode::pipeline::Published;
use crate::transcode::progress::Stage;

impl JobStore for EmbeddedStore {
    async fn create(&self, job: Job) -> Result<(), StoreError> {
        self.write(move |t| {
            if t.get(job.video.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::Exists(job.video.clone()));
            }
            put(t, &job)
        })
        .await
    }

    async fn get(&self, video: &VideoId) -> Result<Option<Job>, StoreError> {
        let db = self.db.clone();
        let key = video.to_string();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(JOBS).map_err(backend)?;
            let found = table.get(key.as_str()).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
        .await
        .map_err(backend)?
    }

    async fn list(&self, owner: &str, offset: usize, limit: usize) -> Result<Vec<Job>, StoreError> {
        let mut jobs: Vec<Job> = self
            .all()
            .await?
            .into_iter()
            .filter(|j| j.owner == owner)
            .collect();
        jobs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.video.cmp(&b.video))
        });
        Ok(jobs.into_iter().skip(offset).take(limit).collect())
    }

    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        max_attempts: u32,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let worker = worker.to_owned();
        let this = self.clone();
        self.write(move |t| {
            let mut best: Option<Job> = None;
            let mut worn_out = Vec::new();
            for row in t.iter().map_err(backend)? {
                let Some(job) = scanned(row)? else { continue };
                if job.worn_out(now, max_attempts) {
                    worn_out.push(job);
                } else if job.claimable(now)
                    && best.as_ref().is_none_or(|b| job.created_at < b.created_at)
                {
                    best = Some(job);
                }
            }
            // Those the claim passed on its way to the one it takes, oldest first, as the
            // Redis script does; the rest wait for a later claim.
            worn_out.sort_by(|a, b| (a.created_at, &a.video).cmp(&(b.created_at, &b.video)));
            let before_best = |j: &Job| {
                best.as_ref().is_none_or(|b| {
                    (j.created_at, j.video.as_str()) < (b.created_at, b.video.as_str())
                })
            };
            let mut claim = Claim::default();
            for mut job in worn_out.into_iter().filter(before_best) {
                tracing::warn!(video = %job.video, attempts = job.attempts, "every worker running it died; failed");
                job.state = JobState::Failed;
                job.error = Some(WORKERS_DIED.to_owned());
                job.lease = None;
                job.playable = false;
                job.updated_at = now;
                job.announce = this.announce(&job.video, Ending::Failed, now);
                put(t, &job)?;
                claim.worn_out.push(job);
            }
            let Some(mut job) = best else {
                return Ok(claim);
            };
            if job.state == JobState::Processing {
                tracing::warn!(video = %job.video, previous = ?job.lease, "lease expired, taking the job over");
            }
            job.state = JobState::Processing;
            job.lease = Some(Lease { worker, expires_at: now + lease_secs });
            job.attempts += 1;
            job.updated_at = now;
            put(t, &job)?;
            claim.job = Some(job);
            Ok(claim)
        })
        .await
    }

    async fn heartbeat(
        &self,
        video: &VideoId,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let w = worker.to_owned();
        self.update_leased(video, worker, now, move |job| {
            job.lease = Some(Lease {
                worker: w,
                expires_at: now + lease_secs,
            });
        })
        .await
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
        self.update_leased(video, worker, now, move |job| {
            job.stage = stage;
            job.progress = percent.max(job.progress).min(100.0);
            job.thumbnail_ready |= thumbnail_ready;
        })
        .await
    }

    async fn checkpoint(
        &self,
        video: &VideoId,
        worker: &str,
        rung: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let rung = rung.to_owned();
        self.update_leased(video, worker, now, move |job| {
            if !job.checkpoints.contains(&rung) {
                job.checkpoints.push(rung);
            }
        })
        .await
    }

    async fn playable(
        &self,
        video: &VideoId,
        worker: &str,
        playable: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.update_leased(video, worker, now, move |job| job.playable = playable)
            .await
    }

    async fn complete(
        &self,
        video: &VideoId,
        worker: &str,
        result: Published,
        now: i64,
    ) -> Result<(), StoreError> {
        let announce = self.announce(video, Ending::Ready, now);
        self.update_leased(video, worker, now, move |job| {
            job.announce = announce;
            job.state = JobState::Ready;
            job.stage = Stage::Done;
            job.progress = 100.0;
            job.error = None;
            job.lease = None;
            job.result = Some(result);
        })
        .await
    }

    async fn fail(
        &self,
        video: &VideoId,
        worker: &str,
        error: &str,
        failure: Failure,
        now: i64,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        let announce = match failure {
            Failure::Final => self.announce(video, Ending::Failed, now),
            Failure::RetryAt(_) => None,
        };
        self.update_leased(video, worker, now, move |job| {
            job.error = Some(error);
            job.lease = None;
            // A failed attempt's growing publish was removed.
            job.playable = false;
            match failure {
                Failure::RetryAt(at) => {
                    job.state = JobState::Queued;
                    job.stage = Stage::Queued;
                    job.not_before = at;
                }
                Failure::Final => {
                    job.state = JobState::Failed;
                    job.announce = announce;
                }
            }
        })
        .await
    }

    async fn requeue(&self, video: &VideoId, from: JobState, now: i64) -> Result<(), StoreError> {
        let id = video.clone();
        let outbox = self.outbox.clone();
        self.update(video, move |job| {
            if job.state != from {
                return Err(StoreError::Changed(id));
            }
            job.state = JobState::Queued;
            job.stage = Stage::Queued;
            job.progress = 0.0;
            job.error = None;
            job.attempts = 0;
            job.not_before = 0;
            job.lease = None;
            job.checkpoints.clear();
            job.playable = false;
            if job.announce.take().is_some() {
                lock(&outbox).due.remove(&job.video);
            }
            job.updated_at = now;
            job.revision += 1;
            Ok(())
        })
        .await
    }

    async fn revise(&self, video: &VideoId) -> Result<(), StoreError> {
        self.update(video, |job| {
            job.revision += 1;
            Ok(())
        })
        .await
    }

    async fn edit_lease(
        &self,
        video: &VideoId,
        holder: &str,
        step: LeaseStep,
        now: i64,
    ) -> Result<bool, StoreError> {
        let holder = holder.to_owned();
        let done = self
            .update_if(video, move |job| job.edit_lease(&holder, step, now))
            .await;
        match done {
            Err(StoreError::NotFound(_)) => lease_of_missing(video, step),
            other => other,
        }
    }

    async fn counts(&self) -> Result<Vec<(JobState, usize)>, StoreError> {
        let mut counts: Vec<(JobState, usize)> = Vec::new();
        for job in self.all().await? {
            match counts.iter_mut().find(|(s, _)| *s == job.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((job.state, 1)),
            }
        }
        Ok(counts)
    }

    fn announce_outcomes(&self, hold_secs: Option<i64>) {
        self.outbox().hold = hold_secs;
    }

    async fn take_announcements(
        &self,
        pending: Pending<'_>,
        now: i64,
        lease_secs: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let (videos, limit) = match pending {
            Pending::Due(limit) => {
                let outbox = self.outbox();
                let due = outbox.due.iter().filter(|(_, due)| due.at <= now);
                (
                    due.map(|(video, _)| video.clone()).take(limit).collect(),
                    limit,
                )
            }
            Pending::Held(video) | Pending::Taken(video, _) => (vec![video.clone()], 1),
        };
        let candidates = self.some(videos).await?;
        let mut outbox = self.outbox();
        let mut taken = Vec::new();
        for job in candidates.into_iter().filter(|j| j.announce.is_some()) {
            if taken.len() == limit {
                break;
            }
            // No entry: announced (or requeued) since the jobs were read.
            let Some(due) = outbox.due.get_mut(&job.video) else {
                continue;
            };
            let free = match pending {
                Pending::Due(_) => due.at <= now,
                Pending::Held(_) => due.at <= now || !due.taken,
                Pending::Taken(_, held) => job.announce.as_ref() == Some(held),
            };
            if free {
                *due = super::Due {
                    at: now.saturating_add(lease_secs),
                    taken: true,
                };
                taken.push(job);
            }
        }
        Ok(taken)
    }

    async fn announced(
        &self,
        video: &VideoId,
        announcement: &Announcement,
    ) -> Result<(), StoreError> {
        let announcement = *announcement;
        let outbox = self.outbox.clone();
        let cleared = self
            .update_if(video, move |job| {
                let cleared = job.announce == Some(announcement) && job.announce.take().is_some();
                if cleared {
                    // In the transaction: a sweep that read the record before it is committed
                    // finds no entry and takes nothing.
                    lock(&outbox).due.remove(&job.video);
                }
                cleared
            })
            .await;
        match cleared {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, video: &VideoId) -> Result<(), StoreError> {
        self.outbox().due.remove(video);
        let key = video.to_string();
        self.write(move |t| {
            t.remove(key.as_str()).map_err(backend)?;
            Ok(())
        })
        .await
    }
}
