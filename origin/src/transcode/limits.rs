//! How large a source may be, checked on its probe before a job exists: a small file can
//! describe a huge decode (a 16000x16000 frame, ten hours of 4K), and every one of those
//! frames would be decoded, scaled and encoded by the workers.

use serde::Deserialize;

use super::probe::{ProbeError, SourceInfo};

/// `[limits]`: the largest source accepted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaLimits {
    /// Widest coded frame, pixels. Default 8192.
    pub max_width: u32,
    /// Tallest coded frame, pixels. Default 8192.
    pub max_height: u32,
    /// Most pixels in one frame. Default 35389440 (8192x4320, 8K).
    pub max_pixels: u64,
    /// Highest frame rate, frames per second. Default 240.
    pub max_fps: f64,
    /// Longest duration, seconds. Default 21600 (6 h).
    pub max_duration_secs: f64,
    /// Most streams in the container (video, audio, subtitles, data). Default 32.
    pub max_streams: usize,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 8192 * 4320,
            max_fps: 240.0,
            max_duration_secs: 6.0 * 3600.0,
            max_streams: 32,
        }
    }
}

impl MediaLimits {
    /// Problems with the limits themselves (for `validate()`).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_width == 0 || self.max_height == 0 || self.max_pixels == 0 {
            out.push("limits.max_width, max_height and max_pixels must be above 0".into());
        }
        if !(self.max_fps > 0.0 && self.max_fps.is_finite()) {
            out.push("limits.max_fps must be a positive number".into());
        }
        if !(self.max_duration_secs > 0.0 && self.max_duration_secs.is_finite()) {
            out.push("limits.max_duration_secs must be a positive number".into());
        }
        if self.max_streams == 0 {
            out.push("limits.max_streams must be at least 1".into());
        }
        out
    }

    /// The first limit `info` exceeds, named so the uploader knows what to change.
    pub fn check(&self, info: &SourceInfo) -> Result<(), ProbeError> {
        let refuse = |what: String| Err(ProbeError::Limit(what));
        if info.width > self.max_width {
            return refuse(format!(
                "the video is {} pixels wide; the limit is {} (limits.max_width)",
                info.width, self.max_width
            ));
        }
        if info.height > self.max_height {
            return refuse(format!(
                "the video is {} pixels tall; the limit is {} (limits.max_height)",
                info.height, self.max_height
            ));
        }
        let pixels = u64::from(info.width) * u64::from(info.height);
        if pixels > self.max_pixels {
            return refuse(format!(
                "a frame has {pixels} pixels; the limit is {} (limits.max_pixels)",
                self.max_pixels
            ));
        }
        if info.fps > self.max_fps {
            return refuse(format!(
                "the frame rate is {:.2} fps; the limit is {} (limits.max_fps)",
                info.fps, self.max_fps
            ));
        }
        if info.duration > self.max_duration_secs {
            return refuse(format!(
                "the video lasts {:.0} s; the limit is {:.0} s (limits.max_duration_secs)",
                info.duration, self.max_duration_secs
            ));
        }
        if info.streams > self.max_streams {
            return refuse(format!(
                "the file has {} streams; the limit is {} (limits.max_streams)",
                info.streams, self.max_streams
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(width: u32, height: u32, fps: f64, duration: f64, streams: usize) -> SourceInfo {
        SourceInfo {
            duration,
            width,
            height,
            rotation: 0,
            fps,
            video_codec: "h264".into(),
            format: "mov".into(),
            streams,
            audio: Vec::new(),
            subtitles: Vec::new(),
        }
    }

    #[test]
    fn each_limit_is_named() {
        let l = MediaLimits::default();
        assert_eq!(l.check(&info(3840, 2160, 60.0, 7200.0, 3)), Ok(()));
        let named = |i: SourceInfo, name: &str| match l.check(&i) {
            Err(ProbeError::Limit(m)) => assert!(m.contains(name), "{m}"),
            other => panic!("{name}: {other:?}"),
        };
        named(info(16000, 16000, 1.0, 1.0, 1), "limits.max_width");
        named(info(1080, 9000, 30.0, 1.0, 1), "limits.max_height");
        named(info(8192, 8192, 30.0, 1.0, 1), "limits.max_pixels");
        named(info(640, 360, 1000.0, 1.0, 1), "limits.max_fps");
        named(
            info(3840, 2160, 0.01, 36000.0, 1),
            "limits.max_duration_secs",
        );
        named(info(640, 360, 30.0, 1.0, 33), "limits.max_streams");
        assert!(l.problems().is_empty());
        let zero = MediaLimits {
            max_streams: 0,
            max_fps: f64::NAN,
            ..MediaLimits::default()
        };
        assert_eq!(zero.problems().len(), 2);
    }
}
