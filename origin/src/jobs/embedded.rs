//! The single-machine job store: one redb file in `<data>/store/`, so a restart loses no
//! queued or running job (a job whose worker died is claimable again once its lease runs out).
//!
//! Every operation is one short ACID transaction run on the blocking pool. Claiming scans the
//! jobs table; that is fine for the thousands of jobs one machine holds, and the Redis store
//! is the answer beyond that.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};
use shared::media::VideoId;

use super::model::{Job, JobState, Lease};
use super::store::{Failure, JobStore, StoreError};
use crate::transcode::pipeline::Published;
use crate::transcode::progress::Stage;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

/// The embedded store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<Job, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(job).map_err(backend)
}

impl EmbeddedStore {
    /// Opens (or creates) `<dir>/jobs.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let db = Database::create(dir.join("jobs.redb")).map_err(backend)?;
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(JOBS).map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` on the jobs table inside one write transaction, on the blocking pool.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(backend)?;
            let out = {
                let mut table = tx.open_table(JOBS).map_err(backend)?;
                f(&mut table)?
            };
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
        .map_err(backend)?
    }

    /// Reads every job (small tables; see the module docs).
    async fn all(&self) -> Result<Vec<Job>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(JOBS).map_err(backend)?;
            let mut out = Vec::new();
            for row in table.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(backend)?
    }

    /// Loads, changes and stores one job in a transaction; `change` may refuse.
    async fn update(
        &self,
        video: &VideoId,
        change: impl FnOnce(&mut Job) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let key = video.to_string();
        let id = video.clone();
        self.write(move |t| {
            let mut job = match t.get(key.as_str()).map_err(backend)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NotFound(id)),
            };
            change(&mut job)?;
            let bytes = encode(&job)?;
            t.insert(key.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Like [`Self::update`] where `change` says whether it changed anything: when it did not,
    /// nothing is written (nor flushed). The edit lease is asked for every few hundred ms.
    async fn update_if(
        &self,
        video: &VideoId,
        change: impl FnOnce(&mut Job) -> bool + Send + 'static,
    ) -> Result<bool, StoreError> {
        let (db, key, id) = (self.db.clone(), video.to_string(), video.clone());
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(backend)?;
            let changed = {
                let mut table = tx.open_table(JOBS).map_err(backend)?;
                let mut job = match table.get(key.as_str()).map_err(backend)? {
                    Some(v) => decode(v.value())?,
                    None => return Err(StoreError::NotFound(id)),
                };
                let changed = change(&mut job);
                if changed {
                    let bytes = encode(&job)?;
                    table
                        .insert(key.as_str(), bytes.as_slice())
                        .map_err(backend)?;
                }
                changed
            };
            if changed {
                tx.commit().map_err(backend)?;
            } else {
                tx.abort().map_err(backend)?;
            }
            Ok(changed)
        })
        .await
        .map_err(backend)?
    }

    /// Like [`Self::update`], but only while `worker` holds the lease.
    async fn update_leased(
        &self,
        video: &VideoId,
        worker: &str,
        now: i64,
        change: impl FnOnce(&mut Job) + Send + 'static,
    ) -> Result<(), StoreError> {
        let worker = worker.to_owned();
        let id = video.clone();
        self.update(video, move |job| {
            if !job.leased_by(&worker, now) {
                return Err(StoreError::LeaseLost(id));
            }
            change(job);
            job.updated_at = now;
            Ok(())
        })
        .await
    }
}

impl JobStore for EmbeddedStore {
    async fn create(&self, job: Job) -> Result<(), StoreError> {
        self.write(move |t| {
            let key = job.video.to_string();
            if t.get(key.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::Exists(job.video.clone()));
            }
            let bytes = encode(&job)?;
            t.insert(key.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(())
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
        now: i64,
    ) -> Result<Option<Job>, StoreError> {
        let worker = worker.to_owned();
        self.write(move |t| {
            let mut best: Option<Job> = None;
            for row in t.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                let job = decode(v.value())?;
                if job.claimable(now) && best.as_ref().is_none_or(|b| job.created_at < b.created_at) {
                    best = Some(job);
                }
            }
            let Some(mut job) = best else {
                return Ok(None);
            };
            if job.state == JobState::Processing {
                tracing::warn!(video = %job.video, previous = ?job.lease, "lease expired, taking the job over");
            }
            job.state = JobState::Processing;
            job.lease = Some(Lease { worker, expires_at: now + lease_secs });
            job.attempts += 1;
            job.updated_at = now;
            let bytes = encode(&job)?;
            t.insert(job.video.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(Some(job))
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
        self.update_leased(video, worker, now, move |job| {
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
                Failure::Final => job.state = JobState::Failed,
            }
        })
        .await
    }

    async fn requeue(&self, video: &VideoId, from: JobState, now: i64) -> Result<(), StoreError> {
        let id = video.clone();
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

    async fn lock_edits(
        &self,
        video: &VideoId,
        holder: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let holder = holder.to_owned();
        self.update_if(video, move |job| {
            let taken =
                (job.editor.as_ref()).is_some_and(|e| e.worker != holder && e.expires_at >= now);
            if !taken {
                job.editor = Some(Lease {
                    worker: holder,
                    expires_at: now + lease_secs,
                });
            }
            !taken
        })
        .await
    }

    async fn renew_edits(
        &self,
        video: &VideoId,
        holder: &str,
        lease_secs: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let holder = holder.to_owned();
        self.update_if(video, move |job| match &mut job.editor {
            Some(lease) if lease.worker == holder => {
                lease.expires_at = now + lease_secs;
                true
            }
            _ => false,
        })
        .await
    }

    async fn unlock_edits(&self, video: &VideoId, holder: &str) -> Result<(), StoreError> {
        let holder = holder.to_owned();
        let given_back = self
            .update_if(video, move |job| {
                let held = job.editor.as_ref().is_some_and(|e| e.worker == holder);
                if held {
                    job.editor = None;
                }
                held
            })
            .await;
        match given_back {
            // Deleted meanwhile: nothing is held.
            Err(StoreError::NotFound(_)) => Ok(()),
            other => other.map(|_| ()),
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

    async fn delete(&self, video: &VideoId) -> Result<(), StoreError> {
        let key = video.to_string();
        self.write(move |t| {
            t.remove(key.as_str()).map_err(backend)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_store_meets_the_contract() {
        let dir = std::env::temp_dir().join(format!("origin-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = EmbeddedStore::open(&dir).expect("open");
        super::super::store::contract::run(&store).await;
        drop(store);
        // Durable: a reopened store still has the jobs.
        let reopened = EmbeddedStore::open(&dir).expect("reopen");
        assert!(!reopened
            .list("alice", 0, 10)
            .await
            .expect("list")
            .is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
