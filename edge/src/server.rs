//! Listeners, accept loops and graceful shutdown.
//!
//! Plain-TCP connections go to the HTTP/1.1 fast path ([`http1`]), which sends file bodies
//! with `sendfile(2)`; TLS connections ([`https`]) go through rustls to the same fast path for
//! HTTP/1.1 (bodies read and encrypted, [`transport`], [`file_read`]) or to hyper for HTTP/2
//! ([`h2`]). A semaphore bounds open connections and doubles as the drain tracker: shutdown
//! waits until every permit is back.

pub mod file_read;
pub mod h2;
pub mod http1;
pub mod https;
pub mod linger;
pub mod request_line;
pub mod tls;
pub mod transport;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use prometheus::IntGauge;

/// Tells connections that shutdown has begun.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// A signal and the sender that triggers it.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once shutdown has begun.
    pub async fn wait(&mut self) {
        // An error means the sender is gone, which also means shutdown.
        let _ = self.0.wait_for(|&v| v).await;
    }

    /// Whether shutdown has begun.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// Accepts connections until shutdown, spawning `handle` for each one while holding a permit.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limiter: Arc<Semaphore>,
    mut shutdown: ShutdownSignal,
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
            _ = shutdown.wait() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait() => return,
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
        let fut = handle(stream, peer);
        let connections = connections.clone();
        tokio::spawn(async move {
            fut.await;
            connections.dec();
            drop(permit);
        });
    }
}

/// Waits until every connection holding a permit of `limiter` has closed, or `grace` passed.
pub async fn drain(limiter: &Semaphore, total: usize, grace: Duration) -> bool {
    let all = u32::try_from(total).unwrap_or(u32::MAX);
    tokio::time::timeout(grace, limiter.acquire_many(all))
        .await
        .is_ok()
}
