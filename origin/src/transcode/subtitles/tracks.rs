//! A video's subtitle renditions: its text tracks, extracted from the source by ffmpeg, and
//! the files uploaded for it, kept in `<data>/subtitles/<video>/` as WebVTT (`u<N>.vtt` with
//! `u<N>.json` naming its language and title). Image tracks (PGS, DVB) are reported as
//! skipped: they cannot become WebVTT.

use std::path::Path;

use serde::{Deserialize, Serialize};
use shared::media::{Layout, VideoId};

use super::{check_copies, extract, parse_any_size, write_rendition, Cue, SubtitleError};
use crate::transcode::ffmpeg::VARIANT;
use crate::transcode::input::Source;
use crate::transcode::playlist::Media;
use crate::transcode::tracks::{subtitle_rendition, SubtitleTrack};

/// A published subtitle rendition, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtitleRendition {
    /// Its directory and id (`subs_0` from the source, `subs_u1` uploaded).
    pub id: String,
    pub language: String,
    pub name: String,
    /// `embedded` or `uploaded`.
    pub source: String,
}

impl SubtitleRendition {
    pub fn media(&self) -> Media {
        Media {
            uri: format!("{}/{VARIANT}", self.id),
            name: self.name.clone(),
            language: self.language.clone(),
        }
    }
}

/// A source track that did not become a rendition, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedTrack {
    pub language: String,
    pub name: String,
    pub codec: String,
    pub reason: String,
}

/// How the renditions of uploaded subtitle files are named (`subs_u1`): they come and go while
/// the rest of a finished video stays as its encode published it.
pub const UPLOADED_PREFIX: &str = "subs_u";

/// An uploaded subtitle file's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub id: u32,
    pub language: String,
    pub name: String,
}

impl Sidecar {
    pub fn rendition(&self) -> SubtitleRendition {
        SubtitleRendition {
            id: format!("{UPLOADED_PREFIX}{}", self.id),
            language: self.language.clone(),
            name: self.name.clone(),
            source: "uploaded".into(),
        }
    }
}

/// The uploaded subtitle files of `video`, in upload order.
pub fn sidecars(layout: &Layout, video: &VideoId) -> Vec<Sidecar> {
    let dir = layout.subtitles_dir(video);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<Sidecar> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        // A copy sent back after its delete (by an older push) is still deleted.
        .filter(|s: &Sidecar| !dir.join(tombstone(s.id)).exists())
        .collect();
    found.sort_by_key(|s| s.id);
    found
}

/// The cues of an uploaded file.
pub fn sidecar_cues(layout: &Layout, video: &VideoId, id: u32) -> Result<Vec<Cue>, SubtitleError> {
    let path = layout.subtitles_dir(video).join(format!("u{id}.vtt"));
    let bytes = std::fs::read(&path).map_err(|error| {
        tracing::warn!(%error, %video, id, "cannot read a kept subtitle file");
        SubtitleError::Empty
    })?;
    parse_any_size(&bytes)
}

/// The most numbers one video's uploaded files take over its life. A deleted file keeps its
/// number (its tombstone), so a client adding and deleting in a loop would otherwise grow the
/// directory, and the listing every later change reads, without end.
pub const MAX_NUMBER: u32 = 1024;

/// How many numbers `video`'s uploaded files have taken, deleted ones included.
pub fn numbers_taken(layout: &Layout, video: &VideoId) -> u32 {
    highest_number(&layout.subtitles_dir(video)).unwrap_or(0)
}

/// Keeps an uploaded file (already parsed) as WebVTT; returns its description. Refused once
/// [`MAX_NUMBER`] numbers are taken.
pub fn add_sidecar(
    layout: &Layout,
    video: &VideoId,
    cues: &[Cue],
    language: &str,
    name: &str,
) -> std::io::Result<Sidecar> {
    let dir = layout.subtitles_dir(video);
    std::fs::create_dir_all(&dir)?;
    // Numbered after every number this video has used, deleted files' included: caches (the
    // edge's disk, browsers for a day) may still hold a deleted rendition's segments under its
    // name. An add racing this one takes the next free number (the cue file is created
    // exclusively), never the same.
    let mut id = highest_number(&dir).map_or(1, |n| n.saturating_add(1));
    let mut file = loop {
        if id > MAX_NUMBER {
            return Err(std::io::Error::other("every subtitle number is taken"));
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(format!("u{id}.vtt")));
        match created {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => id += 1,
            other => break other?,
        }
    };
    std::io::Write::write_all(&mut file, super::to_vtt(cues).as_bytes())?;
    let sidecar = Sidecar {
        id,
        language: language.to_owned(),
        name: name.to_owned(),
    };
    // The description last: a file without one is not listed.
    let json = serde_json::to_vec(&sidecar).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(format!("u{id}.json")), json)?;
    Ok(sidecar)
}

