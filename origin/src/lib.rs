//! The origin: uploads become jobs, jobs become encrypted HLS on disk, and manifests are signed
//! for the edge.
//!
//! # Layout (data flow)
//! - [`api`]: HTTP: uploads, status, signed playback, events, admin.
//! - [`jobs`]: job records, the queue with leases, the worker pool.
//! - [`transcode`]: probe -> ladder -> ffmpeg -> encrypt -> publish.
//! - [`storage`]: where media lives: the data directory, or a bucket with each machine's data
//!   directory as its working copy.
//! - [`playback`]: stored playlists -> signed manifests for the edge.
//! - [`purge`]: telling the edge to drop deleted videos from its cache.
//! - [`webhooks`]: signed `video.ready` / `video.failed` events to a configured receiver.
//! - [`migration`]: importing existing files.
//! - [`http_client`]: the one HTTP client (webhooks, edge purges).
//! - [`net`]: the API listener (connection cap, deadlines, lingering close, drain).
//! - [`roles`]: `serve`, `worker` and `transcode`, each wired from its own settings.
//! - [`config`], [`metrics`].

pub mod api;
pub mod config;
pub mod http_client;
pub mod jobs;
pub mod metrics;
pub mod migration;
pub mod net;
pub mod playback;
pub mod purge;
pub mod roles;
pub mod storage;
pub mod transcode;
pub mod webhooks;
