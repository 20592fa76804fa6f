//! Every request body has a deadline between its pieces: one that sends nothing for
//! `uploads.body_timeout_secs` fails wherever it is read (a subtitle file, a multipart upload
//! between its fields, a JSON body), and the request is answered 408 and its connection
//! closed. A client that announces a body and goes silent would otherwise hold its
//! connection, and an upload slot, for as long as it likes: hyper's deadlines end with the
//! request head.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};

use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::error::ApiError;

/// Middleware: gives a request's body the deadline, and answers 408 if it passed.
pub async fn body_deadline(State(idle): State<Duration>, req: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let req = req.map(|body| Body::new(Deadline::new(body, idle, flag)));
    let response = next.run(req).await;
    if !timed_out.load(Ordering::Acquire) {
        return response;
    }
    let message = format!("the request body sent nothing for {} s", idle.as_secs());
    // Answered with `Connection: close`: the rest of the body may still come.
    ApiError::Timeout(message).into_response()
}

/// A body that fails once its next piece has been awaited for `idle`, from the first read (a
/// handler that reads late does not spend the client's time; with `Expect: 100-continue` the
/// client sends nothing before it) and then from the last piece.
struct Deadline {
    inner: Body,
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl Deadline {
    fn new(inner: Body, idle: Duration, timed_out: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            idle,
            sleep: None,
            timed_out,
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let idle = this.idle;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(piece) => {
                sleep.as_mut().reset(Instant::now() + idle);
                Poll::Ready(piece)
            }
            Poll::Pending => match sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body sent nothing in time",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use futures_util::{stream, StreamExt};

    use super::*;

    /// A body that gives `first` at once, then nothing, ever.
    fn stalled(first: &'static [u8]) -> Body {
        let pieces = stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(first))])
            .chain(stream::pending());
        Body::from_stream(pieces)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_deadline_and_says_so() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = Body::new(Deadline::new(
            stalled(b"a piece"),
            Duration::from_secs(5),
            flag.clone(),
        ));
        let started = Instant::now();
        let read = to_bytes(body, usize::MAX).await;
        assert!(read.is_err(), "a stalled body was read whole");
        assert!(flag.load(Ordering::Acquire));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_starts_at_the_first_read() {
        let flag = Arc::new(AtomicBool::new(false));
        let body = Body::new(Deadline::new(
            stalled(b"a piece"),
            Duration::from_secs(5),
            flag,
        ));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let started = Instant::now();
        assert!(to_bytes(body, usize::MAX).await.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(5), "not at once");
    }

    #[tokio::test(start_paused = true)]
    async fn each_piece_starts_the_deadline_over() {
        let flag = Arc::new(AtomicBool::new(false));
        let pieces = stream::iter(0..4).then(|i| async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![i; 3]))
        });
        let body = Body::new(Deadline::new(
            Body::from_stream(pieces),
            Duration::from_secs(5),
            flag.clone(),
        ));
        let read = to_bytes(body, usize::MAX)
            .await
            .expect("a slow, steady body");
        assert_eq!(read.len(), 12);
        assert!(!flag.load(Ordering::Acquire));
    }
}
