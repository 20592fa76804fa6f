//! The ladder encode of a job: one ffmpeg for every rung, resuming an earlier attempt's
//! complete segments, publishing segments as they complete when the video is published while
//! it encodes, and falling back from NVENC to libx264 once if the GPU fails at run time.

use std::time::Duration;

use super::{Cancel, Events, Job, Pipeline, PipelineError};
use crate::transcode::ffmpeg::{self, EncodePlan, Encoder, Storyboard};
use crate::transcode::growing::Growing;
use crate::transcode::probe::SourceInfo;
use crate::transcode::publish::WorkDir;
use crate::transcode::renditions::Outputs;
use crate::transcode::resume::{self, EncodeManifest, ResumePoint};
use crate::transcode::subtitles::{self, tracks::Renditions};

/// How often the work directory is looked at for new segments while ffmpeg runs.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// What the encode step leaves for publishing.
pub(super) struct Encoded {
    /// The encoder that produced the output.
    pub encoder: String,
    /// The growing publish, when the video is published while it encodes.
    pub growing: Option<Growing>,
}

/// One ffmpeg run of the ladder.
struct Run<'a> {
    args: Vec<std::ffi::OsString>,
    offset: f64,
    duration: f64,
    resume: Option<&'a ResumePoint>,
    work: &'a WorkDir,
}

impl Pipeline {
    /// The ladder encode; NVENC failing at run time falls back to libx264 once.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn encode(
        &self,
        job: &Job<'_>,
        info: &SourceInfo,
        outputs: &Outputs,
        subtitles: &Renditions,
        work: &WorkDir,
        storyboard: &Storyboard<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<Encoded, PipelineError> {
        let s = &self.settings;
        let rungs = &outputs.video[..];
        let separate = !outputs.audio.is_empty();
        let selected = self.encoders.select(job.encoder, info, rungs.len()).await;
        let seg = s.segment_secs;
        let source_bytes = std::fs::metadata(job.source)?.len();
        let manifest = EncodeManifest::new(&outputs.all(), seg, source_bytes);
        manifest.write(work.path())?;
        // An earlier attempt's complete segments, and where this run must start to continue
        // them (an encode with separate audio renditions starts over).
        let earlier = match separate {
            false => resume::find(&self.layout, job.video, &manifest, work.path()),
            true => None,
        };
        let resume = match earlier {
            Some(point) => match point.measure(&s.ffprobe, rungs).await {
                Ok(at) => Some((point, at)),
                Err(error) => {
                    tracing::warn!(%error, "cannot measure the segments of an earlier attempt, encoding from the start");
                    None
                }
            },
            None => None,
        };
        if let Some((point, _)) = &resume {
            resume::adopt(point, rungs, &work.hls())?;
            events.resumed(point.segment);
            tracing::info!(
                segment = point.segment,
                "resuming the encode after an earlier attempt"
            );
        }
        let point = resume.as_ref().map(|(p, _)| p);
        let start_growing = |from: u32| -> Result<Growing, PipelineError> {
            let mut growing = Growing::start(
                &self.layout,
                job.video,
                outputs,
                from,
                &s.ffprobe,
                seg,
                info.fps,
            )?;
            // Subtitle renditions are complete from the start: published before the master.
            let dir = self.layout.video_dir(job.video);
            subtitles::tracks::write_all(subtitles, &dir, info.duration, seg)?;
            growing.set_subtitles(subtitles.iter().map(|(r, _)| r.media()).collect());
            Ok(growing)
        };
        let mut growing = match s.publish_while_encoding {
            true => Some(start_growing(point.map_or(0, |p| p.segment))?),
            false => None,
        };
        let offset = point.map_or(0.0, |p| p.seconds);
        let attempt = |encoder: &Encoder| {
            let plan = EncodePlan {
                source: info,
                rungs,
                encoder,
                segment_secs: seg,
                // A resumed run sees only the rest of the video: sprites come from a full pass.
                storyboard: resume.is_none().then_some(*storyboard),
                resume: resume.as_ref().map(|(_, at)| at),
                separate_audio: separate,
            };
            Run {
                args: ffmpeg::ladder_args(&plan, job.source, &work.hls()),
                offset,
                duration: info.duration,
                resume: point,
                work,
            }
        };
        let first = self
            .run_publishing(attempt(&selected.encoder), growing.as_mut(), events, cancel)
            .await;
        let name = match first {
            Ok(()) => selected.encoder.name().to_owned(),
            Err(error @ PipelineError::Ffmpeg { .. })
                if matches!(selected.encoder, Encoder::Nvenc { .. }) =>
            {
                tracing::warn!(%error, "NVENC encode failed, retrying with libx264");
                drop(selected);
                let x264 = self.encoders.x264();
                // The reused segments stay; only this attempt's output is redone.
                for rung in rungs {
                    let dir = work.hls().join(&rung.name);
                    for i in point.map_or(0, |p| p.segment).. {
                        if std::fs::remove_file(dir.join(resume::segment_name(i))).is_err() {
                            break;
                        }
                    }
                }
                // What the GPU published is withdrawn: libx264 encodes those segments again.
                if growing.is_some() {
                    growing = Some(start_growing(0)?);
                }
                self.run_publishing(attempt(&x264), growing.as_mut(), events, cancel)
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
        Ok(Encoded {
            encoder: name,
            growing,
        })
    }

    /// Runs ffmpeg; with a growing publish, publishes what it completes as it goes.
    async fn run_publishing(
        &self,
        run: Run<'_>,
        growing: Option<&mut Growing>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        let ffmpeg = self.run_ffmpeg_from(run.args, run.offset, run.duration, events, cancel);
        let Some(growing) = growing else {
            return ffmpeg.await;
        };
        let mut ffmpeg = std::pin::pin!(ffmpeg);
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        let hls = run.work.hls();
        loop {
            tokio::select! {
                done = &mut ffmpeg => return done,
                _ = tick.tick() => {
                    if growing.advance(&hls, run.resume).await? {
                        tracing::info!("playable: every rung has its first segment");
                        events.playable();
                    }
                }
            }
        }
    }
}
