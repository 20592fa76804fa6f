//! Response bodies for hyper's HTTP/2, with memory bounded per connection.
//!
//! hyper polls a body for its next chunk before the peer's flow-control window lets it leave,
//! so every stream of a client that never reads holds a chunk. File chunks therefore take
//! their bytes from a per-connection budget, released when the chunk's memory is freed (after
//! h2 wrote it, or dropped it with a reset stream); a stream waits for the budget instead of
//! allocating past it. Cached bodies are shared with the cache and cost nothing.

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
    /// Pulled from the upstream as it arrives; `remaining` of the announced length.
    Stream(ByteStream, u64),
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

    /// A body pulled from the upstream, `len` bytes announced.
    pub fn stream(body: ByteStream, len: u64, metrics: Arc<Metrics>, stream: StreamGuard) -> Self {
        Self {
            kind: Kind::Stream(body, len),
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
            Kind::Stream(body, remaining) => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                match ready!(body.as_mut().poll_next(cx)) {
                    Some(Ok(data)) if data.len() as u64 <= *remaining => {
                        *remaining -= data.len() as u64;
                        (data, SendPath::Upstream)
                    }
                    Some(Ok(_)) => {
                        return Poll::Ready(Some(Err(io::Error::other(
                            "stream longer than announced",
                        ))))
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "upstream body ended short",
                        ))))
                    }
                }
            }
        };
        this.metrics.sent(path, data.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Bytes(data, _) => data.is_none(),
            Kind::File(f) => f.remaining == 0,
            Kind::Stream(_, remaining) => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Bytes(data, _) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::File(f) => SizeHint::with_exact(f.remaining),
            Kind::Stream(_, remaining) => SizeHint::with_exact(*remaining),
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

/// File bytes holding their share of the connection's budget.
struct Budgeted {
    buf: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}
