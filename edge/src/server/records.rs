//! A userspace TLS stream that keeps its records whole when the client reads slower than the
//! edge writes: new plaintext goes to rustls only once the records sealed before it have
//! reached the socket.
//!
//! rustls takes plaintext up to its 64 KiB send buffer less what that buffer still holds. Under
//! backpressure (the usual state of a connection sending a segment) a write was taken in part,
//! and the part ended in a short record: 64 KiB left in five or six records instead of four,
//! and an HTTP/2 frame sized to fill one record in two. Every record costs the client a read
//! and a decryption, and the client's CPU is what bounds a download. nginx keeps its records
//! whole the same way: OpenSSL retries the same record until the socket takes it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

/// A server TLS stream that writes whole records (see the module docs).
#[derive(Debug)]
pub struct WholeRecords<S>(TlsStream<S>);

impl<S> WholeRecords<S> {
    pub fn new(tls: TlsStream<S>) -> Self {
        Self(tls)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WholeRecords<S> {
    /// Resolves once rustls holds no sealed record that the socket has not taken.
    fn poll_drained(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.get_ref().1.wants_write() {
            true => Pin::new(&mut self.0).poll_flush(cx),
            false => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WholeRecords<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WholeRecords<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drained(cx))?;
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drained(cx))?;
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::server::ktls::tests::configs;

    /// Bytes of a full TLS 1.3 application-data record body: 2^14 of plaintext, the inner
    /// content type and the AEAD tag.
    const FULL: usize = (1 << 14) + 1 + 16;
    const WRITES: usize = 8;
    const CHUNK: usize = 64 * 1024;

    /// The body lengths of the records a server sends when it writes [`WRITES`] chunks of 64
    /// KiB to a client that reads a few KiB at a time through a small pipe.
    async fn record_lengths(whole: bool) -> Vec<usize> {
        let suites = rustls::crypto::ring::default_provider().cipher_suites;
        let (mut server, client) = configs(suites, &[&rustls::version::TLS13]);
        server.send_tls13_tickets = 0;
        let (server_io, client_io) = tokio::io::duplex(8 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let (accepted, connected) = tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        );
        let tls = accepted.expect("server handshake");
        let (mut raw, _) = connected.expect("client handshake").into_inner();
        let sender = tokio::spawn(async move {
            let chunk = vec![7u8; CHUNK];
            if whole {
                send(WholeRecords::new(tls), &chunk).await;
            } else {
                send(tls, &chunk).await;
            }
        });
        let lengths = read_records(&mut raw, WRITES * CHUNK).await;
        sender.await.expect("sender");
        lengths
    }

    async fn send<W: AsyncWrite + Unpin>(mut w: W, chunk: &[u8]) {
        for _ in 0..WRITES {
            w.write_all(chunk).await.expect("write");
        }
        w.flush().await.expect("flush");
    }

    /// Reads raw records, a little at a time, until `plaintext` bytes have arrived.
    async fn read_records(raw: &mut DuplexStream, plaintext: usize) -> Vec<usize> {
        let (mut lengths, mut got) = (Vec::new(), 0);
        while got < plaintext {
            let mut header = [0u8; 5];
            raw.read_exact(&mut header).await.expect("header");
            assert_eq!(header[0], 23, "application data");
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let mut body = vec![0u8; len];
            for piece in body.chunks_mut(3000) {
                raw.read_exact(piece).await.expect("body");
                tokio::task::yield_now().await;
            }
            got += len - 17;
            lengths.push(len);
        }
        lengths
    }

    #[tokio::test]
    async fn records_stay_whole_when_the_client_reads_slowly() {
        let lengths = record_lengths(true).await;
        assert_eq!(lengths, vec![FULL; WRITES * CHUNK / (1 << 14)]);
    }

    /// What the wrapper is for: rustls alone cuts records short under the same load.
    #[tokio::test]
    async fn without_it_rustls_cuts_records_short() {
        let lengths = record_lengths(false).await;
        assert!(lengths.iter().any(|&l| l < FULL), "{lengths:?}");
        assert!(lengths.len() > WRITES * CHUNK / (1 << 14));
    }
}
