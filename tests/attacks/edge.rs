//! Attacks on the edge: slow and silent connections (plain and TLS, HTTP/1.1 and HTTP/2),
//! memory held per connection, response headers that outlive a link or leak the Host, and
//! weak or unparsable configuration.
//!
//! # Layout
//! - [`slow_heads`]: request heads trickled byte by byte, alone and as a 2,000-connection
//!   slowloris.
//! - [`lingering`]: a refused request whose body is still arriving, and a body that must never
//!   be read as the next request (smuggling).
//! - [`tls_limits`]: silent TLS connections and HTTP/2 streams that never read.
//! - [`h2`]: a minimal raw HTTP/2 client for the above.
//! - [`headers`]: Cache-Control within the link's lifetime, `Vary: Origin`, relative redirects.
//! - [`config`]: weak and placeholder secrets, unparsable environment overrides.

#[path = "edge/config.rs"]
mod config;
#[path = "edge/h2.rs"]
mod h2;
#[path = "edge/headers.rs"]
mod headers;
#[path = "edge/lingering.rs"]
mod lingering;
#[path = "edge/slow_heads.rs"]
mod slow_heads;
#[path = "edge/tls_limits.rs"]
mod tls_limits;
