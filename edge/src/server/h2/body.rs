//! Response bodies for hyper's HTTP/2, with memory bounded per connection.
//!
//! hyper polls a body for its next chunk before the peer's flow-control window lets it leave,
//! so every stream of a client that never reads holds a chunk. File chunks therefore take
//! their bytes from a per-connection budget, released when the chunk's memory is freed (after
//! h2 wrote it, or dropped it with a reset stream); a stream waits for the budget instead of
//! allocating past it. Bodies pulled from the upstream take the same budget, a chunk at a
//! time, before they are polled. Cached bodies are shared with the cache and cost nothing.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::activity::StreamGuard;
use crate::metrics::{Metrics, SendPath};
use crate::server::file_read;
use crate::upstream::source::ByteStream;

/// Bytes of a file read at a time for one stream: two full HTTP/2 frames, and small enough to
/// come from the allocator's arenas rather than a fresh mapping each time.
const CHUNK: usize = 32 * 1024;

/// File bytes read but not yet sent, per connection, across all its streams.
pub const CONNECTION_BUDGET: usize = 1 << 20;

/// A response body; it keeps its stream counted as open until hyper drops it.
pub struct EdgeBody {
    kind: Kind,
    metrics: Arc<Metrics>,
    _stream: Option<StreamGuard>,
}

enum Kind {
    Empty,
    Bytes(Option<Bytes>, SendPath),
    File(FileBody),
    /// Pulled from the upstream as it arrives.
    Stream(StreamBody),
}

/// An upstream body, let out a piece of at most [`CHUNK`] bytes at a time within the
/// connection's budget.
struct StreamBody {
    body: ByteStream,
    /// Of the announced length.
    remaining: u64,
    /// Received but not yet let out (the rest of a chunk larger than [`CHUNK`]).
    held: Bytes,
    budget: Arc<Semaphore>,
    permit: Permit,
}

/// The budget of a stream's next piece.
enum Permit {
    None,
    Waiting(Pin<Box<dyn Future<Output = io::Result<OwnedSemaphorePermit>> + Send>>),
    Held(OwnedSemaphorePermit),
}

type Pending = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// Part of a file, read a chunk at a time within the connection's budget.
struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    budget: Arc<Semaphore>,
    pending: Option<Pending>,
}

impl EdgeBody {
    pub fn empty(metrics: Arc<Metrics>, stream: Option<StreamGuard>) -> Self {
        Self {
            kind: Kind::Empty,
            metrics,
            _stream: stream,
        }
    }

    pub fn bytes(data: Bytes, path: SendPath, metrics: Arc<Metrics>, stream: StreamGuard) -> Self {
        Self {
            kind: Kind::Bytes(Some(data), path),
            metrics,
            _stream: Some(stream),
        }
    }

    /// A body pulled from the upstream, `len` bytes announced, let out within `budget`.
    pub fn stream(
        body: ByteStream,
        len: u64,
        budget: Arc<Semaphore>,
        metrics: Arc<Metrics>,
        stream: StreamGuard,
    ) -> Self {
        Self {
            kind: Kind::Stream(StreamBody {
                body,
                remaining: len,
                held: Bytes::new(),
                budget,
                permit: Permit::None,
            }),
            metrics,
            _stream: Some(stream),
        }
    }

    /// `len` bytes of `file` from `offset`, read within `budget`.
    pub fn file(
        file: Arc<File>,
        offset: u64,
        len: u64,
        budget: Arc<Semaphore>,
        metrics: Arc<Metrics>,
        stream: StreamGuard,
    ) -> Self {
        Self {
            kind: Kind::File(FileBody {
                file,
                offset,
                remaining: len,
                budget,
                pending: None,
            }),
            metrics,
            _stream: Some(stream),
        }
    }
}

impl http_body::Body for EdgeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let (data, path) = match &mut this.kind {
            Kind::Empty => return Poll::Ready(None),
            Kind::Bytes(data, path) => match data.take() {
                Some(data) => (data, *path),
                None => return Poll::Ready(None),
            },
            Kind::File(f) => match ready!(f.poll_chunk(cx)) {
                Some(Ok(data)) => (data, SendPath::Buffered),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            },
            Kind::Stream(body) => match ready!(body.poll_piece(cx)) {
                Some(Ok(data)) => (data, SendPath::Upstream),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            },
        };
        this.metrics.sent(path, data.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Bytes(data, _) => data.is_none(),
            Kind::File(f) => f.remaining == 0,
            Kind::Stream(b) => b.remaining == 0 && b.held.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Bytes(data, _) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::File(f) => SizeHint::with_exact(f.remaining),
            Kind::Stream(b) => SizeHint::with_exact(b.remaining + b.held.len() as u64),
        }
    }
}