/// The highest number among `dir`'s files (`u<N>.vtt`, `u<N>.json`, `u<N>.gone`).
fn highest_number(dir: &Path) -> Option<u32> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let (stem, _) = name.to_str()?.split_once('.')?;
            stem.strip_prefix('u')?.parse::<u32>().ok()
        })
        .max()
}

/// The marker a deleted file leaves so its number is never given again ([`add_sidecar`]).
pub fn tombstone(id: u32) -> String {
    format!("u{id}.gone")
}

/// Forgets an uploaded file, leaving its [`tombstone`]; whether it existed.
pub fn remove_sidecar(layout: &Layout, video: &VideoId, id: u32) -> std::io::Result<bool> {
    let dir = layout.subtitles_dir(video);
    let existed = dir.join(format!("u{id}.json")).is_file();
    if existed {
        std::fs::write(dir.join(tombstone(id)), b"")?;
    }
    for ext in ["json", "vtt"] {
        crate::storage::remove_file(&dir.join(format!("u{id}.{ext}")))?;
    }
    Ok(existed)
}

/// A video's subtitle renditions, with their cues.
pub type Renditions = Vec<(SubtitleRendition, Vec<Cue>)>;

/// Every subtitle rendition of `video`: the source's text tracks, then the uploaded files; and
/// the source tracks that were skipped. A track that cannot be read is skipped with its
/// reason; it does not fail the job.
pub async fn collect(
    ffmpeg: &Path,
    source: Source<'_>,
    tracks: &[SubtitleTrack],
    scratch: &Path,
    layout: &Layout,
    video: &VideoId,
    segment_secs: u32,
) -> (Renditions, Vec<SkippedTrack>) {
    let text: Vec<usize> = tracks
        .iter()
        .filter(|t| t.is_text())
        .map(|t| t.index)
        .collect();
    let mut extracted = extract::text_tracks(ffmpeg, source, &text, scratch)
        .await
        .into_iter();
    let mut renditions: Renditions = Vec::new();
    let mut skipped = Vec::new();
    let mut skip = |t: &SubtitleTrack, reason: String| {
        tracing::info!(codec = %t.codec, language = %t.language, %reason, "subtitle track skipped");
        skipped.push(SkippedTrack {
            language: t.language.clone(),
            name: t.name.clone(),
            codec: t.codec.clone(),
            reason,
        });
    };
    for track in tracks {
        if !track.is_text() {
            skip(
                track,
                format!(
                    "{} is an image subtitle format, which cannot become WebVTT",
                    track.codec
                ),
            );
            continue;
        }
        match extracted.next() {
            Some(Ok(cues)) => {
                if let Err(e) = check_copies(&cues, segment_secs) {
                    skip(track, format!("the track could not be converted: {e}"));
                    continue;
                }
                let embedded = renditions
                    .iter()
                    .filter(|(r, _)| r.source == "embedded")
                    .count();
                renditions.push((
                    SubtitleRendition {
                        id: subtitle_rendition(embedded),
                        language: track.language.clone(),
                        name: track.name.clone(),
                        source: "embedded".into(),
                    },
                    cues,
                ));
            }
            Some(Err(why)) => skip(track, why),
            None => skip(track, "the track was not read".into()),
        }
    }
    renditions.extend(uploaded(layout, video));
    (renditions, skipped)
}

/// The uploaded files of `video` as renditions.
pub fn uploaded(layout: &Layout, video: &VideoId) -> Renditions {
    sidecars(layout, video)
        .into_iter()
        .filter_map(|s| match sidecar_cues(layout, video, s.id) {
            Ok(cues) => Some((s.rendition(), cues)),
            Err(error) => {
                tracing::warn!(%error, %video, id = s.id, "a kept subtitle file is left out");
                None
            }
        })
        .collect()
}

