//! `origin`: the control plane binary. Parses arguments, loads the configuration and runs one
//! role of the library ([`origin::roles`]).
//!
//! - `origin serve`: the HTTP API with in-process workers (unless `transcode.workers = 0`).
//! - `origin worker`: workers only, no HTTP, on the same data directory and job store.
//! - `origin token --user alice [--admin] [--ttl 1h]`: a development/operations JWT.
//! - `origin transcode FILE`: the pipeline once, on one file (operations, benchmarks).
//! - `origin check`: the configuration, the data directory, the job store and the bucket.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use origin::api::auth::{self, parse_ttl};
use origin::config::OriginConfig;
use origin::jobs::model::unix_now;
use origin::roles;
use origin::transcode::encoder::EncoderPreference;
use origin::transcode::pipeline::Profile;
use shared::env::ProcessEnv;
use shared::media::VideoId;

/// HLS origin: uploads, transcoding, signed manifests.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration (see config/origin.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API (and run workers) until SIGTERM.
    Serve {
        /// API listen address (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Metrics listen address (overrides server.admin_listen).
        #[arg(long)]
        admin_listen: Option<String>,
        /// Edge base URL for signed segment URLs (overrides playback.edge_base_url).
        #[arg(long)]
        edge_base_url: Option<String>,
        /// The edge's admin URL for purges (overrides edge.admin_url).
        #[arg(long)]
        edge_admin_url: Option<String>,
        /// In-process workers (overrides transcode.workers).
        #[arg(long)]
        workers: Option<usize>,
        /// Development mode (loopback only).
        #[arg(long)]
        dev: bool,
    },
    /// Run workers only, until SIGTERM.
    Worker {
        /// Jobs at once (overrides transcode.workers).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Metrics listen address for this worker (e.g. 127.0.0.1:9092); none by default.
        #[arg(long)]
        admin_listen: Option<String>,
    },
    /// Print a user token signed with JWT_SECRET.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        admin: bool,
        /// Lifetime: seconds, or with a unit (30m, 1h, 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Check the configuration and try the data directory, the job store and the media
    /// bucket; say exactly what fails (exit status 1).
    Check,
    /// Transcode one file into <data>/hls/<id> and print the result as JSON.
    Transcode {
        file: PathBuf,
        #[arg(long)]
        id: Option<VideoId>,
        #[arg(long, value_enum, default_value = "ladder")]
        profile: Profile,
        #[arg(long, value_enum, default_value = "auto")]
        encoder: EncoderPreference,
        /// Print the ladder ffmpeg command (one argument per line) for output into this
        /// directory instead of running the pipeline.
        #[arg(long)]
        print_ffmpeg: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = OriginConfig::load(cli.config.as_deref(), &ProcessEnv)?;
    if let Some(d) = cli.data {
        config.server.data_dir = d;
    }
    shared::telemetry::init(config.log.format, "info");
    match cli.command {
        Command::Serve {
            listen,
            admin_listen,
            edge_base_url,
            edge_admin_url,
            workers,
            dev,
        } => {
            let c = &mut config;
            for (field, flag) in [
                (&mut c.server.listen, listen),
                (&mut c.server.admin_listen, admin_listen),
                (&mut c.playback.edge_base_url, edge_base_url),
                (&mut c.edge.admin_url, edge_admin_url),
            ] {
                if let Some(value) = flag {
                    *field = value;
                }
            }
            c.transcode.workers = workers.unwrap_or(c.transcode.workers);
            c.server.dev |= dev;
            roles::serve::run(config.serve()?).await?;
        }
        Command::Worker {
            concurrency,
            admin_listen,
        } => {
            let settings = config.worker(admin_listen.as_deref())?;
            let concurrency = concurrency.unwrap_or(config.transcode.workers);
            roles::worker::run(settings, concurrency).await?;
        }
        Command::Check => {
            let report = roles::check(&config.worker(None)?).await;
            for line in &report.lines {
                println!("{line}");
            }
            anyhow::ensure!(report.ok, "origin check failed");
        }
        Command::Token { user, admin, ttl } => {
            let secret = config.auth.jwt_secret.expose();
            anyhow::ensure!(
                secret.len() >= shared::secret::MIN_SECRET_BYTES,
                "JWT_SECRET must be set (at least 16 bytes)"
            );
            let token = auth::mint_hs256(
                secret.as_bytes(),
                &user,
                admin,
                parse_ttl(&ttl).map_err(anyhow::Error::msg)?,
                unix_now(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
        }
        Command::Transcode {
            file,
            id,
            profile,
            encoder,
            print_ffmpeg,
        } => {
            let media = config.media()?;
            if let Some(out) = print_ffmpeg {
                for arg in roles::transcode::ladder_command(&media, &file, &out, encoder).await? {
                    println!("{}", arg.to_string_lossy());
                }
                return Ok(());
            }
            let id = id.unwrap_or_else(VideoId::random);
            let published = roles::transcode::run(&media, &file, &id, profile, encoder).await?;
            println!("{}", serde_json::json!({ "id": id, "result": published }));
        }
    }
    Ok(())
}
