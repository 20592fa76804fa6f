//! Loopback ports for servers that must be told theirs before they start (redis-server, nginx,
//! an origin whose address the edge's CORS list names). Servers that can bind port 0 and
//! report their address (edge, origin) should do that instead.

use std::net::TcpListener;

/// A loopback port that was free a moment ago. Another process may take it before the caller
/// binds it: a caller that can, retries with a fresh one ([`crate::RedisServer::start`]).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}
