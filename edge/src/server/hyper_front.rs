//! TLS connections: rustls handshake, then hyper for HTTP/2 (ALPN `h2`) or HTTP/1.1.
//!
//! The same [`Edge::handle`] decides every response; this module only translates between
//! `http` types and the edge's [`RequestHead`] / [`Reply`], and streams file bodies from a
//! blocking-pool reader because TLS cannot use sendfile.

use std::convert::Infallible;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ShutdownSignal;
use crate::metrics::{Metrics, SendPath};
use crate::reply::{Body, Reply};
use crate::request::{Headers, RequestHead, Version};
use crate::service::Edge;

const READ_CHUNK: u64 = 256 * 1024;

/// Serves one TLS connection.
pub async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    edge: Arc<Edge>,
    mut shutdown: ShutdownSignal,
) {
    let handshake = tokio::time::timeout(edge.settings.header_timeout, acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(client.addr = %peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client.addr = %peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let svc_edge = edge.clone();
    let service = service_fn(move |req| {
        let edge = svc_edge.clone();
        async move { Ok::<_, Infallible>(respond(&edge, req, peer).await) }
    });
    let result = if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(256)
            .serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.wait() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(edge.settings.header_timeout)
            .max_buf_size(edge.settings.max_header_bytes.max(8192))
            .serve_connection(io, service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.wait() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(client.addr = %peer, %error, "connection ended");
    }
}

async fn respond(
    edge: &Edge,
    req: http::Request<Incoming>,
    peer: SocketAddr,
) -> http::Response<EdgeBody> {
    let version = match req.version() {
        http::Version::HTTP_2 => Version::H2,
        http::Version::HTTP_10 => Version::Http10,
        _ => Version::Http11,
    };
    let mut headers = Headers::default();
    for (name, value) in req.headers() {
        headers.add(name.as_str().as_bytes(), value.as_bytes());
    }
    let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
    if headers.host.is_none() && authority.is_some() {
        // HTTP/2 carries the host as :authority.
        headers.host = authority;
        headers.host_count = 1;
    }
    if version == Version::H2 && !http_body::Body::is_end_stream(req.body()) {
        headers.has_body = true;
    }
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let head = RequestHead {
        method: req.method().as_str().as_bytes(),
        target: target.as_bytes(),
        version,
        headers,
        peer: peer.ip(),
        tls: true,
    };
    let reply = edge.handle(&head).await;
    into_response(reply, edge.metrics.clone())
}

fn into_response(reply: Reply, metrics: Arc<Metrics>) -> http::Response<EdgeBody> {
    let mut builder = http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    if let Some(len) = reply.content_length {
        builder = builder.header(http::header::CONTENT_LENGTH, len);
    }
    let body = match reply.body {
        Body::Empty => EdgeBody::Empty,
        Body::Bytes(b, path) => EdgeBody::Bytes {
            data: Some(b),
            path,
            metrics,
        },
        Body::File { file, offset, len } => EdgeBody::File(FileBody {
            file,
            offset,
            remaining: len,
            pending: None,
            metrics,
        }),
    };
    builder.body(body).unwrap_or_else(|error| {
        tracing::error!(%error, "invalid response header");
        let mut r = http::Response::new(EdgeBody::Empty);
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A response body for hyper.
pub enum EdgeBody {
    Empty,
    Bytes {
        data: Option<Bytes>,
        path: SendPath,
        metrics: Arc<Metrics>,
    },
    File(FileBody),
}

/// Streams part of a file, reading each chunk on the blocking pool.
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    metrics: Arc<Metrics>,
}

impl http_body::Body for EdgeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            EdgeBody::Empty => Poll::Ready(None),
            EdgeBody::Bytes {
                data,
                path,
                metrics,
            } => Poll::Ready(data.take().map(|b| {
                metrics.sent(*path, b.len() as u64);
                Ok(Frame::data(b))
            })),
            EdgeBody::File(f) => f.poll_chunk(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EdgeBody::Empty => true,
            EdgeBody::Bytes { data, .. } => data.is_none(),
            EdgeBody::File(f) => f.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EdgeBody::Empty => SizeHint::with_exact(0),
            EdgeBody::Bytes { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            EdgeBody::File(f) => SizeHint::with_exact(f.remaining),
        }
    }
}

impl FileBody {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let pending = self.pending.get_or_insert_with(|| {
            let file = self.file.clone();
            let (offset, len) = (self.offset, self.remaining.min(READ_CHUNK) as usize);
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                file.read_exact_at(&mut buf, offset)?;
                Ok(Bytes::from(buf))
            })
        });
        let result = ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        let chunk = match result {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(join) => return Poll::Ready(Some(Err(io::Error::other(join)))),
        };
        self.offset += chunk.len() as u64;
        self.remaining -= chunk.len() as u64;
        self.metrics.sent(SendPath::Buffered, chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

use std::future::Future;
