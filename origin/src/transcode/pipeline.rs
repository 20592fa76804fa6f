//! One job, start to finish: probe, poster, encode (with the storyboard in the same decode),
//! verify, encrypt, master playlist, publish. Progress and the thumbnail are reported through
//! [`Events`] as they happen; nothing becomes visible before the final rename.
//!
//! Here: the job's steps in order. [`encode`] is the ladder encode (resume, NVENC fallback);
//! [`runner`] runs ffmpeg (progress, stalls, cancellation); [`thumbs`] makes the poster and the
//! storyboard's sheets and track; [`error`] says why a job failed, to the log and to the owner;
//! [`model`] holds what a job is given and what it reports.

use std::path::Path;

use shared::media::{Layout, VideoId};

use crate::storage::tree::Phase;
use crate::storage::MediaStore;

use super::encoder::{EncoderPreference, EncoderSelector};
use super::ffmpeg::{self, EncodePlan, Storyboard};
use super::input::Source;
use super::ladder::{self, Rung};
use super::probe::{self, ProbeError, SourceInfo};
use super::progress::Stage;
use super::publish::{self, WorkDir};
use super::renditions::Outputs;
use super::resume;
use super::{encrypt, growing, subtitles, thumbnails};

mod encode;
mod error;
mod model;
mod runner;
mod thumbs;

pub use error::PipelineError;
use model::published_audio;
pub use model::{Cancel, Events, Job, Profile, Published, PublishedAudio, PublishedRung, Settings};

/// Runs jobs.
#[derive(Clone)]
pub struct Pipeline {
    settings: Settings,
    layout: Layout,
    /// Where the published tree goes once the local publish made it visible here.
    media: MediaStore,
    encoders: EncoderSelector,
}

impl Pipeline {
    /// A pipeline publishing into the data directory `layout`.
    pub fn new(settings: Settings, layout: Layout, encoders: EncoderSelector) -> Self {
        Self {
            settings,
            media: MediaStore::local(layout.clone()),
            layout,
            encoders,
        }
    }

    /// Publishes into `media` (a bucket, with its layout as the working copy).
    pub fn with_media(mut self, media: MediaStore) -> Self {
        self.layout = media.layout().clone();
        self.media = media;
        self
    }

    /// The media store this pipeline publishes into.
    pub fn media(&self) -> &MediaStore {
        &self.media
    }

    /// The length of the segments it writes.
    pub fn segment_secs(&self) -> u32 {
        self.settings.segment_secs
    }

    /// Probes a source through the allow-lists and checks it against the limits (uploads and
    /// imports are checked before a job exists; a job checks again before it encodes).
    pub async fn probe(&self, source: Source<'_>) -> Result<SourceInfo, ProbeError> {
        let info = probe::probe(&self.settings.ffprobe, source).await?;
        self.settings.limits.check(&info)?;
        Ok(info)
    }

    /// The ladder ffmpeg command this pipeline would run for `source` into `out_dir`
    /// (benchmarks compare the pipeline against the bare command).
    pub async fn ladder_command(
        &self,
        source: &Path,
        out_dir: &Path,
        pref: EncoderPreference,
    ) -> Result<Vec<std::ffi::OsString>, PipelineError> {
        let source = Source::File(source);
        let info = probe::probe(&self.settings.ffprobe, source).await?;
        let outputs = self.outputs(&info, false);
        let rungs = outputs.video.clone();
        let separate = !outputs.audio.is_empty();
        let selected = self.encoders.select(pref, &info, rungs.len()).await;
        let interval = thumbnails::interval(info.duration, self.settings.storyboard_tiles, 1.0);
        let pattern = out_dir.join("sb_%04d.jpg");
        let plan = EncodePlan {
            source: &info,
            rungs: &rungs,
            encoder: &selected.encoder,
            segment_secs: self.settings.segment_secs,
            storyboard: Some(Storyboard {
                interval,
                tile_width: 160,
                cols: 10,
                rows: 10,
                pattern: &pattern,
            }),
            resume: None,
            separate_audio: separate,
        };
        Ok(ffmpeg::ladder_args(&plan, source, out_dir))
    }

