//! The API listener: an accept loop under a connection cap, one task per connection serving
//! HTTP/1.1 with hyper, deadlines on every connection, and a bounded drain on shutdown.
//!
//! - A head must arrive within `server.header_timeout_secs` of its first byte and a connection
//!   may idle `server.idle_timeout_secs` between requests ([`transport::Activity`]); a write
//!   the client does not take within `server.send_timeout_secs` ends the connection.
//! - At most `server.max_connections` are open; more wait in the kernel's backlog.
//! - Refused requests still reach the client as answers: the transport closes lingering
//!   ([`transport::Transport`]).
//! - On shutdown: stop accepting, let each connection finish its request (keep-alive off), and
//!   give up after `server.shutdown_grace_secs`.

pub mod transport;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use shared::shutdown::{self, Switch};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::HttpSettings;
use transport::{Activity, Transport, Verdict};

/// Serves `app` on `listener` until `shutdown` resolves, then drains. Returns whether every
/// connection finished within the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let limiter = Arc::new(Semaphore::new(settings.max_connections));
    let (stop_tx, stop) = shutdown::channel();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = limiter.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning; the backlog holds clients.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let stop = stop.clone();
        let span = tracing::debug_span!("connection", client.addr = %peer);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                connection(tcp, app, settings, stop).await;
                drop(permit);
            },
            span,
        ));
    }
    drop(listener);
    stop_tx.fire();
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(settings.shutdown_grace, limiter.acquire_many(all))
        .await
        .is_ok();
    if !drained {
        tracing::warn!(grace = ?settings.shutdown_grace, "grace period over with API connections still open");
    }
    drained
}

/// Serves one connection until it closes, a deadline passes, or shutdown drains it.
async fn connection(tcp: tokio::net::TcpStream, app: Router, settings: HttpSettings, stop: Switch) {
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Transport::new(tcp, activity.clone(), settings.send_timeout));
    let tracked = activity.clone();
    let service = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let activity = tracked.clone();
        activity.request_started();
        let response = hyper::service::Service::call(&service, req);
        async move {
            let response = match response.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                _finished: Finished(activity),
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let watchdog = watchdog(&activity, settings);
    let mut watchdog = std::pin::pin!(watchdog);
    let draining = shutdown::drain(conn.as_mut(), stop, |conn| conn.graceful_shutdown());
    let result = tokio::select! {
        r = draining => r,
        () = &mut watchdog => {
            tracing::debug!("connection closed: header or idle timeout");
            return;
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended");
    }
}

/// Resolves when the connection's header or idle deadline has passed.
async fn watchdog(activity: &Activity, settings: HttpSettings) {
    loop {
        match activity.verdict(settings.header_timeout, settings.idle_timeout) {
            Verdict::Expired => return,
            Verdict::CheckAt(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = activity.head_began() => {}
                }
            }
        }
    }
}

/// Marks its request finished when dropped: when hyper has sent the body, or gave up on it.
struct Finished(Arc<Activity>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that tells the connection's [`Activity`] when it is done.
struct Tracked {
    body: Body,
    _finished: Finished,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
