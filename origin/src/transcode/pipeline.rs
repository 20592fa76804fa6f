//! One job, start to finish: probe, poster, encode (with the storyboard in the same decode),
//! verify, encrypt, master playlist, publish. Progress and the thumbnail are reported through
//! [`Events`] as they happen; nothing becomes visible before the final rename.
//!
//! Here: the job's steps in order. [`runner`] runs ffmpeg (progress, stalls, cancellation);
//! [`thumbs`] makes the poster and the storyboard's sheets and track.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shared::media::{Layout, VideoId};

use super::encoder::{EncoderPreference, EncoderSelector};
use super::ffmpeg::{self, EncodePlan, Encoder, Storyboard};
use super::ladder::{self, Rung, RungSpec};
use super::limits::MediaLimits;
use super::playlist::{self, Variant};
use super::probe::{self, ProbeError, SourceInfo};
use super::progress::Stage;
use super::publish::{self, WorkDir};
use super::resume::{self, EncodeManifest};
use super::{encrypt, thumbnails};

mod runner;
mod thumbs;

/// How a job turns its source into HLS.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The full adaptive ladder.
    #[default]
    Ladder,
    /// Copy the streams into one rendition without re-encoding (H.264/AAC sources only; others
    /// get the ladder).
    Passthrough,
}

/// Pipeline settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    pub ladder: Vec<RungSpec>,
    pub segment_secs: u32,
    /// An ffmpeg that reports no progress for this long is killed.
    pub stall_timeout: Duration,
    pub poster_width: u32,
    /// About this many storyboard tiles per video.
    pub storyboard_tiles: u32,
    /// The largest source accepted.
    pub limits: MediaLimits,
}

/// Receives what the pipeline reports while it runs.
pub trait Events: Send + Sync {
    /// A new stage began.
    fn stage(&self, stage: Stage);
    /// Whole-job percentage (0-100), unthrottled; the caller throttles.
    fn progress(&self, percent: f64);
    /// The poster is in place (`<data>/thumbs/<video>/poster.jpg`).
    fn thumbnail_ready(&self);
    /// The encode resumed an earlier attempt, reusing its first `segments` segments.
    fn resumed(&self, segments: u32) {
        let _ = segments;
    }
}

/// Cancels a running job (delete, a lost lease): its ffmpeg is killed and nothing is published.
pub type Cancel = shared::shutdown::Switch;

/// The result of a published job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub duration: f64,
    pub encoder: String,
    pub rungs: Vec<PublishedRung>,
}

/// One published rendition.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishedRung {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub segments: usize,
}

/// Why a job failed. `Display` is the full detail, for the log; what the video's owner is
/// shown is [`PipelineError::public_message`].
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source is not a usable video; retrying cannot help.
    #[error("{0}")]
    Invalid(#[from] ProbeError),
    /// `at`: how far into the source the encode had come (seconds), when known.
    #[error("ffmpeg failed ({status}) at {at:?} s: {stderr}")]
    Ffmpeg {
        status: String,
        stderr: String,
        at: Option<f64>,
    },
    #[error("ffmpeg made no progress for {after:?} (at {at:?} s) and was killed")]
    Stalled { after: Duration, at: Option<f64> },
    #[error("cancelled")]
    Cancelled,
    #[error("output failed verification: {0}")]
    Verify(#[from] publish::VerifyError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl PipelineError {
    /// The same failure, for a run whose clock started `offset` seconds into the source.
    pub fn later_by(self, offset: f64) -> Self {
        let shift = |at: Option<f64>| at.map(|t| t + offset);
        match self {
            PipelineError::Ffmpeg { status, stderr, at } => PipelineError::Ffmpeg {
                status,
                stderr,
                at: shift(at),
            },
            PipelineError::Stalled { after, at } => PipelineError::Stalled {
                after,
                at: shift(at),
            },
            other => other,
        }
    }

    /// What the video's owner is told: a short reason without server paths or ffmpeg's own
    /// output (those go to the log with the video id).
    pub fn public_message(&self) -> String {
        let at = |at: &Option<f64>| at.map_or(String::new(), |t| format!(" at {t:.1} s"));
        match self {
            PipelineError::Invalid(e) => e.to_string(),
            PipelineError::Ffmpeg { stderr, at: t, .. } if decode_failure(stderr) => {
                format!("the video stream could not be decoded{}", at(t))
            }
            PipelineError::Ffmpeg { at: t, .. } => format!("encoding failed{}", at(t)),
            PipelineError::Stalled { at: t, .. } => {
                format!(
                    "processing stopped making progress{} and was stopped",
                    at(t)
                )
            }
            PipelineError::Cancelled => "cancelled".into(),
            PipelineError::Verify(e) => format!("the encoded output is incomplete: {e}"),
            PipelineError::Io(_) => "an internal error stopped processing".into(),
        }
    }

    /// Whether another attempt may succeed. A source that probes but encodes short (a
    /// truncated file with its index first) fails verification the same way every time.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            PipelineError::Invalid(_) | PipelineError::Cancelled | PipelineError::Verify(_)
        )
    }
}

