//! HTTP/2 over TLS (rustls or kTLS) through hyper, with the limits the HTTP/1.1 loop enforces itself: at most
//! [`MAX_STREAMS`] concurrent streams, bounded send buffers and file bytes in memory per
//! connection ([`body`]), keep-alive PINGs, an idle timeout and a send timeout ([`activity`]).
//!
//! The same [`Edge::handle`] decides every response; this module only translates between
//! `http` types and the edge's [`RequestHead`] / [`Reply`].

pub mod activity;
pub mod body;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use shared::shutdown::{drain, Switch};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::reply::{Body, Reply};
use crate::request::{Headers, RequestHead, Version};
use crate::service::Edge;
use activity::{Activity, StreamGuard, Tracked, Verdict};
use body::{EdgeBody, CONNECTION_BUDGET};

/// Concurrent streams per connection (browsers open a handful; nginx allows 128).
pub const MAX_STREAMS: u32 = 128;
/// Bytes h2 may buffer per stream beyond what the peer's window lets out.
const SEND_BUFFER: usize = 64 * 1024;
/// How long an idle connection gets to take its GOAWAY before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection (after TLS and ALPN `h2`).
pub async fn serve<S>(io: S, peer: SocketAddr, edge: Arc<Edge>, shutdown: Switch)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let s = &edge.settings;
    let (idle, send) = (s.idle_timeout, s.send_timeout);
    let activity = Activity::new();
    let budget = Arc::new(Semaphore::new(CONNECTION_BUDGET));
    let io = TokioIo::new(Tracked::new(io, activity.clone()));
    // hyper runs each stream in a task of its own, outside the connection's span: entering it
    // on every poll of every stream cost 6 % of a small HTTP/2 answer (A/B on the 403 load).
    // The access log names the client itself.
    let service = {
        let (edge, activity) = (edge.clone(), activity.clone());
        service_fn(move |req| {
            let stream = activity.open_stream();
            let (edge, budget) = (edge.clone(), budget.clone());
            async move { Ok::<_, Infallible>(respond(&edge, req, peer, stream, budget).await) }
        })
    };
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_send_buf_size(SEND_BUFFER)
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(idle)
        .keep_alive_timeout(send)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let verdict = {
        let served = drain(conn.as_mut(), shutdown, |c| c.graceful_shutdown());
        tokio::select! {
            result = served => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            verdict = watchdog(&activity, idle, send) => verdict,
        }
    };
    match verdict {
        Verdict::Idle => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await;
            tracing::debug!("idle HTTP/2 connection closed");
        }
        _stalled => tracing::debug!("HTTP/2 connection stalled, dropped"),
    }
}

/// Resolves when the connection has had no stream for the idle timeout, or has streams open
/// and sent nothing for the send timeout: the deadlines hyper does not enforce. Runs during a
/// drain too, so a client that stops reading cannot hold the shutdown until its grace ends.
async fn watchdog(activity: &Activity, idle: Duration, send: Duration) -> Verdict {
    let check = tokio::time::sleep_until(activity.next_check(idle, send));
    let mut check = std::pin::pin!(check);
    loop {
        tokio::select! {
            () = activity.changed() => check.as_mut().reset(activity.next_check(idle, send)),
            () = check.as_mut() => match activity.verdict(idle, send) {
                Verdict::Busy => check.as_mut().reset(activity.next_check(idle, send)),
                verdict => return verdict,
            },
        }
    }
}

async fn respond(
    edge: &Edge,
    req: http::Request<Incoming>,
    peer: SocketAddr,
    stream: StreamGuard,
    budget: Arc<Semaphore>,
) -> http::Response<EdgeBody> {
    let mut headers = Headers::default();
    for (name, value) in req.headers() {
        headers.add(name.as_str().as_bytes(), value.as_bytes());
    }
    if headers.host.is_none() {
        // HTTP/2 carries the host as :authority.
        headers.host = req.uri().authority().map(|a| a.as_str().as_bytes());
        headers.host_count = u8::from(headers.host.is_some());
    }
    if !http_body::Body::is_end_stream(req.body()) {
        headers.has_body = true;
    }
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let head = RequestHead {
        method: req.method().as_str().as_bytes(),
        target: target.as_bytes(),
        version: Version::H2,
        headers,
        peer: peer.ip(),
        sendfile: false,
    };
    let reply = edge.handle(&head).await;
    into_response(reply, edge, stream, budget)
}

fn into_response(
    reply: Reply,
    edge: &Edge,
    stream: StreamGuard,
    budget: Arc<Semaphore>,
) -> http::Response<EdgeBody> {
    let mut builder = http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    if let Some(len) = reply.content_length {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    let metrics = edge.metrics.clone();
    let body = match reply.body {
        Body::Empty => EdgeBody::empty(metrics, Some(stream)),
        Body::Bytes(b, path) => EdgeBody::bytes(b, path, metrics, stream),
        Body::File { file, offset, len } => {
            EdgeBody::file(file, offset, len, budget, metrics, stream)
        }
        Body::Stream(s) => {
            let len = reply.content_length.unwrap_or(0);
            EdgeBody::stream(s.0, len, budget, metrics, stream)
        }
    };
    builder.body(body).unwrap_or_else(|error| {
        tracing::error!(%error, "invalid response header");
        let mut r = http::Response::new(EdgeBody::empty(edge.metrics.clone(), None));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
