//! The origin: uploads become jobs, jobs become encrypted HLS on disk, and manifests are signed
//! for the edge.
//!
//! # Layout (data flow)
//! - [`jobs`]: job records, the queue with leases, the worker pool.
//! - [`transcode`]: probe -> ladder -> ffmpeg -> encrypt -> publish.

pub mod jobs;
pub mod transcode;
