//! HTTP/2 over TLS (rustls or kTLS) through hyper, with the limits the HTTP/1.1 loop enforces itself: at most
//! [`MAX_STREAMS`] concurrent streams, bounded send buffers and file bytes in memory per
//! connection ([`body`]), keep-alive PINGs, an idle timeout and a send timeout ([`activity`]).
//!
//! The same [`Edge::handle`] decides every response; this module only translates between
//! `http` types and the edge's [`RequestHead`] / [`Reply`].

pub mod activity;
pub mod body;
mod inline;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::shutdown::{drain, Switch};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::reply::{Body, Reply, Value};
use crate::request::{Headers, RequestHead, Version};
use crate::service::Edge;
use activity::{Activity, StreamGuard, Verdict};
use body::{Budget, EdgeBody};
use inline::{Serving, Streams};

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
    let budget = Budget::for_connection(&edge.h2_budget);
    let io = TokioIo::new(io);
    // Streams run in this connection's task first ([`inline`]), inside its span; those that
    // wait continue in tasks of their own, in the same span.
    let service = {
        let (edge, activity) = (edge.clone(), activity.clone());
        service_fn(move |req| {
            let stream = activity.open_stream();
            let (edge, budget) = (edge.clone(), budget.clone());
            async move { Ok::<_, Infallible>(respond(&edge, req, peer, stream, budget).await) }
        })
    };
    let streams = Streams::default();
    let conn = hyper::server::conn::http2::Builder::new(streams.clone())
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        .max_send_buf_size(SEND_BUFFER)
        .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(idle)
        .keep_alive_timeout(send)
        .serve_connection(io, service);
    let mut conn = Serving::new(conn, streams);
    let verdict = {
        let stopping = shutdown.clone();
        let served = drain(Pin::new(&mut conn), shutdown, |c| {
            c.get_mut().conn().graceful_shutdown()
        });
        tokio::select! {
            result = served => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended");
                }
                return;
            }
            verdict = watchdog(&activity, idle, send, stopping) => verdict,
        }
    };
    match verdict {
        Verdict::Idle => {
            conn.conn().graceful_shutdown();
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut conn).await;
            tracing::debug!("idle HTTP/2 connection closed");
        }
        _stalled => tracing::debug!("HTTP/2 connection stalled, dropped"),
    }
}

/// Resolves when the connection has had no stream for the idle timeout, or has a stream that
/// could send nothing for the send timeout: the deadlines hyper does not enforce. Runs during
/// a drain too, so a client that stops reading cannot hold the shutdown until its grace ends.
/// Once the shutdown fires, a connection without streams is idle after [`CLOSE_GRACE`]: h2
/// closes a draining connection only once the client acknowledged its PING, and a client
/// that never does (gone without a FIN, or hostile) would hold the drain.
async fn watchdog(
    activity: &Activity,
    mut idle: Duration,
    send: Duration,
    mut shutdown: Switch,
) -> Verdict {
    let check = tokio::time::sleep_until(activity.next_check(idle, send));
    let mut check = std::pin::pin!(check);
    let mut stopping = false;
    loop {
        tokio::select! {
            () = shutdown.fired(), if !stopping => {
                stopping = true;
                idle = idle.min(CLOSE_GRACE);
                check.as_mut().reset(activity.next_check(idle, send));
            }
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
    budget: Budget,
) -> http::Response<EdgeBody> {
    let reply = edge.handle(&request_head(&req, peer)).await;
    into_response(reply, edge, stream, budget)
}

/// The edge's view of an HTTP/2 request. Built outside [`respond`]'s future, which would
/// otherwise keep room for a second copy of the headers in every stream's state.
fn request_head(req: &http::Request<Incoming>, peer: SocketAddr) -> RequestHead<'_> {
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
    RequestHead {
        method: req.method().as_str().as_bytes(),
        target: target.as_bytes(),
        version: Version::H2,
        headers,
        peer: peer.ip(),
        sendfile: false,
    }
}

fn into_response(
    reply: Reply,
    edge: &Edge,
    stream: StreamGuard,
    budget: Budget,
) -> http::Response<EdgeBody> {
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
    let mut response = http::Response::new(body);
    let headers = response.headers_mut();
    headers.reserve(reply.headers.len() + 1);
    for (name, value) in reply.headers {
        match (header_name(name), header_value(value)) {
            (Ok(name), Ok(value)) => headers.append(name, value),
            _ => {
                tracing::error!(name, "invalid response header");
                let mut r = http::Response::new(EdgeBody::empty(edge.metrics.clone(), None));
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                return r;
            }
        };
    }
    if let Some(len) = reply.content_length {
        headers.insert(header::CONTENT_LENGTH, len.into());
    }
    *response.status_mut() = http::StatusCode::from_u16(reply.status).unwrap_or_else(|_| {
        tracing::error!(status = reply.status, "invalid response status");
        http::StatusCode::INTERNAL_SERVER_ERROR
    });
    response
}

/// The `http` name of a reply header: the edge's names are static and few, so the common ones
/// are matched to `http`'s constants rather than parsed (a 403 flood builds millions).
fn header_name(name: &'static str) -> Result<HeaderName, header::InvalidHeaderName> {
    Ok(match name {
        "Content-Type" => header::CONTENT_TYPE,
        "Cache-Control" => header::CACHE_CONTROL,
        "ETag" => header::ETAG,
        "Last-Modified" => header::LAST_MODIFIED,
        "Accept-Ranges" => header::ACCEPT_RANGES,
        "Content-Range" => header::CONTENT_RANGE,
        "Access-Control-Allow-Origin" => header::ACCESS_CONTROL_ALLOW_ORIGIN,
        "Vary" => header::VARY,
        other => HeaderName::from_bytes(other.as_bytes())?,
    })
}

/// A reply header's value, without copying static or owned text.
fn header_value(value: Value) -> Result<HeaderValue, header::InvalidHeaderValue> {
    match value {
        Value::Static(s) => HeaderValue::from_maybe_shared(Bytes::from_static(s.as_bytes())),
        Value::Shared(s) => HeaderValue::from_str(&s),
        Value::Owned(s) => HeaderValue::from_maybe_shared(Bytes::from(s)),
    }
}
