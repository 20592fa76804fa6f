//! The executor hyper runs each HTTP/2 stream on: streams are polled once in the connection's
//! own task, right after the connection poll that accepted them, and become tasks of their own
//! only if they have to wait.
//!
//! Most streams never wait: a 403, a 304 or a segment from the memory cache is answered in
//! that first poll, with no task to create, schedule and free. The responses of everything one
//! read brought in are queued before the connection polls again, so they leave in one write,
//! as they did when each stream was a task (polling each stream as hyper hands it over instead
//! flushed one response per write, and cost more than the tasks it saved).

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tracing::{Instrument, Span};

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Streams polled in place per connection poll; more wait for a task of their own, so one
/// client's burst of small requests cannot hold a worker thread for long.
const INLINE_MAX: usize = 32;

/// Streams hyper accepted during the connection's current poll, not yet polled.
#[derive(Clone, Default)]
pub struct Streams(Arc<Inner>);

#[derive(Default)]
struct Inner {
    queue: Mutex<VecDeque<Stream>>,
    /// Whether [`Serving`] is polling the connection, and so will run what is queued. Futures
    /// hyper hands over at other times (a stream's upgrade, from the stream's own task) are
    /// spawned at once: nothing would come back for them.
    polling: AtomicBool,
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        match self.0.polling.load(Ordering::Acquire) {
            true => self.queue().push_back(Box::pin(stream)),
            false => spawn(Box::pin(stream)),
        }
    }
}

/// A stream that has to wait gets a task, still in the connection's span: what it logs names
/// its client.
fn spawn(stream: Stream) {
    drop(tokio::spawn(stream.instrument(Span::current())));
}

impl Streams {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Stream>> {
        self.0
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next queued stream. The lock is released before the stream runs (it may hand hyper
    /// another future, which queues it).
    fn next(&self) -> Option<Stream> {
        self.queue().pop_front()
    }

    /// Polls queued streams once each (at most [`INLINE_MAX`], and only while the task has
    /// cooperative budget), spawning those not done and the rest. Whether any was queued.
    fn run(&self) -> bool {
        let mut ran = 0;
        // Nothing needs waking for this poll: a stream left pending is polled again at once by
        // its task, and a future registers the waker of the poll that leaves it pending.
        let mut cx = Context::from_waker(Waker::noop());
        while let Some(mut stream) = self.next() {
            ran += 1;
            if ran > INLINE_MAX || !tokio::task::coop::has_budget_remaining() {
                spawn(stream);
                continue;
            }
            // A panicking stream ends alone, as it would in a task of its own, not with every
            // stream of its connection.
            match catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll(&mut cx))) {
                Ok(Poll::Ready(())) => {}
                Ok(Poll::Pending) => spawn(stream),
                Err(_) => tracing::error!("an HTTP/2 stream panicked"),
            }
        }
        ran > 0
    }

    /// Polls the connection with hyper's futures queued for [`Streams::run`].
    fn polling<T>(&self, poll: impl FnOnce() -> T) -> T {
        self.0.polling.store(true, Ordering::Release);
        let out = poll();
        self.0.polling.store(false, Ordering::Release);
        out
    }
}

/// A connection whose streams run on [`Streams`]: every poll of the connection is followed by
/// a poll of the streams it accepted, and, if there were any, by a second poll of the
/// connection, which writes their responses.
pub struct Serving<C> {
    conn: Pin<Box<C>>,
    streams: Streams,
}

impl<C> Serving<C> {
    pub fn new(conn: C, streams: Streams) -> Self {
        Self {
            conn: Box::pin(conn),
            streams,
        }
    }

    /// The connection itself, e.g. to start a graceful shutdown.
    pub fn conn(&mut self) -> Pin<&mut C> {
        self.conn.as_mut()
    }
}

