//! What an HTTP/2 connection has been doing, for the deadlines hyper does not enforce: which
//! streams are open, when each was last given room to send, and when one last opened or closed.
//!
//! - idle: no stream open for `idle_timeout` (PINGs and SETTINGS do not count, or a client
//!   could hold a connection forever with control frames);
//! - stalled: a stream open that could send nothing for `send_timeout` (a client that stopped
//!   reading, or left its window shut). Measured per stream, like nginx's `send_timeout`, and
//!   only by the stream itself: the connection's other writes (PING acknowledgements, other
//!   streams) say nothing of whether this one can move.
//!
//! A stream is given room to send when hyper polls its body: it does so only once the stream's
//! window and the connection's send buffer have space ([`StreamGuard::may_send`]). Until its
//! answer exists, a stream waits on the edge (a fill, the upstream), not on the client, and its
//! send timeout has not started: the upstream's own timeouts bound that wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// A stream's last room to send while it has no answer yet.
const ANSWERING: u64 = u64::MAX;
/// How far off the watchdog looks when a deadline lies beyond what a clock can hold.
const NEVER: Duration = Duration::from_secs(365 * 86_400);

/// The state of one connection, shared by its streams and its watchdog.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    /// Each open stream's last room to send, in milliseconds since `base`.
    open: Mutex<Vec<Arc<AtomicU64>>>,
    /// Milliseconds since `base` of the last stream opened or closed.
    last_stream: AtomicU64,
    /// Fired when the connection turns idle or busy, so the watchdog re-arms at once.
    changed: Notify,
}

/// What the watchdog should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within its deadlines.
    Busy,
    /// No stream for the idle timeout: close politely.
    Idle,
    /// A stream could send nothing for the send timeout: drop the connection.
    Stalled,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            open: Mutex::new(Vec::new()),
            last_stream: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn open(&self) -> MutexGuard<'_, Vec<Arc<AtomicU64>>> {
        // The list stays consistent whatever panicked while holding it: each step is one push
        // or one removal.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a stream as open until the guard (kept in its response body) is dropped; its
    /// send timeout starts with its answer ([`StreamGuard::may_send`]).
    pub fn open_stream(self: &Arc<Self>) -> StreamGuard {
        let now = self.now_ms();
        let sent = Arc::new(AtomicU64::new(ANSWERING));
        let first = {
            let mut open = self.open();
            open.push(sent.clone());
            open.len() == 1
        };
        self.last_stream.store(now, Ordering::Release);
        if first {
            self.changed.notify_one();
        }
        StreamGuard {
            activity: self.clone(),
            sent,
        }
    }

    /// Resolves when the connection turns idle or busy.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The verdict at this instant.
    pub fn verdict(&self, idle: Duration, send: Duration) -> Verdict {
        let now = self.now_ms();
        let (streams, deadline) = self.deadline(idle, send);
        match (streams, now >= deadline) {
            (_, false) => Verdict::Busy,
            (0, true) => Verdict::Idle,
            (_, true) => Verdict::Stalled,
        }
    }

    /// When the verdict may next change, unless a stream opens or the last one closes.
    pub fn next_check(&self, idle: Duration, send: Duration) -> Instant {
        let at = Duration::from_millis(self.deadline(idle, send).1);
        // A deadline no clock can hold (a timeout of centuries) is as good as never.
        self.base
            .checked_add(at)
            .unwrap_or_else(|| Instant::now() + NEVER)
    }

    /// Open streams, and the millisecond their deadline falls on: the idle timeout after the
    /// last stream closed, or the send timeout after the stream that has waited longest. While
    /// every open stream is still being answered, a send timeout from now: looked at again then.
    fn deadline(&self, idle: Duration, send: Duration) -> (usize, u64) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let open = self.open();
        match open.iter().map(|s| s.load(Ordering::Acquire)).min() {
            None => (
                0,
                self.last_stream
                    .load(Ordering::Acquire)
                    .saturating_add(ms(idle)),
            ),
            Some(ANSWERING) => (open.len(), self.now_ms().saturating_add(ms(send))),
            Some(oldest) => (open.len(), oldest.saturating_add(ms(send))),
        }
    }
}

