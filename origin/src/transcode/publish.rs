//! Verify a finished work directory, then make it visible with renames.
//!
//! Everything is produced under `<data>/tmp/<work>/` (same filesystem as the served tree), so
//! publishing is a rename: a video is either absent or complete, never half there. Keys move
//! into `<data>/keys/<video>/` before the HLS tree moves into `<data>/hls/<video>/`, so a
//! published playlist never lacks its key.

use std::path::{Path, PathBuf};

use shared::media::{Layout, VideoId};

use super::ffmpeg::VARIANT;
use super::ladder::Rung;
use super::playlist;

/// A work directory under `<data>/tmp`, removed when dropped (success or failure).
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `<data>/tmp/<video>-<random>/` with `hls/`, `keys/` and `thumbs/` inside.
    pub fn create(layout: &Layout, video: &VideoId) -> std::io::Result<Self> {
        let mut nonce = [0u8; 6];
        shared::media::fill_random(&mut nonce);
        let tag: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = layout.tmp_root().join(format!("{video}-{tag}"));
        for sub in ["hls", "keys", "thumbs"] {
            std::fs::create_dir_all(path.join(sub))?;
        }
        Ok(Self { path })
    }

    pub fn hls(&self) -> PathBuf {
        self.path.join("hls")
    }

    pub fn keys(&self) -> PathBuf {
        self.path.join("keys")
    }

    pub fn thumbs(&self) -> PathBuf {
        self.path.join("thumbs")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, path = %self.path.display(), "cannot remove work directory");
            }
        }
    }
}

/// What verification measured for one rung.
#[derive(Debug, Clone, PartialEq)]
pub struct RungCheck {
    pub name: String,
    pub segments: Vec<playlist::Segment>,
}

/// A work directory that is not fit to publish.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("rung {0}: playlist missing")]
    NoPlaylist(String),
    #[error("rung {0}: no segments")]
    NoSegments(String),
    #[error("rung {rung}: segment {segment} missing or empty")]
    BadSegment { rung: String, segment: String },
    #[error("rung {rung}: playlist covers {covered:.1}s of a {duration:.1}s source")]
    Duration {
        rung: String,
        covered: f64,
        duration: f64,
    },
    /// Published playlists number their segments from 0 and each segment's IV is its number
    /// (RFC 8216 §5.2), so a playlist that starts elsewhere cannot be published as it is.
    #[error("rung {rung}: the playlist starts at media sequence {sequence}, not 0")]
    MediaSequence { rung: String, sequence: u64 },
    #[error("rung {rung}: {count} segments where about {expected} were expected")]
    SegmentCount {
        rung: String,
        count: usize,
        expected: usize,
    },
}

/// Checks every rung: playlist present, segments present and non-empty, durations adding up
/// to the source, segment count consistent with the segment length (`exact_cuts` when
/// keyframes were forced at every boundary; the copy path cuts where the source has them).
pub fn verify(
    hls: &Path,
    rungs: &[Rung],
    duration: f64,
    segment_secs: u32,
    exact_cuts: bool,
) -> Result<Vec<RungCheck>, VerifyError> {
    rungs
        .iter()
        .map(|rung| {
            let dir = hls.join(&rung.name);
            let text = std::fs::read_to_string(dir.join(VARIANT))
                .map_err(|_| VerifyError::NoPlaylist(rung.name.clone()))?;
            let sequence = playlist::media_sequence(&text);
            if sequence != 0 {
                return Err(VerifyError::MediaSequence {
                    rung: rung.name.clone(),
                    sequence,
                });
            }
            let segments = playlist::segments(&text);
            if segments.is_empty() {
                return Err(VerifyError::NoSegments(rung.name.clone()));
            }
            for s in &segments {
                let ok = !s.uri.contains('/')
                    && std::fs::metadata(dir.join(&s.uri))
                        .is_ok_and(|m| m.is_file() && m.len() > 0);
                if !ok {
                    return Err(VerifyError::BadSegment {
                        rung: rung.name.clone(),
                        segment: s.uri.clone(),
                    });
                }
            }
            let covered: f64 = segments.iter().map(|s| s.duration).sum();
            if (covered - duration).abs() > 1.0 + duration * 0.02 {
                return Err(VerifyError::Duration {
                    rung: rung.name.clone(),
                    covered,
                    duration,
                });
            }
            let expected = (duration / f64::from(segment_secs.max(1))).ceil() as usize;
            let count = segments.len();
            let consistent = if exact_cuts {
                count.abs_diff(expected) <= 1
            } else {
                count <= expected * 4 + 1
            };
            if !consistent {
                return Err(VerifyError::SegmentCount {
                    rung: rung.name.clone(),
                    count,
                    expected,
                });
            }
            Ok(RungCheck {
                name: rung.name.clone(),
                segments,
            })
        })
        .collect()
}

/// Moves the poster's companions (storyboard sheets and track) of `work` into place.
pub fn publish_thumbs(work: &WorkDir, layout: &Layout, video: &VideoId) -> std::io::Result<()> {
    let thumbs = layout.thumbs_dir(video);
    std::fs::create_dir_all(&thumbs)?;
    for entry in std::fs::read_dir(work.thumbs())? {
        let entry = entry?;
        std::fs::rename(entry.path(), thumbs.join(entry.file_name()))?;
    }
    Ok(())
}

