//! Source file in, encrypted adaptive HLS out.
//!
//! # Layout (in pipeline order)
//! - [`input`]: the container and protocol allow-lists every read of a source goes through;
//!   [`limits`]: the largest source accepted; [`child`]: encoders die with the worker.
//! - [`probe`]: ffprobe the source (refuse what is not a video); [`tracks`]: its audio and
//!   subtitle tracks and how they are delivered.
//! - [`thumbnails`]: poster first (reported at once), then the scrubbing storyboard.
//! - [`ladder`]: which rungs, never upscaling.
//! - [`encoder`]: NVENC if a session really opens, else libx264.
//! - [`ffmpeg`]: the command lines (pure, golden-tested); [`progress`] reads ffmpeg's progress.
//! - [`encrypt`]: AES-128 per segment, one key per rung, IV = media sequence number.
//! - [`playlist`]: variant and master playlists; [`renditions`]: what a job publishes (video
//!   rungs, audio renditions) and its master; [`subtitles`]: segmented WebVTT renditions.
//! - [`resume`]: continuing a crashed encode from its last complete segments.
//! - [`publish`]: verify in a temporary directory, then one rename into the served tree;
//!   [`growing`]: or publish segment by segment while the encode runs (EVENT playlists).
//! - [`pipeline`]: runs the stages for one job.

pub mod child;
pub mod encoder;
pub mod encrypt;
pub mod ffmpeg;
pub mod growing;
pub mod input;
pub mod ladder;
pub mod limits;
pub mod pipeline;
pub mod playlist;
pub mod probe;
pub mod progress;
pub mod publish;
pub mod renditions;
pub mod resume;
pub mod subtitles;
pub mod thumbnails;
pub mod tracks;