    /// Runs `job` to publication. A failure withdraws what a growing publish made visible (a
    /// half video must not stay up as if it were whole); a cancellation leaves that to its
    /// canceller (a deleted video is unpublished, a taken-over one continues elsewhere).
    pub async fn run(
        &self,
        job: &Job<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<Published, PipelineError> {
        let result = self.run_steps(job, events, cancel).await;
        if let Err(error) = &result {
            if self.settings.publish_while_encoding && !matches!(error, PipelineError::Cancelled) {
                events.withdrawing().await;
                self.withdraw(job.video).await;
            }
        }
        result
    }

    /// Removes what a growing publish of `video` made visible, if this pipeline publishes
    /// while it encodes: the attempt failed for good, and a half video must not stay up.
    pub async fn withdraw(&self, video: &VideoId) {
        if !self.settings.publish_while_encoding {
            return;
        }
        if let Err(e) = growing::remove_media(&self.layout, video) {
            tracing::warn!(error = %e, "cannot withdraw the published segments");
        }
        if let Err(e) = self.media.withdraw(video).await {
            tracing::warn!(error = %e, "cannot withdraw the published segments from the bucket");
        }
    }

    async fn run_steps(
        &self,
        job: &Job<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<Published, PipelineError> {
        let s = &self.settings;
        events.stage(Stage::Probe);
        let info = self
            .probe(job.source)
            .await
            .map_err(PipelineError::job_probe)?;
        events.progress(Stage::Probe.overall(1.0));
        let work = WorkDir::create(&self.layout, job.video)?;

        events.stage(Stage::Thumbnail);
        self.poster(job, &info, &work, cancel).await?;
        events.thumbnail_ready();
        events.progress(Stage::Thumbnail.overall(1.0));
        let (subtitles, skipped_subtitles) = subtitles::tracks::collect(
            &s.ffmpeg,
            job.source,
            &info.subtitles,
            &work.path().join("subtitles"),
            &self.layout,
            job.video,
            s.segment_secs,
        )
        .await;

        events.stage(Stage::Encode);
        let passthrough = job.profile == Profile::Passthrough && ffmpeg::can_passthrough(&info);
        let outputs = self.outputs(&info, passthrough);
        let all = outputs.all();
        let interval = thumbnails::interval(info.duration, s.storyboard_tiles, 1.0);
        std::fs::create_dir_all(work.path().join("frames"))?;
        let sheet_pattern = work.path().join("frames").join("sb_%04d.jpg");
        let storyboard = Storyboard {
            interval,
            tile_width: 160,
            cols: 10,
            rows: 10,
            pattern: &sheet_pattern,
        };
        let (encoder_name, growing) = if passthrough {
            for out in &all {
                // Unlike the ladder's, this output's directories are not made by ffmpeg.
                std::fs::create_dir_all(work.hls().join(&out.name))?;
            }
            let args = ffmpeg::passthrough_args(
                &info,
                s.segment_secs,
                job.source,
                &work.hls(),
                &all[0].name,
                !outputs.audio.is_empty(),
            );
            self.run_ffmpeg(args, info.duration, events, cancel).await?;
            self.run_ffmpeg(
                ffmpeg::storyboard_args(job.source, &storyboard),
                0.0,
                events,
                cancel,
            )
            .await?;
            ("copy".to_owned(), None)
        } else {
            let encoded = self
                .encode(
                    job,
                    &info,
                    &outputs,
                    &subtitles,
                    &work,
                    &storyboard,
                    events,
                    cancel,
                )
                .await?;
            (encoded.encoder, encoded.growing)
        };

        events.stage(Stage::Publish);
        // From here on the work directory is being published (segments encrypted in place,
        // or the last of them copied out): a later attempt must not resume from it.
        resume::forget(work.path())?;
        self.media.forget_attempt(job.video, work.path()).await?;
        let checks = publish::verify(
            &work.hls(),
            &all,
            info.duration,
            s.segment_secs,
            !passthrough,
        )?;
        // The uploaded files as this machine has them (with a bucket, as the job found them);
        // one added or deleted since is brought in once the job is recorded
        // (`jobs::subtitle_files::after_publish`).
        let mut subtitles: subtitles::tracks::Renditions = subtitles
            .into_iter()
            .filter(|(r, _)| r.source == "embedded")
            .collect();
        subtitles.extend(subtitles::tracks::uploaded(&self.layout, job.video));
        let rates = match growing {
            Some(mut growing) => {
                subtitles::tracks::write_all(
                    &subtitles,
                    &self.layout.video_dir(job.video),
                    info.duration,
                    s.segment_secs,
                )?;
                growing.set_subtitles(subtitles.iter().map(|(r, _)| r.media()).collect());
                let rates = growing.finish(&work.hls(), &checks).await?;
                self.storyboard_sheets(&work, &storyboard, events, cancel)
                    .await?;
                self.storyboard_vtt(&work, info.duration, interval).await?;
                if cancel.is_fired() {
                    return Err(PipelineError::Cancelled);
                }
                publish::publish_thumbs(&work, &self.layout, job.video)?;
                rates
            }
            None => {
                subtitles::tracks::write_all(
                    &subtitles,
                    &work.hls(),
                    info.duration,
                    s.segment_secs,
                )?;
                self.publish_all(
                    job,
                    &info,
                    &outputs,
                    &subtitles,
                    &checks,
                    &work,
                    &storyboard,
                    interval,
                    events,
                    cancel,
                )
                .await?
            }
        };
        // A bucket gets the tree in publishing order, the marker last; the job is complete
        // only once that is done.
        self.media.push_video(job.video, Phase::Final).await?;
        resume::clean_other_attempts(&self.layout, job.video, work.path());
        if let Err(error) = self.media.drop_attempts(job.video).await {
            tracing::warn!(%error, "cannot remove resume checkpoints from the bucket");
        }
        events.progress(100.0);
        events.stage(Stage::Done);
        Ok(Published {
            duration: info.duration,
            encoder: encoder_name,
            rungs: outputs
                .video
                .iter()
                .zip(&checks)
                .zip(&rates)
                .map(|((rung, check), rates)| PublishedRung {
                    name: rung.name.clone(),
                    width: rung.width,
                    height: rung.height,
                    bandwidth: rates.peak,
                    average_bandwidth: rates.average,
                    segments: check.segments.len(),
                })
                .collect(),
            audio: published_audio(&info, &outputs),
            subtitles: subtitles
                .into_iter()
                .map(|(r, _)| r)
                .filter(|r| r.source == "embedded")
                .collect(),
            skipped_subtitles,
        })
    }

    /// What the encode writes for `info`: the ladder (or the copied source), with the audio
    /// muxed in or as separate renditions.
    fn outputs(&self, info: &SourceInfo, passthrough: bool) -> Outputs {
        let s = &self.settings;
        let (w, h) = info.display_size();
        let video = if passthrough {
            vec![source_rung(w, h)]
        } else {
            ladder::select_with_source(&s.ladder, w, h, s.source_rung)
        };
        if s.audio_layout.separate(&info.audio) {
            Outputs::separate(video, info.audio.clone())
        } else {
            Outputs::muxed(video)
        }
    }

    /// All at once: every output encrypted in place, the master, the storyboard, then one
    /// rename of the whole tree. Returns each output's measured rates.
    #[allow(clippy::too_many_arguments)]
    async fn publish_all(
        &self,
        job: &Job<'_>,
        info: &SourceInfo,
        outputs: &Outputs,
        subtitles: &subtitles::tracks::Renditions,
        checks: &[publish::RungCheck],
        work: &WorkDir,
        storyboard: &Storyboard<'_>,
        interval: f64,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<Vec<encrypt::Rates>, PipelineError> {
        let s = &self.settings;
        let mut rates = Vec::with_capacity(checks.len());
        let mut codecs = Vec::with_capacity(checks.len());
        for (out, check) in outputs.all().iter().zip(checks) {
            let dir = work.hls().join(&out.name);
            codecs.push(probe::codecs(&s.ffprobe, &dir.join(&check.segments[0].uri)).await?);
            rates.push(
                encrypt::encrypt_rung(
                    &out.name,
                    &dir.join(ffmpeg::VARIANT),
                    &check.segments,
                    &work.keys().join(format!("{}.key", out.name)),
                    s.segment_secs,
                )
                .await?,
            );
        }
        let media: Vec<_> = subtitles.iter().map(|(r, _)| r.media()).collect();
        let master = outputs.master(&rates, &codecs, info.fps, &media);
        std::fs::write(work.hls().join(ffmpeg::MASTER), master)?;
        self.storyboard_sheets(work, storyboard, events, cancel)
            .await?;
        self.storyboard_vtt(work, info.duration, interval).await?;
        if cancel.is_fired() {
            return Err(PipelineError::Cancelled);
        }
        publish::publish(work, &self.layout, job.video)?;
        Ok(rates)
    }
}

/// The single rung of the copy path: the source's own size; rates are measured after.
fn source_rung(w: u32, h: u32) -> Rung {
    Rung {
        name: "source".into(),
        width: w,
        height: h,
        video_kbps: 0,
        maxrate_kbps: 0,
        bufsize_kbps: 0,
        audio_kbps: 0,
    }
}
