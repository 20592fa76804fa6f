//! Choosing the video encoder: NVENC only where a session really opens, else libx264.
//!
//! "A CUDA device exists" is not enough (H100-class GPUs have no NVENC, drivers may be missing,
//! containers may lack the device), so detection runs a tiny real encode. Consumer GPUs cap
//! concurrent NVENC sessions; each rung of a job is one session, so jobs take session permits
//! from a shared semaphore and fall back to libx264 when a job alone needs more than the cap.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ffmpeg::{self, Encoder};
use super::probe::SourceInfo;

/// What a job asks for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EncoderPreference {
    /// NVENC when available, else libx264.
    #[default]
    Auto,
    /// libx264 even when a GPU is present.
    Cpu,
    /// NVENC; falls back to libx264 (with a warning) when it is not available.
    Gpu,
}

/// Encoder settings and the NVENC session budget.
#[derive(Clone)]
pub struct EncoderSelector {
    nvenc: bool,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
    x264_preset: String,
    nvenc_preset: String,
}

/// An encoder plus the NVENC sessions it holds until the encode ends.
pub struct Selected {
    pub encoder: Encoder,
    _sessions: Option<OwnedSemaphorePermit>,
}

impl EncoderSelector {
    /// A selector; `nvenc` is the detection result.
    pub fn new(nvenc: bool, max_sessions: usize, x264_preset: &str, nvenc_preset: &str) -> Self {
        Self {
            nvenc,
            sessions: Arc::new(Semaphore::new(max_sessions)),
            max_sessions,
            x264_preset: x264_preset.to_owned(),
            nvenc_preset: nvenc_preset.to_owned(),
        }
    }

    pub fn nvenc_available(&self) -> bool {
        self.nvenc
    }

    /// The CPU encoder (also the fallback when NVENC fails at run time).
    pub fn x264(&self) -> Encoder {
        Encoder::X264 {
            preset: self.x264_preset.clone(),
        }
    }

    /// Picks the encoder for a job of `rungs` renditions, waiting for NVENC sessions if needed.
    pub async fn select(
        &self,
        pref: EncoderPreference,
        source: &SourceInfo,
        rungs: usize,
    ) -> Selected {
        let want_gpu = pref != EncoderPreference::Cpu && self.nvenc;
        if pref == EncoderPreference::Gpu && !self.nvenc {
            tracing::warn!("GPU encoding requested but NVENC is not available; using libx264");
        }
        if want_gpu && rungs <= self.max_sessions {
            if let Ok(permit) = self.sessions.clone().acquire_many_owned(rungs as u32).await {
                return Selected {
                    encoder: Encoder::Nvenc {
                        preset: self.nvenc_preset.clone(),
                        full_gpu: source.rotation == 0,
                    },
                    _sessions: Some(permit),
                };
            }
        }
        Selected {
            encoder: self.x264(),
            _sessions: None,
        }
    }
}

/// Whether this ffmpeg can open an NVENC session right now.
pub async fn detect_nvenc(ffmpeg: &Path) -> bool {
    let mut command = tokio::process::Command::new(ffmpeg);
    command
        .args(ffmpeg::nvenc_probe_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let run = super::child::output(&mut command);
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Ok(out)) if out.status.success() => true,
        Ok(Ok(out)) => {
            let why = String::from_utf8_lossy(&out.stderr);
            tracing::info!(reason = %why.lines().last().unwrap_or("").trim(), "NVENC unavailable, using libx264");
            false
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot run ffmpeg for NVENC detection");
            false
        }
        Err(_) => {
            tracing::warn!("NVENC detection timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(rotation: u32) -> SourceInfo {
        SourceInfo {
            duration: 1.0,
            width: 1920,
            height: 1080,
            rotation,
            fps: 30.0,
            video_codec: "h264".into(),
            format: "mp4".into(),
            streams: 2,
            audio: Vec::new(),
            subtitles: Vec::new(),
        }
    }

    #[tokio::test]
    async fn falls_back_without_gpu_and_respects_preference() {
        let none = EncoderSelector::new(false, 3, "veryfast", "p4");
        assert_eq!(
            none.select(EncoderPreference::Gpu, &src(0), 2)
                .await
                .encoder
                .name(),
            "libx264"
        );
        let gpu = EncoderSelector::new(true, 3, "veryfast", "p4");
        assert_eq!(
            gpu.select(EncoderPreference::Cpu, &src(0), 2)
                .await
                .encoder
                .name(),
            "libx264"
        );
        let sel = gpu.select(EncoderPreference::Auto, &src(0), 2).await;
        assert_eq!(
            sel.encoder,
            Encoder::Nvenc {
                preset: "p4".into(),
                full_gpu: true
            }
        );
        let rotated = gpu.select(EncoderPreference::Auto, &src(90), 1).await;
        assert_eq!(
            rotated.encoder,
            Encoder::Nvenc {
                preset: "p4".into(),
                full_gpu: false
            }
        );
        // 2 + 1 sessions held; a 4-rung job exceeds the cap and goes to the CPU at once.
        assert_eq!(
            gpu.select(EncoderPreference::Auto, &src(0), 4)
                .await
                .encoder
                .name(),
            "libx264"
        );
    }

    #[tokio::test]
    async fn detection_is_false_on_this_machine_without_a_gpu_or_ffmpeg() {
        assert!(!detect_nvenc(Path::new("/nonexistent/ffmpeg")).await);
    }
}
