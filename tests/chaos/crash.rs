//! The chaos itself: the uploads, the kill point, the kill, the Redis restart, and (for the
//! second test) the publish stage.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use e2e::origin::{mint_token, JWT_SECRET};
use e2e::{process, OriginWorker};

use crate::media::{complete_segments, ladder_encodes, Encode, Orphan};
use crate::platform::{generate_clips, Platform};
use crate::{
    Chaos, Uploads, CLIP_SECS, KILL_POINT_TIMEOUT, LEASE_SECS, MIN_PROGRESS_AT_KILL,
    MIN_SEGMENTS_AT_KILL, POLL, RUNGS,
};

/// The worker to kill and the two ladder encodes it runs.
pub struct KillPoint {
    victim: usize,
    doomed: Vec<Encode>,
}

impl Uploads {
    /// Generates three clips (all at once, so that the three jobs start together), starts the
    /// platform and uploads them as alice.
    pub fn start() -> Self {
        let started = Instant::now();
        let (clips, clip_paths) = generate_clips(3);
        let p = Platform::start();
        let alice = mint_token(JWT_SECRET, "alice", false, "1h");
        let ids = clip_paths
            .iter()
            .map(|clip| p.upload(&alice, clip))
            .collect();
        let uploaded = Instant::now();
        eprintln!(
            "chaos: clips generated, platform up and 3 clips uploaded in {:.1} s",
            (uploaded - started).as_secs_f64()
        );
        Self {
            p,
            alice,
            ids,
            started,
            uploaded,
            _clips: clips,
        }
    }

    /// Waits until every job is processing and one worker holds two of them, both well into
    /// their encode (one at [`MIN_PROGRESS_AT_KILL`] in the API, every rung of both with
    /// [`MIN_SEGMENTS_AT_KILL`] complete segments on disk).
    pub fn wait_for_kill_point(&self) -> KillPoint {
        let (p, ids) = (&self.p, &self.ids);
        let deadline = self.uploaded + KILL_POINT_TIMEOUT;
        loop {
            let views: Vec<Option<serde_json::Value>> =
                ids.iter().map(|id| p.view(&self.alice, id)).collect();
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
            let encodes = ladder_encodes(ids);
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
                    return KillPoint {
                        victim: w,
                        doomed: mine,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "no worker held two jobs {MIN_SEGMENTS_AT_KILL}+ segments into their encode (one \
                 at {MIN_PROGRESS_AT_KILL}+ % in the API) within {KILL_POINT_TIMEOUT:?}; views \
                 {views:?}; encodes {encodes:#?}\n{}",
                p.diagnostics()
            );
            thread::sleep(POLL);
        }
    }

    /// Kills the victim worker and its ffmpeg children, then snapshots what the killed attempts
    /// left (the orphans) and finds the job the survivor keeps running.
    pub fn kill(self, KillPoint { victim, doomed }: KillPoint) -> Chaos {
        let Self {
            mut p,
            alice,
            ids,
            started,
            uploaded,
            _clips,
        } = self;
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

        let killed = Instant::now();
        let children = p.kill_worker(victim);
        assert!(
            e2e::wait_until(Duration::from_secs(5), || doomed
                .iter()
                .all(|e| !process::alive(e.pid))),
            "the killed worker's ffmpeg processes are still running"
        );
        let orphans: Vec<Orphan> = doomed.iter().map(Orphan::snapshot).collect();
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
        Chaos {
            p,
            alice,
            ids,
            started,
            killed,
            survivor,
            survivor_pid,
            orphans,
            own,
            own_holder,
            _clips,
        }
    }
}

impl Chaos {
    /// SIGKILLs Redis and starts it again on the same port and directory; the API must answer
    /// again and the survivor must renew its lease through the new Redis.
    pub fn restart_redis(&mut self) {
        let (alice, own) = (&self.alice, &self.own);
        let restarted_at = e2e::unix_now();
        let redis_down = self.p.redis.restart();
        let p = &self.p;
        let redis_back = self.killed.elapsed();
        let mut api_view = None;
        let api_answers = e2e::wait_until(Duration::from_secs(15), || {
            api_view = p.view(alice, &self.ids[0]);
            api_view.is_some()
        });
        assert!(
            api_answers,
            "the API did not answer again after the Redis restart\n{}",
            p.diagnostics()
        );
        let api_back = self.killed.elapsed();
        // The survivor renews its lease through the new Redis (a heartbeat from after the
        // restart: `expires_at` is the heartbeat's whole second plus the lease), or has finished
        // the job.
        let mut own_lease = None;
        let renewed = e2e::wait_until(Duration::from_secs(LEASE_SECS * 3), || {
            own_lease = p.job_field(own, "lease");
            if p.job_field(own, "state").as_deref() == Some("\"ready\"") {
                return true;
            }
            own_lease
                .as_deref()
                .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .is_some_and(|l| {
                    l["worker"] == self.own_holder.as_str()
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
        let renewed_after = self.killed.elapsed();
        eprintln!(
            "chaos: redis down {:.0} ms (back {:.1} s after the kill); API answering {:.1} s and \
             the survivor's lease renewed {:.1} s after the kill",
            redis_down.as_secs_f64() * 1000.0,
            redis_back.as_secs_f64(),
            api_back.as_secs_f64(),
            renewed_after.as_secs_f64()
        );
    }
}

/// Waits until `id`'s attempt has begun publishing and returns its work directory. Publishing
/// has begun once the attempt withdrew its resume manifest (`encode.json`, written before
/// ffmpeg starts) from a work directory that holds segments: from then on a takeover must not
/// resume from it.
pub fn wait_for_publish_stage(p: &Platform, id: &str) -> PathBuf {
    let deadline = Instant::now() + KILL_POINT_TIMEOUT;
    loop {
        let publishing = fs::read_dir(p.data.join("tmp")).ok().and_then(|entries| {
            entries.flatten().map(|e| e.path()).find(|dir| {
                dir.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-")))
                    && dir
                        .join("hls")
                        .join(RUNGS[1])
                        .join(crate::media::segment_name(0))
                        .is_file()
                    && !dir.join("encode.json").exists()
            })
        });
        if let Some(dir) = publishing {
            return dir;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached its publish stage\n{}",
            p.diagnostics()
        );
        thread::sleep(Duration::from_millis(2));
    }
}
