//! The [`JobStore`] contract on Redis: each operation one script (or one pipeline of reads),
//! over the keys the parent module documents.

use shared::media::VideoId;

use super::{backend, decode, encode, job_key, json, owner_key, state_key, RedisStore, STATES};
use crate::jobs::model::{Announcement, Ending, Job, JobState, Lease, LeaseStep};
use crate::jobs::store::{lease_of_missing, Claim, Failure, JobStore, Pending, StoreError};
use crate::transcode::pipeline::Published;
use crate::transcode::progress::Stage;

impl JobStore for RedisStore {
    async fn create(&self, job: Job) -> Result<(), StoreError> {
        let mut args = vec![job.video.to_string(), (-job.created_at).to_string()];
        for (field, value) in encode(&job)? {
            args.push(field);
            args.push(value);
        }
        let keys = [job_key(&job.video), owner_key(&job.owner)];
        let created: i64 = self.eval(&self.scripts.create, &keys, &args).await?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Exists(job.video))
        }
    }

    async fn get(&self, video: &VideoId) -> Result<Option<Job>, StoreError> {
        let key = job_key(video);
        let flat: Vec<String> = self
            .call(|mut conn| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<Vec<String>>(&mut conn)
                    .await
            })
            .await?;
        if flat.is_empty() {
            return Ok(None);
        }
        decode(&flat).map(Some)
    }

    async fn list(&self, owner: &str, offset: usize, limit: usize) -> Result<Vec<Job>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let stop = start.saturating_add(i64::try_from(limit - 1).unwrap_or(i64::MAX));
        let rows: Vec<Vec<String>> = self
            .eval(
                &self.scripts.list,
                &[owner_key(owner)],
                &[start.to_string(), stop.to_string()],
            )
            .await?;
        rows.iter().map(|flat| decode(flat)).collect()
    }

    async fn claim(
        &self,
        worker: &str,
        lease_secs: i64,
        max_attempts: u32,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let now = self.in_redis_time(now).await;
        let expires_at = now + lease_secs;
        let lease = json(&Lease {
            worker: worker.to_owned(),
            expires_at,
        })?;
        let [announcement, due] = self.announce(Ending::Failed, now)?;
        let reply: Vec<Vec<String>> = self
            .eval(
                &self.scripts.claim,
                &[],
                &[
                    now.to_string(),
                    lease,
                    expires_at.to_string(),
                    max_attempts.to_string(),
                    json(&crate::jobs::model::WORKERS_DIED)?,
                    announcement,
                    due,
                ],
            )
            .await?;
        let Some((claimed, worn_out)) = reply.split_first() else {
            return Err(backend("empty claim reply"));
        };
        let mut claim = Claim {
            job: None,
            worn_out: worn_out
                .iter()
                .map(|flat| decode(flat))
                .collect::<Result<_, _>>()?,
        };
        for job in &claim.worn_out {
            tracing::warn!(video = %job.video, attempts = job.attempts, "every worker running it died; failed");
        }
        if let Some((previous, flat)) = claimed.split_first() {
            let job = decode(flat)?;
            if !previous.is_empty() {
                tracing::warn!(video = %job.video, previous = %previous, "lease expired, taking the job over");
            }
            claim.job = Some(job);
        }
        Ok(claim)
    }

    async fn heartbeat(
        &self,
        video: &VideoId,
        worker: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let now = self.in_redis_time(now).await;
        let expires_at = now + lease_secs;
        let lease = json(&Lease {
            worker: worker.to_owned(),
            expires_at,
        })?;
        self.eval_leased(&self.scripts.heartbeat, video, worker, now, &[lease])
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
        let now = self.in_redis_time(now).await;
        // The record keeps `percent.max(progress).min(100.0)`: NaN and -inf leave it as it is.
        let percent = match (!percent.is_nan()).then(|| percent.min(100.0)) {
            Some(p) if p.is_finite() => json(&p)?,
            _ => String::new(),
        };
        let rest = [
            json(&stage)?,
            percent,
            if thumbnail_ready { "1" } else { "" }.to_owned(),
            json(&100.0f64)?,
        ];
        self.eval_leased(&self.scripts.progress, video, worker, now, &rest)
            .await
    }

    async fn playable(
        &self,
        video: &VideoId,
        worker: &str,
        playable: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let now = self.in_redis_time(now).await;
        let rest = [playable.to_string()];
        self.eval_leased(&self.scripts.playable, video, worker, now, &rest)
            .await
    }

    async fn checkpoint(
        &self,
        video: &VideoId,
        worker: &str,
        rung: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let now = self.in_redis_time(now).await;
        let rest = [rung.to_owned(), json(rung)?];
        self.eval_leased(&self.scripts.checkpoint, video, worker, now, &rest)
            .await
    }

    async fn complete(
        &self,
        video: &VideoId,
        worker: &str,
        result: Published,
        now: i64,
    ) -> Result<(), StoreError> {
        let now = self.in_redis_time(now).await;
        let [announcement, due] = self.announce(Ending::Ready, now)?;
        let rest = [
            json(&Stage::Done)?,
            json(&result)?,
            json(&100.0f64)?,
            announcement,
            due,
        ];
        self.eval_leased(&self.scripts.complete, video, worker, now, &rest)
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
        let offset = self.clock_offset().await;
        let now = now.saturating_add(offset);
        // Only a final failure is announced.
        let (retry_at, [announcement, due]) = match failure {
            Failure::RetryAt(at) => (at.saturating_add(offset).to_string(), Default::default()),
            Failure::Final => (String::new(), self.announce(Ending::Failed, now)?),
        };
        let rest = [
            json(error)?,
            retry_at,
            json(&Stage::Queued)?,
            announcement,
            due,
        ];
        self.eval_leased(&self.scripts.fail, video, worker, now, &rest)
            .await
    }

    async fn requeue(&self, video: &VideoId, from: JobState, now: i64) -> Result<(), StoreError> {
        let now = self.in_redis_time(now).await;
        let args = [
            video.to_string(),
            now.to_string(),
            json(&Stage::Queued)?,
            json(&0.0f64)?,
            json(&from)?,
        ];
        let outcome: i64 = self
            .eval(&self.scripts.requeue, &[job_key(video)], &args)
            .await?;
        match outcome {
            1 => Ok(()),
            2 => Err(StoreError::Changed(video.clone())),
            _ => Err(StoreError::NotFound(video.clone())),
        }
    }

    async fn revise(&self, video: &VideoId) -> Result<(), StoreError> {
        let found: i64 = self
            .eval(&self.scripts.revise, &[job_key(video)], &[])
            .await?;
        if found == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(video.clone()))
        }
    }

    async fn edit_lease(
        &self,
        video: &VideoId,
        holder: &str,
        step: LeaseStep,
        now: i64,
    ) -> Result<bool, StoreError> {
        let now = self.in_redis_time(now).await;
        let lease = |secs: i64| {
            json(&Lease {
                worker: holder.to_owned(),
                expires_at: now + secs,
            })
        };
        let (name, editor) = match step {
            LeaseStep::Take(secs) => ("take", lease(secs)?),
            LeaseStep::Renew(secs) => ("renew", lease(secs)?),
            LeaseStep::GiveBack => ("give", "null".to_owned()),
        };
        let args = [holder.to_owned(), now.to_string(), name.to_owned(), editor];
        let done: i64 = self
            .eval(&self.scripts.edit_lease, &[job_key(video)], &args)
            .await?;
        match done {
            1 => Ok(true),
            2 => Ok(false),
            _ => lease_of_missing(video, step),
        }
    }

    fn announce_outcomes(&self, hold_secs: Option<i64>) {
        let hold = hold_secs.map_or(-1, |h| h.max(0));
        self.hold.store(hold, std::sync::atomic::Ordering::Relaxed);
    }

    async fn take_announcements(
        &self,
        pending: Pending<'_>,
        now: i64,
        lease_secs: i64,
    ) -> Result<Vec<Job>, StoreError> {
        let now = self.in_redis_time(now).await;
        let (limit, video, mode, held) = match pending {
            Pending::Due(limit) => (limit, String::new(), "", String::new()),
            Pending::Held(video) => (1, video.to_string(), "held", String::new()),
            Pending::Taken(video, held) => (1, video.to_string(), "taken", json(held)?),
        };
        let hold = self.hold.load(std::sync::atomic::Ordering::Relaxed).max(0);
        let args = [
            now.to_string(),
            now.saturating_add(lease_secs).to_string(),
            limit.to_string(),
            video,
            hold.to_string(),
            mode.to_owned(),
            held,
        ];
        let rows: Vec<Vec<String>> = self
            .eval(&self.scripts.take_announcements, &[], &args)
            .await?;
        // One record that does not decode must not hold up the others.
        let decoded = rows.iter().filter_map(|flat| match decode(flat) {
            Ok(job) => Some(job),
            Err(error) => {
                tracing::warn!(%error, "a job to announce does not decode; skipped");
                None
            }
        });
        Ok(decoded.collect())
    }

    async fn announced(
        &self,
        video: &VideoId,
        announcement: &Announcement,
    ) -> Result<(), StoreError> {
        let args = [video.to_string(), json(announcement)?];
        let _: i64 = self
            .eval(&self.scripts.announced, &[job_key(video)], &args)
            .await?;
        Ok(())
    }

    async fn delete(&self, video: &VideoId) -> Result<(), StoreError> {
        let _: i64 = self
            .eval(
                &self.scripts.delete,
                &[job_key(video)],
                &[video.to_string()],
            )
            .await?;
        Ok(())
    }

    async fn counts(&self) -> Result<Vec<(JobState, usize)>, StoreError> {
        let mut pipe = redis::pipe();
        for state in STATES {
            pipe.cmd("SCARD").arg(state_key(state)?);
        }
        let sizes: Vec<usize> = self
            .call(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(STATES
            .into_iter()
            .zip(sizes)
            .filter(|&(_, n)| n > 0)
            .collect())
    }
}
