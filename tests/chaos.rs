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
//! One thing the origin does today shapes the test (reported as a bug): publishing (AES over
//! every segment) runs synchronously in the task that also heartbeats, so on a loaded machine
//! a 3 s lease can run out while a worker publishes: it then stops, tells viewers `failed`
//! (final), and the job is taken over once more. The test accepts such extra attempts only
//! when the survivor logged the lost lease, and prints them.
//!
//! A second test, ignored until the origin fixes it, kills a worker while it publishes: the
//! takeover then resumes from half-encrypted segments and the job fails for good.
//!
//! Every wait has a deadline; every process is stopped on drop (the killed worker's ffmpeg
//! children too).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use e2e::origin::{data_dir, generate_clip, json, mint_token, JWT_SECRET};
use e2e::sse::{self, SseStream};
use e2e::{
    metrics, process, Edge, EdgeOptions, Origin, OriginOptions, OriginWorker, RedisServer, Request,
    Signal, WorkerOptions,
};

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

type Decryptor = cbc::Decryptor<aes::Aes128>;

/// Shared by the API and both workers; the API also gets the edge by flag.
fn origin_config(edge_base_url: &str) -> String {
    format!(
        "[transcode]\nworkers = 0\nsegment_secs = {SEGMENT_SECS}\nx264_preset = \"ultrafast\"\n\
         nvenc = \"off\"\nlease_secs = {LEASE_SECS}\nmax_attempts = 5\n\n\
         [playback]\nedge_base_url = \"{edge_base_url}\"\n"
    )
}

