//! What a job is given and what it reports: the pipeline's settings, the job's inputs, the
//! events it emits while it runs and the published result.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use shared::media::VideoId;

use crate::transcode::encoder::EncoderPreference;
use crate::transcode::input::Source;
use crate::transcode::ladder::{self, RungSpec};
use crate::transcode::limits::MediaLimits;
use crate::transcode::probe::SourceInfo;
use crate::transcode::progress::Stage;
use crate::transcode::renditions::Outputs;
use crate::transcode::subtitles::tracks::{SkippedTrack, SubtitleRendition};
use crate::transcode::tracks;

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
    /// Publish the ladder segment by segment while it encodes ([`super::growing`]), instead
    /// of all at once at the end.
    pub publish_while_encoding: bool,
    /// Whether a source between two rungs also gets a rung at its own size.
    pub source_rung: ladder::SourceRung,
    /// Whether audio tracks are muxed into the rungs or separate renditions.
    pub audio_layout: tracks::AudioLayout,
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
    /// Every rung has its first segment published: the video can be watched while it encodes.
    fn playable(&self) {}
    /// What a growing publish made visible is about to be withdrawn. Resolves once the job no
    /// longer says it is playable, so that nothing points players at media being deleted.
    fn withdrawing(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// Cancels a running job (delete, a lost lease): its ffmpeg is killed and nothing is published.
pub type Cancel = shared::shutdown::Switch;

/// The result of a published job.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    pub duration: f64,
    pub encoder: String,
    /// The video rungs, largest first.
    pub rungs: Vec<PublishedRung>,
    /// The audio tracks: separate renditions (`audio_N`), or the one muxed into the rungs.
    #[serde(default)]
    pub audio: Vec<PublishedAudio>,
    /// The source's subtitle tracks published as renditions (uploaded files are listed from
    /// the subtitle store).
    #[serde(default)]
    pub subtitles: Vec<SubtitleRendition>,
    /// Source subtitle tracks that could not be published, with the reason.
    #[serde(default)]
    pub skipped_subtitles: Vec<SkippedTrack>,
}

/// One published audio track.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishedAudio {
    /// Its rendition (`audio_0`), or `None` when it is muxed into the video rungs.
    pub id: Option<String>,
    pub language: String,
    pub name: String,
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

/// One job's inputs.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    pub video: &'a VideoId,
    pub source: Source<'a>,
    pub profile: Profile,
    pub encoder: EncoderPreference,
}

/// The audio tracks as published.
pub(super) fn published_audio(info: &SourceInfo, outputs: &Outputs) -> Vec<PublishedAudio> {
    if outputs.audio.is_empty() {
        return info
            .audio
            .first()
            .map(|t| PublishedAudio {
                id: None,
                language: t.language.clone(),
                name: t.name.clone(),
            })
            .into_iter()
            .collect();
    }
    outputs
        .audio
        .iter()
        .enumerate()
        .map(|(n, t)| PublishedAudio {
            id: Some(tracks::audio_rendition(n)),
            language: t.language.clone(),
            name: t.name.clone(),
        })
        .collect()
}
