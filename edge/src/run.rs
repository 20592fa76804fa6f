//! The process around the server: what `edge` (serve until SIGTERM) and `edge check` do once
//! the configuration is valid. `main.rs` only parses arguments and calls these.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::upstream::UpstreamSettings;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::server::tls::{ReloadableCert, TlsError};
use crate::service::Edge;
use crate::Listeners;

/// Why the edge could not start or stop cleanly (requests fail with their own answers; this is
/// only for the process).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("building the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("opening the content root: {0}")]
    Root(std::io::Error),
    #[error("the upstream: {0}")]
    Upstream(String),
    #[error("binding the {listener} listener on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("installing the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("upstream check failed: {0}")]
    Check(String),
    #[error("shutdown grace period expired with connections still open")]
    Undrained,
}

/// Serves until SIGTERM, then drains within the grace period.
pub fn serve(settings: Settings) -> Result<(), StartupError> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.workers > 0 {
        runtime.worker_threads(settings.workers);
    }
    runtime
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)?
        .block_on(run(settings))
}

/// `edge check` with an upstream: one request against it, and exactly what failed.
pub fn check_upstream(settings: &UpstreamSettings) -> Result<String, StartupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)?;
    let describe = settings.source.describe();
    runtime.block_on(async {
        let source = crate::upstream::source::Source::new(&settings.source)
            .map_err(|e| StartupError::Upstream(e.to_string()))?;
        source.check().await.map_err(StartupError::Check)?;
        Ok(format!("upstream {describe} answers"))
    })
}

async fn run(settings: Settings) -> Result<(), StartupError> {
    // Before any listener is announced: SIGTERM from then on always means drain.
    let terminate = shared::shutdown::Terminate::install();
    match crate::sys::raise_nofile_limit() {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
    let metrics = Arc::new(Metrics::new()?);
    let edge = Arc::new(Edge::new(settings, metrics)?);
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
    let public = bind(s.listen, "public")?;
    let admin = bind(s.admin_listen, "admin")?;
    let tls = match &s.tls {
        Some(t) => {
            let cert = ReloadableCert::load(&t.cert, &t.key)?;
            let listener = listen(t.listen, "tls")?;
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
    let drained = crate::serve(
        edge.clone(),
        Listeners { public, tls, admin },
        terminate.wait(),
    )
    .await;
    if drained {
        Ok(())
    } else {
        Err(StartupError::Undrained)
    }
}

fn bind(
    addr: Option<SocketAddr>,
    listener: &'static str,
) -> Result<Option<TcpListener>, StartupError> {
    addr.map(|addr| listen(addr, listener)).transpose()
}

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`). std's 128
/// overflows as soon as a burst of clients (or a slowloris) meets a full connection budget,
/// and every dropped SYN costs a legitimate client a second or more; nginx uses 511.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` and announces it (`listening listener=.. addr=..`; tests and operators read
/// the real port of `:0` from it).
fn listen(addr: SocketAddr, listener: &'static str) -> Result<TcpListener, StartupError> {
    let failed = |source| StartupError::Bind {
        listener,
        addr,
        source,
    };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(failed)?;
    // As std's bind does: a restarted edge can rebind while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(failed)?;
    socket.bind(addr).map_err(failed)?;
    let bound = socket.listen(LISTEN_BACKLOG).map_err(failed)?;
    let local = bound.local_addr().map_err(failed)?;
    tracing::info!(listener, addr = %local, "listening");
    Ok(bound)
}

fn spawn_reload_on_sighup(cert: Arc<ReloadableCert>) -> Result<(), StartupError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(StartupError::Signal)?;
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
