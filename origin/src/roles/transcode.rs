//! `origin transcode FILE`: the pipeline once, on one file, without a job store (operations
//! and benchmarks); or only the ladder command it would run.

use std::ffi::OsString;
use std::path::Path;

use shared::media::VideoId;

use super::{media_store, pipeline, StartupError};
use crate::config::MediaSettings;
use crate::transcode::encoder::EncoderPreference;
use crate::transcode::input::Source;
use crate::transcode::pipeline::{Events, Job, Profile, Published};
use crate::transcode::progress::Stage;

/// Transcodes `file` into `<data>/hls/<id>`.
pub async fn run(
    media: &MediaSettings,
    file: &Path,
    id: &VideoId,
    profile: Profile,
    encoder: EncoderPreference,
) -> Result<Published, StartupError> {
    let store = media_store(media).await?;
    let pipeline = pipeline(media, &store).await;
    let job = Job {
        video: id,
        source: Source::File(file),
        profile,
        encoder,
    };
    // Nobody cancels a one-off run: the trigger is dropped, so it never fires.
    let (_, mut cancel) = shared::shutdown::channel();
    Ok(pipeline.run(&job, &LogEvents, &mut cancel).await?)
}

/// The ladder ffmpeg command the pipeline would run for `file` into `out`.
pub async fn ladder_command(
    media: &MediaSettings,
    file: &Path,
    out: &Path,
    encoder: EncoderPreference,
) -> Result<Vec<OsString>, StartupError> {
    let store = media_store(media).await?;
    let pipeline = pipeline(media, &store).await;
    Ok(pipeline.ladder_command(file, out, encoder).await?)
}

/// Progress to the log.
struct LogEvents;

impl Events for LogEvents {
    fn stage(&self, stage: Stage) {
        tracing::info!(stage = stage.as_str(), "stage");
    }
    fn progress(&self, percent: f64) {
        tracing::debug!(percent, "progress");
    }
    fn thumbnail_ready(&self) {
        tracing::info!("thumbnail ready");
    }
}
