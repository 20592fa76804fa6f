//! Final outcomes to webhooks, through an outbox in the job store: a completion, a final
//! failure or a job the claim gives up is recorded together with its announcement
//! ([`Job::announce`]), and the announcement stays until a delivery of it has ended (delivered,
//! or given up after every attempt). A process that dies or stops before then loses nothing:
//! another one takes the announcement and delivers it again, with the same event id
//! (at-least-once; receivers deduplicate on `X-Webhook-Id`).
//!
//! Who takes an announcement:
//! - the worker that recorded the outcome, once it is settled (after the subtitle sync, so a
//!   `video.ready` receiver finds the master complete); the store holds it for that worker for
//!   [`Timing::hold`];
//! - otherwise any process with webhooks, sweeping every [`Timing::sweep`] for those due: the
//!   worker died, the process stopped in the middle of a delivery, a claim that failed worn-out
//!   jobs lost its reply, the delivery queue was full.
//!
//! A taker has the announcement for [`Timing::lease`], longer than a delivery can take,
//! counted again from when its delivery starts (not from when it was queued); only a taker
//! that died (or is slower than that) has it delivered twice. One whose delivery is cut short
//! (the process stops, the queue is full) gives it back at once. A sweep takes no more than
//! the deliveries that can start at once, so what it takes does not wait behind a dead
//! receiver.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::media::VideoId;
use shared::shutdown::Switch;

use super::model::{unix_now, Announcement, Job};
use super::store::{JobStore, Pending};
use crate::webhooks::event::Event;
use crate::webhooks::{Outcome, Webhooks};

/// How long announcements wait, and how often they are looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// An outcome's announcement is kept for the worker that recorded it this long; then any
    /// process may take it.
    pub hold: Duration,
    /// How often a process looks for announcements due.
    pub sweep: Duration,
    /// How long a taker has an announcement before it is due again.
    pub lease: Duration,
}

impl Timing {
    /// A minute's hold, a sweep every 10 s, and a lease of a whole delivery and a minute more.
    pub fn for_webhooks(webhooks: &Webhooks) -> Self {
        Self {
            hold: Duration::from_secs(60),
            sweep: Duration::from_secs(10),
            lease: webhooks
                .delivery_window()
                .saturating_add(Duration::from_secs(60)),
        }
    }
}

/// How long a stopping process waits to record the deliveries that ended.
const SETTLE: Duration = Duration::from_secs(2);

/// Announcements taken by one sweep at most.
const BATCH: usize = 64;

/// Takes announcements from the store and hands them to the webhooks.
pub struct Announcer<S> {
    store: Arc<S>,
    webhooks: Webhooks,
    timing: Timing,
    /// The outcomes whose delivery runs in this process: one taken again (its lease ran out
    /// meanwhile) is not queued twice.
    delivering: Mutex<HashSet<(VideoId, Announcement)>>,
}

impl<S: JobStore> Announcer<S> {
    /// Turns the store's outbox on: from now on, the outcomes it records are announced.
    pub fn new(store: Arc<S>, webhooks: Webhooks, timing: Timing) -> Arc<Self> {
        store.announce_outcomes(Some(secs(timing.hold)));
        Arc::new(Self {
            store,
            webhooks,
            timing,
            delivering: Mutex::default(),
        })
    }

    /// Announces the outcome of `video` that this process recorded.
    pub async fn announce(self: &Arc<Self>, video: &VideoId) {
        // Only with a delivery free to start: queued behind a failing receiver, it could
        // outlast its lease. Held, it is swept once there is room.
        if self.idle() > 0 {
            self.take(Pending::Held(video)).await;
        }
    }

    /// Deliveries that could start now.
    fn idle(&self) -> usize {
        let running = self.lock().len();
        self.webhooks.concurrency().saturating_sub(running)
    }

    /// Delivers the announcements due, now and every [`Timing::sweep`], until `stop` fires.
    pub async fn sweep(self: Arc<Self>, mut stop: Switch) {
        while !stop.is_fired() {
            let room = self.webhooks.room().min(self.idle()).min(BATCH);
            if room > 0 {
                self.take(Pending::Due(room)).await;
            }
            tokio::select! {
                () = tokio::time::sleep(self.timing.sweep) => {}
                () = stop.fired() => {}
            }
        }
    }

    /// Waits, at most [`SETTLE`], for the deliveries that ended to be recorded so (at
    /// shutdown, once the webhooks have drained).
    pub async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !self.lock().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn take(self: &Arc<Self>, pending: Pending<'_>) {
        let lease = secs(self.timing.lease);
        match self
            .store
            .take_announcements(pending, unix_now(), lease)
            .await
        {
            Ok(jobs) => jobs.into_iter().for_each(|job| self.deliver(job)),
            // Left in the store: a later sweep takes them.
            Err(error) => tracing::warn!(%error, "cannot take outcomes to announce"),
        }
    }

    fn deliver(self: &Arc<Self>, job: Job) {
        let (Some(event), Some(announcement)) = (Event::announcing(&job), job.announce) else {
            return;
        };
        let key = (job.video, announcement);
        if !self.lock().insert(key.clone()) {
            return;
        }
        let delivery = self.webhooks.notify(event);
        let this = self.clone();
        tokio::spawn(async move {
            let (video, announcement) = &key;
            let lease = secs(this.timing.lease);
            if delivery.started.await.is_ok() {
                // The lease runs from now: waiting in the queue does not count.
                this.lease(video, announcement, lease).await;
            }
            match delivery.ended.await {
                Ok(Outcome::Delivered | Outcome::Failed) => {
                    if let Err(error) = this.store.announced(video, announcement).await {
                        tracing::warn!(%error, video.id = %video, "delivery not recorded; it will be made again");
                    }
                }
                // Cut short (the process is stopping, or the queue was full): given back, for
                // the next sweep here or elsewhere.
                Ok(Outcome::Abandoned) | Err(_) => this.lease(video, announcement, 0).await,
            }
            this.lock().remove(&key);
        });
    }

    /// Holds `video`'s `announcement` for `secs` from now (0: gives it back), if it is still
    /// the record's.
    async fn lease(&self, video: &VideoId, announcement: &Announcement, secs: i64) {
        let pending = Pending::Taken(video, announcement);
        let taken = self.store.take_announcements(pending, unix_now(), secs);
        if let Err(error) = taken.await {
            tracing::warn!(%error, video.id = %video, "announcement lease not changed");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(VideoId, Announcement)>> {
        self.delivering.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whole seconds, rounded up: a lease or hold is never shorter than asked.
fn secs(d: Duration) -> i64 {
    let up = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i64::try_from(up).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_and_holds_round_up() {
        assert_eq!(secs(Duration::from_millis(1500)), 2);
        assert_eq!(secs(Duration::from_secs(60)), 60);
        assert_eq!(secs(Duration::ZERO), 0);
    }
}