impl<C: Future> Future for Serving<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        let first = this.streams.polling(|| this.conn.as_mut().poll(cx));
        let ran = this.streams.run();
        match first {
            Poll::Ready(out) => Poll::Ready(out),
            Poll::Pending if ran => {
                let second = this.streams.polling(|| this.conn.as_mut().poll(cx));
                // Streams accepted in the second poll: answered now, written on the next one
                // (their responses woke the connection).
                this.streams.run();
                second
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<C> Drop for Serving<C> {
    fn drop(&mut self) {
        // Queued streams hold the queue (hyper gives each a handle to its executor): dropped
        // here, outside the lock, or the queue would keep itself alive.
        let queued = std::mem::take(&mut *self.streams.queue());
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::AtomicUsize;

    /// A stream that counts itself done once `gate` (if any) opens.
    fn counting(
        done: &Arc<AtomicUsize>,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let done = done.clone();
        async move {
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            done.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn until(done: &AtomicUsize, n: usize) {
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} of {n} streams finished", done.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn ready_streams_run_in_the_connection_and_waiting_ones_finish_in_tasks() {
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (open, gate) = tokio::sync::oneshot::channel();
        streams.polling(|| {
            streams.execute(counting(&done, None));
            streams.execute(counting(&done, Some(gate)));
        });
        assert_eq!(done.load(Ordering::SeqCst), 0, "queued, not run");
        assert!(streams.run());
        assert_eq!(done.load(Ordering::SeqCst), 1, "the ready one ran in place");
        assert!(!streams.run(), "the waiting one left the queue for a task");
        open.send(()).expect("gate");
        until(&done, 2).await;
    }

    #[tokio::test]
    async fn futures_handed_over_outside_a_connection_poll_are_spawned_at_once() {
        // An upgrade, handed over by a stream already in its own task: no run would follow.
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        streams.execute(counting(&done, None));
        assert_eq!(streams.queue().len(), 0);
        until(&done, 1).await;

        // And from a stream running in place: queued behind the lock it runs outside of.
        let inner = (streams.clone(), counting(&done, None));
        streams.polling(|| {
            streams.execute(async move {
                let (streams, next) = inner;
                streams.execute(next);
            });
        });
        assert!(streams.run());
        until(&done, 2).await;
    }

    #[tokio::test]
    async fn a_burst_runs_in_place_only_up_to_a_bound() {
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        streams.polling(|| {
            for _ in 0..INLINE_MAX + 8 {
                streams.execute(counting(&done, None));
            }
        });
        assert!(streams.run());
        assert_eq!(
            done.load(Ordering::SeqCst),
            INLINE_MAX,
            "the rest got tasks"
        );
        until(&done, INLINE_MAX + 8).await;
    }

    #[tokio::test]
    async fn a_stream_that_waits_stays_in_its_connections_span() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let streams = Streams::default();
        let (open, gate) = tokio::sync::oneshot::channel::<()>();
        let (seen_tx, seen) = tokio::sync::oneshot::channel();
        streams.polling(|| {
            streams.execute(async move {
                let _ = gate.await;
                let span = Span::current();
                let _ = seen_tx.send(span.metadata().map(|m| m.name()));
            });
        });
        tracing::info_span!("connection").in_scope(|| streams.run());
        open.send(()).expect("gate");
        assert_eq!(seen.await.expect("the stream ran"), Some("connection"));
    }

    #[tokio::test]
    async fn a_panicking_stream_does_not_take_the_others_with_it() {
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        streams.polling(|| {
            streams.execute(async { panic!("a bug in one stream") });
            streams.execute(counting(&done, None));
        });
        assert!(streams.run());
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn queued_streams_do_not_outlive_their_connection() {
        let streams = Streams::default();
        let serving = Serving::new(std::future::pending::<()>(), streams.clone());
        let handle = streams.clone();
        streams.polling(|| streams.execute(async move { drop(handle) }));
        assert_eq!(
            Arc::strong_count(&streams.0),
            3,
            "ours, the connection's, the queued one's"
        );
        drop(serving);
        assert_eq!(Arc::strong_count(&streams.0), 1);
    }
}