/// Moves keys, storyboard and the HLS tree of `work` into place for `video`.
pub fn publish(work: &WorkDir, layout: &Layout, video: &VideoId) -> std::io::Result<()> {
    replace_dir(&work.keys(), &layout.keys_dir(video), layout)?;
    publish_thumbs(work, layout, video)?;
    replace_dir(&work.hls(), &layout.video_dir(video), layout)
}

/// Renames `from` onto `to`, moving an existing `to` aside first (rename cannot replace a
/// non-empty directory) and deleting it afterwards.
fn replace_dir(from: &Path, to: &Path, layout: &Layout) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut old = None;
    if to.exists() {
        let mut nonce = [0u8; 6];
        shared::media::fill_random(&mut nonce);
        let tag: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let aside = layout.tmp_root().join(format!("replaced-{tag}"));
        std::fs::rename(to, &aside)?;
        old = Some(aside);
    }
    std::fs::rename(from, to)?;
    if let Some(old) = old {
        std::fs::remove_dir_all(old)?;
    }
    Ok(())
}

/// Removes everything published for `video` (delete).
pub fn unpublish(layout: &Layout, video: &VideoId) -> std::io::Result<()> {
    for dir in [
        layout.video_dir(video),
        layout.keys_dir(video),
        layout.thumbs_dir(video),
        layout.subtitles_dir(video),
    ] {
        crate::storage::remove_dir(&dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcode::ladder::{default_ladder, select};

    fn write_rung(hls: &Path, name: &str, durations: &[f64], empty: Option<usize>) {
        write_rung_from(hls, name, 0, durations, empty);
    }

    fn write_rung_from(
        hls: &Path,
        name: &str,
        sequence: u64,
        durations: &[f64],
        empty: Option<usize>,
    ) {
        let dir = hls.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut text = format!("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{sequence}\n");
        for (i, d) in durations.iter().enumerate() {
            let seg = format!("segment_{i:03}.ts");
            text.push_str(&format!("#EXTINF:{d},\n{seg}\n"));
            let body: &[u8] = if empty == Some(i) { b"" } else { b"data" };
            std::fs::write(dir.join(&seg), body).expect("write");
        }
        text.push_str("#EXT-X-ENDLIST\n");
        std::fs::write(dir.join(VARIANT), text).expect("write");
    }

    #[test]
    fn verify_and_publish_atomically() {
        let base = std::env::temp_dir().join(format!("origin-publish-{}", std::process::id()));
        let layout = Layout::new(&base);
        layout.ensure().expect("layout");
        let video: VideoId = "vid".parse().expect("id");
        let rungs = select(&default_ladder(), 320, 240);
        let work = WorkDir::create(&layout, &video).expect("work");
        write_rung(&work.hls(), "240p", &[6.0, 6.0, 2.5], None);
        let checks = verify(&work.hls(), &rungs, 14.5, 6, true).expect("valid");
        assert_eq!(checks[0].segments.len(), 3);
        assert!(matches!(
            verify(&work.hls(), &rungs, 60.0, 6, true),
            Err(VerifyError::Duration { .. })
        ));
        std::fs::write(work.keys().join("240p.key"), [1u8; 16]).expect("key");
        publish(&work, &layout, &video).expect("publish");
        assert!(layout
            .video_dir(&video)
            .join("240p/segment_002.ts")
            .is_file());
        assert!(layout.key_file(&video, "240p").is_file());
        let work_path = work.path().to_owned();
        drop(work);
        assert!(!work_path.exists(), "work directory removed");

        // Republishing replaces the old tree completely.
        let again = WorkDir::create(&layout, &video).expect("work");
        write_rung(&again.hls(), "240p", &[6.0, 6.0], None);
        publish(&again, &layout, &video).expect("republish");
        assert!(!layout
            .video_dir(&video)
            .join("240p/segment_002.ts")
            .exists());
        unpublish(&layout, &video).expect("unpublish");
        assert!(!layout.video_dir(&video).exists() && !layout.keys_dir(&video).exists());
        std::fs::remove_dir_all(base).ok();
    }

    #[test]
    fn a_playlist_that_does_not_start_at_sequence_0_fails_verification() {
        let base = std::env::temp_dir().join(format!("origin-sequence-{}", std::process::id()));
        let rungs = select(&default_ladder(), 320, 240);
        write_rung_from(&base, "240p", 3, &[6.0, 6.0], None);
        assert!(matches!(
            verify(&base, &rungs, 12.0, 6, true),
            Err(VerifyError::MediaSequence { sequence: 3, .. })
        ));
        write_rung_from(&base, "240p", 0, &[6.0, 6.0], None);
        assert!(verify(&base, &rungs, 12.0, 6, true).is_ok());
        std::fs::remove_dir_all(base).ok();
    }

    #[test]
    fn empty_segment_fails_verification() {
        let base = std::env::temp_dir().join(format!("origin-verify-{}", std::process::id()));
        let rungs = select(&default_ladder(), 320, 240);
        write_rung(&base, "240p", &[6.0, 6.0], Some(1));
        assert!(matches!(
            verify(&base, &rungs, 12.0, 6, true),
            Err(VerifyError::BadSegment { .. })
        ));
        std::fs::remove_dir_all(base).ok();
    }
}
