//! The in-process worker pool: claim a job, keep its lease alive, run the pipeline, record the
//! outcome. What a running job reports, and how often, is [`report`]; outcomes the store's
//! answer leaves in doubt are [`outcome`].

mod outcome;
mod prepare;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::media::{Layout, VideoId};
use shared::shutdown::{self, Switch, Trigger};
use tokio::sync::{broadcast, mpsc};

use prepare::prepare;
use report::Sink;

use super::announcer::{Announcer, Timing};
use super::model::{unix_now, Job};
use super::store::{backoff_secs, Failure, JobStore, StoreError};
use super::subtitle_files::after_publish;
use crate::metrics::Metrics;
use crate::storage::StorageError;
use crate::transcode::input::Source;
use crate::transcode::pipeline::{Job as PipelineJob, Pipeline, PipelineError};
use crate::transcode::progress::Stage;
use crate::webhooks::Webhooks;

/// What viewers of a job's progress are told (the API relays these as Server-Sent Events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    Stage {
        video: VideoId,
        stage: Stage,
    },
    Progress {
        video: VideoId,
        percent: f64,
        stage: Stage,
    },
    ThumbnailReady {
        video: VideoId,
    },
    /// Watchable while it encodes (growing playlists).
    Playable {
        video: VideoId,
    },
    Ready {
        video: VideoId,
    },
    Failed {
        video: VideoId,
        error: String,
        retrying: bool,
    },
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Jobs run at once.
    pub concurrency: usize,
    /// Seconds a claim lasts without a heartbeat.
    pub lease_secs: i64,
    /// How often an idle worker looks for work.
    pub poll_interval: Duration,
    /// Attempts before a retryable failure becomes final.
    pub max_attempts: u32,
    /// Prefix of this process's worker names (host and pid make it unique).
    pub name: String,
}

/// The pool.
pub struct WorkerPool<S> {
    store: Arc<S>,
    pipeline: Pipeline,
    layout: Layout,
    settings: WorkerSettings,
    events: broadcast::Sender<JobEvent>,
    running: Mutex<HashMap<VideoId, Trigger>>,
    metrics: Option<Arc<Metrics>>,
    announcer: Option<Arc<Announcer<S>>>,
}

impl<S: JobStore> WorkerPool<S> {
    pub fn new(
        store: Arc<S>,
        pipeline: Pipeline,
        layout: Layout,
        settings: WorkerSettings,
    ) -> Arc<Self> {
        Self::with_metrics(store, pipeline, layout, settings, None)
    }

