//! Chaos: the Redis-backed job store, distributed workers and crash-resume, with real processes.
//!
//! One redis-server (fsynced AOF), one `origin serve --workers 0` (the API only), two
//! `origin worker --concurrency 2` and one edge, all on one data directory and one `REDIS_URL`.
//! Three 12 s 1280x720 clips are uploaded as alice and encoded with segment_secs = 1,
//! libx264 `ultrafast` (four rungs), lease_secs = 3, max_attempts = 5. Then:
//!
//! 1. Once every job is processing and the worker holding two of them is well into both
//!    encodes (one at >= 30 % in the API, every rung of both with 2+ complete segments on
//!    disk), that worker is killed with SIGKILL, and so are its ffmpeg children, as when the
//!    whole cgroup goes (OOM kill, systemd stopping a unit whose main process died, a container
//!    exiting). Left alone they would encode to the end: ffmpeg ignores the broken progress
//!    pipe. The killed attempts' work directories are snapshotted (the complete segments).
//! 2. Redis is SIGKILLed and started again on the same port and directory while the survivor
//!    encodes and the orphans' leases are still running out; no origin process is restarted.
//! 3. Every video must end `ready` by itself. The survivor renews its own job's lease through
//!    the new Redis; the two orphans are taken over by the survivor (attempt 2, logged); the
//!    API's event stream relays the second attempts' progress through the new Redis; each
//!    video plays end to end through the edge with ffmpeg as the client. Attempts beyond
//!    these must each match a lease the survivor logged losing (see `lease_losses`).
//! 4. No rung is encoded twice after its checkpoint: each taken-over job records
//!    `resumed:<k>` in its job record (read straight from Redis: the API does not show
//!    checkpoints) with `k` the number of complete segments the killed attempt left; every
//!    ladder ffmpeg for it after the kill was the survivor's and ran with
//!    `-ss k.000 -start_number k`; the old segments were hard-linked (link count 2), not
//!    re-encoded; the published segments `0..k` decrypt to exactly the bytes the killed attempt
//!    wrote; the keyframes of the resumed part sit on the reused part's grid (within
//!    [`SEAM_TOLERANCE`]); and ffmpeg plays it without a complaint at the seam, as it plays the
//!    uninterrupted video.
//! 5. Recovery times (kill -> attempt 2 visible in the API, kill -> ready) are printed
//!    (`--nocapture`).
//!
//! Both workers take two jobs at once so that the survivor has a free slot when the leases
//! run out: the first takeover then measures the lease mechanism (about `lease_secs` plus a
//! poll), not the survivor's backlog. The second orphan waits for the next free slot.
//!
//! A worker can still lose a lease on a loaded machine (heartbeats every second, a 3 s lease,
//! a debug build): it then stops without publishing and the job is taken over once more. The
//! test accepts such extra attempts only when the survivor logged the lost lease, and prints
//! them.
//!
//! A second test kills a worker while it publishes: the takeover must not resume from the
//! half-encrypted segments it left, and the video must still end `ready` and play.
//!
//! Every wait has a deadline; every process is stopped on drop (the killed worker's ffmpeg
//! children too).
//!
//! # Layout
//! - [`platform`]: the processes (Redis, the API, two workers, the edge), clips, uploads,
//!   kills, a job as the API and Redis see it, its event stream.
//! - [`media`]: ladder encodes found in `/proc`, segments in work directories, what a killed
//!   attempt left ([`media::Orphan`]), playing, probing and decrypting the published video.
//! - [`crash`]: the phases up to the chaos: uploads, the kill point, the kill, the Redis
//!   restart.
//! - [`recovery`]: every video ready, the takeovers, the live events, the report.
//! - [`resume`]: the checkpoints, the reused bytes, playback and the seam.

#[path = "chaos/crash.rs"]
mod crash;
#[path = "chaos/media.rs"]
mod media;
#[path = "chaos/platform.rs"]
mod platform;
#[path = "chaos/recovery.rs"]
mod recovery;
#[path = "chaos/resume.rs"]
mod resume;

use std::time::{Duration, Instant};

use e2e::origin::{mint_token, play_with_ffmpeg, JWT_SECRET};

use crate::crash::wait_for_publish_stage;
use crate::media::Orphan;
use crate::platform::{generate_clips, require_ffmpeg, Platform};

/// Seconds of each generated clip.
const CLIP_SECS: u32 = 12;

/// `[transcode] segment_secs`.
const SEGMENT_SECS: u32 = 1;

/// `[transcode] lease_secs` (the smallest the origin accepts).
const LEASE_SECS: u64 = 3;

/// The ladder for a 1280x720 source: nothing is upscaled.
const RUNGS: [&str; 4] = ["720p", "480p", "360p", "240p"];

/// Complete segments every rung of both doomed jobs must have before the kill, so each
/// takeover has something to resume from.
const MIN_SEGMENTS_AT_KILL: u32 = 2;

/// Whole-job percent the leading doomed job must show in the API before the kill.
const MIN_PROGRESS_AT_KILL: f64 = 30.0;

/// Uploads to the kill point.
const KILL_POINT_TIMEOUT: Duration = Duration::from_secs(60);

/// The kill to every video `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The first takeover: the lease runs out, then a poll of the survivor's free slot.
const FIRST_TAKEOVER_BOUND: Duration = Duration::from_secs(LEASE_SECS + 7);

