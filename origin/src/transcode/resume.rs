//! Crash-resume for ladder encodes: a new attempt starts from the last segment every rung of a
//! previous attempt completed, instead of from zero.
//!
//! The checkpoint is the work directory itself, on the media store every worker shares: ffmpeg
//! writes segments in order and renames each into place only once it is whole (`temp_file`),
//! so in each rung every `segment_NNN.ts` is complete. A new attempt finds the previous attempt's directory
//! (same video, same rungs, same segment length, same source size, recorded in
//! [`MANIFEST`]), hard-links the first `k` segments of every rung (so they survive the old
//! directory's removal and are never encoded again), and encodes from `k * segment_secs` with
//! keyframes still on segment boundaries. Its audio starts where the reused segments' audio
//! ends, measured from the last reused segment, so the seam has neither overlap nor gap
//! (see [`super::ffmpeg::Resume`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::media::{Layout, VideoId};

use super::ffmpeg::{self, Resume};
use super::ladder::Rung;
use super::probe::{self, ProbeError};

/// What an attempt is encoding, written into its work directory before ffmpeg starts.
pub const MANIFEST: &str = "encode.json";

/// The output timeline of the encodes this version writes. Version 1 (no field) let ffmpeg
/// shift each output by its audio priming or B-frame delay: its segments do not line up with
/// what this version encodes, so they are not resumed. Version 2 wrote segments under their
/// final name while encoding them, so the newest file of a crashed attempt could be partial;
/// since version 3 (`temp_file`) every segment file is whole.
const TIMELINE: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodeManifest {
    pub rungs: Vec<String>,
    pub segment_secs: u32,
    pub source_bytes: u64,
    pub timeline: u32,
}

/// Withdraws `work_dir` as a resume candidate (its segments are about to be encrypted).
pub fn forget(work_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(work_dir.join(MANIFEST)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where a resumed encode starts.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    /// Segments 0..segment are reused.
    pub segment: u32,
    /// `segment * segment_secs`.
    pub seconds: f64,
    from: PathBuf,
}

impl EncodeManifest {
    pub fn new(rungs: &[Rung], segment_secs: u32, source_bytes: u64) -> Self {
        Self {
            rungs: rungs.iter().map(|r| r.name.clone()).collect(),
            segment_secs,
            source_bytes,
            timeline: TIMELINE,
        }
    }

    /// Whether `bytes` is a manifest equal to this one: an attempt that encoded the same
    /// outputs of the same source the same way, which this one can continue.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        serde_json::from_slice::<EncodeManifest>(bytes)
            .ok()
            .as_ref()
            == Some(self)
    }

    /// Records this manifest in `work_dir`.
    pub fn write(&self, work_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(work_dir.join(MANIFEST), json)
    }
}

/// The best earlier attempt of `video` to resume from, if any has complete segments.
pub fn find(
    layout: &Layout,
    video: &VideoId,
    manifest: &EncodeManifest,
    current: &Path,
) -> Option<ResumePoint> {
    let prefix = format!("{video}-");
    let entries = std::fs::read_dir(layout.tmp_root()).ok()?;
    let mut best: Option<ResumePoint> = None;
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name();
        if dir == current || !name.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let Ok(bytes) = std::fs::read(dir.join(MANIFEST)) else {
            continue;
        };
        if !manifest.accepts(&bytes) {
            continue;
        }
        let complete = manifest
            .rungs
            .iter()
            .map(|rung| count_segments(&dir.join("hls").join(rung)))
            .min()
            .unwrap_or(0);
        if complete > 0 && best.as_ref().is_none_or(|b| complete > b.segment) {
            best = Some(ResumePoint {
                segment: complete,
                seconds: f64::from(complete) * f64::from(manifest.segment_secs),
                from: dir,
            });
        }
    }
    best
}

impl ResumePoint {
    /// Where the resumed encode starts: the video at [`Self::seconds`], each rung's audio where
    /// the audio of its last reused segment ends (a rung whose last reused segment has no
    /// audio: at [`Self::seconds`] too).
    pub async fn measure(&self, ffprobe: &Path, rungs: &[Rung]) -> Result<Resume, ProbeError> {
        let last = segment_name(self.segment - 1);
        let mut audio_from = Vec::with_capacity(rungs.len());
        for rung in rungs {
            let segment = self.from.join("hls").join(&rung.name).join(&last);
            let end = probe::audio_end(ffprobe, &segment).await?;
            audio_from.push(end.map_or(self.seconds, |end| end - ffmpeg::TS_ORIGIN));
        }
        Ok(Resume {
            segment: self.segment,
            seconds: self.seconds,
            audio_from,
        })
    }
}