impl FileBody {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let pending = self.pending.get_or_insert_with(|| {
            let len = usize::try_from(self.remaining).unwrap_or(CHUNK).min(CHUNK);
            Box::pin(read_chunk(
                self.file.clone(),
                self.offset,
                len,
                self.budget.clone(),
            ))
        });
        let result = ready!(pending.as_mut().poll(cx));
        self.pending = None;
        if let Ok(chunk) = &result {
            self.offset += chunk.len() as u64;
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(Some(result))
    }
}

impl StreamBody {
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.remaining == 0 && self.held.is_empty() {
            return Poll::Ready(None);
        }
        // The budget first: a stream whose client does not read waits here, holding nothing.
        let mut permit = loop {
            match std::mem::replace(&mut self.permit, Permit::None) {
                Permit::Held(p) => break p,
                Permit::None => {
                    let budget = self.budget.clone();
                    self.permit = Permit::Waiting(Box::pin(async move {
                        budget
                            .acquire_many_owned(CHUNK as u32)
                            .await
                            .map_err(io::Error::other)
                    }));
                }
                Permit::Waiting(mut wait) => match wait.as_mut().poll(cx) {
                    Poll::Ready(Ok(p)) => break p,
                    Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                    Poll::Pending => {
                        self.permit = Permit::Waiting(wait);
                        return Poll::Pending;
                    }
                },
            }
        };
        if self.held.is_empty() {
            match self.body.as_mut().poll_next(cx) {
                Poll::Pending => {
                    self.permit = Permit::Held(permit);
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(data))) if data.len() as u64 <= self.remaining => {
                    self.remaining -= data.len() as u64;
                    self.held = data;
                }
                Poll::Ready(Some(Ok(_))) => {
                    return Poll::Ready(Some(Err(io::Error::other("stream longer than announced"))))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream body ended short",
                    ))))
                }
            }
        }
        let piece = self.held.split_to(self.held.len().min(CHUNK));
        // The piece keeps as much budget as it holds bytes; the rest goes back now.
        let used = permit.split(piece.len()).unwrap_or(permit);
        Poll::Ready(Some(Ok(Bytes::from_owner(Budgeted {
            buf: piece,
            _permit: used,
        }))))
    }
}

/// Waits for `len` bytes of budget, then reads them; the budget comes back when the returned
/// bytes are freed.
async fn read_chunk(
    file: Arc<File>,
    offset: u64,
    len: usize,
    budget: Arc<Semaphore>,
) -> io::Result<Bytes> {
    let permits = u32::try_from(len).unwrap_or(u32::MAX);
    let permit = budget
        .acquire_many_owned(permits)
        .await
        .map_err(io::Error::other)?;
    let (buf, read) = file_read::read_at(&file, Vec::with_capacity(len), len, offset).await;
    if read? == 0 {
        // The file shrank under us: the announced length cannot be met.
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file truncated while sending",
        ));
    }
    Ok(Bytes::from_owner(Budgeted {
        buf,
        _permit: permit,
    }))
}

/// Bytes holding their share of the connection's budget until they are freed.
struct Budgeted<B> {
    buf: B,
    _permit: OwnedSemaphorePermit,
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Budgeted<B> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body::Body as _;
    use http_body_util::BodyExt;

    use super::*;
    use crate::server::h2::activity::Activity;

    async fn piece(body: &mut EdgeBody) -> Bytes {
        let frame = body.frame().await.expect("a frame").expect("no error");
        frame.into_data().expect("data")
    }

    /// A client that does not read holds at most the connection's budget of upstream bytes:
    /// a chunk larger than a piece is let out a piece at a time, and the next piece waits
    /// until an earlier one is freed.
    #[tokio::test]
    async fn upstream_pieces_wait_for_the_connection_budget() {
        let chunk = Bytes::from(vec![7u8; 3 * CHUNK]);
        let upstream = futures_util::stream::iter([Ok(chunk.clone()), Ok(chunk)]);
        let budget = Arc::new(Semaphore::new(2 * CHUNK));
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let activity = Activity::new();
        let len = 6 * CHUNK as u64;
        let mut body = EdgeBody::stream(
            Box::pin(upstream),
            len,
            budget.clone(),
            metrics,
            activity.open_stream(),
        );
        let first = piece(&mut body).await;
        let second = piece(&mut body).await;
        assert_eq!((first.len(), second.len()), (CHUNK, CHUNK));
        assert_eq!(budget.available_permits(), 0);
        let waiting = tokio::time::timeout(Duration::from_millis(50), piece(&mut body)).await;
        assert!(waiting.is_err(), "a third piece went past the budget");
        drop(first);
        let mut sent = second.len() + piece(&mut body).await.len();
        drop(second);
        while !body.is_end_stream() {
            sent += piece(&mut body).await.len();
        }
        assert_eq!(sent as u64, len - CHUNK as u64);
        assert_eq!(budget.available_permits(), 2 * CHUNK);
    }
}
