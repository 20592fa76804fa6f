//! Response bodies for hyper's HTTP/2, with memory bounded per connection and edge-wide.
//!
//! hyper polls a body for its next chunk before the peer's flow-control window lets it leave,
//! so every stream of a client that never reads holds a chunk. File chunks therefore take
//! their bytes from a [`Budget`]: the connection's, and within it the edge's, released when
//! the chunk's memory is freed (after h2 wrote it, or dropped it with a reset stream); a
//! stream waits for the budget instead of allocating past it. Bodies pulled from the upstream
//! take the same budget for every chunk they let out. Cached bodies are shared with the cache
//! and cost nothing.
//!
//! Every connection also has a floor of its own, 64 KiB, for when the edge's budget is spent:
//! connections that never read can fill the edge's budget, but cannot stop any other
//! connection from sending a file, cached or being pulled into the cache, a chunk at a time.
//! Memory stays bounded, by the edge's budget plus a floor per open connection. A chunk larger
//! than the floor (a body fetched straight from the upstream by a request that gave up waiting
//! on a fill, at most 16 at once) waits for the edge's budget.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::activity::StreamGuard;
use crate::metrics::{Metrics, SendPath};
use crate::server::file_read;
use crate::upstream::source::ByteStream;

/// Body bytes per DATA frame: with its 9-byte header a frame fills one TLS record (2^14 bytes
/// of plaintext) exactly. A frame of the default maximum, 16,384 bytes, spills 9 bytes into a
/// record of their own, which the client then reads and decrypts separately: twice the records
/// for the same bytes.
pub const FRAME_PAYLOAD: usize = (1 << 14) - 9;
/// Bytes of a file read at a time for one stream: two frames, and small enough to come from
/// the allocator's arenas rather than a fresh mapping each time.
const CHUNK: usize = 2 * FRAME_PAYLOAD;
const _: () = assert!(CHUNK <= CONNECTION_FLOOR, "a file chunk fits the floor");

/// File bytes read but not yet sent, per connection, across all its streams.
pub const CONNECTION_BUDGET: usize = 1 << 20;
/// File bytes read but not yet sent by every HTTP/2 connection together: 256 connections'
/// budgets. Without it, connections that never read (each within its own budget, until its
/// send timeout) could hold a gigabyte per thousand; past it streams wait instead.
pub const EDGE_BUDGET: usize = 256 << 20;
/// Bytes each connection may hold past the edge's budget, once that is spent: one chunk of a
/// fill ([`STREAM_RESERVE`]) or two of a file, so that it still makes progress. At most this
/// much per open connection on top of [`EDGE_BUDGET`] (16,384 connections: 1 GiB, about what
/// their TLS buffers take anyway).
pub const CONNECTION_FLOOR: usize = STREAM_RESERVE;
/// Budget a stream pulled from the upstream reserves before it asks for a chunk: the size of
/// a fill's chunks (`upstream::fill`).
const STREAM_RESERVE: usize = 64 * 1024;
/// The most one upstream chunk is charged: a larger one (an uncached pull's read buffer) would
/// otherwise wait for the whole budget, and every other stream of the connection behind it.
const MAX_CHARGE: usize = CONNECTION_BUDGET / 4;

/// Where a stream's unsent bytes are counted: its connection's budget, and the edge's (or,
/// with that spent, the connection's floor).
#[derive(Clone)]
pub struct Budget {
    connection: Arc<Semaphore>,
    edge: Arc<Semaphore>,
    floor: Arc<Semaphore>,
}

impl Budget {
    /// A new connection's budget, taken from `edge` as it is used.
    pub fn for_connection(edge: &Arc<Semaphore>) -> Self {
        Self {
            connection: Arc::new(Semaphore::new(CONNECTION_BUDGET)),
            edge: edge.clone(),
            floor: Arc::new(Semaphore::new(CONNECTION_FLOOR)),
        }
    }

    fn try_take(&self, n: u32) -> Result<Held, TryAcquireError> {
        let connection = self.connection.clone().try_acquire_many_owned(n)?;
        let shared = match self.edge.clone().try_acquire_many_owned(n) {
            Ok(edge) => edge,
            Err(_) => self.floor.clone().try_acquire_many_owned(n)?,
        };
        Ok(Held { connection, shared })
    }

