//! The origin: uploads become jobs, jobs become encrypted HLS on disk, and manifests are signed
//! for the edge.
//!
//! # Layout (data flow)
//! - [`transcode`]: probe -> ladder -> ffmpeg -> encrypt -> publish.

pub mod transcode;
