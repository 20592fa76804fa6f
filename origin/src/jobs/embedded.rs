//! The single-machine job store: one redb file in `<data>/store/`, so a restart loses no
//! queued or running job (a job whose worker died is claimable again once its lease runs out).
//!
//! Every operation is one short ACID transaction run on the blocking pool. Claiming scans the
//! jobs table; that is fine for the thousands of jobs one machine holds, and the Redis store
//! is the answer beyond that. Announcements to take are found in an index in memory (their
//! due times): the file is this process's alone, so after a restart nobody is delivering any,
//! and every one left is due at once (the index is filled when the store opens).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition};
use shared::media::VideoId;

use super::model::{Announcement, Ending, Job};
use super::store::StoreError;

mod operations;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

/// The embedded store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    outbox: Arc<Mutex<Outbox>>,
}

/// Whether outcomes are announced, and the index of those to announce: every job whose record
/// holds an announcement has an entry (one without has nothing to take).
#[derive(Debug, Default)]
struct Outbox {
    hold: Option<i64>,
    due: HashMap<VideoId, Due>,
}

/// When an announcement may be taken.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: i64,
    /// Taken at least once: the worker that recorded it no longer has it first.
    taken: bool,
}

fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    outbox.lock().unwrap_or_else(|p| p.into_inner())
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<Job, StoreError> {
    serde_json::from_slice(bytes).map_err(backend)
}

/// The job of one row of a scan; `None` (logged) for a record that does not decode: one such
/// record must not stop the queue.
type Row<'a> = Result<
    (
        redb::AccessGuard<'a, &'static str>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

fn scanned(row: Row<'_>) -> Result<Option<Job>, StoreError> {
    let (key, value) = row.map_err(backend)?;
    Ok(decoded(key.value(), value.value()))
}

/// The job stored for `video` as `bytes`; `None` (logged) if it does not decode.
fn decoded(video: &str, bytes: &[u8]) -> Option<Job> {
    decode(bytes)
        .inspect_err(|error| {
            tracing::warn!(%error, video.id = video, "a job record does not decode; skipped");
        })
        .ok()
}

fn encode(job: &Job) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(job).map_err(backend)
}

/// The job of `video` in `t`.
fn load(t: &redb::Table<&str, &[u8]>, video: &VideoId) -> Result<Job, StoreError> {
    match t.get(video.as_str()).map_err(backend)? {
        Some(v) => decode(v.value()),
        None => Err(StoreError::NotFound(video.clone())),
    }
}

/// Stores `job` in `t`, under its video.
fn put(t: &mut redb::Table<&str, &[u8]>, job: &Job) -> Result<(), StoreError> {
    let bytes = encode(job)?;
    t.insert(job.video.as_str(), bytes.as_slice())
        .map_err(backend)?;
    Ok(())
}

impl EmbeddedStore {
    /// Opens (or creates) `<dir>/jobs.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let db = Database::create(dir.join("jobs.redb")).map_err(backend)?;
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(JOBS).map_err(backend)?;
        tx.commit().map_err(backend)?;
        let store = Self {
            db: Arc::new(db),
            outbox: Arc::default(),
        };
        store.index_announcements()?;
        Ok(store)
    }

    /// Indexes every announcement left by the previous process, due at once.
    fn index_announcements(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(backend)?;
        let table = tx.open_table(JOBS).map_err(backend)?;
        let mut outbox = self.outbox();
        for row in table.iter().map_err(backend)? {
            let Some(job) = scanned(row)? else { continue };
            if job.announce.is_some() {
                let due = Due {
                    at: i64::MIN,
                    taken: true,
                };
                outbox.due.insert(job.video, due);
            }
        }
        Ok(())
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        lock(&self.outbox)
    }

    /// The announcement of an outcome ending so at `now`, when outcomes are announced; held
    /// for its worker from now on.
    fn announce(&self, video: &VideoId, ending: Ending, now: i64) -> Option<Announcement> {
        let mut outbox = self.outbox();
        let hold = outbox.hold?;
        let due = Due {
            at: now.saturating_add(hold),
            taken: false,
        };
        outbox.due.insert(video.clone(), due);
        Some(Announcement::new(ending, now))
    }

    /// Runs `f` on the jobs table inside one write transaction, on the blocking pool.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write_if(move |t| f(t).map(|out| (out, true))).await
    }

    /// [`Self::write`] where `f` also says whether it changed anything: when it did not, the
    /// transaction is dropped, and nothing is written nor flushed.
    async fn write_if<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut redb::Table<&str, &[u8]>) -> Result<(R, bool), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_write().map_err(backend)?;
            let (out, changed) = {
                let mut table = tx.open_table(JOBS).map_err(backend)?;
                f(&mut table)?
            };
            match changed {
                true => tx.commit().map_err(backend)?,
                false => tx.abort().map_err(backend)?,
            }
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
                out.extend(scanned(row)?);
            }
            Ok(out)
        })
        .await
        .map_err(backend)?
    }

    /// The jobs of `videos` that exist (and decode), in one read.
    async fn some(&self, videos: Vec<VideoId>) -> Result<Vec<Job>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let tx = db.begin_read().map_err(backend)?;
            let table = tx.open_table(JOBS).map_err(backend)?;
            let mut out = Vec::new();
            for video in &videos {
                if let Some(v) = table.get(video.as_str()).map_err(backend)? {
                    out.extend(decoded(video.as_str(), v.value()));
                }
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
        let id = video.clone();
        self.write(move |t| {
            let mut job = load(t, &id)?;
            change(&mut job)?;
            put(t, &job)
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
        let id = video.clone();
        self.write_if(move |t| {
            let mut job = load(t, &id)?;
            let changed = change(&mut job);
            if changed {
                put(t, &job)?;
            }
            Ok((changed, changed))
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::JobStore;

    #[tokio::test]
    async fn embedded_store_meets_the_contract() {
        let dir = std::env::temp_dir().join(format!("origin-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = EmbeddedStore::open(&dir).expect("open");
        super::super::store::contract::run(&store).await;
        drop(store);
        let other = tempfile::tempdir().expect("tmp");
        let fresh = EmbeddedStore::open(other.path()).expect("open");
        super::super::store::contract::workers_that_die_every_time(&fresh).await;
        let third = tempfile::tempdir().expect("tmp");
        let announcing = EmbeddedStore::open(third.path()).expect("open");
        super::super::store::contract::announcements(&announcing).await;
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
