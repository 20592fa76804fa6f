//! Source videos made by ffmpeg's lavfi generators (`testsrc2`, `sine`), for every test that
//! needs one: written where the test says ([`generate_clip`], [`truncated_clip`]), or a
//! [`catalog`] of varied sources made once and cached under `target/tmp/clips` across runs
//! and test binaries (keyed by the exact ffmpeg arguments).
//!
//! Every ffmpeg runs under a time limit, so a wedged one fails a test instead of hanging it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::process;

/// Limit for making one clip on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(60);

/// `secs` seconds of `testsrc2` at `width`x`height`, 25 fps, with a sine tone, libx264
/// `ultrafast` + AAC in MP4, written to `path` (whatever its extension).
pub fn generate_clip(path: &Path, secs: u32, width: u32, height: u32) {
    let video = format!("testsrc2=s={width}x{height}:r=25:d={secs}");
    let audio = format!("sine=frequency=440:sample_rate=48000:d={secs}");
    let output = process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-f", "lavfi", "-i", &video])
            .args(["-f", "lavfi", "-i", &audio])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            // MP4 whatever the name says: the origin stores sources without an extension.
            .args(["-c:a", "aac", "-b:a", "64k", "-shortest", "-f", "mp4", "-y"])
            .arg(path),
        LIMIT,
    );
    assert!(
        output.status.success(),
        "ffmpeg could not generate {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What [`multitrack_clip`] puts in a Matroska file: a tone per audio track (its language and
/// an optional title), and SRT subtitle tracks (language, cues as `(start, end, text)`).
pub struct Tracks<'a> {
    pub audio: &'a [(&'a str, Option<&'a str>)],
    pub subtitles: &'a [(&'a str, &'a [Cue<'a>])],
}

/// A subtitle cue: start and end (seconds) and text.
pub type Cue<'a> = (f64, f64, &'a str);

