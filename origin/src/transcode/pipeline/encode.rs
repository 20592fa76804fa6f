//! The ladder encode of a job: one ffmpeg for every rung, resuming an earlier attempt's
//! complete segments, publishing segments as they complete when the video is published while
//! it encodes, and falling back from NVENC to libx264 once if the GPU fails at run time.

use std::time::Duration;

use super::{Cancel, Events, Job, Pipeline, PipelineError};
use crate::storage::checkpoint::Checkpoint;
use crate::storage::tree::Phase;
use crate::transcode::ffmpeg::{self, EncodePlan, Encoder, Storyboard};
use crate::transcode::growing::Growing;
use crate::transcode::input::Source;
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
        // Identifies the source an earlier attempt encoded; a presigned URL is the same
        // object for every attempt of the video.
        let source_bytes = match job.source {
            Source::Url(_) => 0,
            Source::File(path) => std::fs::metadata(path)?.len(),
        };
        let manifest = EncodeManifest::new(&outputs.all(), seg, source_bytes);
        manifest.write(work.path())?;
        // An earlier attempt's complete segments, and where this run must start to continue
        // them (an encode with separate audio renditions starts over). With a bucket, attempts
        // other machines saved come back as local work directories first.
        let earlier = match separate {
            false => {
                let restored = self
                    .media
                    .restore_attempts(job.video, |other| manifest.accepts(other))
                    .await;
                if let Err(error) = restored {
                    tracing::warn!(%error, "cannot restore earlier attempts from the bucket");
                }
                resume::find(&self.layout, job.video, &manifest, work.path())
            }
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
        let mut growing = match s.publish_while_encoding {
            true => Some(
                self.start_growing(
                    job,
                    info,
                    outputs,
                    subtitles,
                    point.map_or(0, |p| p.segment),
                    events,
                )
                .await?,
            ),
            false => None,
        };
        // With a bucket, complete segments are saved as they appear, for a successor elsewhere.
        let mut checkpoint = match separate {
            false => {
                let names: Vec<String> = rungs.iter().map(|r| r.name.clone()).collect();
                self.media
                    .checkpoint(job.video, work.path(), &names)
                    .await?
            }
            true => None,
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
            .run_publishing(
                attempt(&selected.encoder),
                growing.as_mut(),
                checkpoint.as_mut(),
                job,
                events,
                cancel,
            )
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
                    growing = Some(
                        self.start_growing(job, info, outputs, subtitles, 0, events)
                            .await?,
                    );
                }
                if let Some(c) = checkpoint.as_mut() {
                    c.rewind(point.map_or(0, |p| p.segment));
                }
                self.run_publishing(
                    attempt(&x264),
                    growing.as_mut(),
                    checkpoint.as_mut(),
                    job,
                    events,
                    cancel,
                )
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

    /// The growing publish of an attempt starting at segment `from`.
    async fn start_growing(
        &self,
        job: &Job<'_>,
        info: &SourceInfo,
        outputs: &Outputs,
        subtitles: &Renditions,
        from: u32,
        events: &dyn Events,
    ) -> Result<Growing, PipelineError> {
        let s = &self.settings;
        if from > 0 {
            // What the dead attempt published, wherever it ran, to continue it here.
            self.media.pull_video(job.video).await?;
        }
        let kept = Growing::kept(&self.layout, job.video, outputs, from);
        if kept.is_none() {
            // Starting over with new keys: nothing of an earlier publish may stay visible, and
            // the job stops saying it is playable before that publish goes.
            events.withdrawing().await;
        }
        let mut growing = Growing::start(
            &self.layout,
            job.video,
            outputs,
            kept,
            &s.ffprobe,
            s.segment_secs,
            info.fps,
        )?;
        if !growing.continued() {
            self.media.withdraw(job.video).await?;
        }
        // Subtitle renditions are complete from the start: published before the master.
        let dir = self.layout.video_dir(job.video);
        subtitles::tracks::write_all(subtitles, &dir, info.duration, s.segment_secs)?;
        growing.set_subtitles(subtitles.iter().map(|(r, _)| r.media()).collect());
        Ok(growing)
    }

    /// Runs ffmpeg; saves its complete segments to the checkpoint and, with a growing
    /// publish, publishes them (never more than the checkpoint holds) as it goes.
    async fn run_publishing(
        &self,
        run: Run<'_>,
        mut growing: Option<&mut Growing>,
        mut checkpoint: Option<&mut Checkpoint>,
        job: &Job<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        let ffmpeg = self.run_ffmpeg_from(run.args, run.offset, run.duration, events, cancel);
        if growing.is_none() && checkpoint.is_none() {
            return ffmpeg.await;
        }
        let mut ffmpeg = std::pin::pin!(ffmpeg);
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        let hls = run.work.hls();
        loop {
            tokio::select! {
                done = &mut ffmpeg => return done,
                _ = tick.tick() => {
                    if let Some(c) = checkpoint.as_deref_mut() {
                        c.save().await?;
                    }
                    let Some(g) = growing.as_deref_mut() else { continue };
                    let cap = checkpoint.as_deref().map(Checkpoint::resumable);
                    let playable = g.advance(&hls, run.resume, cap).await?;
                    self.media.push_video(job.video, Phase::Growing).await?;
                    if playable {
                        tracing::info!("playable: every rung has its first segment");
                        events.playable();
                    }
                }
            }
        }
    }
}
