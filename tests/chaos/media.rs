//! What the chaos tests look at: ladder encodes in `/proc`, segments in work directories, what
//! a killed attempt left, and the published video (playback, keyframes, AES, playlists).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use e2e::process;

use crate::{PLAY_TIMEOUT, RUNGS};

type Decryptor = cbc::Decryptor<aes::Aes128>;

/// A running ladder encode (the one ffmpeg per job that writes every rung).
#[derive(Debug, Clone)]
pub struct Encode {
    pub pid: u32,
    pub parent: Option<u32>,
    pub video: String,
    /// `<data>/tmp/<video>-<nonce>`: this attempt's work directory.
    pub work: PathBuf,
    pub args: Vec<String>,
}

impl Encode {
    /// Whether `flag` is immediately followed by `value` on the command line.
    pub fn has(&self, flag: &str, value: &str) -> bool {
        self.args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }
}

/// The ladder encodes of `videos` running right now, found in `/proc`.
pub fn ladder_encodes(videos: &[String]) -> Vec<Encode> {
    process::all_pids()
        .into_iter()
        .filter_map(|pid| {
            let args = process::cmdline(pid)?;
            if !args.first()?.ends_with("ffmpeg") || !args.iter().any(|a| a == "-var_stream_map") {
                return None;
            }
            // `-hls_segment_filename <work>/hls/%v/segment_%03d.ts`
            let pattern = args
                .windows(2)
                .find(|w| w[0] == "-hls_segment_filename")
                .map(|w| PathBuf::from(&w[1]))?;
            let work = pattern.parent()?.parent()?.parent()?.to_path_buf();
            let name = work.file_name()?.to_string_lossy().into_owned();
            let video = videos
                .iter()
                .find(|v| name.starts_with(&format!("{v}-")))?
                .clone();
            Some(Encode {
                pid,
                parent: process::parent_pid(pid),
                video,
                work,
                args,
            })
        })
        .collect()
}

pub fn segment_name(i: u32) -> String {
    format!("segment_{i:03}.ts")
}

/// Segment files present from 0 on in one rung of a work directory.
fn segment_files(work: &Path, rung: &str) -> u32 {
    let dir = work.join("hls").join(rung);
    (0..)
        .take_while(|&i| dir.join(segment_name(i)).is_file())
        .count() as u32
}

/// Segments complete in every rung: ffmpeg writes each segment under a temporary name and
/// renames it into place once whole (`temp_file`), so every `segment_NNN.ts` is complete (the
/// origin's resume rule).
pub fn complete_segments(work: &Path) -> u32 {
    RUNGS
        .iter()
        .map(|rung| segment_files(work, rung))
        .min()
        .unwrap_or(0)
}

/// What a killed attempt left behind.
pub struct Orphan {
    pub video: String,
    /// The killed attempt's work directory.
    pub work: PathBuf,
    /// Complete segments in every rung.
    pub complete: u32,
    /// `(rung, index) -> bytes` of the complete segments, as the killed attempt wrote them.
    pub segments: BTreeMap<(String, u32), Vec<u8>>,
    /// Since the kill: attempt 2 first visible in the API; `ready`.
    pub claimed_after: Option<Duration>,
    pub ready_after: Option<Duration>,
    /// The lease holder when attempt 2 was first seen.
    pub second_holder: Option<String>,
    /// Ladder encodes of this video seen after the kill, by pid.
    pub encodes: BTreeMap<u32, Encode>,
    /// The old segments were seen hard-linked (link count 2) by the new attempt.
    pub adopted: bool,
    /// Where the resumed part's keyframes sit relative to the reused part's grid, seconds.
    pub seam_shift: f64,
    /// Lines ffmpeg (`-v error`) printed while playing the video.
    pub playback_complaints: usize,
}

impl Orphan {
    pub fn snapshot(encode: &Encode) -> Self {
        let complete = complete_segments(&encode.work);
        let mut segments = BTreeMap::new();
        for rung in RUNGS {
            for i in 0..complete {
                let path = encode.work.join("hls").join(rung).join(segment_name(i));
                let bytes =
                    fs::read(&path).unwrap_or_else(|e| panic!("snapshot {}: {e}", path.display()));
                segments.insert((rung.to_owned(), i), bytes);
            }
        }
        Self {
            video: encode.video.clone(),
            work: encode.work.clone(),
            complete,
            segments,
            claimed_after: None,
            ready_after: None,
            second_holder: None,
            encodes: BTreeMap::new(),
            adopted: false,
            seam_shift: 0.0,
            playback_complaints: 0,
        }
    }
}

/// Presentation times of the keyframes of the first video stream of `url` (its first variant).
pub fn keyframe_times(url: &str) -> Vec<f64> {
    let output = process::run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
            .arg(url),
        PLAY_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (pts, flags) = line.split_once(',')?;
            flags
                .starts_with('K')
                .then(|| pts.parse::<f64>().ok())
                .flatten()
        })
        .collect()
}

/// Decrypts one published segment: AES-128-CBC, the IV its media sequence number (HLS's
/// default when the playlist gives none).
pub fn decrypt(key: &[u8], sequence: u64, data: &[u8]) -> Option<Vec<u8>> {
    let key: [u8; 16] = key.try_into().ok()?;
    let iv = u128::from(sequence).to_be_bytes();
    Decryptor::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .ok()
}

/// The segment URIs of a variant playlist and the sum of their `#EXTINF` durations.
pub fn playlist_segments(text: &str) -> (Vec<String>, f64) {
    let mut total = 0.0;
    let mut uris = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            total += d
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("bad EXTINF {line:?}"));
        } else if !line.is_empty() && !line.starts_with('#') {
            uris.push(line.to_owned());
        }
    }
    (uris, total)
}

/// `d` in seconds with one decimal, or `never`.
pub fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}
