//! What an HTTP/2 connection has been doing, for the deadlines hyper does not enforce: how
//! many streams are open, when one last opened or closed, and when bytes last left.
//!
//! - idle: no stream open for `idle_timeout` (PINGs and SETTINGS do not count, or a client
//!   could hold a connection forever with control frames);
//! - stalled: streams open but nothing written for `send_timeout` (a client that stopped
//!   reading, or left every window shut).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The state of one connection, shared by its streams, its IO and its watchdog.
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    streams: AtomicUsize,
    /// Milliseconds since `base` of the last stream opened or closed.
    last_stream: AtomicU64,
    /// Milliseconds since `base` of the last write that moved bytes.
    last_write: AtomicU64,
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
    /// Streams open and nothing sent for the send timeout: drop it.
    Stalled,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            streams: AtomicUsize::new(0),
            last_stream: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts a stream as open until the guard (kept in its response body) is dropped.
    pub fn open_stream(self: &Arc<Self>) -> StreamGuard {
        if self.streams.fetch_add(1, Ordering::AcqRel) == 0 {
            self.changed.notify_one();
        }
        self.last_stream.store(self.now_ms(), Ordering::Release);
        StreamGuard(self.clone())
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
        self.base + Duration::from_millis(self.deadline(idle, send).1)
    }

    /// Open streams, and the millisecond their deadline falls on.
    fn deadline(&self, idle: Duration, send: Duration) -> (usize, u64) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let streams = self.streams.load(Ordering::Acquire);
        let last_stream = self.last_stream.load(Ordering::Acquire);
        if streams == 0 {
            return (0, last_stream.saturating_add(ms(idle)));
        }
        let last = last_stream.max(self.last_write.load(Ordering::Acquire));
        (streams, last.saturating_add(ms(send)))
    }
}

/// An open stream; dropping it closes the stream for [`Activity`].
#[derive(Debug)]
pub struct StreamGuard(Arc<Activity>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .last_stream
            .store(activity.now_ms(), Ordering::Release);
        if activity.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            activity.changed.notify_one();
        }
    }
}

/// The connection's IO, noting every write that moves bytes.
pub struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }

    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            let now = self.activity.now_ms();
            self.activity.last_write.store(now, Ordering::Release);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(3);
    const SEND: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn idle_without_streams_stalled_without_writes() {
        let activity = Activity::new();
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy);
        assert_eq!(activity.next_check(IDLE, SEND), activity.base + IDLE);
        tokio::time::advance(IDLE).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Idle);

        let stream = activity.open_stream();
        tokio::time::advance(SEND - Duration::from_secs(1)).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy, "streams open");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Stalled);

        drop(stream);
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Busy, "just closed");
        tokio::time::advance(IDLE).await;
        assert_eq!(activity.verdict(IDLE, SEND), Verdict::Idle);
    }
}
