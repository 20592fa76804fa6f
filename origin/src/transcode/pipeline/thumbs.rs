//! The pipeline's thumbnails: the poster (first, published at once) and the storyboard's
//! sprite sheets and WebVTT track (after the encode that wrote its frames).

use super::runner::NoEvents;
use super::{Cancel, Events, Job, Pipeline, PipelineError};
use crate::transcode::ffmpeg::{self, Storyboard};
use crate::transcode::probe::{self, SourceInfo};
use crate::transcode::publish::WorkDir;
use crate::transcode::thumbnails;

impl Pipeline {
    /// The poster at 1 s (10 % into short clips), published at once.
    pub(super) async fn poster(
        &self,
        job: &Job<'_>,
        info: &SourceInfo,
        work: &WorkDir,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        let (w, _) = info.display_size();
        let tmp = work.path().join("poster.jpg");
        let args = ffmpeg::poster_args(
            job.source,
            thumbnails::poster_time(info.duration),
            w.min(self.settings.poster_width),
            &tmp,
        );
        self.run_ffmpeg(args, 0.0, &NoEvents, cancel).await?;
        // The poster is shown while the job runs, so it is published at once (atomically).
        let dir = self.layout.thumbs_dir(job.video);
        std::fs::create_dir_all(&dir)?;
        std::fs::rename(&tmp, dir.join("poster.jpg"))?;
        self.media
            .push_files(&[format!("thumbs/{}/poster.jpg", job.video)])
            .await?;
        Ok(())
    }

    /// Tiles the storyboard frames into sprite sheets (a cheap pass over small JPEGs).
    pub(super) async fn storyboard_sheets(
        &self,
        work: &WorkDir,
        storyboard: &Storyboard<'_>,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        let frames = work.path().join("frames");
        if !frames.join("sb_0001.jpg").exists() {
            return Ok(());
        }
        let sheets = work.thumbs().join("storyboard_%02d.jpg");
        self.run_ffmpeg(ffmpeg::tile_args(storyboard, &sheets), 0.0, events, cancel)
            .await?;
        std::fs::remove_dir_all(frames)?;
        Ok(())
    }

    /// The WebVTT track pointing at the sheets' tiles (`#xywh=`).
    pub(super) async fn storyboard_vtt(
        &self,
        work: &WorkDir,
        duration: f64,
        interval: f64,
    ) -> Result<(), PipelineError> {
        let first = work.thumbs().join("storyboard_01.jpg");
        if !first.exists() {
            return Ok(());
        }
        let sheet = probe::image_size(&self.settings.ffprobe, &first).await?;
        let grid = thumbnails::Grid {
            interval,
            cols: 10,
            rows: 10,
            tile_width: sheet.0 / 10,
            tile_height: sheet.1 / 10,
        };
        let vtt = thumbnails::storyboard_vtt(duration, &grid, |n| format!("storyboard_{n:02}.jpg"));
        std::fs::write(work.thumbs().join("storyboard.vtt"), vtt)?;
        Ok(())
    }
}
