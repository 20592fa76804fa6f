//! The source's text tracks as cues, through ffmpeg's WebVTT muxer (with the allow-lists of
//! every other read of the source).
//!
//! A film often carries a dozen subtitle tracks or more, and ffmpeg reads the whole file to
//! demux any one of them: so every track is taken in one pass over the source, written to a
//! file each, and a source read through a presigned URL is downloaded once, not once per
//! track. Only when that pass fails is each track read on its own, so that one track ffmpeg
//! cannot read costs only itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{parse_any_size, Cue, SubtitleError};
use crate::transcode::child;
use crate::transcode::input::{self, Source};

/// How every ffmpeg here starts: quiet but for errors, never reading standard input.
const QUIET: [&str; 4] = ["-hide_banner", "-nostdin", "-loglevel", "error"];
/// The largest track taken, as WebVTT: films' tracks are well under 1 MiB.
const MAX_BYTES: usize = 8 << 20;
/// However long the source, reading its subtitles ends.
const TIMEOUT: Duration = Duration::from_secs(300);

/// What became of one track: its cues, or why it was left out.
pub type Extracted = Result<Vec<Cue>, String>;

/// Why a run of ffmpeg gave nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Failure {
    #[error("reading the track took too long")]
    TimedOut,
    #[error("{0}")]
    Other(String),
}

/// The source's subtitle streams `indexes` (`0:s:<index>`), in that order. `scratch` is a
/// directory of the job's own for the one-pass files (created, then removed).
pub async fn text_tracks(
    ffmpeg: &Path,
    source: Source<'_>,
    indexes: &[usize],
    scratch: &Path,
) -> Vec<Extracted> {
    if indexes.len() > 1 {
        match together(ffmpeg, source, indexes, scratch).await {
            Ok(all) => return all,
            // Reading them one by one would take as long each.
            Err(Failure::TimedOut) => {
                return vec![Err(Failure::TimedOut.to_string()); indexes.len()];
            }
            Err(why) => {
                tracing::info!(%why, "the subtitle tracks are read one by one");
            }
        }
    }
    let mut all = Vec::with_capacity(indexes.len());
    for &index in indexes {
        all.push(alone(ffmpeg, source, index).await);
    }
    all
}

/// Every track in one pass, each into its own file under `scratch`.
async fn together(
    ffmpeg: &Path,
    source: Source<'_>,
    indexes: &[usize],
    scratch: &Path,
) -> Result<Vec<Extracted>, Failure> {
    std::fs::create_dir_all(scratch)
        .map_err(|e| Failure::Other(format!("scratch directory: {e}")))?;
    let files: Vec<PathBuf> = (0..indexes.len())
        .map(|n| scratch.join(format!("{n}.vtt")))
        .collect();
    let mut command = tokio::process::Command::new(ffmpeg);
    command.args(together_args(source, indexes, &files));
    let ran = run(&mut command).await;
    let all = ran.map(|_| {
        files
            .iter()
            .map(|file| match std::fs::read(file) {
                Ok(webvtt) => cues(&webvtt),
                Err(e) => Err(format!("ffmpeg wrote no track ({e})")),
            })
            .collect()
    });
    if let Err(e) = std::fs::remove_dir_all(scratch) {
        tracing::warn!(error = %e, "cannot remove the subtitle scratch directory");
    }
    all
}

/// One reading of the source, with an output per track: `files[n]` gets `indexes[n]`.
fn together_args(source: Source<'_>, indexes: &[usize], files: &[PathBuf]) -> Vec<OsString> {
    // `-y`: a file left by an earlier attempt's pass is overwritten.
    let mut args: Vec<OsString> = QUIET.iter().chain(&["-y"]).map(OsString::from).collect();
    args.extend(input::source_input(source));
    for (&index, file) in indexes.iter().zip(files) {
        args.extend(output_args(index).map(OsString::from));
        args.push(file.into());
    }
    args
}

/// One track, written to ffmpeg's standard output.
async fn alone(ffmpeg: &Path, source: Source<'_>, index: usize) -> Extracted {
    let mut command = tokio::process::Command::new(ffmpeg);
    command
        .args(QUIET)
        .args(input::source_input(source))
        .args(output_args(index))
        .arg("-");
    let webvtt = run(&mut command).await.map_err(|e| e.to_string())?;
    cues(&webvtt)
}

