//! What the HTTP/1.1 connection loop needs from its stream beyond reading and writing: how a
//! file body leaves. Plain TCP sends it with `sendfile(2)`, and so does TLS whose records the
//! kernel encrypts ([`super::ktls`]); TLS in userspace reads it in large chunks and encrypts
//! them with rustls.
//!
//! Every write is bounded by the send timeout: a client that stops reading loses its
//! connection after `send_timeout`, whatever the transport.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::file_read;
use super::records::WholeRecords;
use crate::metrics::{Metrics, SendPath};
use crate::sys;

/// Largest single sendfile call, so one fast client cannot monopolise a worker thread.
const SENDFILE_CHUNK: usize = 1 << 20;
/// Plaintext handed to rustls per write over TLS: four full records, one read of the file.
const TLS_CHUNK: usize = 64 * 1024;

/// A connection's byte stream, plain or TLS.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Whether file bodies can leave with `sendfile(2)` (plain TCP, or kTLS): the service plans
    /// bodies by it.
    const SENDFILE: bool;

    /// Writes `head`, then `len` bytes of `file` from `offset`, and counts the body bytes.
    fn send_file(
        &mut self,
        head: &[u8],
        file: &Arc<File>,
        offset: u64,
        len: u64,
        limit: Duration,
        metrics: &Metrics,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Ends the connection: TLS says so (`close_notify`), within `limit`; TCP just closes.
    fn finish(&mut self, limit: Duration) -> impl Future<Output = ()> + Send;
}

impl Transport for TcpStream {
    const SENDFILE: bool = true;

    async fn send_file(
        &mut self,
        head: &[u8],
        file: &Arc<File>,
        offset: u64,
        len: u64,
        limit: Duration,
        metrics: &Metrics,
    ) -> io::Result<()> {
        send_head_more(self, head, limit).await?;
        sendfile(self, file, offset, len, limit, |n| {
            metrics.sent(SendPath::Sendfile, n as u64)
        })
        .await
    }

    async fn finish(&mut self, _limit: Duration) {}
}

impl Transport for WholeRecords<TcpStream> {
    const SENDFILE: bool = false;

    async fn send_file(
        &mut self,
        head: &[u8],
        file: &Arc<File>,
        mut offset: u64,
        len: u64,
        limit: Duration,
        metrics: &Metrics,
    ) -> io::Result<()> {
        // One buffer for the whole body; the head rides in front of the first chunk so both
        // leave in the same records.
        let mut buf = Vec::with_capacity(TLS_CHUNK.max(head.len() + 1));
        buf.extend_from_slice(head);
        let mut remaining = len;
        loop {
            let want = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(buf.capacity() - buf.len());
            let (back, read) = file_read::read_at(file, buf, want, offset).await;
            buf = back;
            let n = read?;
            if n == 0 && want > 0 {
                return Err(truncated());
            }
            write_all(self, &buf, limit).await?;
            metrics.sent(SendPath::Buffered, n as u64);
            offset += n as u64;
            remaining -= n as u64;
            buf.clear();
            if remaining == 0 {
                return flush(self, limit).await;
            }
        }
    }

    async fn finish(&mut self, limit: Duration) {
        let _ = timeout(limit, self.shutdown()).await;
    }
}

/// `write_all` bounded by the send timeout.
pub async fn write_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &[u8],
    limit: Duration,
) -> io::Result<()> {
    timeout(limit, stream.write_all(buf))
        .await
        .map_err(|_| timed_out())?
}

/// Vectored `write_all` where every write is bounded by the send timeout.
pub async fn write_vectored_all<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut bufs: &mut [IoSlice<'_>],
    limit: Duration,
) -> io::Result<()> {
    while !bufs.is_empty() {
        let n = timeout(limit, stream.write_vectored(bufs))
            .await
            .map_err(|_| timed_out())??;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Pushes out what the stream buffers (TLS records); free on plain TCP.
pub async fn flush<S: AsyncWrite + Unpin>(stream: &mut S, limit: Duration) -> io::Result<()> {
    timeout(limit, stream.flush())
        .await
        .map_err(|_| timed_out())?
}

/// Writes the head with `MSG_MORE` so it leaves together with the first file bytes.
async fn send_head_more(stream: &TcpStream, mut head: &[u8], limit: Duration) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    while !head.is_empty() {
        match stream.try_io(Interest::WRITABLE, || sys::send_more(fd, head)) {
            Ok(n) => head = &head[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                timeout(limit, stream.writable())
                    .await
                    .map_err(|_| timed_out())??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends `len` bytes of `file` from `offset` with `sendfile(2)`.
async fn sendfile(
    stream: &TcpStream,
    file: &File,
    mut offset: u64,
    len: u64,
    limit: Duration,
    mut sent: impl FnMut(usize),
) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let mut remaining = len;
    while remaining > 0 {
        let chunk = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(SENDFILE_CHUNK);
        match stream.try_io(Interest::WRITABLE, || {
            sys::sendfile(fd, file, &mut offset, chunk)
        }) {
            Ok(0) => return Err(truncated()),
            Ok(n) => {
                remaining -= n as u64;
                sent(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                timeout(limit, stream.writable())
                    .await
                    .map_err(|_| timed_out())??;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The file shrank under us: the promised Content-Length cannot be met, so the connection must
/// close rather than desynchronise.
fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file truncated while sending")
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "send timed out")
}
