//! A connection whose records the kernel encrypts and decrypts. To the HTTP code it is a TCP
//! stream like port 80's: HTTP/1.1 bodies leave with `sendfile(2)` and the kernel seals them
//! into records on the way; HTTP/2 writes its frames as plain bytes.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::Metrics;
use crate::server::transport::Transport;
use crate::sys;

/// TLS alert `close_notify` at level warning.
const CLOSE_NOTIFY: [u8; 2] = [1, 0];

/// A TCP socket carrying kTLS in both directions (see [`super::handoff`]), and whether it
/// said `close_notify`.
pub struct KernelStream(TcpStream, bool);

impl KernelStream {
    /// Wraps a socket whose keys [`super::handoff::install`] handed to the kernel.
    pub fn new(tcp: TcpStream) -> Self {
        Self(tcp, false)
    }

    /// Says `close_notify` in an alert record, once, if the socket takes it at once; a client
    /// that stopped reading is not waited for.
    fn close_notify(&mut self) {
        if std::mem::replace(&mut self.1, true) {
            return;
        }
        if let Err(error) = sys::ktls::send_alert(self.0.as_raw_fd(), CLOSE_NOTIFY) {
            tracing::debug!(%error, "close_notify not sent");
        }
    }
}

impl AsyncRead for KernelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for KernelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// Says `close_notify` first (HTTP/2's end; HTTP/1.1 says it in [`Transport::finish`]).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_notify();
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Transport for KernelStream {
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
        // The bytes leave as on plain TCP; the kernel seals them into records on the way.
        self.0
            .send_file(head, file, offset, len, limit, metrics)
            .await
    }

    async fn finish(&mut self, _limit: Duration) {
        self.close_notify();
    }
}
