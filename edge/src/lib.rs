//! The edge: a drop-in replacement for nginx's `secure_link` location that serves HLS.
//!
//! Players fetch segments here with URLs the origin signed
//! (`/hls/<video>/<rung>/<segment>?md5=..&expires=..`). The edge checks the signature exactly as
//! nginx does (403 bad, 410 expired), then serves the file from the hot cache or with
//! `sendfile(2)`.
//!
//! # Layout (request order)
//! - [`server`]: listeners, accept loops, drain; [`server::http1`] (the HTTP/1.1 fast path,
//!   plain and TLS: sendfile, or encrypted chunks), [`server::https`] (TLS handshake, ALPN),
//!   [`server::h2`] (HTTP/2 through hyper, with per-connection limits), [`server::tls`]
//!   (rustls, SIGHUP reload), [`server::ktls`] (kernel TLS: probe, decisions, key layout).
//! - [`request`]: the protocol-independent request head.
//! - [`service`]: the ordered checks that decide a response.
//! - [`target`]: request target -> nginx `$uri` / `$args`.
//! - signature: `shared::secure_link`.
//! - [`resolve`]: safe lookup under the content root.
//! - [`open_files`]: open descriptors for sendfile; [`cache`]: the hot in-memory cache.
//! - [`upstream`]: with `[upstream]`, the root is a disk cache: misses pulled from a bucket or
//!   another edge, one fill per object, streamed to every waiting request.
//! - [`conditional`] (304/412), `shared::range` (206/416), [`mime`], [`cors`],
//!   [`cache_control`] (lifetimes within the link's).
//! - [`refusal`]: every early answer (400 to 505): status, message, whether it closes.
//! - [`reply`]: the decided response and its HTTP/1.1 head.
//! - [`sys`]: the only `unsafe`: sendfile, openat2, preadv2, the kTLS probe.
//! - [`admin`] (metrics, health, purge) and [`metrics`].
//! - [`config`]: file, environment and flags, validated once; [`run`]: the process (serve
//!   until SIGTERM, `edge check`).

pub mod admin;
pub mod cache;
pub mod cache_control;
pub mod conditional;
pub mod config;
pub mod cors;
pub mod metrics;
pub mod mime;
pub mod open_files;
pub mod refusal;
pub mod reply;
pub mod request;
pub mod resolve;
pub mod run;
pub mod server;
pub mod service;
pub mod sys;
pub mod target;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use config::KtlsMode;
use server::tls::ReloadableCert;
use service::Edge;
use shared::shutdown;

/// Bound listeners, ready to serve.
pub struct Listeners {
    pub public: Option<TcpListener>,
    pub tls: Option<(TcpListener, Arc<ReloadableCert>)>,
    pub admin: Option<TcpListener>,
}

/// Serves until `shutdown` resolves, then stops accepting and drains in-flight requests for up
/// to the configured grace period. Returns whether every connection finished in time.
pub async fn serve(
    edge: Arc<Edge>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let (trigger, switch) = shutdown::channel();
    let max = edge.settings.max_connections;
    let limiter = Arc::new(Semaphore::new(max));
    let mut loops = tokio::task::JoinSet::new();
    if let Some(listener) = listeners.public {
        let edge = edge.clone();
        let switch2 = switch.clone();
        loops.spawn(server::accept_loop(
            "http",
            listener,
            limiter.clone(),
            switch.clone(),
            edge.metrics.open_connections.clone(),
            move |stream, peer| server::http1::serve(stream, peer, edge.clone(), switch2.clone()),
        ));
    }
    if let Some((listener, cert)) = listeners.tls {
        let mode = edge
            .settings
            .tls
            .as_ref()
            .map_or(KtlsMode::Auto, |t| t.ktls);
        let ktls = server::ktls::Ktls::start(mode);
        edge.metrics
            .ktls_available
            .set(i64::from(ktls.kernel_available()));
        let configs = cert.acceptor().map(|acceptor| {
            // Without a configuration for it, every connection stays in userspace.
            let kernel_config = match ktls.kernel_available() {
                true => cert
                    .kernel_config(|suite| ktls.takes(suite))
                    .inspect_err(|error| tracing::warn!(%error, "kTLS not used"))
                    .ok(),
                false => None,
            };
            (acceptor, kernel_config)
        });
        match configs {
            Ok((acceptor, kernel_config)) => {
                let tls = Arc::new(server::https::TlsListener {
                    acceptor,
                    kernel_config,
                    ktls,
                });
                let edge = edge.clone();
                let switch2 = switch.clone();
                loops.spawn(server::accept_loop(
                    "https",
                    listener,
                    limiter.clone(),
                    switch.clone(),
                    edge.metrics.open_connections.clone(),
                    move |stream, peer| {
                        server::https::serve(
                            stream,
                            peer,
                            tls.clone(),
                            edge.clone(),
                            switch2.clone(),
                        )
                    },
                ));
            }
            Err(error) => tracing::error!(%error, "TLS listener disabled"),
        }
    }
    // The admin listener has its own small budget so a flood of players cannot lock out
    // Prometheus or an operator's purge.
    let admin_limiter = Arc::new(Semaphore::new(64));
    if let Some(listener) = listeners.admin {
        let edge = edge.clone();
        let switch2 = switch.clone();
        loops.spawn(server::accept_loop(
            "admin",
            listener,
            admin_limiter.clone(),
            switch.clone(),
            edge.metrics.admin_connections.clone(),
            move |stream, _peer| admin::serve(stream, edge.clone(), switch2.clone()),
        ));
    }
    shutdown.await;
    let delay = edge.settings.shutdown_delay;
    edge.draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if !delay.is_zero() {
        // Load balancers see /readyz fail and stop routing here while every listener still
        // serves; only then do the listeners close.
        tracing::info!(?delay, "draining: not ready, still serving");
        tokio::time::sleep(delay).await;
    }
    trigger.fire();
    while loops.join_next().await.is_some() {}
    let grace = edge.settings.shutdown_grace;
    // One grace for both: the admin connections drain beside the public ones, not after
    // them, or a stop could take twice the grace a supervisor allows before it kills.
    let (drained, _) = tokio::join!(
        server::connections_closed(&limiter, max, grace),
        server::connections_closed(&admin_limiter, 64, grace)
    );
    if drained {
        tracing::info!("all connections drained");
    } else {
        tracing::warn!(?grace, "grace period over with connections still open");
    }
    drained
}