/// Writes `renditions` into `hls_dir` (a video's published tree or its work directory's).
pub fn write_all(
    renditions: &Renditions,
    hls_dir: &Path,
    duration: f64,
    segment_secs: u32,
) -> std::io::Result<()> {
    for (r, cues) in renditions {
        write_rendition(&hls_dir.join(&r.id), cues, duration, segment_secs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn image_tracks_are_reported_as_skipped_not_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        let video: VideoId = "v".parse().expect("id");
        let pgs = SubtitleTrack {
            index: 0,
            codec: "hdmv_pgs_subtitle".into(),
            language: "eng".into(),
            name: "English".into(),
        };
        let dvb = SubtitleTrack {
            index: 1,
            codec: "dvb_subtitle".into(),
            language: "fra".into(),
            name: "French".into(),
        };
        let (renditions, skipped) = collect(
            Path::new("/nonexistent/ffmpeg"),
            Source::File(Path::new("/nonexistent/source")),
            &[pgs, dvb],
            Path::new("/nonexistent/scratch"),
            &layout,
            &video,
            6,
        )
        .await;
        assert!(renditions.is_empty());
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].reason.contains("image subtitle"), "{skipped:?}");
        assert_eq!(skipped[1].language, "fra");
    }

    /// A source whose second text track holds long cues with long texts: within every limit
    /// of the extraction, but its segments would hold it a hundred times over.
    #[tokio::test]
    async fn a_track_that_would_multiply_is_skipped_with_its_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        let video: VideoId = "v".parse().expect("id");
        let source = dir.path().join("source.mkv");
        let long = "a".repeat(3000);
        // Distinct starts: cues that start together may be merged on the way into the file.
        let long_cues: Vec<e2e::clips::Cue> = (0..150)
            .map(|i| (f64::from(i) * 0.005, 590.0, long.as_str()))
            .collect();
        e2e::clips::multitrack_clip(
            &source,
            1,
            &e2e::clips::Tracks {
                audio: &[],
                subtitles: &[("eng", &[(0.2, 0.8, "Hello")]), ("fra", &long_cues)],
            },
        );
        let track = |index, language: &str| SubtitleTrack {
            index,
            codec: "subrip".into(),
            language: language.into(),
            name: String::new(),
        };
        let (renditions, skipped) = collect(
            Path::new("ffmpeg"),
            Source::File(&source),
            &[track(0, "eng"), track(1, "fra")],
            &dir.path().join("scratch"),
            &layout,
            &video,
            6,
        )
        .await;
        let kept: Vec<&str> = renditions
            .iter()
            .map(|(r, _)| r.language.as_str())
            .collect();
        assert_eq!(kept, ["eng"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].language, "fra");
        assert!(skipped[0].reason.contains("repeated"), "{skipped:?}");
    }

    #[test]
    fn uploaded_files_are_kept_listed_and_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        let video: VideoId = "v".parse().expect("id");
        let cues = super::super::parse(b"WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n").expect("cues");
        let a = add_sidecar(&layout, &video, &cues, "ita", "Italiano").expect("add");
        let b = add_sidecar(&layout, &video, &cues, "nld", "Nederlands").expect("add");
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(sidecars(&layout, &video), [a.clone(), b.clone()]);
        assert_eq!(uploaded(&layout, &video)[1].0.id, "subs_u2");
        assert!(remove_sidecar(&layout, &video, 1).expect("remove"));
        assert!(!remove_sidecar(&layout, &video, 1).expect("again"));
        assert_eq!(sidecars(&layout, &video), [b]);
    }

    #[test]
    fn a_deleted_files_number_is_never_given_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        let video: VideoId = "v".parse().expect("id");
        let cues = super::super::parse(b"WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n").expect("cues");
        let a = add_sidecar(&layout, &video, &cues, "ita", "Italiano").expect("add");
        let b = add_sidecar(&layout, &video, &cues, "nld", "Nederlands").expect("add");
        assert!(remove_sidecar(&layout, &video, b.id).expect("remove"));
        let c = add_sidecar(&layout, &video, &cues, "nld", "Nederlands").expect("add");
        assert_eq!(c.id, 3, "the deleted number {} came back", b.id);
        assert!(remove_sidecar(&layout, &video, a.id).expect("remove"));
        assert!(remove_sidecar(&layout, &video, c.id).expect("remove"));
        assert!(sidecars(&layout, &video).is_empty());
        let d = add_sidecar(&layout, &video, &cues, "ita", "Italiano").expect("add");
        assert_eq!(d.id, 4);
        // A copy of a deleted file sent back (an older push) is still deleted.
        let dir = layout.subtitles_dir(&video);
        std::fs::write(dir.join("u1.json"), serde_json::to_vec(&a).expect("json")).expect("back");
        assert_eq!(sidecars(&layout, &video), [d]);
        // Numbers are not endless: the last one taken, the next add is refused.
        std::fs::write(dir.join(tombstone(MAX_NUMBER)), b"").expect("tombstone");
        assert_eq!(numbers_taken(&layout, &video), MAX_NUMBER);
        assert!(add_sidecar(&layout, &video, &cues, "ita", "Italiano").is_err());
        assert_eq!(sidecars(&layout, &video).len(), 1, "nothing kept");
    }
}
