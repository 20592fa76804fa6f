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
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tracing::{Instrument, Span};

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Streams hyper accepted during the connection's current poll, not yet polled.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<VecDeque<Stream>>>);

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("queued", &self.queue().len())
            .finish()
    }
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.queue().push_back(Box::pin(stream));
    }
}

impl Streams {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Stream>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Polls every queued stream once, spawning those not done. Whether any was queued.
    fn run(&self) -> bool {
        let mut ran = false;
        // Nothing needs waking for this poll: a stream left pending is polled again at once by
        // its task, and a future registers the waker of the poll that leaves it pending.
        let mut cx = Context::from_waker(Waker::noop());
        // The lock is not held while a stream runs.
        while let Some(mut stream) = self.queue().pop_front() {
            ran = true;
            // A panicking stream ends alone, as it would in a task of its own, not with every
            // stream of its connection.
            match catch_unwind(AssertUnwindSafe(|| stream.as_mut().poll(&mut cx))) {
                Ok(Poll::Ready(())) => {}
                // Still in the connection's span: what the stream logs names its client.
                Ok(Poll::Pending) => drop(tokio::spawn(stream.instrument(Span::current()))),
                Err(_) => tracing::error!("an HTTP/2 stream panicked"),
            }
        }
        ran
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
        let first = this.conn.as_mut().poll(cx);
        let ran = this.streams.run();
        match first {
            Poll::Ready(out) => Poll::Ready(out),
            Poll::Pending if ran => {
                let second = this.conn.as_mut().poll(cx);
                // Streams accepted in the second poll: answered now, written on the next one
                // (their responses woke the connection).
                this.streams.run();
                second
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn ready_streams_run_in_the_connection_and_waiting_ones_finish_in_tasks() {
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        let counter = done.clone();
        streams.execute(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let counter = done.clone();
        streams.execute(async move {
            let _ = rx.await;
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(done.load(Ordering::SeqCst), 0, "queued, not run");
        assert!(streams.run());
        assert_eq!(done.load(Ordering::SeqCst), 1, "the ready one ran in place");
        assert!(!streams.run(), "the waiting one left the queue for a task");
        tx.send(()).expect("receiver alive");
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 2 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the waiting stream never finished in its task");
    }

    #[tokio::test]
    async fn a_stream_that_waits_stays_in_its_connections_span() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let streams = Streams::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (seen_tx, seen) = tokio::sync::oneshot::channel();
        streams.execute(async move {
            let _ = rx.await;
            let span = Span::current();
            let _ = seen_tx.send(span.metadata().map(|m| m.name()));
        });
        tracing::info_span!("connection").in_scope(|| streams.run());
        tx.send(()).expect("receiver alive");
        assert_eq!(seen.await.expect("the stream ran"), Some("connection"));
    }

    #[tokio::test]
    async fn a_panicking_stream_does_not_take_the_others_with_it() {
        let streams = Streams::default();
        let done = Arc::new(AtomicUsize::new(0));
        streams.execute(async { panic!("a bug in one stream") });
        let counter = done.clone();
        streams.execute(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        assert!(streams.run());
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
