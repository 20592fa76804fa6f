//! The recovery after the chaos: every video ends ready, the takeovers, the live events, and
//! the numbers.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use e2e::sse::SseStream;
use e2e::OriginWorker;

use crate::media::{ladder_encodes, secs, segment_name};
use crate::platform::{follow_events, lease_losses};
use crate::{Chaos, CLIP_SECS, FIRST_TAKEOVER_BOUND, LEASE_SECS, POLL, READY_TIMEOUT, RUNGS};

impl Chaos {
    /// The worker that was not killed.
    pub fn survivor_worker(&self) -> &OriginWorker {
        &self.p.workers[self.survivor]
    }

    /// Follows the orphans' events on the API: their live progress must reach it through the
    /// new Redis.
    pub fn follow_orphans(&self) -> Vec<JoinHandle<SseStream>> {
        self.orphans
            .iter()
            .map(|o| follow_events(self.p.origin.api_addr, &self.alice, &o.video))
            .collect()
    }

    /// Waits until every video is `ready` by itself, none `failed`, noting on the way when each
    /// orphan was claimed again and by whom, the ladder encodes run for it and whether its old
    /// segments were adopted. Returns the time from the kill to the last `ready`.
    pub fn wait_until_all_ready(&mut self) -> Duration {
        let deadline = self.killed + READY_TIMEOUT;
        loop {
            let mut all_ready = true;
            for id in &self.ids {
                let Some(v) = self.p.view(&self.alice, id) else {
                    all_ready = false;
                    continue;
                };
                assert!(
                    v["status"] != "failed",
                    "{id} failed: {v}\n{}",
                    self.p.diagnostics()
                );
                all_ready &= v["status"] == "ready";
                if let Some(o) = self.orphans.iter_mut().find(|o| &o.video == id) {
                    let attempts = v["attempts"].as_u64().unwrap_or(0);
                    if attempts >= 2 && o.claimed_after.is_none() {
                        o.claimed_after = Some(self.killed.elapsed());
                        o.second_holder = self.p.lease_holder(id);
                    }
                    if v["status"] == "ready" && o.ready_after.is_none() {
                        o.ready_after = Some(self.killed.elapsed());
                    }
                }
            }
            for e in ladder_encodes(&self.ids) {
                if let Some(o) = self.orphans.iter_mut().find(|o| o.video == e.video) {
                    o.encodes.entry(e.pid).or_insert(e);
                }
            }
            for o in self.orphans.iter_mut().filter(|o| !o.adopted) {
                let first = o.work.join("hls").join(RUNGS[0]).join(segment_name(0));
                o.adopted = fs::metadata(&first).is_ok_and(|m| m.nlink() >= 2);
            }
            if all_ready {
                return self.killed.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "not every video was ready {READY_TIMEOUT:?} after the kill\n{}",
                self.p.diagnostics()
            );
            thread::sleep(POLL);
        }
    }

    /// The orphans were taken over by the survivor, the first within [`FIRST_TAKEOVER_BOUND`].
    /// Every attempt beyond the one takeover (and beyond the first, for the survivor's own
    /// job) must be a lease the survivor lost and logged (see `lease_losses`). Returns those
    /// extra attempts, one `<id>: +<n>` per video.
    pub fn check_takeovers(&self) -> Vec<String> {
        let (p, survivor) = (&self.p, self.survivor_worker());
        let expected = |id: &str| if id == self.own { 1 } else { 2 };
        let mut extra_attempts = Vec::new();
        for id in &self.ids {
            let v = p.view(&self.alice, id).expect("view");
            let attempts = v["attempts"].as_u64().expect("attempts");
            let lost = lease_losses(survivor, id);
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
        for o in &self.orphans {
            assert!(
                o.second_holder
                    .as_deref()
                    .is_some_and(|h| survivor.owns_lease(h)),
                "{}: attempt 2 leased to {:?}, not the survivor {}",
                o.video,
                o.second_holder,
                self.survivor_pid
            );
            assert!(
                survivor.wait_for_log(
                    &["lease expired, taking the job over", &o.video],
                    Duration::ZERO
                ),
                "the survivor did not log the takeover of {}\n{}",
                o.video,
                survivor.diagnostics()
            );
        }
        let first_takeover = self
            .orphans
            .iter()
            .filter_map(|o| o.claimed_after)
            .min()
            .expect("a takeover was seen");
        assert!(
            first_takeover <= FIRST_TAKEOVER_BOUND,
            "the first orphan was claimed {first_takeover:?} after the kill (lease {LEASE_SECS} s)"
        );
        extra_attempts
    }

    /// Each orphan's event stream, opened after the restart, saw the second attempt's progress
    /// and ended `ready`; the API logged losing its event subscription.
    pub fn check_events_crossed_the_restart(&self, streams: Vec<JoinHandle<SseStream>>) {
        let survivor = self.survivor_worker();
        for (o, stream) in self.orphans.iter().zip(streams) {
            let stream = stream.join().expect("event reader");
            let transcript = || format!("events of {}:\n{}", o.video, stream.transcript());
            assert_eq!(stream.response.status, 200, "{}", transcript());
            let last = stream.events.last().map(|e| e.event.as_str());
            // A worker that lost its lease used to tell viewers `failed` with `retrying: false`,
            // ending the stream although the job went on elsewhere: still tolerated, warned.
            let lost_lease = last == Some("failed") && lease_losses(survivor, &o.video) > 0;
            assert!(
                last == Some("ready") || lost_lease,
                "{}\n{}",
                transcript(),
                self.p.diagnostics()
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
            self.p
                .origin
                .wait_for_log(&["job event subscription lost"], Duration::ZERO),
            "the API never noticed the Redis restart\n{}",
            self.p.origin.diagnostics()
        );
    }

    /// Prints the recovery times, the seams and any extra attempts (`--nocapture`).
    pub fn report(&self, extra_attempts: &[String], all_ready_after: Duration) {
        for o in &self.orphans {
            eprintln!(
                "chaos: {} resumed at segment {} of {CLIP_SECS}: claimed again {} and ready {} \
                 after the kill; seam shift {:+.1} ms, {} complaint line(s) from ffmpeg playing it",
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
            self.started.elapsed().as_secs_f64()
        );
    }
}