/// The options of the output that takes stream `0:s:<index>` as WebVTT.
fn output_args(index: usize) -> [String; 8] {
    [
        "-map".into(),
        format!("0:s:{index}"),
        "-c:s".into(),
        "webvtt".into(),
        // ffmpeg stops writing here: a hostile file's track cannot fill memory or disk.
        "-fs".into(),
        MAX_BYTES.to_string(),
        "-f".into(),
        "webvtt".into(),
    ]
}

/// Runs ffmpeg to its end within [`TIMEOUT`]; its standard output.
async fn run(command: &mut tokio::process::Command) -> Result<Vec<u8>, Failure> {
    let out = tokio::time::timeout(TIMEOUT, child::output(command))
        .await
        .map_err(|_| Failure::TimedOut)?
        .map_err(|e| Failure::Other(format!("could not run ffmpeg: {e}")))?;
    if !out.status.success() {
        return Err(Failure::Other("the track could not be read".into()));
    }
    Ok(out.stdout)
}

/// A track's WebVTT as cues.
fn cues(webvtt: &[u8]) -> Extracted {
    if webvtt.len() >= MAX_BYTES {
        return Err(format!(
            "the track is larger than {} MiB as WebVTT",
            MAX_BYTES >> 20
        ));
    }
    match parse_any_size(webvtt) {
        Ok(cues) => Ok(cues),
        Err(SubtitleError::Empty) => Ok(Vec::new()),
        Err(e) => Err(format!("the track could not be converted: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use e2e::clips::{multitrack_clip, Tracks};

    fn texts(extracted: &Extracted) -> Vec<&str> {
        let cues = extracted.as_ref().expect("cues");
        cues.iter().map(|c| c.text.as_str()).collect()
    }

    fn clip(dir: &Path) -> PathBuf {
        let source = dir.join("two-subtitles.mkv");
        multitrack_clip(
            &source,
            2,
            &Tracks {
                audio: &[("eng", None)],
                subtitles: &[
                    ("eng", &[(0.2, 1.0, "Hello")]),
                    ("fra", &[(0.5, 1.5, "Bonjour"), (1.5, 1.9, "Encore")]),
                ],
            },
        );
        source
    }

    #[test]
    fn every_track_comes_from_one_reading_of_the_source() {
        let files = [PathBuf::from("/s/0.vtt"), PathBuf::from("/s/1.vtt")];
        let args = together_args(Source::Url("https://b.example/v?sig=1"), &[3, 5], &files);
        let inputs: Vec<_> = args.iter().filter(|a| *a == "-i").collect();
        assert_eq!(inputs.len(), 1, "{args:?}");
        let maps: Vec<_> = args
            .windows(2)
            .filter(|w| w[0] == "-map")
            .map(|w| w[1].clone())
            .collect();
        assert_eq!(maps, ["0:s:3", "0:s:5"]);
        assert_eq!(args.last(), Some(&OsString::from("/s/1.vtt")));
    }

    #[tokio::test]
    async fn tracks_read_together_keep_their_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let source = clip(dir.path());
        let scratch = dir.path().join("scratch");
        let got = together(
            Path::new("ffmpeg"),
            Source::File(&source),
            &[1, 0],
            &scratch,
        )
        .await
        .expect("one pass reads both");
        assert_eq!(got.len(), 2);
        assert_eq!(texts(&got[0]), ["Bonjour", "Encore"]);
        assert_eq!(texts(&got[1]), ["Hello"]);
        assert!(!scratch.exists(), "the scratch directory is removed");
    }

    #[tokio::test]
    async fn a_track_that_cannot_be_read_costs_only_itself() {
        let dir = tempfile::tempdir().expect("tmp");
        let source = clip(dir.path());
        let scratch = dir.path().join("scratch");
        let ffmpeg = Path::new("ffmpeg");
        let source = Source::File(&source);
        let pass = together(ffmpeg, source, &[0, 7, 1], &scratch).await;
        assert!(pass.is_err(), "there is no stream 0:s:7: {pass:?}");
        let got = text_tracks(ffmpeg, source, &[0, 7, 1], &scratch).await;
        assert_eq!(texts(&got[0]), ["Hello"]);
        assert_eq!(got[1], Err("the track could not be read".to_owned()));
        assert_eq!(texts(&got[2]), ["Bonjour", "Encore"]);
    }
}
