//! Importing existing MP4/MOV/MKV files (seed 001's migration), from a directory or from a
//! prefix of the storage bucket: each file is registered as a video of the configured owner and
//! queued, in the background, without blocking the API. Files already imported (same name, so
//! the same id) are skipped.
//!
//! Each file passes the same checks as an upload (container allow-list, media limits) before
//! it is copied: a playlist or concat file renamed `.mp4` is refused and listed in the status.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use shared::media::{Layout, VideoId};

use crate::jobs::model::{unix_now, Job, JobState};
use crate::jobs::store::JobStore;
use crate::transcode::input::Source;
use crate::transcode::pipeline::{Pipeline, Profile};

/// What `GET /api/admin/migration` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationStatus {
    pub is_running: bool,
    pub total: usize,
    pub completed: usize,
    pub current_video: Option<String>,
    /// Files that failed for another reason (I/O, the job store).
    pub errors: Vec<String>,
    /// Files that are not acceptable videos, with the reason.
    pub refused: Vec<RefusedFile>,
}

/// A file the migration would not import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedFile {
    pub file: String,
    pub reason: String,
}

/// Why one file was not imported.
enum ImportError {
    Refused(String),
    Failed(String),
}

/// Where files to import are.
enum Candidate {
    File(PathBuf),
    /// An object name in the storage bucket.
    Object(String),
}

/// The migration runner.
pub struct Migration {
    import_dir: Option<PathBuf>,
    /// A directory of the storage bucket (relative to its prefix).
    import_prefix: Option<String>,
    owner: String,
    process_now: bool,
    status: Mutex<MigrationStatus>,
}

const EXTENSIONS: [&str; 3] = ["mp4", "mov", "mkv"];

impl Migration {
    pub fn new(import_dir: &Path, owner: &str, process_now: bool) -> Self {
        Self {
            import_dir: (!import_dir.as_os_str().is_empty()).then(|| import_dir.to_owned()),
            import_prefix: None,
            owner: owner.to_owned(),
            process_now,
            status: Mutex::new(MigrationStatus::default()),
        }
    }

    /// Also imports the objects under `prefix` of the storage bucket (empty: none).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        let p = prefix.trim_matches('/');
        self.import_prefix = (!p.is_empty()).then(|| p.to_owned());
        self
    }

    pub fn enabled(&self) -> bool {
        self.import_dir.is_some() || self.import_prefix.is_some()
    }

    pub fn status(&self) -> MigrationStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut MigrationStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Marks a run as started; `false` if one is already running.
    pub fn begin(&self) -> bool {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.is_running {
            return false;
        }
        *s = MigrationStatus {
            is_running: true,
            ..MigrationStatus::default()
        };
        true
    }

    /// Imports every new file of the directory and the bucket prefix. Call after
    /// [`Self::begin`] returned true.
    pub async fn run<S: JobStore>(&self, store: &S, layout: &Layout, pipeline: &Pipeline) {
        let mut files = Vec::new();
        if let Some(dir) = &self.import_dir {
            match candidates(dir) {
                Ok(found) => files.extend(found.into_iter().map(Candidate::File)),
                Err(e) => self.update(|s| s.errors.push(format!("{}: {e}", dir.display()))),
            }
        }
        if let Some(prefix) = &self.import_prefix {
            match pipeline.media().remote() {
                Some(bucket) => match bucket.list(prefix).await {
                    Ok(listed) => files.extend(
                        listed
                            .into_iter()
                            .map(|(name, _)| name)
                            .filter(|name| importable(Path::new(name)))
                            .map(Candidate::Object),
                    ),
                    Err(e) => self.update(|s| s.errors.push(format!("{prefix}: {e}"))),
                },
                None => self.update(|s| {
                    s.errors.push(format!(
                        "{prefix}: importing from a bucket needs [storage] backend = \"s3\""
                    ))
                }),
            }
        }
        self.update(|s| s.total = files.len());
        for file in files {
            let name = match &file {
                Candidate::File(path) => path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                Candidate::Object(name) => name.clone(),
            };
            self.update(|s| s.current_video = Some(name.clone()));
            match self.import(store, layout, pipeline, &file, &name).await {
                Ok(()) => {}
                Err(ImportError::Refused(reason)) => {
                    tracing::warn!(file = %name, %reason, "migration refused a file");
                    self.update(|s| {
                        s.refused.push(RefusedFile {
                            file: name.clone(),
                            reason,
                        })
                    });
                }
                Err(ImportError::Failed(e)) => {
                    self.update(|s| s.errors.push(format!("{name}: {e}")))
                }
            }
            self.update(|s| s.completed += 1);
        }
        self.update(|s| {
            s.is_running = false;
            s.current_video = None;
        });
    }

    async fn import<S: JobStore>(
        &self,
        store: &S,
        layout: &Layout,
        pipeline: &Pipeline,
        file: &Candidate,
        name: &str,
    ) -> Result<(), ImportError> {
        let failed = |e: &dyn std::fmt::Display| ImportError::Failed(e.to_string());
        let video = imported_id(name);
        if store.get(&video).await.map_err(|e| failed(&e))?.is_some() {
            return Ok(());
        }
        // A copy, not a move: the import directory (or prefix) stays the operator's.
        let tmp = layout.tmp_root().join(format!("import-{video}"));
        let copied = match file {
            // Gigabytes, possibly: not on a thread that runs requests.
            Candidate::File(path) => tokio::fs::copy(path, &tmp)
                .await
                .map(|_| true)
                .map_err(|e| failed(&e)),
            Candidate::Object(object) => match pipeline.media().remote() {
                Some(bucket) => bucket.download(object, &tmp).await.map_err(|e| failed(&e)),
                None => Ok(false),
            },
        };
        if !copied? {
            return Err(ImportError::Failed("no longer there".into()));
        }
        let probed = pipeline.probe(Source::File(&tmp)).await;
        if let Err(e) = probed {
            let _ = std::fs::remove_file(&tmp);
            return Err(ImportError::Refused(e.to_string()));
        }
        let source = layout.source_file(&video);
        // Held until its job exists, like an upload: a role starting meanwhile removes only
        // uploads that nobody holds and no job names.
        let _held = crate::storage::leftovers::hold(&tmp).map_err(|e| failed(&e))?;
        std::fs::rename(&tmp, &source).map_err(|e| failed(&e))?;
        pipeline
            .media()
            .store_source(&video)
            .await
            .map_err(|e| failed(&e))?;
        let mut job = Job::new(
            video,
            &self.owner,
            Some(name.to_owned()),
            Profile::Ladder,
            unix_now(),
        );
        if !self.process_now {
            // Processing deferred: the first stream-info request queues it.
            job.state = JobState::Registered;
        }
        store.create(job).await.map_err(|e| failed(&e))
    }
}

/// A stable id per imported file name, so re-running the migration skips what it imported.
pub fn imported_id(name: &str) -> VideoId {
    use md5::{Digest, Md5};
    let digest = Md5::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("import-{}", &hex[..24])
        .parse()
        .unwrap_or_else(|_| VideoId::random())
}

fn candidates(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && importable(p))
        .collect();
    files.sort();
    Ok(files)
}

fn importable(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_valid() {
        assert_eq!(imported_id("a.mp4"), imported_id("a.mp4"));
        assert_ne!(imported_id("a.mp4"), imported_id("b.mp4"));
        assert!(imported_id("weird name ü.mkv")
            .as_str()
            .starts_with("import-"));
    }
}
