//! The admin listener (loopback by default): `/metrics`, `/healthz`, `/readyz` and an
//! authenticated `POST /purge?prefix=/hls/<...>` that drops hot-cache entries (and, with an
//! upstream, the pulled files on disk, so they are pulled again).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use shared::shutdown::{drain, Switch};
use subtle_eq::constant_time_eq;
use tokio::net::TcpStream;

use crate::service::Edge;

/// Serves one admin connection.
pub async fn serve(stream: TcpStream, edge: Arc<Edge>, shutdown: Switch) {
    let service = service_fn(move |req| {
        let edge = edge.clone();
        async move { Ok::<_, Infallible>(route(&edge, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), service);
    let conn = std::pin::pin!(conn);
    // hyper bounds the wait for a head, not a write: a client that never reads its answers
    // would hold one of the listener's few connections for good.
    let served = tokio::time::timeout(
        CONNECTION_LIFETIME,
        drain(conn, shutdown, |c| c.graceful_shutdown()),
    );
    match served.await {
        Ok(Err(error)) => tracing::debug!(%error, "admin connection ended"),
        Err(_) => tracing::debug!("admin connection closed at the end of its lifetime"),
        Ok(Ok(())) => {}
    }
}

/// The longest an admin connection lives: a scraper simply connects again.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

async fn route(edge: &Edge, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(edge.metrics.render())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/readyz") if edge.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "draining"}),
            )
        }
        (&Method::GET, "/healthz" | "/readyz") => {
            json(StatusCode::OK, serde_json::json!({"status": "ok"}))
        }
        (&Method::POST, "/purge") => purge(edge, &req).await,
        (_, "/metrics" | "/healthz" | "/readyz" | "/purge") => json(
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "method not allowed"}),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        ),
    }
}

async fn purge(edge: &Edge, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(expected) = edge.settings.purge_token.as_ref().map(|t| t.expose()) else {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "purge is disabled: set admin.purge_token"}),
        );
    };
    let given = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if !given.is_some_and(|g| constant_time_eq(g, expected.as_bytes())) {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "missing or wrong bearer token"}),
        );
    }
    let prefix = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("prefix=")));
    let Some(prefix) = prefix.filter(|p| p.starts_with(edge.settings.prefix.as_str())) else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": format!("query parameter prefix must start with {}", edge.settings.prefix)}),
        );
    };
    let mut purged = edge.cache.purge_prefix(prefix.as_bytes()).await
        + edge.open_files.purge_prefix(prefix.as_bytes());
    if let Some(upstream) = &edge.upstream {
        // The disk cache is keyed below the content prefix.
        let below = &prefix.as_bytes()[edge.settings.prefix.len()..];
        purged += upstream.purge_prefix(below);
    }
    edge.metrics.purged.inc_by(purged as u64);
    tracing::info!(prefix, purged, "cache purge");
    json(
        StatusCode::OK,
        serde_json::json!({"purged": purged, "prefix": prefix}),
    )
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

mod subtle_eq {
    /// Compares without an early exit, so response time does not reveal how much of a guessed
    /// token was right.
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}
