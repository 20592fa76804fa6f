//! What the edge and the origin must agree on.
//!
//! The origin signs segment URLs; the edge verifies them. If the two ever disagree about a
//! signature, the bug can only be here.
//!
//! # Layout
//! - [`secure_link`]: nginx-compatible signed URLs (`md5` + `expires`), signing and verifying,
//!   with a key ring for secret rotation.
//! - [`media`]: video ids and the on-disk layout (what the edge serves, where keys live).
//! - [`objects`]: media in S3-compatible object storage: the `[storage]`/`[upstream]` block,
//!   credentials from the environment only, the store client, a bucket check.
//! - [`range`]: `Range` headers read like nginx (edge segments, origin progressive downloads).
//! - [`secret`]: secrets that never print and are never weak or a placeholder.
//! - [`env`]: environment-variable overrides read through a trait, so tests pass a map.
//! - [`telemetry`]: `tracing` subscriber set-up shared by both binaries.
//! - [`shutdown`]: SIGTERM/SIGINT, and the one switch every "stop now" inside both services
//!   uses (shutdown, drain, cancellation).

pub mod env;
pub mod media;
pub mod objects;
pub mod range;
pub mod secret;
pub mod secure_link;
pub mod shutdown;
pub mod telemetry;