/// Whether ffmpeg's error output says the source itself could not be read.
fn decode_failure(stderr: &str) -> bool {
    [
        "Invalid data",
        "Error while decoding",
        "corrupt",
        "partial file",
        "End of file",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

/// Runs jobs.
#[derive(Clone)]
pub struct Pipeline {
    settings: Settings,
    layout: Layout,
    encoders: EncoderSelector,
}

/// One job's inputs.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub video: &'a VideoId,
    pub source: &'a Path,
    pub profile: Profile,
    pub encoder: EncoderPreference,
}

impl Pipeline {
    pub fn new(settings: Settings, layout: Layout, encoders: EncoderSelector) -> Self {
        Self {
            settings,
            layout,
            encoders,
        }
    }

    /// Probes a source through the allow-lists and checks it against the limits (uploads and
    /// imports are checked before a job exists; a job checks again before it encodes).
    pub async fn probe(&self, path: &Path) -> Result<SourceInfo, ProbeError> {
        let info = probe::probe(&self.settings.ffprobe, path).await?;
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
        let info = probe::probe(&self.settings.ffprobe, source).await?;
        let (w, h) = info.display_size();
        let rungs = ladder::select(&self.settings.ladder, w, h);
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
        };
        Ok(ffmpeg::ladder_args(&plan, source, out_dir))
    }

    /// Runs `job` to publication.
    pub async fn run(
        &self,
        job: &Job<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<Published, PipelineError> {
        let s = &self.settings;
        events.stage(Stage::Probe);
        let info = self.probe(job.source).await?;
        events.progress(Stage::Probe.overall(1.0));
        let work = WorkDir::create(&self.layout, job.video)?;

        events.stage(Stage::Thumbnail);
        self.poster(job, &info, &work, cancel).await?;
        events.thumbnail_ready();
        events.progress(Stage::Thumbnail.overall(1.0));

        events.stage(Stage::Encode);
        let (display_w, display_h) = info.display_size();
        let passthrough = job.profile == Profile::Passthrough && ffmpeg::can_passthrough(&info);
        let rungs = if passthrough {
            vec![source_rung(display_w, display_h)]
        } else {
            ladder::select(&s.ladder, display_w, display_h)
        };
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
        let encoder_name = if passthrough {
            // Unlike the ladder's `%v` outputs, ffmpeg does not create this directory itself.
            std::fs::create_dir_all(work.hls().join(&rungs[0].name))?;
            let args = ffmpeg::passthrough_args(
                &info,
                s.segment_secs,
                job.source,
                &work.hls(),
                &rungs[0].name,
            );
            self.run_ffmpeg(args, info.duration, events, cancel).await?;
            self.run_ffmpeg(
                ffmpeg::storyboard_args(job.source, &storyboard),
                0.0,
                events,
                cancel,
            )
            .await?;
            "copy".to_owned()
        } else {
            self.encode(job, &info, &rungs, &work, &storyboard, events, cancel)
                .await?
        };

        events.stage(Stage::Publish);
        // From here on segments are encrypted in place: a later attempt must not resume from
        // this directory, so it stops being a resume candidate before anything changes.
        resume::forget(work.path())?;
        let checks = publish::verify(
            &work.hls(),
            &rungs,
            info.duration,
            s.segment_secs,
            !passthrough,
        )?;
        let mut variants = Vec::with_capacity(rungs.len());
        let mut published = Vec::with_capacity(rungs.len());
        for (rung, check) in rungs.iter().zip(&checks) {
            let dir = work.hls().join(&rung.name);
            let codecs = probe::codecs(&s.ffprobe, &dir.join(&check.segments[0].uri)).await?;
            let key = encrypt::ContentKey::generate();
            std::fs::write(work.keys().join(format!("{}.key", rung.name)), key.0)?;
            // Encryption is CPU work on many files: off the async workers, so the job's lease
            // heartbeat (same task) keeps beating meanwhile.
            let files: Vec<(std::path::PathBuf, u64)> = check
                .segments
                .iter()
                .enumerate()
                .map(|(i, seg)| (dir.join(&seg.uri), check.media_sequence + i as u64))
                .collect();
            let sizes = tokio::task::spawn_blocking(move || {
                files
                    .iter()
                    .map(|(path, sequence)| {
                        encrypt::encrypt_file(&key, *sequence, path)?;
                        Ok(std::fs::metadata(path)?.len())
                    })
                    .collect::<std::io::Result<Vec<u64>>>()
            })
            .await
            .map_err(std::io::Error::other)??;
            let (mut peak, mut bytes, mut secs) = (0u64, 0u64, 0f64);
            for (seg, len) in check.segments.iter().zip(sizes) {
                bytes += len;
                secs += seg.duration;
                if seg.duration > 0.0 {
                    peak = peak.max((len as f64 * 8.0 / seg.duration) as u64);
                }
            }
            let variant_path = dir.join(ffmpeg::VARIANT);
            let text = std::fs::read_to_string(&variant_path)?;
            std::fs::write(
                &variant_path,
                playlist::with_key(&text, &playlist::key_placeholder(&rung.name)),
            )?;
            let average = if secs > 0.0 {
                (bytes as f64 * 8.0 / secs) as u64
            } else {
                0
            };
            variants.push(Variant {
                uri: format!("{}/{}", rung.name, ffmpeg::VARIANT),
                bandwidth: peak.max(average),
                average_bandwidth: average,
                width: rung.width,
                height: rung.height,
                codecs,
                frame_rate: info.fps,
            });
            published.push(PublishedRung {
                name: rung.name.clone(),
                width: rung.width,
                height: rung.height,
                bandwidth: peak.max(average),
                average_bandwidth: average,
                segments: check.segments.len(),
            });
        }
        std::fs::write(work.hls().join(ffmpeg::MASTER), playlist::master(&variants))?;
        self.storyboard_sheets(&work, &storyboard, events, cancel)
            .await?;
        self.storyboard_vtt(&work, info.duration, interval).await?;
        if cancel.is_fired() {
            return Err(PipelineError::Cancelled);
        }
        publish::publish(&work, &self.layout, job.video)?;
        resume::clean_other_attempts(&self.layout, job.video, work.path());
        events.progress(100.0);
        events.stage(Stage::Done);
        Ok(Published {
            duration: info.duration,
            encoder: encoder_name,
            rungs: published,
        })
    }

    /// The ladder encode; NVENC failing at run time falls back to libx264 once.
    #[allow(clippy::too_many_arguments)]
    async fn encode(
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