/// ffmpeg playing one 12 s video (four rungs) through the edge.
const PLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// How far the resumed part's keyframes may sit from the grid of the reused part: rounding
/// only. Every attempt writes source time plus the same fixed origin, so the resumed part lands
/// exactly where an uninterrupted encode puts it. (When ffmpeg was left to shift each output
/// past its negative timestamps, the first attempt moved by the AAC priming, 21.3 ms here, and
/// the resumed run did not: its part started one AAC frame early and its audio overlapped.)
const SEAM_TOLERANCE: f64 = 0.001;

/// How often the test looks at the API, Redis and `/proc`.
const POLL: Duration = Duration::from_millis(50);

/// The platform with the three uploads in flight, before the kill.
struct Uploads {
    p: Platform,
    alice: String,
    /// The uploaded videos.
    ids: Vec<String>,
    /// The start of the test.
    started: Instant,
    /// The last upload answered.
    uploaded: Instant,
    _clips: tempfile::TempDir,
}

/// What the phases after the kill share.
struct Chaos {
    p: Platform,
    alice: String,
    /// The uploaded videos.
    ids: Vec<String>,
    /// The start of the test.
    started: Instant,
    /// The SIGKILL of the victim: recovery times count from here.
    killed: Instant,
    /// The worker that was not killed: its index in `p.workers`, its pid.
    survivor: usize,
    survivor_pid: u32,
    /// What the two killed attempts left.
    orphans: Vec<Orphan>,
    /// The survivor's own job and the worker name in its lease.
    own: String,
    own_holder: String,
    _clips: tempfile::TempDir,
}

#[test]
fn a_killed_worker_and_a_redis_restart_lose_no_work() {
    require_ffmpeg();
    let uploads = Uploads::start();
    // 1. The kill point, the kill and the snapshot of what the killed attempts left.
    let kill_point = uploads.wait_for_kill_point();
    let mut chaos = uploads.kill(kill_point);
    // 2. Redis restarts under the surviving worker's feet.
    chaos.restart_redis();
    let streams = chaos.follow_orphans();
    // 3. Everything ends ready by itself, taken over by the survivor.
    let all_ready_after = chaos.wait_until_all_ready();
    let extra_attempts = chaos.check_takeovers();
    // 4. No rung was encoded twice after its checkpoint; events crossed the restarted Redis;
    //    every video plays end to end through the edge.
    chaos.check_resumed_from_checkpoints();
    chaos.check_events_crossed_the_restart(streams);
    chaos.check_playback();
    // 5. The numbers.
    chaos.report(&extra_attempts, all_ready_after);
}

/// A worker that dies while it publishes (its encode done, its resume manifest withdrawn, the
/// rest of the segments and the final playlists being published) must not doom the video: the
/// takeover encodes again from plain segments and publishes a playable video, and the video is
/// never said to be playable while its media is missing. (An attempt that
/// reached publishing is never resumed: the all-at-once path encrypts its segments in place,
/// which a takeover must not hard-link.)
#[test]
fn a_worker_killed_while_publishing_does_not_doom_the_video() {
    require_ffmpeg();
    let (_clips, clips) = generate_clips(1);
    let mut p = Platform::start();
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let id = p.upload(&alice, &clips[0]);

    let work = wait_for_publish_stage(&p, &id);
    let holder = p.lease_holder(&id).expect("the job is leased");
    let victim = p
        .workers
        .iter()
        .position(|w| w.owns_lease(&holder))
        .unwrap_or_else(|| panic!("{id} leased to {holder}, none of ours"));
    p.kill_worker(victim);
    eprintln!("chaos: killed the worker publishing {}", work.display());

    // Until it is ready, the API never offers a master that is not there: the takeover starts
    // over and withdraws the dead attempt's publish, and the job stops saying it is playable
    // before that. (A bad answer is asked again 300 ms later, so a withdrawal landing between
    // the API's look at the job and its read of the master is not taken for a broken promise.)
    let master = format!("/api/videos/{id}/hls/master.m3u8");
    let mut broken = Vec::new();
    let mut view = serde_json::Value::Null;
    let ended = e2e::wait_until(READY_TIMEOUT, || {
        let first = p.origin.get_as(&alice, &master).status;
        if !matches!(first, 200 | 409) {
            std::thread::sleep(Duration::from_millis(300));
            let again = p.origin.get_as(&alice, &master).status;
            if !matches!(again, 200 | 409) {
                broken.push((first, again));
            }
        }
        view = p.view(&alice, &id).unwrap_or_default();
        view["status"] == "ready" || view["status"] == "failed"
    });
    assert!(
        ended,
        "{id} neither ready nor failed: {view}\n{}",
        p.diagnostics()
    );
    assert_eq!(
        view["status"],
        "ready",
        "{id} was lost to a crash while publishing: {view}\n{}",
        p.diagnostics()
    );
    assert!(
        broken.is_empty(),
        "the API offered a withdrawn master {} times (statuses {broken:?})\n{}",
        broken.len(),
        p.diagnostics()
    );
    let played = play_with_ffmpeg(&p.master_url(&alice, &id), PLAY_TIMEOUT);
    assert!(
        played.status.success(),
        "ffmpeg could not play {id}: {}",
        String::from_utf8_lossy(&played.stderr)
    );
}