/// Everything the test runs. Fields drop in order: workers, the API and the edge stop before
/// Redis, and the data directory goes last.
struct Platform {
    workers: Vec<OriginWorker>,
    origin: Origin,
    edge: Edge,
    redis: RedisServer,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Platform {
    fn start() -> Self {
        let (dir, data) = data_dir("e2e-chaos-");
        let redis = RedisServer::start();
        let edge = Edge::start(EdgeOptions::new(&data.join("hls")));
        let edge_url = format!("http://{}", edge.public_addr);
        let config = origin_config(&edge_url);
        let origin = Origin::start(
            OriginOptions::new(&data, &edge_url)
                .config(&config)
                .env("REDIS_URL", &redis.url()),
        );
        let workers = (0..2)
            .map(|_| {
                OriginWorker::start(
                    WorkerOptions::new(&data)
                        .concurrency(2)
                        .config(&config)
                        .env("REDIS_URL", &redis.url()),
                )
            })
            .collect();
        Self {
            workers,
            origin,
            edge,
            redis,
            data,
            _dir: dir,
        }
    }

    fn diagnostics(&self) -> String {
        let mut out = vec![self.origin.diagnostics(), self.edge.diagnostics()];
        out.extend(self.workers.iter().map(OriginWorker::diagnostics));
        out.push(self.redis.diagnostics());
        out.join("\n")
    }

    /// The API's view of `id`, `None` while the API cannot answer (Redis down: 503).
    fn view(&self, token: &str, id: &str) -> Option<serde_json::Value> {
        let response = self.origin.get_as(token, &format!("/api/videos/{id}"));
        (response.status == 200).then(|| json(&response))
    }

    /// A field of `id`'s job record, read from Redis itself (JSON text); `None` if absent.
    fn job_field(&self, id: &str, field: &str) -> Option<String> {
        self.redis.hget(&format!("hls:job:{id}"), field)
    }

    /// The worker name in `id`'s lease, if it has one.
    fn lease_holder(&self, id: &str) -> Option<String> {
        let lease: serde_json::Value = serde_json::from_str(&self.job_field(id, "lease")?).ok()?;
        lease["worker"].as_str().map(str::to_owned)
    }
}

/// A running ladder encode (the one ffmpeg per job that writes every rung).
#[derive(Debug, Clone)]
struct Encode {
    pid: u32,
    parent: Option<u32>,
    video: String,
    /// `<data>/tmp/<video>-<nonce>`: this attempt's work directory.
    work: PathBuf,
    args: Vec<String>,
}

impl Encode {
    /// Whether `flag` is immediately followed by `value` on the command line.
    fn has(&self, flag: &str, value: &str) -> bool {
        self.args.windows(2).any(|w| w[0] == flag && w[1] == value)
    }
}

/// The ladder encodes of `videos` running right now, found in `/proc`.
fn ladder_encodes(videos: &[String]) -> Vec<Encode> {
    process::all_pids()
        .into_iter()
        .filter_map(|pid| {
            let args = process::cmdline(pid)?;
            if !args.first()?.ends_with("ffmpeg") || !args.iter().any(|a| a == "-var_stream_map") {
                return None;
            }
            // `-hls_segment_filename <work>/hls/%v/segment_%03d.ts`
            let pattern = args
                .windows(2)
                .find(|w| w[0] == "-hls_segment_filename")
                .map(|w| PathBuf::from(&w[1]))?;
            let work = pattern.parent()?.parent()?.parent()?.to_path_buf();
            let name = work.file_name()?.to_string_lossy().into_owned();
            let video = videos
                .iter()
                .find(|v| name.starts_with(&format!("{v}-")))?
                .clone();
            Some(Encode {
                pid,
                parent: process::parent_pid(pid),
                video,
                work,
                args,
            })
        })
        .collect()
}

fn segment_name(i: u32) -> String {
    format!("segment_{i:03}.ts")
}

/// Segment files present from 0 on in one rung of a work directory.
fn segment_files(work: &Path, rung: &str) -> u32 {
    let dir = work.join("hls").join(rung);
    (0..)
        .take_while(|&i| dir.join(segment_name(i)).is_file())
        .count() as u32
}

/// Segments complete in every rung: ffmpeg opens segment N+1 only after closing N, so all but
/// the newest file of a rung are complete (the origin's resume rule).
fn complete_segments(work: &Path) -> u32 {
    RUNGS
        .iter()
        .map(|rung| segment_files(work, rung).saturating_sub(1))
        .min()
        .unwrap_or(0)
}

/// What a killed attempt left behind.
struct Orphan {
    video: String,
    /// The killed attempt's work directory.
    work: PathBuf,
    /// Complete segments in every rung.
    complete: u32,
    /// `(rung, index) -> bytes` of the complete segments, as the killed attempt wrote them.
    segments: BTreeMap<(String, u32), Vec<u8>>,
    /// Since the kill: attempt 2 first visible in the API; `ready`.
    claimed_after: Option<Duration>,
    ready_after: Option<Duration>,
    /// The lease holder when attempt 2 was first seen.
    second_holder: Option<String>,
    /// Ladder encodes of this video seen after the kill, by pid.
    encodes: BTreeMap<u32, Encode>,
    /// The old segments were seen hard-linked (link count 2) by the new attempt.
    adopted: bool,
    /// Where the resumed part's keyframes sit relative to the reused part's grid, seconds.
    seam_shift: f64,
    /// Lines ffmpeg (`-v error`) printed while playing the video.
    playback_complaints: usize,
}

impl Orphan {
    fn snapshot(encode: &Encode) -> Self {
        let complete = complete_segments(&encode.work);
        let mut segments = BTreeMap::new();
        for rung in RUNGS {
            for i in 0..complete {
                let path = encode.work.join("hls").join(rung).join(segment_name(i));
                let bytes =
                    fs::read(&path).unwrap_or_else(|e| panic!("snapshot {}: {e}", path.display()));
                segments.insert((rung.to_owned(), i), bytes);
            }
        }
        Self {
            video: encode.video.clone(),
            work: encode.work.clone(),
            complete,
            segments,
            claimed_after: None,
            ready_after: None,
            second_holder: None,
            encodes: BTreeMap::new(),
            adopted: false,
            seam_shift: 0.0,
            playback_complaints: 0,
        }
    }
}

/// How many times `worker` logged losing the lease of `video` mid-run.
///
/// The pipeline publishes (reads, AES-encrypts and rewrites every segment) synchronously in
/// the task that also runs the job's heartbeat, so the heartbeat waits until it is done; on a
/// loaded machine, with a debug build and a 3 s lease, that can outlast the lease.
fn lease_losses(worker: &OriginWorker, video: &str) -> usize {
    worker
        .stderr_lines()
        .iter()
        .filter(|line| {
            line.contains("lease lost, stopping without publishing") && line.contains(video)
        })
        .count()
}

/// Follows `id`'s events on the API until `ready` or a final `failed`, in a thread.
fn follow_events(api: SocketAddr, token: &str, id: &str) -> thread::JoinHandle<SseStream> {
    let request = Request::get(format!("/api/videos/{id}/events?token={token}"))
        .header("Accept", "text/event-stream")
        .host(api.to_string())
        .build();
    thread::spawn(move || {
        sse::read_events(api, &request, READY_TIMEOUT, |event| {
            event.event == "ready"
                || (event.event == "failed"
                    && serde_json::from_str::<serde_json::Value>(&event.data)
                        .is_ok_and(|d| d["retrying"] == false))
        })
        .expect("read the event stream")
    })
}

/// Plays `url` to the end with ffmpeg, decoding every stream of every variant.
fn ffmpeg_play(url: &str) -> std::process::Output {
    process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i", url])
            .args(["-map", "0", "-f", "null", "-"]),
        PLAY_TIMEOUT,
    )
}