    /// Waits for `n` bytes of the connection's budget, then of the edge's or, when that runs
    /// out first, of the connection's floor. The connection's first, so one connection waits
    /// for the edge with one request at a time.
    async fn take(self, n: u32) -> io::Result<Held> {
        let connection = self.connection.acquire_many_owned(n).await;
        let connection = connection.map_err(io::Error::other)?;
        let shared = if n as usize <= CONNECTION_FLOOR {
            tokio::select! {
                biased;
                edge = self.edge.acquire_many_owned(n) => edge,
                floor = self.floor.acquire_many_owned(n) => floor,
            }
        } else {
            self.edge.acquire_many_owned(n).await
        };
        let shared = shared.map_err(io::Error::other)?;
        Ok(Held { connection, shared })
    }
}

/// Budget held by bytes not yet sent; given back to both when dropped.
struct Held {
    connection: OwnedSemaphorePermit,
    /// From the edge's budget or the connection's floor.
    shared: OwnedSemaphorePermit,
}

impl Held {
    fn size(&self) -> usize {
        self.connection.num_permits()
    }

    /// `n` of these bytes' budget, split off (all of it if `n` is as much or more); the rest
    /// goes back. Both permits always hold the same count.
    fn split(mut self, n: usize) -> Self {
        let n = n.min(self.size());
        match (self.connection.split(n), self.shared.split(n)) {
            (Some(connection), Some(shared)) => Self { connection, shared },
            _ => self,
        }
    }
}

/// A response body; it keeps its stream counted as open until hyper drops it.
pub struct EdgeBody {
    kind: Kind,
    /// What is left of the last chunk, given out a frame at a time.
    rest: Bytes,
    metrics: Arc<Metrics>,
    /// Counted open until dropped; told each time hyper asks for data (room to send).
    stream: Option<StreamGuard>,
}

enum Kind {
    Empty,
    Bytes(Option<Bytes>, SendPath),
    File(FileBody),
    /// Pulled from the upstream as it arrives.
    Stream(StreamBody),
}

/// An upstream body, each chunk let out only once the connection's budget covers all of it.
struct StreamBody {
    body: ByteStream,
    /// Of the announced length.
    remaining: u64,
    /// A chunk received, waiting for its budget.
    received: Option<Bytes>,
    budget: Budget,
    held: Option<Held>,
    waiting: Option<Pin<Box<dyn Future<Output = io::Result<Held>> + Send>>>,
}

type Pending = Pin<Box<dyn Future<Output = io::Result<Bytes>> + Send>>;

/// Part of a file, read a chunk at a time within the connection's budget.
struct FileBody {
    file: Arc<File>,
    offset: u64,
    remaining: u64,
    budget: Budget,
    pending: Option<Pending>,
}

impl EdgeBody {
    fn new(kind: Kind, metrics: Arc<Metrics>, stream: Option<StreamGuard>) -> Self {
        if let Some(stream) = &stream {
            // The answer exists: from now on, a stream that cannot send is the client's doing.
            stream.may_send();
        }
        Self {
            kind,
            rest: Bytes::new(),
            metrics,
            stream,
        }
    }

    pub fn empty(metrics: Arc<Metrics>, stream: Option<StreamGuard>) -> Self {
        Self::new(Kind::Empty, metrics, stream)
    }

    pub fn bytes(data: Bytes, path: SendPath, metrics: Arc<Metrics>, stream: StreamGuard) -> Self {
        Self::new(Kind::Bytes(Some(data), path), metrics, Some(stream))
    }

    /// A body pulled from the upstream, `len` bytes announced, let out within `budget`.
    pub fn stream(
        body: ByteStream,
        len: u64,
        budget: Budget,
        metrics: Arc<Metrics>,
        stream: StreamGuard,
    ) -> Self {
        let kind = Kind::Stream(StreamBody {
            body,
            remaining: len,
            received: None,
            budget,
            held: None,
            waiting: None,
        });
        Self::new(kind, metrics, Some(stream))
    }

