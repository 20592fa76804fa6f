//! Listeners, accept loops and graceful shutdown.
//!
//! Plain-TCP connections go to the HTTP/1.1 fast path ([`http1`]), which sends file bodies
//! with `sendfile(2)`; TLS connections ([`https`]) are handed to the kernel after the handshake
//! where it has kTLS ([`ktls`]: the same fast path with `sendfile`), or stay with rustls
//! (bodies read and encrypted in whole records, [`transport`], [`file_read`], [`records`]);
//! HTTP/2 goes to hyper ([`h2`]).
//! A semaphore bounds open connections and doubles as the drain tracker: shutdown waits until
//! every permit is back. Shutdown reaches the loops and the connections through one
//! `shared::shutdown` switch.

pub mod file_read;
pub mod h2;
pub mod http1;
pub mod https;
pub mod ktls;
pub mod linger;
pub mod records;
pub mod request_line;
pub mod tls;
pub mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use shared::shutdown::Switch;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Accepts connections until shutdown, spawning `handle` for each one while holding a permit.
/// Each connection runs in a span naming its listener (`http`, `https`, `admin`) and client,
/// so nothing logged inside needs to repeat them.
pub async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    limiter: Arc<Semaphore>,
    mut shutdown: Switch,
    connections: IntGauge,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let permit = tokio::select! {
            p = limiter.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = shutdown.fired() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shutdown.fired() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning; the backlog holds clients.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY");
        }
        connections.inc();
        // Info, not debug: the sampled access log (info) inside must still name the client.
        let span = tracing::info_span!("connection", listener = name, client.addr = %peer);
        let fut = handle(stream, peer).instrument(span);
        let connections = connections.clone();
        tokio::spawn(async move {
            fut.await;
            connections.dec();
            drop(permit);
        });
    }
}

/// Waits until every connection holding a permit of `limiter` has closed, or `grace` passed.
pub async fn connections_closed(limiter: &Semaphore, total: usize, grace: Duration) -> bool {
    let all = u32::try_from(total).unwrap_or(u32::MAX);
    tokio::time::timeout(grace, limiter.acquire_many(all))
        .await
        .is_ok()
}