/// Consecutive `segment_NNN.ts` files from 0.
fn count_segments(rung_dir: &Path) -> u32 {
    (0..)
        .take_while(|i| rung_dir.join(segment_name(*i)).is_file())
        .count() as u32
}

pub fn segment_name(i: u32) -> String {
    format!("segment_{i:03}.ts")
}

/// Hard-links the reused segments into the new attempt's `hls` directory.
pub fn adopt(point: &ResumePoint, rungs: &[Rung], hls: &Path) -> std::io::Result<()> {
    for rung in rungs {
        let to = hls.join(&rung.name);
        std::fs::create_dir_all(&to)?;
        for i in 0..point.segment {
            let name = segment_name(i);
            std::fs::hard_link(
                point.from.join("hls").join(&rung.name).join(&name),
                to.join(&name),
            )?;
        }
    }
    Ok(())
}

/// The full variant playlist: the reused segments followed by what the resumed run wrote
/// (which numbers its segments, and its media sequence, from `point.segment`).
pub fn stitch(point: &ResumePoint, segment_secs: u32, resumed: &str) -> String {
    let mut out = String::with_capacity(resumed.len() + point.segment as usize * 40);
    let mut inserted = false;
    for line in resumed.lines() {
        if line.starts_with("#EXT-X-MEDIA-SEQUENCE:") {
            out.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
            continue;
        }
        if !inserted && line.starts_with("#EXTINF:") {
            for i in 0..point.segment {
                out.push_str(&format!(
                    "#EXTINF:{segment_secs}.000000,\n{}\n",
                    segment_name(i)
                ));
            }
            inserted = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Removes every other work directory of `video` (after a successful publish).
pub fn clean_other_attempts(layout: &Layout, video: &VideoId, current: &Path) {
    let prefix = format!("{video}-");
    let Ok(entries) = std::fs::read_dir(layout.tmp_root()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir != current && entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::ladder::{default_ladder, select};

    #[test]
    fn finds_the_longest_common_prefix_of_complete_segments_and_stitches() {
        let base = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(base.path());
        layout.ensure().expect("layout");
        let video: VideoId = "v".parse().expect("id");
        let rungs = select(&default_ladder(), 640, 360);
        let manifest = EncodeManifest::new(&rungs, 2, 1000);
        let old = layout.tmp_root().join("v-old");
        std::fs::create_dir_all(&old).expect("mkdir");
        manifest.write(&old).expect("manifest");
        // 360p has 5 segments, 240p 2: resume from segment 2.
        for (rung, n) in [("360p", 5), ("240p", 2)] {
            let d = old.join("hls").join(rung);
            std::fs::create_dir_all(&d).expect("mkdir");
            for i in 0..n {
                std::fs::write(d.join(segment_name(i)), b"ts").expect("write");
            }
        }
        let current = layout.tmp_root().join("v-new");
        let point = find(&layout, &video, &manifest, &current).expect("resumable");
        assert_eq!((point.segment, point.seconds), (2, 4.0));
        let other = EncodeManifest::new(&rungs, 6, 1000);
        assert!(
            find(&layout, &video, &other, &current).is_none(),
            "different segment length"
        );
        let mut earlier = serde_json::to_value(&manifest).expect("json");
        earlier.as_object_mut().expect("object").remove("timeline");
        std::fs::write(old.join(MANIFEST), earlier.to_string()).expect("write");
        assert!(
            find(&layout, &video, &manifest, &current).is_none(),
            "segments on the timeline ffmpeg shifted are not resumed"
        );
        manifest.write(&old).expect("manifest");

        adopt(&point, &rungs, &current.join("hls")).expect("adopt");
        assert!(current.join("hls/240p/segment_001.ts").is_file());
        assert!(!current.join("hls/240p/segment_002.ts").exists());

        let resumed = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:2\n#EXTINF:2.000000,\nsegment_002.ts\n#EXTINF:1.5,\nsegment_003.ts\n#EXT-X-ENDLIST\n";
        let full = stitch(&point, 2, resumed);
        let segs = crate::transcode::playlist::segments(&full);
        assert_eq!(
            segs.iter().map(|s| s.uri.as_str()).collect::<Vec<_>>(),
            [
                "segment_000.ts",
                "segment_001.ts",
                "segment_002.ts",
                "segment_003.ts"
            ]
        );
        assert_eq!(crate::transcode::playlist::media_sequence(&full), 0);

        forget(&old).expect("forget");
        assert!(
            find(&layout, &video, &manifest, &current).is_none(),
            "a publishing attempt is never resumed"
        );

        clean_other_attempts(&layout, &video, &current);
        assert!(!old.exists());
    }
}