/// An open stream; dropping it closes the stream for [`Activity`].
#[derive(Debug)]
pub struct StreamGuard {
    activity: Arc<Activity>,
    sent: Arc<AtomicU64>,
}

impl StreamGuard {
    /// The stream has its answer, or room to send (its body is being asked for data): its send
    /// timeout starts over.
    pub fn may_send(&self) {
        self.sent.store(self.activity.now_ms(), Ordering::Release);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let activity = &self.activity;
        let last = {
            let mut open = activity.open();
            if let Some(i) = open.iter().position(|s| Arc::ptr_eq(s, &self.sent)) {
                open.swap_remove(i);
            }
            open.is_empty()
        };
        activity
            .last_stream
            .store(activity.now_ms(), Ordering::Release);
        if last {
            activity.changed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(3);
    const SEND: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn idle_without_streams_stalled_without_room_to_send() {
        let activity = Activity::new();
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy);
        assert_eq!(activity.next_check(IDLE, SEND), activity.base + IDLE);
        tokio::time::advance(IDLE).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Idle);

        let stream = activity.open_stream();
        stream.may_send();
        tokio::time::advance(SEND - Duration::from_secs(1)).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy, "streams open");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Stalled);

        drop(stream);
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy, "just closed");
        tokio::time::advance(IDLE).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Idle);
    }

    /// One stream that can never send stalls the connection, however much the others move
    /// and however many open after it.
    #[tokio::test(start_paused = true)]
    async fn each_stream_has_its_own_send_timeout() {
        let activity = Activity::new();
        let shut = activity.open_stream();
        shut.may_send();
        let moving = activity.open_stream();
        for _ in 0..9 {
            tokio::time::advance(Duration::from_secs(1)).await;
            moving.may_send();
            drop(activity.open_stream());
        }
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy);
        tokio::time::advance(Duration::from_secs(1)).await;
        moving.may_send();
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Stalled);
    }

    /// A stream the edge is still answering (a fill, a slow upstream) waits on the edge, not on
    /// the client: its send timeout starts with its answer.
    #[tokio::test(start_paused = true)]
    async fn the_send_timeout_starts_with_the_answer() {
        let activity = Activity::new();
        let stream = activity.open_stream();
        tokio::time::advance(SEND * 3).await;
        assert_eq!(
            activity.verdict(IDLE, SEND),
            Verdict::Busy,
            "still answering"
        );
        assert_eq!(activity.next_check(IDLE, SEND), Instant::now() + SEND);
        stream.may_send();
        tokio::time::advance(SEND).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Stalled);
    }

    #[tokio::test(start_paused = true)]
    async fn room_to_send_starts_the_send_timeout_over() {
        let activity = Activity::new();
        let stream = activity.open_stream();
        stream.may_send();
        tokio::time::advance(SEND - Duration::from_secs(1)).await;
        stream.may_send();
        assert_eq!(
            activity.next_check(IDLE, SEND),
            Instant::now() + SEND,
            "the deadline moved with the stream"
        );
        tokio::time::advance(SEND - Duration::from_secs(1)).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy);
        drop(stream);
        assert_eq!(activity.next_check(IDLE, SEND), Instant::now() + IDLE);
    }

    /// Timeouts are validated only as at least 1 s: one of centuries must not overflow.
    #[tokio::test(start_paused = true)]
    async fn a_huge_timeout_is_never_reached_and_never_overflows() {
        let huge = Duration::from_secs(u64::MAX / 1000);
        let activity = Activity::new();
        assert!(activity.next_check(huge, huge) > Instant::now() + SEND);
        let stream = activity.open_stream();
        assert!(activity.next_check(huge, huge) > Instant::now() + SEND);
        stream.may_send();
        assert_eq!(activity.verdict(huge, huge), Verdict::Busy);
        assert!(activity.next_check(huge, huge) > Instant::now() + SEND);
    }
}
