//! `edge`: parse flags, load and validate config, bind, serve until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use edge::config::{EdgeConfig, Settings};
use edge::server::tls::ReloadableCert;
use edge::service::Edge;
use edge::Listeners;
use shared::env::ProcessEnv;
use shared::telemetry::{self, LogFormat};
use tokio::net::TcpListener;

/// nginx secure_link compatible HLS edge server.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see config/edge.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Plain HTTP listen address (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Content root (overrides content.root).
    #[arg(long)]
    root: Option<PathBuf>,
    /// URL prefix mapped onto the root (overrides content.prefix).
    #[arg(long)]
    prefix: Option<String>,
    /// Admin listen address for metrics and purge (overrides admin.listen).
    #[arg(long)]
    admin_listen: Option<String>,
    /// HTTPS listen address (overrides tls.listen).
    #[arg(long)]
    tls_listen: Option<String>,
    /// PEM certificate chain (overrides tls.cert).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key (overrides tls.key).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Worker threads, 0 = one per CPU (overrides server.workers).
    #[arg(long)]
    workers: Option<usize>,
    /// Log format: text or json (overrides log.format).
    #[arg(long)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print signed URLs for paths (with the first configured secret).
    Sign {
        /// Expiry as unix seconds; default: now + --ttl.
        #[arg(long)]
        expires: Option<i64>,
        /// Lifetime in seconds when --expires is not given.
        #[arg(long, default_value_t = 12 * 3600)]
        ttl: i64,
        /// Client address, for templates that bind $remote_addr.
        #[arg(long, default_value = "")]
        remote_addr: String,
        /// Decoded paths, e.g. /hls/<video>/720p/segment_000.ts
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Validate the configuration, try the upstream when one is set, and exit.
    Check,
}

fn load_config(cli: &Cli) -> anyhow::Result<EdgeConfig> {
    let mut config = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            EdgeConfig::from_toml(&text)?
        }
        None => EdgeConfig::default(),
    };
    config.apply_env(&ProcessEnv);
    let c = &mut config;
    if let Some(v) = &cli.listen {
        c.server.listen.clone_from(v);
    }
    if let Some(v) = &cli.root {
        c.content.root.clone_from(v);
    }
    if let Some(v) = &cli.prefix {
        c.content.prefix.clone_from(v);
    }
    if let Some(v) = &cli.admin_listen {
        c.admin.listen.clone_from(v);
    }
    if let Some(v) = &cli.tls_listen {
        c.tls.listen.clone_from(v);
    }
    if let Some(v) = &cli.tls_cert {
        c.tls.cert.clone_from(v);
    }
    if let Some(v) = &cli.tls_key {
        c.tls.key.clone_from(v);
    }
    if let Some(v) = cli.workers {
        c.server.workers = v;
    }
    if let Some(v) = cli.log_format {
        c.log.format = v;
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    // Before any thread exists, so every arena obeys it.
    edge::sys::tune_allocator();
    let cli = Cli::parse();
    let config = load_config(&cli)?;
    match &cli.command {
        Some(Command::Sign {
            expires,
            ttl,
            remote_addr,
            paths,
        }) => {
            // Signing needs only the [signing] section; the rest may describe another host.
            let (link, warnings) = config.secure_link()?;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            let expires = expires.unwrap_or_else(|| edge::service::unix_now() + ttl);
            for path in paths {
                println!("{}", link.signed_url(path, expires, remote_addr));
            }
            Ok(())
        }
        Some(Command::Check) => {
            let settings = config.validate()?;
            for warning in &settings.warnings {
                eprintln!("warning: {warning}");
            }
            eprintln!("configuration is valid");
            if let Some(upstream) = &settings.upstream {
                check_upstream(upstream)?;
            }
            Ok(())
        }
        None => {
            let settings = config.validate()?;
            telemetry::init(settings.log_format, "info");
            // At every start, so a weak secret kept on purpose is never forgotten.
            for warning in &settings.warnings {
                tracing::warn!("{warning}");
            }
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if settings.workers > 0 {
                runtime.worker_threads(settings.workers);
            }
            runtime.enable_all().build()?.block_on(run(settings))
        }
    }
}

/// `edge check` with an upstream: one request against it, and exactly what failed.
fn check_upstream(settings: &edge::config::upstream::UpstreamSettings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let describe = settings.source.describe();
    runtime.block_on(async {
        let source = edge::upstream::source::Source::new(&settings.source)?;
        match source.check().await {
            Ok(()) => {
                eprintln!("upstream {describe} answers");
                Ok(())
            }
            Err(why) => anyhow::bail!("upstream check failed: {why}"),
        }
    })
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // Before any listener is announced: SIGTERM from then on always means drain.
    let terminate = shared::shutdown::Terminate::install();
    match edge::sys::raise_nofile_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let metrics = Arc::new(edge::metrics::Metrics::new()?);
    let edge = Arc::new(Edge::new(settings, metrics).context("opening the content root")?);
    if let Some(upstream) = edge.upstream.clone() {
        tracing::info!(
            upstream = upstream.describe(),
            cached_files = upstream.cached_files(),
            "pulling misses through the disk cache"
        );
        // Not fatal: what the disk cache holds is served while the upstream is away.
        tokio::spawn(async move {
            if let Err(why) = upstream.check().await {
                tracing::warn!("upstream check failed: {why}");
            }
        });
    }
    let s = &edge.settings;
    let public = bind(s.listen, "public").await?;
    let admin = bind(s.admin_listen, "admin").await?;
    let tls = match &s.tls {
        Some(t) => {
            let cert = ReloadableCert::load(&t.cert, &t.key)?;
            let listener = bind(Some(t.listen), "tls").await?.context("tls listener")?;
            spawn_reload_on_sighup(cert.clone())?;
            Some((listener, cert))
        }
        None => None,
    };
    tracing::info!(
        root = %s.root.display(),
        prefix = %s.prefix,
        cache.max_bytes = s.cache_max_bytes,
        cache.max_object_bytes = s.cache_max_object,
        "edge ready"
    );
    let drained = edge::serve(
        edge.clone(),
        Listeners { public, tls, admin },
        terminate.wait(),
    )
    .await;
    if !drained {
        anyhow::bail!("shutdown grace period expired with connections still open");
    }
    Ok(())
}

async fn bind(addr: Option<SocketAddr>, listener: &str) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = listen(addr).with_context(|| format!("binding {listener} listener on {addr}"))?;
    tracing::info!(listener, addr = %l.local_addr()?, "listening");
    Ok(Some(l))
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). std's 128
/// overflows as soon as a burst of clients (or a slowloris) meets a full connection budget,
/// and every dropped SYN costs a legitimate client a second or more; nginx uses 511.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's bind does: a restarted edge can rebind while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn spawn_reload_on_sighup(cert: Arc<ReloadableCert>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match cert.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(error) => {
                    tracing::error!(%error, "TLS reload failed, keeping the old certificate")
                }
            }
        }
    });
    Ok(())
}
