//! TLS connections: the handshake within the header timeout, then HTTP/2 (ALPN `h2`) through
//! hyper ([`super::h2`]) or HTTP/1.1 through the same fast path as plain TCP
//! ([`super::http1`]), so both get the same deadlines and limits as plain HTTP.
//!
//! Who encrypts the records afterwards is planned before the handshake ([`super::ktls`]):
//! the kernel, after a handshake that reads nothing past its end, so HTTP/1.1 bodies leave by
//! `sendfile(2)`; or rustls (tokio-rustls) to the end. Each connection is counted by the path.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use std::io;

use shared::shutdown::Switch;
use tokio::net::TcpStream;
use tokio::time::error::Elapsed;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{StartHandshake, TlsAcceptor};

use super::ktls::handoff::{self, Start};
use super::ktls::stream::KernelStream;
use super::ktls::{Fallback, Ktls, Plan};
use super::records::WholeRecords;
use super::transport::Transport;
use super::{h2, http1};
use crate::service::Edge;

/// What every connection of a TLS listener starts from.
pub struct TlsListener {
    /// Handshakes of connections rustls carries.
    pub acceptor: TlsAcceptor,
    /// Handshakes of connections handed to the kernel (when it has kTLS).
    pub kernel_config: Option<Arc<rustls::ServerConfig>>,
    pub ktls: Ktls,
}

/// Serves one TLS connection.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Arc<TlsListener>,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    let acceptor = &tls.acceptor;
    match &tls.kernel_config {
        Some(config) => match tls.ktls.plan(tcp.as_raw_fd()) {
            Plan::Kernel => in_kernel(tcp, peer, &tls, config, edge, shutdown).await,
            Plan::Userspace(why) => in_userspace(tcp, peer, acceptor, why, edge, shutdown).await,
        },
        None => {
            let why = tls.ktls.fallback();
            in_userspace(tcp, peer, acceptor, why, edge, shutdown).await
        }
    }
}

async fn in_userspace(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    why: Fallback,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    let deadline = Instant::now() + edge.settings.header_timeout;
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await;
    userspace_served(handshake, why, peer, edge, shutdown).await;
}

/// Serves a connection whose handshake rustls carried (or failed, or timed out).
async fn userspace_served(
    handshake: Result<io::Result<TlsStream<TcpStream>>, Elapsed>,
    why: Fallback,
    peer: SocketAddr,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    tracing::debug!(reason = ?why, "TLS records in userspace");
    edge.metrics.tls_connection(Plan::Userspace(why));
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    serve_http(WholeRecords::new(tls), h2, peer, edge, shutdown).await;
}

async fn in_kernel(
    mut tcp: TcpStream,
    peer: SocketAddr,
    tls: &TlsListener,
    config: &Arc<rustls::ServerConfig>,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    let deadline = Instant::now() + edge.settings.header_timeout;
    let ktls = &tls.ktls;
    let hello = handoff::client_hello(&mut tcp, config, |suite| ktls.takes(suite));
    let mut conn = match tokio::time::timeout_at(deadline, hello).await {
        Ok(Ok(Start::Kernel(conn))) => conn,
        Ok(Ok(Start::Userspace(accepted))) => {
            // The ClientHello is read; rustls takes the connection from there.
            let userspace = tls.acceptor.config().clone();
            let rest = StartHandshake::from_parts(*accepted, tcp).into_stream(userspace);
            let handshake = tokio::time::timeout_at(deadline, rest).await;
            return userspace_served(handshake, Fallback::Cipher, peer, edge, shutdown).await;
        }
        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    match tokio::time::timeout_at(deadline, handoff::handshake(&mut tcp, &mut conn)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    }
    let h2 = conn.alpn_protocol() == Some(b"h2");
    if let Err(error) = handoff::install(&tcp, *conn) {
        edge.metrics.tls_handoff_failed();
        return ktls.refused(&error);
    }
    tracing::debug!("TLS records in the kernel");
    edge.metrics.tls_connection(Plan::Kernel);
    serve_http(KernelStream::new(tcp), h2, peer, edge, shutdown).await;
}

async fn serve_http<S: Transport + 'static>(
    stream: S,
    h2: bool,
    peer: SocketAddr,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    match h2 {
        true => h2::serve(stream, peer, edge, shutdown).await,
        false => http1::serve(stream, peer, edge, shutdown).await,
    }
}
