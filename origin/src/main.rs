//! `origin`: the control plane binary.
//!
//! `origin transcode FILE` runs the pipeline once on a file (operations, benchmarks);
//! `origin worker` runs the worker pool on the data directory's job store. The HTTP API
//! (`origin serve`) comes with the API.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use origin::jobs::embedded::EmbeddedStore;
use origin::jobs::worker::{WorkerPool, WorkerSettings};
use origin::transcode::encoder::{detect_nvenc, EncoderPreference, EncoderSelector};
use origin::transcode::ladder::default_ladder;
use origin::transcode::pipeline::{Cancel, Events, Job, Pipeline, Profile, Settings};
use origin::transcode::progress::Stage;
use shared::media::{Layout, VideoId};

/// HLS origin: uploads, transcoding, signed manifests.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Data directory (published HLS under <data>/hls is the edge's root).
    #[arg(long, env = "ORIGIN_DATA_DIR", default_value = "/data", global = true)]
    data: PathBuf,
    /// Segment duration in seconds.
    #[arg(long, env = "ORIGIN_SEGMENT_SECS", default_value_t = 6, global = true)]
    segment_secs: u32,
    /// libx264 preset.
    #[arg(
        long,
        env = "ORIGIN_X264_PRESET",
        default_value = "veryfast",
        global = true
    )]
    x264_preset: String,
    /// Concurrent NVENC sessions allowed (consumer GPUs cap them).
    #[arg(
        long,
        env = "ORIGIN_NVENC_SESSIONS",
        default_value_t = 3,
        global = true
    )]
    nvenc_sessions: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Transcode one file into <data>/hls/<id> and print the result as JSON.
    Transcode {
        file: PathBuf,
        /// Video id (default: random).
        #[arg(long)]
        id: Option<VideoId>,
        #[arg(long, value_enum, default_value = "ladder")]
        profile: ProfileArg,
        #[arg(long, value_enum, default_value = "auto")]
        encoder: EncoderArg,
        /// Print the ffmpeg command (one argument per line) for output into this directory
        /// instead of running the pipeline.
        #[arg(long)]
        print_ffmpeg: Option<PathBuf>,
    },
    /// Run workers on the job store until SIGTERM.
    Worker {
        /// Jobs at once.
        #[arg(long, env = "ORIGIN_WORKERS", default_value_t = 1)]
        concurrency: usize,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum ProfileArg {
    Ladder,
    Passthrough,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum EncoderArg {
    Auto,
    Cpu,
    Gpu,
}

struct LogEvents;

impl Events for LogEvents {
    fn stage(&self, stage: Stage) {
        tracing::info!(stage = stage.as_str(), "stage");
    }
    fn progress(&self, percent: f64) {
        tracing::debug!(percent, "progress");
    }
    fn thumbnail_ready(&self) {
        tracing::info!("thumbnail ready");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    shared::telemetry::init(shared::telemetry::LogFormat::Text, "info");
    let layout = Layout::new(&cli.data);
    layout
        .ensure()
        .with_context(|| format!("creating {}", cli.data.display()))?;
    let nvenc = detect_nvenc(std::path::Path::new("ffmpeg")).await;
    let encoders = EncoderSelector::new(nvenc, cli.nvenc_sessions, &cli.x264_preset, "p4");
    let settings = Settings {
        ffmpeg: "ffmpeg".into(),
        ffprobe: "ffprobe".into(),
        ladder: default_ladder(),
        segment_secs: cli.segment_secs,
        stall_timeout: Duration::from_secs(120),
        poster_width: 1280,
        storyboard_tiles: 100,
    };
    let pipeline = Pipeline::new(settings, layout.clone(), encoders);
    match cli.command {
        Command::Transcode {
            file,
            id,
            profile,
            encoder,
            print_ffmpeg,
        } => {
            let encoder = match encoder {
                EncoderArg::Auto => EncoderPreference::Auto,
                EncoderArg::Cpu => EncoderPreference::Cpu,
                EncoderArg::Gpu => EncoderPreference::Gpu,
            };
            if let Some(out) = print_ffmpeg {
                for arg in pipeline.ladder_command(&file, &out, encoder).await? {
                    println!("{}", arg.to_string_lossy());
                }
                return Ok(());
            }
            let id = id.unwrap_or_else(VideoId::random);
            let job = Job {
                video: &id,
                source: &file,
                profile: match profile {
                    ProfileArg::Ladder => Profile::Ladder,
                    ProfileArg::Passthrough => Profile::Passthrough,
                },
                encoder,
            };
            let (_cancel_tx, mut cancel) = Cancel::new();
            let published = pipeline.run(&job, &LogEvents, &mut cancel).await?;
            println!("{}", serde_json::json!({ "id": id, "result": published }));
            Ok(())
        }
        Command::Worker { concurrency } => {
            let store = Arc::new(EmbeddedStore::open(&layout.store_dir())?);
            let settings = WorkerSettings {
                concurrency,
                lease_secs: 30,
                poll_interval: Duration::from_millis(500),
                max_attempts: 3,
                name: format!("{}-{}", hostname(), std::process::id()),
            };
            let pool = WorkerPool::new(store, pipeline, layout, settings);
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            let mut workers = pool.start(stop);
            shared::shutdown::terminate_signal().await;
            let _ = stop_tx.send(true);
            while workers.join_next().await.is_some() {}
            Ok(())
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
}
