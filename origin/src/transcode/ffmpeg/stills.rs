//! Still images from the source: the poster frame and the storyboard's frames and sheets.

use std::ffi::OsString;
use std::path::Path;

use super::{source_input, Args, Source, QUIET_WITH_PROGRESS};

/// Scrubbing thumbnails: one `tile_width`-wide frame every `interval` seconds, written as
/// single JPEGs to `pattern` (e.g. `frames/sb_%04d.jpg`) and tiled into sheets afterwards by
/// [`tile_args`]. Tiling inside the encode would hold the sheet back until the end of the
/// video, and ffmpeg reports no progress at all until every output has written something, so
/// a long encode would look stalled.
#[derive(Debug, Clone, Copy)]
pub struct Storyboard<'a> {
    pub interval: f64,
    pub tile_width: u32,
    pub cols: u32,
    pub rows: u32,
    pub pattern: &'a Path,
}

impl Storyboard<'_> {
    pub(super) fn filter(&self) -> String {
        format!("fps=1/{},scale={}:-2", self.interval, self.tile_width)
    }
}

/// A still frame at `at` seconds, scaled to `width` wide (`-2`: even height, aspect kept).
pub fn poster_args(input: Source<'_>, at: f64, width: u32, out: &Path) -> Vec<OsString> {
    let mut a = Args::default();
    a.push_all(QUIET_WITH_PROGRESS);
    a.push("-ss");
    a.push(format!("{at:.3}"));
    a.push_all(source_input(input));
    a.push_all(["-frames:v", "1", "-vf"]);
    a.push(format!("scale={width}:-2"));
    a.push_all(["-q:v", "3"]);
    a.push(out);
    a.0
}

/// Storyboard sprites alone (for the copy fast path, which decodes nothing otherwise).
pub fn storyboard_args(input: Source<'_>, sb: &Storyboard<'_>) -> Vec<OsString> {
    let mut a = Args::default();
    a.push_all(QUIET_WITH_PROGRESS);
    a.push_all(source_input(input));
    a.push("-vf");
    a.push(sb.filter());
    a.push_all(["-q:v", "5", "-fps_mode", "passthrough"]);
    a.push(sb.pattern);
    a.0
}

/// Tiles the storyboard frames of `sb` into `cols`x`rows` sheets written to `sheets`
/// (e.g. `storyboard_%02d.jpg`).
pub fn tile_args(sb: &Storyboard<'_>, sheets: &Path) -> Vec<OsString> {
    let mut a = Args::default();
    a.push_all(QUIET_WITH_PROGRESS);
    a.push_all(["-f", "image2", "-framerate", "1", "-i"]);
    a.push(sb.pattern);
    a.push("-vf");
    a.push(format!("tile={}x{}", sb.cols, sb.rows));
    a.push_all(["-q:v", "5", "-fps_mode", "passthrough"]);
    a.push(sheets);
    a.0
}
