//! Harness for the end-to-end tests: real processes on loopback, raw bytes on the wire.
//!
//! The tests in this crate start the `edge` binary (and, for the compatibility suite, a real
//! nginx configured like production; for the API suite, the `origin` behind it) and talk to
//! them over plain TCP with hand-written requests, so nothing on the client side normalises a
//! URL before the server sees it.
//!
//! # Layout
//! It is also the workspace's one test kit: the origin's own tests (`origin/tests`, its Redis
//! store tests) take their Redis server, ports, waits, clips and processes from here.
//!
//! - [`content`]: a temporary content root shaped like the platform's HLS output.
//! - [`nginx`]: a throw-away nginx with the production `secure_link` location.
//! - [`edge`]: the `edge` binary under test, its listeners discovered from its log.
//! - [`origin`]: the `origin` binary under test (`serve` and `worker`), user tokens, uploads,
//!   generated clips.
//! - [`redis`]: a throw-away redis-server (fsynced AOF or none), crash, restart, pause, raw
//!   RESP.
//! - [`seaweed`]: a throw-away SeaweedFS (S3 with SigV4) on run-time ports, an admin and a
//!   read-only identity, stop and start again for outages.
//! - [`clips`]: source videos made by ffmpeg's generators, written where asked or cached.
//! - [`http`]: raw HTTP/1.x requests and a tolerant response parser.
//! - [`sse`]: Server-Sent Events read incrementally off a raw connection.
//! - [`tls`]: a test CA, server certificates and a verifying TLS client.
//! - [`metrics`]: reading values out of Prometheus text.
//! - [`webhook`]: a scripted webhook receiver and the signature it verifies.
//! - [`process`]: child-process plumbing shared by the above (stderr draining, signals,
//!   bounded runs, `/proc` inspection).
//! - [`port`]: free loopback ports for servers that cannot report theirs.
//! - [`files`]: what a test left on disk.
//! - [`wait`]: bounded polling instead of fixed sleeps, blocking or async.

pub mod clips;
pub mod content;
pub mod edge;
pub mod files;
pub mod http;
pub mod metrics;
pub mod nginx;
pub mod origin;
pub mod port;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod seaweed;
pub mod sse;
pub mod tls;
pub mod wait;
pub mod webhook;

pub use content::ContentTree;
pub use edge::{Edge, EdgeOptions};
pub use http::{raw_request, RawResponse, Request};
pub use nginx::Nginx;
pub use origin::{Origin, OriginOptions, OriginWorker, WorkerOptions};
pub use process::Signal;
pub use redis::RedisServer;
pub use seaweed::SeaweedFs;
pub use wait::{wait_until, wait_until_async};

use shared::secure_link::{Secret, SecureLink};
use std::time::{SystemTime, UNIX_EPOCH};

/// The secret every test signs with. Plain ASCII without `$`, `"` or `;` so it can be pasted
/// verbatim into an nginx `secure_link_md5` expression.
pub const TEST_SECRET: &str = "e2e-test-secret-0123456789";

/// The location prefix both servers serve the content root under.
pub const PREFIX: &str = "/hls/";

/// The signer for [`TEST_SECRET`].
pub fn signer() -> SecureLink {
    SecureLink::new(vec![Secret::new(TEST_SECRET)]).expect("the test secret is non-empty")
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_secs()).expect("Unix time fits in i64")
}

/// An expiry far enough ahead that no test run can reach it, yet well inside `time_t`.
pub fn future_expires() -> i64 {
    unix_now() + 24 * 3600
}

/// An expiry safely in the past (but positive, so it is well-formed).
pub fn past_expires() -> i64 {
    unix_now() - 3600
}
