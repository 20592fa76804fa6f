//! Poster frame and scrubbing storyboard (sprite sheets + a WebVTT track with `#xywh=`
//! fragments, the format hls.js-based players and Mux use).

use std::fmt::Write;

/// When to take the poster: 1 s in, or 10 % into clips shorter than 10 s (avoids the black
/// first frame without falling off the end of a short clip).
pub fn poster_time(duration: f64) -> f64 {
    if duration >= 10.0 {
        1.0
    } else {
        duration * 0.1
    }
}

/// Storyboard geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Seconds between thumbnails.
    pub interval: f64,
    pub cols: u32,
    pub rows: u32,
    pub tile_width: u32,
    pub tile_height: u32,
}

/// One thumbnail every `duration / target` seconds (at least `min_interval`), so long videos
/// do not produce thousands of tiles.
pub fn interval(duration: f64, target_tiles: u32, min_interval: f64) -> f64 {
    let raw = duration / f64::from(target_tiles.max(1));
    (raw.max(min_interval) * 10.0).ceil() / 10.0
}

/// The WebVTT track pointing into sheets named by `sheet_name(index)` (index from 1, as
/// ffmpeg's `%02d` pattern numbers them).
pub fn storyboard_vtt(duration: f64, grid: &Grid, sheet_name: impl Fn(u32) -> String) -> String {
    let per_sheet = grid.cols * grid.rows;
    let tiles = (duration / grid.interval).ceil().max(1.0) as u32;
    let mut out = String::from("WEBVTT\n\n");
    for i in 0..tiles {
        let start = f64::from(i) * grid.interval;
        let end = (start + grid.interval).min(duration);
        let sheet = i / per_sheet + 1;
        let cell = i % per_sheet;
        let x = (cell % grid.cols) * grid.tile_width;
        let y = (cell / grid.cols) * grid.tile_height;
        let _ = write!(
            out,
            "{} --> {}\n{}#xywh={x},{y},{},{}\n\n",
            vtt_time(start),
            vtt_time(end),
            sheet_name(sheet),
            grid.tile_width,
            grid.tile_height
        );
    }
    out
}

/// A WebVTT timestamp (`hh:mm:ss.mmm`); negative times are 0.
pub(crate) fn vtt_time(secs: f64) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poster_time_for_short_and_long_clips() {
        assert_eq!(poster_time(60.0), 1.0);
        assert!((poster_time(4.0) - 0.4).abs() < 1e-9);
    }

    #[test]
    fn intervals_scale_with_duration() {
        assert_eq!(interval(60.0, 100, 1.0), 1.0);
        assert_eq!(interval(7200.0, 100, 1.0), 72.0);
        assert_eq!(interval(61.0, 100, 1.0), 1.0);
    }

    #[test]
    fn vtt_cues_walk_the_grid_across_sheets() {
        let grid = Grid {
            interval: 2.0,
            cols: 2,
            rows: 2,
            tile_width: 160,
            tile_height: 90,
        };
        let vtt = storyboard_vtt(9.0, &grid, |n| format!("storyboard_{n:02}.jpg"));
        assert!(vtt.starts_with(
            "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nstoryboard_01.jpg#xywh=0,0,160,90\n"
        ));
        assert!(
            vtt.contains("00:00:06.000 --> 00:00:08.000\nstoryboard_01.jpg#xywh=160,90,160,90\n")
        );
        assert!(vtt.contains("00:00:08.000 --> 00:00:09.000\nstoryboard_02.jpg#xywh=0,0,160,90\n"));
        assert_eq!(vtt.matches("-->").count(), 5);
    }
}