    /// `len` bytes of `file` from `offset`, read within `budget`.
    pub fn file(
        file: Arc<File>,
        offset: u64,
        len: u64,
        budget: Budget,
        metrics: Arc<Metrics>,
        stream: StreamGuard,
    ) -> Self {
        let kind = Kind::File(FileBody {
            file,
            offset,
            remaining: len,
            budget,
            pending: None,
        });
        Self::new(kind, metrics, Some(stream))
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
        if let Some(stream) = &this.stream {
            stream.may_send();
        }
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(frame(&mut this.rest)))));
        }
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
        this.rest = data;
        Poll::Ready(Some(Ok(Frame::data(frame(&mut this.rest)))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
            && match &self.kind {
                Kind::Empty => true,
                Kind::Bytes(data, _) => data.is_none(),
                Kind::File(f) => f.remaining == 0,
                Kind::Stream(b) => b.remaining == 0 && b.received.is_none(),
            }
    }

    fn size_hint(&self) -> SizeHint {
        let left = match &self.kind {
            Kind::Empty => 0,
            Kind::Bytes(data, _) => data.as_ref().map_or(0, |b| b.len() as u64),
            Kind::File(f) => f.remaining,
            Kind::Stream(b) => b.remaining + b.received.as_ref().map_or(0, |c| c.len() as u64),
        };
        SizeHint::with_exact(left + self.rest.len() as u64)
    }
}

/// The next frame's worth of `rest` (sharing its memory).
fn frame(rest: &mut Bytes) -> Bytes {
    match rest.len() > FRAME_PAYLOAD {
        true => rest.split_to(FRAME_PAYLOAD),
        false => std::mem::take(rest),
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
    /// The next chunk, holding as much of the budget as it has bytes.
    ///
    /// [`STREAM_RESERVE`] is reserved before the upstream is polled, so a fill's chunk (never
    /// larger) leaves at once, and released while the upstream has nothing: a stream waiting
    /// on a slow bucket holds no budget from the connection's other streams. A larger chunk
    /// (an uncached pull's) waits for its whole size (at most [`MAX_CHARGE`]) at once, never
    /// holding part of it while it waits for the rest.
    fn poll_piece(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if self.remaining == 0 && self.received.is_none() {
                return Poll::Ready(None);
            }
            let need = match &self.received {
                Some(chunk) => chunk.len().clamp(1, MAX_CHARGE),
                None => STREAM_RESERVE,
            };
            let have = self.held.as_ref().map_or(0, Held::size);
            if have < need {
                self.held = None;
                if self.waiting.is_none() {
                    // Uncontended, as usual: no future to allocate.
                    let n = u32::try_from(need).unwrap_or(u32::MAX);
                    match self.budget.try_take(n) {
                        Ok(permit) => {
                            self.held = Some(permit);
                            continue;
                        }
                        Err(TryAcquireError::NoPermits) => {}
                        Err(e @ TryAcquireError::Closed) => {
                            return Poll::Ready(Some(Err(io::Error::other(e))))
                        }
                    }
                }
                let wait = self.waiting.get_or_insert_with(|| {
                    let n = u32::try_from(need).unwrap_or(u32::MAX);
                    Box::pin(self.budget.clone().take(n))
                });
                let got = ready!(wait.as_mut().poll(cx));
                self.waiting = None;
                match got {
                    Ok(permit) => self.held = Some(permit),
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
                continue;
            }
            if let Some(chunk) = self.received.take() {
                let Some(held) = self.held.take() else {
                    continue;
                };
                // Keep as much as the chunk holds; the rest goes back now.
                let used = held.split(chunk.len().min(have));
                return Poll::Ready(Some(Ok(Bytes::from_owner(Budgeted {
                    buf: chunk,
                    _permit: used,
                }))));
            }
            match self.body.as_mut().poll_next(cx) {
                Poll::Pending => {
                    self.held = None;
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(data))) if data.len() as u64 <= self.remaining => {
                    self.remaining -= data.len() as u64;
                    self.received = Some(data);
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
    }
}

/// Waits for `len` bytes of budget, then reads them; the budget comes back when the returned
/// bytes are freed.
async fn read_chunk(file: Arc<File>, offset: u64, len: usize, budget: Budget) -> io::Result<Bytes> {
    let permits = u32::try_from(len).unwrap_or(u32::MAX);
    let permit = budget.take(permits).await?;
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

/// Bytes holding their share of the budget until they are freed.
struct Budgeted<B> {
    buf: B,
    _permit: Held,
}

impl<B: AsRef<[u8]>> AsRef<[u8]> for Budgeted<B> {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref()
    }
}

#[cfg(test)]
#[path = "body/tests.rs"]
mod tests;