/// Presentation times of the keyframes of the first video stream of `url` (its first variant).
fn keyframe_times(url: &str) -> Vec<f64> {
    let output = process::run_bounded(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0"])
            .arg(url),
        PLAY_TIMEOUT,
    );
    assert!(
        output.status.success(),
        "ffprobe {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (pts, flags) = line.split_once(',')?;
            flags
                .starts_with('K')
                .then(|| pts.parse::<f64>().ok())
                .flatten()
        })
        .collect()
}

fn decrypt(key: &[u8], sequence: u64, data: &[u8]) -> Option<Vec<u8>> {
    let key: [u8; 16] = key.try_into().ok()?;
    let iv = u128::from(sequence).to_be_bytes();
    Decryptor::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .ok()
}

/// The segment URIs of a variant playlist and the sum of their `#EXTINF` durations.
fn playlist_segments(text: &str) -> (Vec<String>, f64) {
    let mut total = 0.0;
    let mut uris = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            total += d
                .trim_end_matches(',')
                .split(',')
                .next()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("bad EXTINF {line:?}"));
        } else if !line.is_empty() && !line.starts_with('#') {
            uris.push(line.to_owned());
        }
    }
    (uris, total)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    )
}

#[test]
fn a_killed_worker_and_a_redis_restart_lose_no_work() {
    assert!(
        process::on_path("ffmpeg"),
        "ffmpeg is not installed: run scripts/test.sh, which installs it"
    );
    let started = Instant::now();
    // Clips first, all at once, so that the three jobs start together.
    let clips = tempfile::Builder::new()
        .prefix("e2e-chaos-clips-")
        .tempdir()
        .expect("create clips dir");
    let clip_paths: Vec<PathBuf> = (0..3)
        .map(|n| clips.path().join(format!("clip{n}.mp4")))
        .collect();
    thread::scope(|scope| {
        for path in &clip_paths {
            scope.spawn(move || generate_clip(path, CLIP_SECS, 1280, 720));
        }
    });
    let mut p = Platform::start();
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");

    // ---- three clips, uploaded as alice -------------------------------------------------
    let mut ids = Vec::new();
    for (n, clip) in clip_paths.iter().enumerate() {
        let response = p
            .origin
            .upload(&alice, &fs::read(clip).expect("read clip"), "video/mp4");
        assert_eq!(
            response.status,
            202,
            "upload {n}: {}\n{}",
            response.text(),
            p.diagnostics()
        );
        ids.push(
            json(&response)["id"]
                .as_str()
                .expect("upload answer has an id")
                .to_owned(),
        );
    }
    let uploaded = Instant::now();
    eprintln!(
        "chaos: clips generated, platform up and 3 clips uploaded in {:.1} s",
        (uploaded - started).as_secs_f64()
    );

    // ---- 1. the kill point: one worker holds two jobs, both well into their encode -------
    let deadline = uploaded + KILL_POINT_TIMEOUT;
    let (victim, doomed) = loop {
        let views: Vec<Option<serde_json::Value>> =
            ids.iter().map(|id| p.view(&alice, id)).collect();
        for (id, view) in ids.iter().zip(&views) {
            if let Some(v) = view {
                assert!(
                    v["status"] != "failed" && v["status"] != "ready",
                    "{id} is {} before the chaos began: {v}\n{}",
                    v["status"],
                    p.diagnostics()
                );
            }
        }
        let all_processing = views
            .iter()
            .all(|v| v.as_ref().is_some_and(|v| v["status"] == "processing"));
        let encodes = ladder_encodes(&ids);
        let held = |w: &OriginWorker| -> Vec<Encode> {
            encodes
                .iter()
                .filter(|e| e.parent == Some(w.pid()))
                .cloned()
                .collect()
        };
        let candidate = p
            .workers
            .iter()
            .position(|w| held(w).len() == 2)
            .filter(|_| all_processing && encodes.len() == 3);
        if let Some(w) = candidate {
            let mine = held(&p.workers[w]);
            let progress = |video: &str| {
                ids.iter()
                    .zip(&views)
                    .find(|(id, _)| *id == video)
                    .and_then(|(_, v)| v.as_ref()?["progress"].as_f64())
                    .unwrap_or(0.0)
            };
            let far_enough = mine
                .iter()
                .all(|e| complete_segments(&e.work) >= MIN_SEGMENTS_AT_KILL)
                && mine
                    .iter()
                    .any(|e| progress(&e.video) >= MIN_PROGRESS_AT_KILL);
            if far_enough {
                break (w, mine);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no worker held two jobs {MIN_SEGMENTS_AT_KILL}+ segments into their encode (one at \
             {MIN_PROGRESS_AT_KILL}+ % in the API) within {KILL_POINT_TIMEOUT:?}; views \
             {views:?}; encodes {encodes:#?}\n{}",
            p.diagnostics()
        );
        thread::sleep(POLL);
    };
    let survivor = 1 - victim;
    let victim_pid = p.workers[victim].pid();
    let survivor_pid = p.workers[survivor].pid();
    // The job records agree with /proc about who holds what.
    for e in &doomed {
        let holder = p.lease_holder(&e.video);
        assert!(
            holder
                .as_deref()
                .is_some_and(|h| p.workers[victim].owns_lease(h)),
            "{} is encoded by worker {victim_pid} but leased to {holder:?}",
            e.video
        );
    }
    let progress_at_kill: Vec<String> = doomed
        .iter()
        .map(|e| {
            let v = p.view(&alice, &e.video).expect("view");
            format!(
                "{} at {}% ({}/{CLIP_SECS} segments complete)",
                e.video,
                v["progress"],
                complete_segments(&e.work)
            )
        })
        .collect();

    // SIGKILL for the worker and its ffmpeg children, as a cgroup kill would.
    let children = process::children_of(victim_pid);
    let killed = Instant::now();
    p.workers[victim].kill9();
    for child in &children {
        process::try_signal(*child, Signal::Kill);
    }
    assert!(
        e2e::wait_until(Duration::from_secs(5), || doomed
            .iter()
            .all(|e| !process::alive(e.pid))),
        "the killed worker's ffmpeg processes are still running"
    );
    let mut orphans: Vec<Orphan> = doomed.iter().map(Orphan::snapshot).collect();
    let own: Vec<String> = ids
        .iter()
        .filter(|id| orphans.iter().all(|o| &o.video != *id))
        .cloned()
        .collect();
    let [own] = <[String; 1]>::try_from(own).expect("the survivor runs the third job");
    let own_holder = p
        .lease_holder(&own)
        .filter(|h| p.workers[survivor].owns_lease(h))
        .unwrap_or_else(|| panic!("{own} is not leased to the survivor {survivor_pid}"));
    eprintln!(
        "chaos: killed worker {victim_pid} (and its ffmpeg {children:?}) {:.1} s after the \
         uploads: {}",
        (killed - uploaded).as_secs_f64(),
        progress_at_kill.join(", ")
    );
    for o in &orphans {
        assert!(
            o.complete >= MIN_SEGMENTS_AT_KILL,
            "{}: only {} complete segments after the kill",
            o.video,
            o.complete
        );
    }

    // ---- 2. Redis restarts under the surviving worker's feet -------------------------------
    let restarted_at = e2e::unix_now();
    let redis_down = p.redis.restart();
    let redis_back = killed.elapsed();
    let mut api_view = None;
    let api_answers = e2e::wait_until(Duration::from_secs(15), || {
        api_view = p.view(&alice, &ids[0]);
        api_view.is_some()
    });
    assert!(
        api_answers,
        "the API did not answer again after the Redis restart\n{}",
        p.diagnostics()
    );
    let api_back = killed.elapsed();
    // The survivor renews its lease through the new Redis (a heartbeat from after the restart:
    // `expires_at` is the heartbeat's whole second plus the lease), or has finished the job.
    let mut own_lease = None;
    let renewed = e2e::wait_until(Duration::from_secs(LEASE_SECS * 3), || {
        own_lease = p.job_field(&own, "lease");
        if p.job_field(&own, "state").as_deref() == Some("\"ready\"") {
            return true;
        }
        own_lease
            .as_deref()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .is_some_and(|l| {
                l["worker"] == own_holder.as_str()
                    && l["expires_at"]
                        .as_i64()
                        .is_some_and(|e| e > restarted_at + LEASE_SECS as i64)
            })
    });
    assert!(
        renewed,
        "{own}: the survivor did not renew its lease after the Redis restart (lease now \
         {own_lease:?})\n{}",
        p.diagnostics()
    );
    let renewed_after = killed.elapsed();
    eprintln!(
        "chaos: redis down {:.0} ms (back {:.1} s after the kill); API answering {:.1} s and \
         the survivor's lease renewed {:.1} s after the kill",
        redis_down.as_secs_f64() * 1000.0,
        redis_back.as_secs_f64(),
        api_back.as_secs_f64(),
        renewed_after.as_secs_f64()
    );

    // Live progress of the orphans must reach the API through the new Redis.
    let streams: Vec<_> = orphans
        .iter()
        .map(|o| follow_events(p.origin.api_addr, &alice, &o.video))
        .collect();

    // ---- 3. everything ends ready by itself -------------------------------------------------
    let deadline = killed + READY_TIMEOUT;
    loop {
        let mut all_ready = true;
        for id in &ids {
            let Some(v) = p.view(&alice, id) else {
                all_ready = false;
                continue;
            };
            assert!(
                v["status"] != "failed",
                "{id} failed: {v}\n{}",
                p.diagnostics()
            );
            all_ready &= v["status"] == "ready";
            if let Some(o) = orphans.iter_mut().find(|o| &o.video == id) {
                let attempts = v["attempts"].as_u64().unwrap_or(0);
                if attempts >= 2 && o.claimed_after.is_none() {
                    o.claimed_after = Some(killed.elapsed());
                    o.second_holder = p.lease_holder(id);
                }
                if v["status"] == "ready" && o.ready_after.is_none() {
                    o.ready_after = Some(killed.elapsed());
                }
            }
        }
        for e in ladder_encodes(&ids) {
            if let Some(o) = orphans.iter_mut().find(|o| o.video == e.video) {
                o.encodes.entry(e.pid).or_insert(e);
            }
        }
        for o in orphans.iter_mut().filter(|o| !o.adopted) {
            let first = o.work.join("hls").join(RUNGS[0]).join(segment_name(0));
            o.adopted = fs::metadata(&first).is_ok_and(|m| m.nlink() >= 2);
        }
        if all_ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every video was ready {READY_TIMEOUT:?} after the kill\n{}",
            p.diagnostics()
        );
        thread::sleep(POLL);
    }
    let all_ready_after = killed.elapsed();

    // The orphans were taken over by the survivor. Every attempt beyond the one takeover (and
    // beyond the first, for the survivor's own job) must be a lease the survivor lost and
    // logged: the origin can starve its own heartbeat while it publishes (see
    // `lease_losses`), which a 3 s lease on a loaded machine does not always survive.
    let expected = |id: &str| if id == own { 1 } else { 2 };
    let mut extra_attempts = Vec::new();
    for id in &ids {
        let v = p.view(&alice, id).expect("view");
        let attempts = v["attempts"].as_u64().expect("attempts");
        let lost = lease_losses(&p.workers[survivor], id);
        assert!(
            attempts >= expected(id) && attempts - expected(id) == lost as u64,
            "{id}: {attempts} attempts, expected {} plus one per lease the survivor lost \
             ({lost}): {v}\n{}",
            expected(id),
            p.diagnostics()
        );
        if lost > 0 {
            extra_attempts.push(format!("{id}: +{lost}"));
        }
    }
    for o in &orphans {
        assert!(
            o.second_holder
                .as_deref()
                .is_some_and(|h| p.workers[survivor].owns_lease(h)),
            "{}: attempt 2 leased to {:?}, not the survivor {survivor_pid}",
            o.video,
            o.second_holder
        );
        assert!(
            p.workers[survivor].wait_for_log(
                &["lease expired, taking the job over", &o.video],
                Duration::ZERO
            ),
            "the survivor did not log the takeover of {}\n{}",
            o.video,
            p.workers[survivor].diagnostics()
        );
    }
    let first_takeover = orphans
        .iter()
        .filter_map(|o| o.claimed_after)
        .min()
        .expect("a takeover was seen");
    assert!(
        first_takeover <= FIRST_TAKEOVER_BOUND,
        "the first orphan was claimed {first_takeover:?} after the kill (lease {LEASE_SECS} s)"
    );

    // ---- 4. no rung was encoded twice after its checkpoint --------------------------------
    for o in &orphans {
        let k = o.complete;
        let checkpoints = p
            .job_field(&o.video, "checkpoints")
            .unwrap_or_else(|| panic!("{}: no checkpoints field in Redis", o.video));
        let checkpoints: Vec<String> = serde_json::from_str(&checkpoints)
            .unwrap_or_else(|e| panic!("checkpoints {checkpoints:?}: {e}"));
        assert!(
            checkpoints.contains(&format!("resumed:{k}")),
            "{}: the killed attempt left {k} complete segments per rung, checkpoints are \
             {checkpoints:?}",
            o.video
        );
        assert!(
            p.workers[survivor].wait_for_log(
                &[
                    "resuming the encode after an earlier attempt",
                    &o.video,
                    &format!("segment={k}")
                ],
                Duration::ZERO
            ),
            "the survivor did not log resuming {} at segment {k}\n{}",
            o.video,
            p.workers[survivor].diagnostics()
        );
        assert!(
            !o.encodes.is_empty(),
            "{}: no ladder encode seen after the kill",
            o.video
        );
        let offset = format!("{:.3}", f64::from(k * SEGMENT_SECS));
        for e in o.encodes.values() {
            assert_eq!(
                e.parent,
                Some(survivor_pid),
                "{}: a ladder encode after the kill not run by the survivor: {e:?}",
                o.video
            );
            assert!(
                e.has("-ss", &offset) && e.has("-start_number", &k.to_string()),
                "{}: a ladder encode after the kill does not start at segment {k} ({offset} s): \
                 {:?}",
                o.video,
                e.args
            );
            assert_ne!(e.work, o.work, "a new attempt has its own work directory");
        }
        assert!(
            o.adopted,
            "{}: the killed attempt's segments were never seen hard-linked into the new attempt",
            o.video
        );
        assert!(
            !o.work.exists(),
            "{}: the killed attempt's work directory {} was left behind after publishing",
            o.video,
            o.work.display()
        );
        // The published first k segments are the killed attempt's bytes, encrypted.
        for rung in RUNGS {
            let key = fs::read(
                p.data
                    .join("keys")
                    .join(&o.video)
                    .join(format!("{rung}.key")),
            )
            .expect("the rung's key");
            for i in 0..k {
                let published = p
                    .data
                    .join("hls")
                    .join(&o.video)
                    .join(rung)
                    .join(segment_name(i));
                let bytes =
                    fs::read(&published).unwrap_or_else(|e| panic!("{}: {e}", published.display()));
                let plain = decrypt(&key, u64::from(i), &bytes)
                    .unwrap_or_else(|| panic!("{} does not decrypt", published.display()));
                assert!(
                    plain == o.segments[&(rung.to_owned(), i)],
                    "{}: published {rung}/{} differs from what the killed attempt wrote",
                    o.video,
                    segment_name(i)
                );
            }
        }
    }

    // ---- live events crossed the restarted Redis ------------------------------------------
    for (o, stream) in orphans.iter().zip(streams) {
        let stream = stream.join().expect("event reader");
        let transcript = || format!("events of {}:\n{}", o.video, stream.transcript());
        assert_eq!(stream.response.status, 200, "{}", transcript());
        let last = stream.events.last().map(|e| e.event.as_str());
        // A worker that loses its lease tells viewers `failed` with `retrying: false` and the
        // stream ends, although the job goes on elsewhere (reported as a bug).
        let lost_lease = last == Some("failed") && lease_losses(&p.workers[survivor], &o.video) > 0;
        assert!(
            last == Some("ready") || lost_lease,
            "{}\n{}",
            transcript(),
            p.diagnostics()
        );
        if lost_lease {
            eprintln!(
                "chaos: WARNING {}: the event stream ended with `failed` after a lost lease, \
                 the job went on to `ready`",
                o.video
            );
        }
        assert!(
            stream.events.iter().any(|e| e.event == "progress"),
            "no progress of the second attempt reached the API\n{}",
            transcript()
        );
    }
    assert!(
        p.origin
            .wait_for_log(&["job event subscription lost"], Duration::ZERO),
        "the API never noticed the Redis restart\n{}",
        p.origin.diagnostics()
    );

    // ---- every video plays end to end through the edge --------------------------------------
    let edge_ok = |text: &str| {
        metrics::value(text, "edge_requests_total", &[("status_class", "2xx")]).unwrap_or(0.0)
    };
    let edge_before = edge_ok(&p.edge.metrics());
    let mut segments_total = 0;
    for id in &ids {
        for rung in RUNGS {
            let text =
                fs::read_to_string(p.data.join("hls").join(id).join(rung).join("index.m3u8"))
                    .expect("published variant playlist");
            let (uris, covered) = playlist_segments(&text);
            let expected: Vec<String> = (0..uris.len() as u32).map(segment_name).collect();
            assert_eq!(uris, expected, "{id}/{rung}: segments in order\n{text}");
            assert!(
                text.contains("#EXT-X-MEDIA-SEQUENCE:0"),
                "{id}/{rung}\n{text}"
            );
            assert!(
                (covered - f64::from(CLIP_SECS)).abs() < 0.5,
                "{id}/{rung} covers {covered} s of {CLIP_SECS} s\n{text}"
            );
            segments_total += uris.len();
        }
        let url = format!(
            "{}/api/videos/{id}/hls/master.m3u8?token={alice}",
            p.origin.base_url()
        );
        let played = ffmpeg_play(&url);
        let complaints = String::from_utf8_lossy(&played.stderr).trim().to_owned();
        assert!(
            played.status.success(),
            "ffmpeg could not play {id}: {}\n{complaints}\n{}",
            played.status,
            p.diagnostics()
        );
        let Some(o) = orphans.iter_mut().find(|o| &o.video == id) else {
            // Never interrupted: the reference for what a clean playback prints.
            assert!(
                complaints.is_empty() || lease_losses(&p.workers[survivor], id) > 0,
                "{id} (never interrupted) played with complaints:\n{complaints}"
            );
            continue;
        };
        o.playback_complaints = complaints.lines().count();
        assert!(
            complaints.is_empty() || lease_losses(&p.workers[survivor], id) > 0,
            "{id} (resumed at segment {}) played with complaints:\n{complaints}",
            o.complete
        );
        // The seam: keyframes of the first video stream, one per segment, on one grid.
        let keyframes = keyframe_times(&url);
        assert_eq!(
            keyframes.len(),
            CLIP_SECS as usize,
            "{id}: one keyframe per segment: {keyframes:?}"
        );
        let k = o.complete as usize;
        let drift = |i: usize| keyframes[i] - keyframes[0] - (i as f64) * f64::from(SEGMENT_SECS);
        for i in 0..keyframes.len() {
            let (reference, side) = if i < k {
                (0.0, "reused")
            } else {
                (drift(k), "resumed")
            };
            assert!(
                (drift(i) - reference).abs() < 0.001,
                "{id}: keyframe {i} ({side} part) off its grid: {keyframes:?}"
            );
        }
        o.seam_shift = drift(k);
        assert!(
            o.seam_shift.abs() <= SEAM_TOLERANCE,
            "{id}: the resumed part is shifted by {:.1} ms at segment {k}: {keyframes:?}",
            o.seam_shift * 1000.0
        );
    }
    let served = edge_ok(&p.edge.metrics()) - edge_before;
    assert!(
        served >= segments_total as f64,
        "ffmpeg fetched every segment ({segments_total}) from the edge, which served {served}"
    );

    // ---- 5. the numbers ---------------------------------------------------------------------
    for o in &orphans {
        eprintln!(
            "chaos: {} resumed at segment {} of {CLIP_SECS}: claimed again {} and ready {} after \
             the kill; seam shift {:+.1} ms, {} complaint line(s) from ffmpeg playing it",
            o.video,
            o.complete,
            secs(o.claimed_after),
            secs(o.ready_after),
            o.seam_shift * 1000.0,
            o.playback_complaints
        );
    }
    if !extra_attempts.is_empty() {
        eprintln!(
            "chaos: WARNING extra attempts after leases lost while publishing: {}",
            extra_attempts.join(", ")
        );
    }
    eprintln!(
        "chaos: all ready {:.1} s after the kill; whole test {:.1} s",
        all_ready_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// A worker that dies while it publishes (after encrypting a rung in place, before the final
/// rename) must not doom the video: the takeover has to encode (or resume from) plain
/// segments and publish a playable video.
///
/// Today it does not: the takeover resumes from the dead attempt's work directory, whose
/// segments are partly encrypted already (`encrypt_file` renames ciphertext over the plain
/// segment), hard-links them, and its own publish then fails to probe `segment_000.ts`
/// ("not a readable media file"), which is final. Run with `--ignored` once that is fixed.
#[test]
fn a_worker_killed_while_publishing_does_not_doom_the_video() {
    assert!(
        process::on_path("ffmpeg"),
        "ffmpeg is not installed: run scripts/test.sh, which installs it"
    );
    let clips = tempfile::Builder::new()
        .prefix("e2e-chaos-clips-")
        .tempdir()
        .expect("create clips dir");
    let clip = clips.path().join("clip.mp4");
    generate_clip(&clip, CLIP_SECS, 1280, 720);
    let mut p = Platform::start();
    let alice = mint_token(JWT_SECRET, "alice", false, "1h");
    let response = p
        .origin
        .upload(&alice, &fs::read(&clip).expect("read clip"), "video/mp4");
    assert_eq!(response.status, 202, "upload: {}", response.text());
    let id = json(&response)["id"]
        .as_str()
        .expect("upload answer has an id")
        .to_owned();

    // Publishing has begun once the second rung's key is written: the first rung's segments
    // are encrypted in place by then.
    let deadline = Instant::now() + KILL_POINT_TIMEOUT;
    let work = loop {
        let publishing = fs::read_dir(p.data.join("tmp")).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|dir| {
                dir.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-")))
                    && dir.join("keys").join(format!("{}.key", RUNGS[1])).is_file()
            })
        });
        if let Some(dir) = publishing {
            break dir;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached its publish stage\n{}",
            p.diagnostics()
        );
        thread::sleep(Duration::from_millis(2));
    };
    let holder = p.lease_holder(&id).expect("the job is leased");
    let victim = p
        .workers
        .iter()
        .position(|w| w.owns_lease(&holder))
        .unwrap_or_else(|| panic!("{id} leased to {holder}, none of ours"));
    let children = process::children_of(p.workers[victim].pid());
    p.workers[victim].kill9();
    for child in children {
        process::try_signal(child, Signal::Kill);
    }
    eprintln!("chaos: killed the worker publishing {}", work.display());

    let mut view = serde_json::Value::Null;
    let ended = e2e::wait_until(READY_TIMEOUT, || {
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
    let url = format!(
        "{}/api/videos/{id}/hls/master.m3u8?token={alice}",
        p.origin.base_url()
    );
    let played = ffmpeg_play(&url);
    assert!(
        played.status.success(),
        "ffmpeg could not play {id}: {}",
        String::from_utf8_lossy(&played.stderr)
    );
}
