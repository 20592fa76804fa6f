//! What a running job reports: the pipeline's callbacks become updates, throttled as seed 003
//! describes (live events every 2 points, store writes every 10, the thumbnail at once).

use shared::media::VideoId;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{JobEvent, WorkerPool};
use crate::jobs::model::unix_now;
use crate::jobs::store::JobStore;
use crate::transcode::pipeline::Events;
use crate::transcode::progress::{Stage, Throttle};

impl<S: JobStore> WorkerPool<S> {
    /// Applies the throttle to pipeline updates: broadcast every 2 points, persist every 10.
    pub(super) async fn record(
        &self,
        worker: &str,
        video: &VideoId,
        mut updates: mpsc::UnboundedReceiver<Update>,
    ) {
        let mut throttle = Throttle::default();
        let mut stage = Stage::Probe;
        let mut thumbnail = false;
        while let Some(update) = updates.recv().await {
            let (persist, event) = match update {
                Update::Stage(s) => {
                    stage = s;
                    (
                        false,
                        JobEvent::Stage {
                            video: video.clone(),
                            stage: s,
                        },
                    )
                }
                Update::Thumbnail => {
                    thumbnail = true;
                    (
                        true,
                        JobEvent::ThumbnailReady {
                            video: video.clone(),
                        },
                    )
                }
                Update::Playable => {
                    if let Err(error) = self.store.playable(video, worker, true, unix_now()).await {
                        tracing::warn!(%error, "playable state not recorded");
                    }
                    (
                        false,
                        JobEvent::Playable {
                            video: video.clone(),
                        },
                    )
                }
                Update::Withdrawing(done) => {
                    if let Err(error) = self.store.playable(video, worker, false, unix_now()).await
                    {
                        tracing::warn!(%error, "withdrawal not recorded");
                    }
                    let _ = done.send(());
                    continue;
                }
                Update::Resumed(segments) => {
                    // Recorded so operators (and tests) see what a takeover reused.
                    let mark = format!("resumed:{segments}");
                    if let Err(error) = self
                        .store
                        .checkpoint(video, worker, &mark, unix_now())
                        .await
                    {
                        tracing::debug!(%error, "checkpoint not recorded");
                    }
                    continue;
                }
                Update::Progress(p) => {
                    let t = throttle.update(p);
                    if !t.announce && !t.persist {
                        continue;
                    }
                    if t.announce {
                        let _ = self.events.send(JobEvent::Progress {
                            video: video.clone(),
                            percent: p,
                            stage,
                        });
                    }
                    if t.persist {
                        self.persist(worker, video, stage, p, thumbnail).await;
                    }
                    continue;
                }
            };
            let _ = self.events.send(event);
            if persist {
                self.persist(worker, video, stage, 0.0, thumbnail).await;
            }
        }
    }

    async fn persist(
        &self,
        worker: &str,
        video: &VideoId,
        stage: Stage,
        percent: f64,
        thumbnail: bool,
    ) {
        if let Err(error) = self
            .store
            .progress(video, worker, stage, percent, thumbnail, unix_now())
            .await
        {
            tracing::debug!(%error, "progress not persisted");
        }
    }
}

/// How long a withdrawal waits for the store to record that the video is no longer playable.
const RECORD_WAIT: Duration = Duration::from_secs(10);

pub(super) enum Update {
    Stage(Stage),
    Progress(f64),
    Thumbnail,
    Resumed(u32),
    Playable,
    /// Answered once the store no longer says the video is playable.
    Withdrawing(oneshot::Sender<()>),
}

/// Forwards pipeline callbacks to the recorder task.
pub(super) struct Sink(pub(super) mpsc::UnboundedSender<Update>);

impl Events for Sink {
    fn stage(&self, stage: Stage) {
        let _ = self.0.send(Update::Stage(stage));
    }
    fn progress(&self, percent: f64) {
        let _ = self.0.send(Update::Progress(percent));
    }
    fn thumbnail_ready(&self) {
        let _ = self.0.send(Update::Thumbnail);
    }
    fn resumed(&self, segments: u32) {
        let _ = self.0.send(Update::Resumed(segments));
    }
    fn playable(&self) {
        let _ = self.0.send(Update::Playable);
    }
    fn withdrawing(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let (done, recorded) = oneshot::channel();
        let _ = self.0.send(Update::Withdrawing(done));
        Box::pin(async move {
            // A store that does not answer must not hold the withdrawal (nor the job) forever.
            if tokio::time::timeout(RECORD_WAIT, recorded).await.is_err() {
                tracing::warn!("the store did not record the withdrawal in time; withdrawing");
            }
        })
    }
}
