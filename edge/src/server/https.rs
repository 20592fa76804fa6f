//! TLS connections: the rustls handshake within the header timeout, then HTTP/2 (ALPN `h2`)
//! through hyper ([`super::h2`]) or HTTP/1.1 through the same fast path as plain TCP
//! ([`super::http1`]), so both get the same deadlines and limits as plain HTTP. Each
//! connection is counted by who encrypts its records ([`super::ktls`]).

use std::net::SocketAddr;
use std::sync::Arc;

use shared::shutdown::Switch;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::ktls::Ktls;
use super::{h2, http1};
use crate::service::Edge;

/// Serves one TLS connection.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ktls: Ktls,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    let handshake = tokio::time::timeout(edge.settings.header_timeout, acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    let conn = tls.get_ref().1;
    let path = ktls.path(conn);
    tracing::debug!(?path, "TLS records");
    edge.metrics.tls_connection(path);
    if conn.alpn_protocol() == Some(b"h2") {
        h2::serve(tls, peer, edge, shutdown).await;
    } else {
        http1::serve(tls, peer, edge, shutdown).await;
    }
}
