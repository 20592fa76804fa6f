//! Jobs: the durable record of every video's processing, the queue workers claim from, and
//! the worker pool that runs the pipeline.
//!
//! # Layout
//! - [`model`]: the job record and its states.
//! - [`store`]: the [`store::JobStore`] trait (queue with leases, progress, checkpoints) that
//!   every backend implements; [`embedded`] is the single-machine default (redb in the data
//!   directory), [`redis`] the shared one for many machines, [`any`] whichever is configured.
//! - [`worker`]: the in-process worker pool: claim, heartbeat, run, complete or fail.
//! - [`announcer`]: final outcomes, recorded in the store with the outcome itself, to
//!   webhooks, so a process that dies before delivering one loses nothing.
//! - [`relay`]: progress events across processes through Redis.
//! - [`subtitle_files`]: subtitle files uploaded for a video: changes (and an encode's reads)
//!   take turns across machines, and a finished video's master names exactly the files there
//!   are.

pub mod announcer;
pub mod any;
pub mod embedded;
pub mod model;
pub mod redis;
pub mod relay;
pub mod store;
pub mod subtitle_files;
pub mod worker;
