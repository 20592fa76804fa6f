//! `origin`: the control plane binary.
//!
//! - `origin serve`: the HTTP API with in-process workers (unless `transcode.workers = 0`).
//! - `origin worker`: workers only, no HTTP, on the same data directory and job store.
//! - `origin token --user alice [--admin] [--ttl 1h]`: a development/operations JWT.
//! - `origin transcode FILE`: the pipeline once, on one file (operations, benchmarks).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use origin::config::OriginConfig;
use origin::jobs::model::unix_now;
use origin::jobs::worker::{WorkerPool, WorkerSettings};
use origin::transcode::encoder::EncoderPreference;
use origin::transcode::pipeline::{Cancel, Events, Job, Profile};
use origin::transcode::progress::Stage;
use shared::env::ProcessEnv;
use shared::media::{Layout, VideoId};
use tokio::net::TcpListener;

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
        /// Development mode.
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
    /// Transcode one file into <data>/hls/<id> and print the result as JSON.
    Transcode {
        file: PathBuf,
        #[arg(long)]
        id: Option<VideoId>,
        #[arg(long, value_enum, default_value = "ladder")]
        profile: ProfileArg,
        #[arg(long, value_enum, default_value = "auto")]
        encoder: EncoderArg,
        /// Print the ladder ffmpeg command (one argument per line) for output into this
        /// directory instead of running the pipeline.
        #[arg(long)]
        print_ffmpeg: Option<PathBuf>,
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

fn load(cli: &Cli) -> anyhow::Result<OriginConfig> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            OriginConfig::from_toml(&text)?
        }
        None => OriginConfig::default(),
    };
    config.apply_env(&ProcessEnv);
    if let Some(d) = &cli.data {
        config.server.data_dir.clone_from(d);
    }
    Ok(config)
}

fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().with_context(|| format!("bad ttl {s:?}"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => anyhow::bail!("unknown ttl unit {other:?} (s, m, h, d)"),
    };
    Ok(n * mult)
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
    let mut config = load(&cli)?;
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
            if let Some(v) = listen {
                c.server.listen = v;
            }
            if let Some(v) = admin_listen {
                c.server.admin_listen = v;
            }
            if let Some(v) = edge_base_url {
                c.playback.edge_base_url = v;
            }
            if let Some(v) = edge_admin_url {
                c.edge.admin_url = v;
            }
            if let Some(v) = workers {
                c.transcode.workers = v;
            }
            c.server.dev |= dev;
            let settings = config.validate()?;
            // Before any listener is announced: SIGTERM from then on always means drain.
            let terminate = shared::shutdown::Terminate::install();
            let api = bind(Some(settings.listen), "api")
                .await?
                .context("api listener")?;
            let admin = bind(settings.admin_listen, "admin").await?;
            let origin = origin::server::build(settings).await?;
            origin::server::serve(origin, api, admin, terminate.wait()).await
        }
        Command::Worker {
            concurrency,
            admin_listen,
        } => {
            let layout = Layout::new(&config.server.data_dir);
            layout.ensure()?;
            if let Some(n) = concurrency {
                config.transcode.workers = n;
            }
            let t = &config.transcode;
            let settings = WorkerSettings {
                concurrency: t.workers.max(1),
                lease_secs: t.lease_secs,
                poll_interval: Duration::from_millis(500),
                max_attempts: t.max_attempts,
                name: format!("{}-{}", origin::server::hostname(), std::process::id()),
            };
            let validated = worker_settings(&config)?;
            let store = Arc::new(origin::server::open_store(&validated, &layout).await?);
            let pipeline = origin::server::pipeline(&validated, &layout).await;
            let redis = store.redis().cloned();
            let metrics = Arc::new(origin::metrics::Metrics::new()?);
            let (notifier, webhooks) = origin::server::start_webhooks(&validated, &metrics)?;
            let pool = WorkerPool::with_reporting(
                store,
                pipeline,
                layout,
                settings,
                Some(metrics.clone()),
                notifier,
            );
            if let Some(redis) = redis {
                origin::server::publish_pool_events(&pool, redis);
            }
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            let terminate = shared::shutdown::Terminate::install();
            let admin_addr = admin_listen
                .map(|a| a.parse())
                .transpose()
                .context("--admin-listen")?;
            if let Some(listener) = bind(admin_addr, "admin").await? {
                origin::server::spawn_admin(listener, metrics, stop.clone());
            }
            let mut workers = pool.start(stop);
            terminate.wait().await;
            let _ = stop_tx.send(true);
            while workers.join_next().await.is_some() {}
            if let Some(d) = webhooks {
                d.shutdown().await;
            }
            Ok(())
        }
        Command::Token { user, admin, ttl } => {
            let secret = config.auth.jwt_secret.expose();
            anyhow::ensure!(
                secret.len() >= shared::secret::MIN_SECRET_BYTES,
                "JWT_SECRET must be set (at least 16 bytes)"
            );
            let token = origin::api::auth::mint_hs256(
                secret.as_bytes(),
                &user,
                admin,
                parse_ttl(&ttl)?,
                unix_now(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
            Ok(())
        }
        Command::Transcode {
            file,
            id,
            profile,
            encoder,
            print_ffmpeg,
        } => {
            let layout = Layout::new(&config.server.data_dir);
            layout
                .ensure()
                .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
            let pipeline = origin::server::pipeline(&worker_settings(&config)?, &layout).await;
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
            let profile = match profile {
                ProfileArg::Ladder => Profile::Ladder,
                ProfileArg::Passthrough => Profile::Passthrough,
            };
            let job = Job {
                video: &id,
                source: &file,
                profile,
                encoder,
            };
            let (_cancel_tx, mut cancel) = Cancel::new();
            let published = pipeline.run(&job, &LogEvents, &mut cancel).await?;
            println!("{}", serde_json::json!({ "id": id, "result": published }));
            Ok(())
        }
    }
}

/// Workers need only the transcode settings: fill what the API would require with
/// placeholders so validation checks the rest.
fn worker_settings(config: &OriginConfig) -> anyhow::Result<origin::config::Settings> {
    let mut c = config.clone();
    if c.auth.jwt_secret.expose().len() < shared::secret::MIN_SECRET_BYTES {
        c.auth.jwt_secret = "worker-process-without-api".into();
    }
    if c.playback.edge_base_url.is_empty() {
        c.playback.edge_base_url = "http://unused".into();
    }
    if c.playback.signing_secrets.is_empty() {
        c.playback.signing_secrets.push("unused-by-workers".into());
        c.playback.allow_weak_secret = true;
    }
    Ok(c.validate()?)
}

async fn bind(
    addr: Option<std::net::SocketAddr>,
    listener: &str,
) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {listener} listener on {addr}"))?;
    tracing::info!(listener, addr = %l.local_addr()?, "listening");
    Ok(Some(l))
}
