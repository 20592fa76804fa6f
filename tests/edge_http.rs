//! End-to-end tests of the edge on its own: zero-copy delivery, connection handling, TLS and
//! reloads, graceful shutdown, cache freshness, the admin listener and request limits.
//!
//! Every test starts its own edge on ephemeral ports and is bounded in time: waits are
//! [`wait_until`](e2e::wait_until) with a deadline or reads with a timeout, never a fixed sleep.
//!
//! # Layout
//! - [`support`]: signed, expired and tampered request targets, starting an edge, running a
//!   command with a deadline, requiring a tool.
//! - [`sendfile_and_keepalive`]: zero-copy delivery (sendfile(2) under strace), keep-alive and
//!   pipelining.
//! - [`tls`]: HTTPS with HTTP/2 and HTTP/1.1, certificate reload on SIGHUP.
//! - [`shutdown`]: graceful shutdown on SIGTERM, with and without a delay.
//! - [`cache`]: cache freshness, and the admin listener (purge and metrics).
//! - [`limits`]: oversized headers, request bodies, the idle timeout.
//! - [`startup`]: the listeners reported with JSON logs.

#[path = "edge_http/cache.rs"]
mod cache;
#[path = "edge_http/limits.rs"]
mod limits;
#[path = "edge_http/sendfile_and_keepalive.rs"]
mod sendfile_and_keepalive;
#[path = "edge_http/shutdown.rs"]
mod shutdown;
#[path = "edge_http/startup.rs"]
mod startup;
#[path = "edge_http/support.rs"]
mod support;
#[path = "edge_http/tls.rs"]
mod tls;