/// `secs` seconds of 320x240 `testsrc2` with every track of `tracks`, in Matroska at `path`:
/// audio track `n` is a sine at `300 + 200 n` Hz, so each one can be told apart.
pub fn multitrack_clip(path: &Path, secs: u32, tracks: &Tracks<'_>) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-v", "error", "-f", "lavfi"])
        .args(["-i", &format!("testsrc2=s=320x240:r=25:d={secs}")]);
    for n in 0..tracks.audio.len() {
        let tone = format!(
            "sine=frequency={}:sample_rate=48000:d={secs}",
            300 + 200 * n
        );
        command.args(["-f", "lavfi", "-i", &tone]);
    }
    for (n, (_, cues)) in tracks.subtitles.iter().enumerate() {
        let srt = dir.join(format!("track-{n}.srt"));
        let time = |t: f64| {
            let ms = (t * 1000.0).round() as u64;
            format!(
                "{:02}:{:02}:{:02},{:03}",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            )
        };
        let text: String = cues
            .iter()
            .enumerate()
            .map(|(i, (a, b, t))| format!("{}\n{} --> {}\n{t}\n\n", i + 1, time(*a), time(*b)))
            .collect();
        std::fs::write(&srt, text).expect("write an SRT track");
        command.arg("-i").arg(&srt);
    }
    let inputs = 1 + tracks.audio.len() + tracks.subtitles.len();
    for i in 0..inputs {
        command.args(["-map", &i.to_string()]);
    }
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    command.args(["-c:a", "aac", "-b:a", "64k", "-c:s", "srt"]);
    for (n, (language, title)) in tracks.audio.iter().enumerate() {
        command
            .arg(format!("-metadata:s:a:{n}"))
            .arg(format!("language={language}"));
        if let Some(title) = title {
            command
                .arg(format!("-metadata:s:a:{n}"))
                .arg(format!("title={title}"));
        }
    }
    for (n, (language, _)) in tracks.subtitles.iter().enumerate() {
        command
            .arg(format!("-metadata:s:s:{n}"))
            .arg(format!("language={language}"));
    }
    command.args(["-f", "matroska", "-y"]).arg(path);
    let output = process::run_bounded(&mut command, LIMIT);
    assert!(
        output.status.success(),
        "ffmpeg could not generate {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `clip` with its index first (`+faststart`) and only its first 40 % of bytes, written to
/// `out`: ffprobe still reports the whole duration, so the upload is accepted, but the output
/// cannot cover it and processing fails (for good with `transcode.max_attempts = 1`).
pub fn truncated_clip(clip: &Path, out: &Path) {
    let whole = out.with_extension("faststart.mp4");
    let output = process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-v", "error", "-i"])
            .arg(clip)
            .args(["-c", "copy", "-movflags", "+faststart", "-y"])
            .arg(&whole),
        LIMIT,
    );
    assert!(
        output.status.success(),
        "ffmpeg -movflags +faststart: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&whole).expect("read the faststart copy");
    std::fs::write(out, &bytes[..bytes.len() * 4 / 10]).expect("write the truncated clip");
}

/// The cached sources. All video is 25 fps.
pub struct Clips {
    /// 1920x1080, 4 s, H.264 + AAC.
    pub landscape: PathBuf,
    /// 720x1280, 3 s, H.264, no audio.
    pub portrait: PathBuf,
    /// 320x240, 3 s, MPEG-4 Part 2 (not H.264) + AAC: below the smallest rung.
    pub tiny: PathBuf,
    /// Coded 1280x720 with a 90° display matrix, 3 s, H.264 + AAC: a phone held upright,
    /// displayed 720x1280.
    pub rotated: PathBuf,
    /// 640x360, 4 s, H.264 + AAC with a keyframe every 2 s: copyable as is.
    pub h264_aac: PathBuf,
    /// The landscape clip looped to 20 s (a stream copy, so it costs nothing to make).
    pub long: PathBuf,
    /// A sine tone in an `.m4a`: valid media, but no video.
    pub audio_only: PathBuf,
}

/// The cached sources, made on first use (and reused from earlier runs when still cached).
pub fn catalog() -> &'static Clips {
    static CLIPS: OnceLock<Clips> = OnceLock::new();
    CLIPS.get_or_init(|| {
        let dir = process::target_tmp_dir().join("clips");
        std::fs::create_dir_all(&dir).expect("can create the clip cache directory");
        let x264 = owned([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ]);
        let aac = owned(["-c:a", "aac", "-shortest"]);
        let landscape = cached(
            &dir,
            "landscape.mp4",
            &[
                lavfi_video("1920x1080", 4),
                lavfi_sine(4),
                x264.clone(),
                aac.clone(),
            ]
            .concat(),
        );
        let rotated_coded = cached(
            &dir,
            "rotated-coded.mp4",
            &[
                lavfi_video("1280x720", 3),
                lavfi_sine(3),
                x264.clone(),
                aac.clone(),
            ]
            .concat(),
        );
        Clips {
            portrait: cached(
                &dir,
                "portrait.mp4",
                &[lavfi_video("720x1280", 3), x264.clone()].concat(),
            ),
            tiny: cached(
                &dir,
                "tiny.mp4",
                &[
                    lavfi_video("320x240", 3),
                    lavfi_sine(3),
                    owned(["-c:v", "mpeg4", "-q:v", "5"]),
                    aac.clone(),
                ]
                .concat(),
            ),
            // ffmpeg 5.1 ignores a `rotate` tag set while encoding; a stream-copy remux
            // turns it into the display matrix phones write.
            rotated: cached(
                &dir,
                "rotated.mp4",
                &[
                    input(&rotated_coded),
                    owned(["-c", "copy", "-metadata:s:v:0", "rotate=90"]),
                ]
                .concat(),
            ),
            h264_aac: cached(
                &dir,
                "h264-aac.mp4",
                &[
                    lavfi_video("640x360", 4),
                    lavfi_sine(4),
                    x264.clone(),
                    owned(["-g", "50"]),
                    aac.clone(),
                ]
                .concat(),
            ),
            long: cached(
                &dir,
                "long.mp4",
                &[
                    owned(["-stream_loop", "4"]),
                    input(&landscape),
                    owned(["-c", "copy"]),
                ]
                .concat(),
            ),
            audio_only: cached(
                &dir,
                "audio-only.m4a",
                &[lavfi_sine(2), owned(["-c:a", "aac"])].concat(),
            ),
            landscape,
        }
    })
}

fn owned<const N: usize>(args: [&str; N]) -> Vec<String> {
    args.map(str::to_owned).to_vec()
}

fn lavfi_video(size: &str, secs: u32) -> Vec<String> {
    let source = format!("testsrc2=size={size}:rate=25:duration={secs}");
    owned(["-f", "lavfi", "-i", &source])
}

fn lavfi_sine(secs: u32) -> Vec<String> {
    let source = format!("sine=frequency=440:sample_rate=48000:duration={secs}");
    owned(["-f", "lavfi", "-i", &source])
}

fn input(path: &Path) -> Vec<String> {
    vec!["-i".to_owned(), path.display().to_string()]
}

/// Runs ffmpeg with `args` into `dir/<stem>-<hash of args>.<ext>` unless that file exists.
/// The output is written under a temporary name and renamed, so an interrupted run never
/// leaves a half-written clip in the cache, and test binaries making the same clip at once
/// do not see each other's partial files.
fn cached(dir: &Path, name: &str, args: &[String]) -> PathBuf {
    let (stem, ext) = name.rsplit_once('.').expect("clip names have an extension");
    let key = fnv1a(args.join("\0").as_bytes());
    let out = dir.join(format!("{stem}-{key:016x}.{ext}"));
    if out.is_file() {
        return out;
    }
    // ffmpeg picks the muxer from the last extension, so keep it last.
    let part = dir.join(format!(
        "{stem}-{key:016x}.part{}.{ext}",
        std::process::id()
    ));
    let result = process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(args)
            .arg(&part),
        LIMIT,
    );
    assert!(
        result.status.success(),
        "generating {name} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&part, &out).expect("can move a generated clip into place");
    out
}

/// FNV-1a: a stable hash for cache keys (std's hasher may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn cache_keys_are_stable() {
        // Published FNV-1a 64 vectors: a key must not change between runs or Rust releases.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
