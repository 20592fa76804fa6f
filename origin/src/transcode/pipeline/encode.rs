//! The ladder encode of a job: one ffmpeg for every rung, resuming an earlier attempt's
//! complete segments, and falling back from NVENC to libx264 once if the GPU fails at run time.

use super::{Cancel, Events, Job, Pipeline, PipelineError};
use crate::transcode::ffmpeg::{self, EncodePlan, Encoder, Storyboard};
use crate::transcode::ladder::Rung;
use crate::transcode::probe::SourceInfo;
use crate::transcode::publish::WorkDir;
use crate::transcode::resume::{self, EncodeManifest};

impl Pipeline {
    /// The ladder encode; NVENC failing at run time falls back to libx264 once.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn encode(
        &self,
        job: &Job<'_>,
        info: &SourceInfo,
        rungs: &[Rung],
        work: &WorkDir,
        storyboard: &Storyboard<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<String, PipelineError> {
        let selected = self.encoders.select(job.encoder, info, rungs.len()).await;
        let seg = self.settings.segment_secs;
        let source_bytes = std::fs::metadata(job.source)?.len();
        let manifest = EncodeManifest::new(rungs, seg, source_bytes);
        manifest.write(work.path())?;
        // An earlier attempt's complete segments, and where this run must start to continue them.
        let resume = match resume::find(&self.layout, job.video, &manifest, work.path()) {
            Some(point) => match point.measure(&self.settings.ffprobe, rungs).await {
                Ok(at) => Some((point, at)),
                Err(error) => {
                    tracing::warn!(%error, video = %job.video, "cannot measure the segments of an earlier attempt, encoding from the start");
                    None
                }
            },
            None => None,
        };
        if let Some((point, _)) = &resume {
            resume::adopt(point, rungs, &work.hls())?;
            events.resumed(point.segment);
            tracing::info!(video = %job.video, segment = point.segment, "resuming the encode after an earlier attempt");
        }
        let offset = resume.as_ref().map_or(0.0, |(p, _)| p.seconds);
        let attempt = |encoder: &Encoder| {
            let plan = EncodePlan {
                source: info,
                rungs,
                encoder,
                segment_secs: seg,
                // A resumed run sees only the rest of the video: sprites come from a full pass.
                storyboard: resume.is_none().then_some(*storyboard),
                resume: resume.as_ref().map(|(_, at)| at),
            };
            ffmpeg::ladder_args(&plan, job.source, &work.hls())
        };
        let name = match self
            .run_ffmpeg_from(
                attempt(&selected.encoder),
                offset,
                info.duration,
                events,
                cancel,
            )
            .await
        {
            Ok(()) => selected.encoder.name().to_owned(),
            Err(error @ PipelineError::Ffmpeg { .. })
                if matches!(selected.encoder, Encoder::Nvenc { .. }) =>
            {
                tracing::warn!(%error, video = %job.video, "NVENC encode failed, retrying with libx264");
                drop(selected);
                let x264 = self.encoders.x264();
                // The reused segments stay; only this attempt's output is redone.
                for rung in rungs {
                    let dir = work.hls().join(&rung.name);
                    let first = resume.as_ref().map_or(0, |(p, _)| p.segment);
                    for i in first.. {
                        if std::fs::remove_file(dir.join(resume::segment_name(i))).is_err() {
                            break;
                        }
                    }
                }
                self.run_ffmpeg_from(attempt(&x264), offset, info.duration, events, cancel)
                    .await?;
                x264.name().to_owned()
            }
            Err(e) => return Err(e),
        };
        if let Some((point, _)) = &resume {
            for rung in rungs {
                let path = work.hls().join(&rung.name).join(ffmpeg::VARIANT);
                let text = std::fs::read_to_string(&path)?;
                std::fs::write(&path, resume::stitch(point, seg, &text))?;
            }
            self.run_ffmpeg(
                ffmpeg::storyboard_args(job.source, storyboard),
                0.0,
                events,
                cancel,
            )
            .await?;
        }
        Ok(name)
    }
}
