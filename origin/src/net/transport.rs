//! One API connection's socket, with the deadlines the server enforces on it and a lingering
//! close.
//!
//! [`Activity`] is what the connection has been doing: requests in flight, when the head of the
//! next request began, when bytes last moved. The server's watchdog closes the connection when
//! a head takes longer than the header timeout from its first byte (a slowloris sending a byte a
//! second is cut off, however long it keeps going) or when it sits idle for the idle timeout.
//!
//! [`Transport`] records that activity, fails a write the client has not taken for the send
//! timeout, and closes like nginx's `lingering_close`: after the response it shuts down its
//! sending side and reads and discards what the client still sends, up to a bound in bytes and
//! time. A client that writes a whole upload before reading the answer (Python's `urllib`)
//! then reads the 401 or 413 it was given instead of a reset.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Lingering close: at most this many bytes are read and discarded...
const LINGER_BYTES: u64 = 64 << 20;
/// ...for at most this long...
const LINGER_TIME: Duration = Duration::from_secs(10);
/// ...and the client may pause this long between two reads.
const LINGER_IDLE: Duration = Duration::from_secs(2);

/// What one connection has been doing, shared by its socket, its requests and its watchdog.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` (+1) when the first byte of the next head arrived; 0: none.
    head_started: AtomicU64,
    /// Milliseconds since `epoch` of the last byte read or written, or request finished.
    last_active: AtomicU64,
    /// Wakes the watchdog when a head starts: its deadline may now be earlier than the idle
    /// deadline it sleeps towards.
    head_began: tokio::sync::Notify,
}

/// What the watchdog should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Look again at this instant.
    CheckAt(Instant),
    /// A deadline passed: close.
    Expired,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_started: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
            head_began: tokio::sync::Notify::new(),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn touched(&self) {
        self.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    fn read_some(&self) {
        self.touched();
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let started = self.now_ms() + 1;
            let began = self
                .head_started
                .compare_exchange(0, started, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            if began {
                self.head_began.notify_one();
            }
        }
    }

    /// A request head was complete and the request is being served.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
        self.touched();
    }

    /// A response was sent in full (or abandoned).
    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.touched();
    }

    /// Resolves when a new request head begins (see [`Self::verdict`]).
    pub async fn head_began(&self) {
        self.head_began.notified().await;
    }

    /// Whether `header_timeout` (from a head's first byte) or `idle_timeout` (without any
    /// request) has passed. Requests in flight are bounded by the send timeout instead.
    pub fn verdict(&self, header_timeout: Duration, idle_timeout: Duration) -> Verdict {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::CheckAt(now + idle_timeout.min(Duration::from_secs(1)));
        }
        let deadline = match self.head_started.load(Ordering::Relaxed) {
            0 => self.at(self.last_active.load(Ordering::Relaxed)) + idle_timeout,
            started => self.at(started - 1) + header_timeout,
        };
        if now >= deadline {
            Verdict::Expired
        } else {
            Verdict::CheckAt(deadline)
        }
    }
}

/// Where a closing connection is.
enum Closing {
    Open,
    /// Our side is shut; discarding what the client still sends.
    Draining {
        until: Pin<Box<Sleep>>,
        idle: Pin<Box<Sleep>>,
        discarded: u64,
    },
    Done,
}

/// A TCP connection with deadlines and a lingering close.
pub struct Transport {
    tcp: TcpStream,
    activity: Arc<Activity>,
    send_timeout: Duration,
    /// Armed while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
    closing: Closing,
}

impl Transport {
    pub fn new(tcp: TcpStream, activity: Arc<Activity>, send_timeout: Duration) -> Self {
        Self {
            tcp,
            activity,
            send_timeout,
            stalled: None,
            closing: Closing::Open,
        }
    }

    /// A write that could not proceed: fails once it has waited for the send timeout.
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let timeout = self.send_timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            let Closing::Draining {
                until,
                idle,
                discarded,
            } = &mut self.closing
            else {
                return Poll::Ready(Ok(()));
            };
            if until.as_mut().poll(cx).is_ready() || idle.as_mut().poll(cx).is_ready() {
                self.closing = Closing::Done;
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.tcp).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    *discarded += buf.filled().len() as u64;
                    if *discarded > LINGER_BYTES {
                        self.closing = Closing::Done;
                        return Poll::Ready(Ok(()));
                    }
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_IDLE);
                }
                // End of stream or an error: the client is gone, nothing left to protect.
                Poll::Ready(_) => {
                    self.closing = Closing::Done;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.activity.read_some();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write(cx, data) {
            Poll::Ready(r) => {
                this.stalled = None;
                this.activity.touched();
                Poll::Ready(r)
            }
            Poll::Pending => this.waited(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.stalled = None;
                this.activity.touched();
                Poll::Ready(r)
            }
            Poll::Pending => this.waited(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Closing::Open = this.closing {
            // A failed shutdown means the peer is gone already: nothing to drain.
            if ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)).is_err() {
                this.closing = Closing::Done;
                return Poll::Ready(Ok(()));
            }
            this.closing = Closing::Draining {
                until: Box::pin(tokio::time::sleep(LINGER_TIME)),
                idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
                discarded: 0,
            };
        }
        this.poll_drain(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_deadline_runs_from_the_first_byte_and_idle_from_the_last_request() {
        let a = Activity::default();
        let header = Duration::from_millis(50);
        let idle = Duration::from_secs(60);
        assert!(
            matches!(a.verdict(header, idle), Verdict::CheckAt(t) if t > Instant::now() + Duration::from_secs(59))
        );
        a.read_some();
        std::thread::sleep(Duration::from_millis(30));
        a.read_some(); // more bytes of the same head do not extend its deadline
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(a.verdict(header, idle), Verdict::Expired);
        a.request_started();
        assert!(matches!(a.verdict(header, idle), Verdict::CheckAt(_)));
        a.request_finished();
        assert!(matches!(
            a.verdict(header, Duration::from_millis(20)),
            Verdict::CheckAt(_)
        ));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            a.verdict(header, Duration::from_millis(20)),
            Verdict::Expired
        );
    }
}