    /// A pool that records transcode metrics.
    pub fn with_metrics(
        store: Arc<S>,
        pipeline: Pipeline,
        layout: Layout,
        settings: WorkerSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Self> {
        Self::with_reporting(store, pipeline, layout, settings, metrics, None)
    }

    /// A pool that records metrics and sends webhooks for final outcomes (ready, or failed
    /// after the last attempt).
    pub fn with_reporting(
        store: Arc<S>,
        pipeline: Pipeline,
        layout: Layout,
        settings: WorkerSettings,
        metrics: Option<Arc<Metrics>>,
        webhooks: Option<Webhooks>,
    ) -> Arc<Self> {
        let announcer = webhooks.map(|w| {
            let timing = Timing::for_webhooks(&w);
            Announcer::new(store.clone(), w, timing)
        });
        Self::with_announcer(store, pipeline, layout, settings, metrics, announcer)
    }

    /// [`Self::with_reporting`] with an announcer of the caller's (its timing).
    pub fn with_announcer(
        store: Arc<S>,
        pipeline: Pipeline,
        layout: Layout,
        settings: WorkerSettings,
        metrics: Option<Arc<Metrics>>,
        announcer: Option<Arc<Announcer<S>>>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            store,
            pipeline,
            layout,
            settings,
            events,
            running: Mutex::new(HashMap::new()),
            metrics,
            announcer,
        })
    }

    /// The sender of live events (the API relays them).
    pub fn events(&self) -> broadcast::Sender<JobEvent> {
        self.events.clone()
    }

    /// Live job events.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Kills the running job of `video`, if any, here (deletion).
    pub fn cancel(&self, video: &VideoId) -> bool {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(video).map(Trigger::fire).is_some()
    }

    /// [`Self::cancel`], then waits until the job has stopped here, at most `limit`.
    pub async fn cancel_and_wait(&self, video: &VideoId, limit: Duration) {
        if !self.cancel(video) {
            return;
        }
        let deadline = tokio::time::Instant::now() + limit;
        while self.is_running(video) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn is_running(&self, video: &VideoId) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(video)
    }

    /// What announces its outcomes to webhooks, if they are on.
    pub fn announcer(&self) -> Option<&Arc<Announcer<S>>> {
        self.announcer.as_ref()
    }

    /// Starts the workers, and the sweep for outcomes left to announce; they stop claiming
    /// (and sweeping) when `stop` fires and finish what they hold.
    pub fn start(self: &Arc<Self>, stop: Switch) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        if let Some(announcer) = &self.announcer {
            set.spawn(announcer.clone().sweep(stop.clone()));
        }
        for n in 0..self.settings.concurrency.max(1) {
            let pool = self.clone();
            let stop = stop.clone();
            set.spawn(async move { pool.worker_loop(n, stop).await });
        }
        set
    }

    async fn worker_loop(self: Arc<Self>, n: usize, mut stop: Switch) {
        let name = format!("{}-{n}", self.settings.name);
        while !stop.is_fired() {
            match self
                .store
                .claim(
                    &name,
                    self.settings.lease_secs,
                    self.settings.max_attempts,
                    unix_now(),
                )
                .await
            {
                Ok(claim) => {
                    // On a task of their own: a withdrawal from the bucket may take a while,
                    // and the claimed job's lease runs from now.
                    for job in claim.worn_out {
                        let span = tracing::info_span!("job", video.id = %job.video);
                        let pool = self.clone();
                        let announce = async move { pool.announce_worn_out(job).await };
                        tokio::spawn(tracing::Instrument::instrument(announce, span));
                    }
                    if let Some(job) = claim.job {
                        // Every line of this attempt carries the video and the attempt.
                        let span = tracing::info_span!(
                            "job",
                            video.id = %job.video,
                            attempt = job.attempts,
                            worker = %name
                        );
                        tracing::Instrument::instrument(self.run(&name, job), span).await
                    }
                }
                Err(error) => tracing::warn!(%error, worker = %name, "cannot claim jobs"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                () = stop.fired() => {}
            }
        }
    }

    async fn run(&self, worker: &str, job: Job) {
        let video = job.video.clone();
        tracing::info!("job started");
        let (cancel_tx, mut cancel) = shutdown::channel();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(video.clone(), cancel_tx.clone());
        let (updates_tx, updates) = mpsc::unbounded_channel();
        let recorder = self.record(worker, &video, updates);
        let lease_lost = std::sync::atomic::AtomicBool::new(false);
        let heartbeat = self.heartbeat(worker, &video, cancel_tx, &lease_lost);
        let media = self.pipeline.media();
        let sink = Sink(updates_tx);
        let run = async {
            let fetched = prepare(&self.store, media, &self.layout, &video, &mut cancel).await?;
            let source = fetched.source();
            if let Source::Url(_) = source {
                tracing::info!("reading the upload from the bucket (presigned URL)");
            }
            let pipeline_job = PipelineJob {
                video: &video,
                source,
                profile: job.profile,
                encoder: job.encoder,
            };
            let result = self.pipeline.run(&pipeline_job, &sink, &mut cancel).await;
            drop(sink);
            media.release_source(&video);
            // A video counts as published only once the store says so (with a bucket: its
            // marker, written after every other object was confirmed).
            if result.is_ok() && !media.is_published(&video).await? {
                return Err(StorageError::Mismatch {
                    name: video.to_string(),
                    what: "published, but the store does not show it".into(),
                }
                .into());
            }
            result
        };
        let started = std::time::Instant::now();
        let (result, ()) = tokio::join!(
            async {
                tokio::select! {
                    r = run => r,
                    () = heartbeat => Err(PipelineError::Cancelled),
                }
            },
            recorder
        );
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&video);
        let now = unix_now();
        if let Some(m) = &self.metrics {
            let wall = started.elapsed().as_secs_f64();
            let (encoder, outcome) = match &result {
                Ok(p) => (p.encoder.as_str(), "ready"),
                Err(_) => ("none", "failed"),
            };
            m.transcodes.with_label_values(&[encoder, outcome]).inc();
            if let Ok(p) = &result {
                m.transcode_seconds.observe(wall);
                if wall > 0.0 {
                    m.transcode_speed.observe(p.duration / wall);
                }
            }
        }
        match result {
            Ok(published) => match self.record_completion(worker, &job, published).await {
                Ok(()) => {
                    tracing::info!("job ready");
                    self.sync_subtitle_files(&video).await;
                    self.announce(&video).await;
                    let _ = self.events.send(JobEvent::Ready { video });
                }
                Err(error) => {
                    tracing::error!(%error, "published but could not record completion");
                    // Deleted meanwhile: what it published must not outlive it.
                    self.unpublish_if_deleted(&video).await;
                }
            },
            // The job belongs to another worker now (its outcome is theirs to report), or it
            // was deleted: then nothing it published may outlive it.
            Err(_) if lease_lost.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::info!("attempt abandoned after losing the lease");
                self.unpublish_if_deleted(&video).await;
            }
            Err(PipelineError::Cancelled) => {
                tracing::info!("attempt cancelled");
                self.unpublish_if_deleted(&video).await;
            }
            Err(error) => {
                let retrying = error.retryable() && job.attempts < self.settings.max_attempts;
                let failure = if retrying {
                    Failure::RetryAt(now + backoff_secs(job.attempts))
                } else {
                    Failure::Final
                };
                // The full detail (ffmpeg's output, paths) stays in this log line; the owner,
                // the events and the webhook get the short public reason.
                tracing::warn!(%error, retrying, "job attempt failed");
                let reason = error.public_message();
                match self.store.fail(&video, worker, &reason, failure, now).await {
                    // Only a failure the store recorded as final is announced: a deleted job
                    // (NotFound) has no one to tell, and an unrecorded one will be run again.
                    Ok(()) if !retrying => self.announce(&video).await,
                    Ok(()) => {}
                    // Deleted during the attempt (on another machine, nothing cancelled it):
                    // what the attempt wrote meanwhile must not outlive the video.
                    Err(StoreError::NotFound(_)) => self.unpublish_if_deleted(&video).await,
                    Err(e) => tracing::warn!(error = %e, "cannot record the failure"),
                }
                let _ = self.events.send(JobEvent::Failed {
                    video,
                    error: reason,
                    retrying,
                });
            }
        }
    }

    /// A subtitle file added or deleted after the encode read them (the API leaves a video
    /// still encoding to it) is brought into the master now, before the video is announced
    /// ready. Three tries; then the next change syncs.
    async fn sync_subtitle_files(&self, video: &VideoId) {
        let (media, segment_secs) = (self.pipeline.media(), self.pipeline.segment_secs());
        let mut tries = 1;
        let synced = loop {
            match after_publish(&self.store, media, &self.layout, video, segment_secs).await {
                Err(error) if tries < 3 => {
                    tracing::info!(%error, "subtitle files not checked after publishing; again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    tries += 1;
                }
                done => break done,
            }
        };
        match synced {
            Ok(true) => tracing::info!("subtitle files changed while publishing: in the master"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "subtitle files not checked after publishing"),
        }
        // Deleted meanwhile: what the sync sent must not outlive it.
        self.unpublish_if_deleted(video).await;
    }

    /// Hands the outcome this worker recorded for `video` to the webhooks, if they are on.
    async fn announce(&self, video: &VideoId) {
        if let Some(announcer) = &self.announcer {
            announcer.announce(video).await;
        }
    }

    /// A deleted video's files go, whatever a cancelled attempt published before it stopped
    /// (the delete may have removed them while the attempt was still writing).
    async fn unpublish_if_deleted(&self, video: &VideoId) {
        if let Ok(None) = self.store.get(video).await {
            if let Err(error) = self.pipeline.media().remove_video(video).await {
                tracing::warn!(%error, "cannot remove a deleted video's files");
            }
        }
    }

    /// Renews the lease until it is lost (then cancels the run, which must not publish) or the
    /// job ends (the future is dropped).
    async fn heartbeat(
        &self,
        worker: &str,
        video: &VideoId,
        cancel: Trigger,
        lost: &std::sync::atomic::AtomicBool,
    ) {
        let lease = Duration::from_secs(self.settings.lease_secs.max(1) as u64);
        let every = (lease / 3).max(Duration::from_secs(1));
        // The claim took the lease just now.
        let mut held_until = tokio::time::Instant::now() + lease;
        loop {
            tokio::time::sleep(every).await;
            let asked = tokio::time::Instant::now();
            let stop = match self
                .store
                .heartbeat(video, worker, self.settings.lease_secs, unix_now())
                .await
            {
                Ok(()) => {
                    held_until = asked + lease;
                    continue;
                }
                Err(StoreError::LeaseLost(_) | StoreError::NotFound(_)) => {
                    "lease lost, stopping without publishing"
                }
                // A store outage: keep encoding while the lease lasts. Once it may have run out
                // before the next heartbeat, another worker may claim the job at any moment,
                // and two attempts must never publish one video at once.
                Err(error) if tokio::time::Instant::now() + every >= held_until => {
                    tracing::warn!(%error, "heartbeat failed");
                    "lease lost, stopping without publishing: the store could not renew it in time"
                }
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed");
                    continue;
                }
            };
            tracing::warn!("{stop}");
            lost.store(true, std::sync::atomic::Ordering::Relaxed);
            cancel.fire();
            return std::future::pending().await;
        }
    }
}
