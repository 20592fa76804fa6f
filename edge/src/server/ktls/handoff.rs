//! Handing an established TLS connection to the kernel.
//!
//! The ClientHello is read first ([`client_hello`]): a client offering no suite the kernel
//! takes goes to rustls from there.
//!
//! rustls' buffered connection reads ahead: records that arrive with the client's last
//! handshake message (a pipelined request) would be decrypted in userspace and lost to the
//! kernel. So the handshake is driven here one record at a time, reading a record's header,
//! then exactly its body, and nothing once rustls says the handshake is over; what it queued
//! after it (TLS 1.3 session tickets) is sent before the keys leave. Whatever the client sent
//! next is still in the socket, and the kernel decrypts it once it has the receive key.
//!
//! After the handoff the kernel owns every record: a client's alert or TLS 1.3 KeyUpdate
//! reads as an error (`EIO`), which ends the connection, as it would end it with rustls for
//! every message but KeyUpdate, which browsers do not send.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use std::sync::Arc;

use rustls::server::{Accepted, Acceptor};
use rustls::{CipherSuite, ProtocolVersion, ServerConfig, ServerConnection};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::layout::{CryptoInfo, KernelSuite, LayoutError};
use crate::sys::ktls::{set_crypto, Direction};

/// A TLS record header: type, legacy version, length.
const HEADER: usize = 5;
/// Largest record body a peer may send (TLS 1.2's 2^14 + 2048; TLS 1.3 allows less).
const MAX_BODY: usize = (1 << 14) + 2048;

/// Why a connection could not be handed to the kernel after its handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("the negotiated suite {0:?} is not one the kernel implements")]
    Suite(Option<CipherSuite>),
    #[error("rustls decrypted application data before the handoff")]
    ReadAhead,
    #[error("extracting the traffic secrets: {0}")]
    Secrets(rustls::Error),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("the kernel refused the {0:?} key: {1}")]
    Kernel(Direction, io::Error),
}

/// Where a connection goes, once its ClientHello is read.
pub enum Start {
    /// The kernel can carry a suite the client offers: the handshake goes on in this
    /// connection, whose configuration offers only such suites, with [`handshake`].
    Kernel(Box<ServerConnection>),
    /// It cannot (a client offering only ciphers the kernel was built without, or TLS 1.3
    /// ones where the kernel has only TLS 1.2): rustls carries the connection from here.
    Userspace(Box<Accepted>),
}

/// Reads the ClientHello one record at a time and decides with what it offers: the kernel if
/// it `takes` a suite the client offers (of TLS 1.3 when the client speaks it, so that no
/// client is held to TLS 1.2), userspace otherwise. Nothing past the ClientHello is read.
pub async fn client_hello(
    tcp: &mut TcpStream,
    config: &Arc<ServerConfig>,
    takes: impl Fn(KernelSuite) -> bool,
) -> io::Result<Start> {
    let mut acceptor = Acceptor::default();
    let mut record = Vec::with_capacity(HEADER + 4096);
    let accepted = loop {
        read_record(tcp, &mut record).await?;
        feed(&record, |rd| acceptor.read_tls(rd))?;
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => {}
            Err((error, mut alert)) => {
                let _ = alert.write(&mut NonBlocking(tcp));
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    };
    if !kernel_fits(accepted.client_hello().cipher_suites(), takes) {
        return Ok(Start::Userspace(Box::new(accepted)));
    }
    match accepted.into_connection(config.clone()) {
        Ok(conn) => Ok(Start::Kernel(Box::new(conn))),
        Err((error, mut alert)) => {
            let _ = alert.write(&mut NonBlocking(tcp));
            Err(io::Error::new(io::ErrorKind::InvalidData, error))
        }
    }
}

/// Whether the kernel `takes` a suite among those `offered`: a TLS 1.3 one when the client
/// offers TLS 1.3 suites (it speaks 1.3, and keeps it), a TLS 1.2 one otherwise.
pub fn kernel_fits(offered: &[CipherSuite], takes: impl Fn(KernelSuite) -> bool) -> bool {
    let of = |version| {
        offered
            .iter()
            .filter_map(move |s| KernelSuite::of(version, *s))
    };
    let version = match of(ProtocolVersion::TLSv1_3).next() {
        Some(_) => ProtocolVersion::TLSv1_3,
        None => ProtocolVersion::TLSv1_2,
    };
    of(version).any(takes)
}

/// Completes the server handshake of `conn` on `tcp`, one record at a time, and sends what
/// rustls queued after it. Nothing past the handshake is read. A client may stall: callers
/// bound this with the header timeout.
pub async fn handshake(tcp: &mut TcpStream, conn: &mut ServerConnection) -> io::Result<()> {
    let mut record = Vec::with_capacity(HEADER + 4096);
    loop {
        send_queued(tcp, conn).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        read_record(tcp, &mut record).await?;
        feed(&record, |rd| conn.read_tls(rd))?;
        if let Err(error) = conn.process_new_packets() {
            // rustls queued an alert saying why; it goes if the socket takes it at once.
            let _ = conn.write_tls(&mut NonBlocking(tcp));
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
    }
}

/// Reads exactly one TLS record into `record`: its header, then its body.
async fn read_record(tcp: &mut TcpStream, record: &mut Vec<u8>) -> io::Result<()> {
    record.resize(HEADER, 0);
    tcp.read_exact(record).await?;
    // Not TLS at all (plain HTTP sent to the TLS port reads as an 8 KiB "record"): refused at
    // once, as rustls does, rather than waiting for bytes that never come.
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    if !(20..=23).contains(&record[0]) || record[1] != 3 || len > MAX_BODY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a TLS record",
        ));
    }
    record.resize(HEADER + len, 0);
    tcp.read_exact(&mut record[HEADER..]).await.map(drop)
}

/// Hands all of `record` to rustls (which takes at most a few KiB per call).
fn feed(
    record: &[u8],
    mut read_tls: impl FnMut(&mut dyn Read) -> io::Result<usize>,
) -> io::Result<()> {
    let mut rest = record;
    while !rest.is_empty() {
        if read_tls(&mut rest)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake buffer full",
            ));
        }
    }
    Ok(())
}

/// Hands the traffic keys of `conn`, which [`handshake`] completed on `tcp`, to the kernel.
/// The socket must carry the `tls` ULP. On error the connection is unusable.
pub fn install(tcp: &TcpStream, conn: ServerConnection) -> Result<(), HandoffError> {
    let (tx, rx) = kernel_keys(conn)?;
    let fd = tcp.as_raw_fd();
    for (direction, info) in [(Direction::Transmit, &tx), (Direction::Receive, &rx)] {
        set_crypto(fd, direction, info.as_bytes())
            .map_err(|error| HandoffError::Kernel(direction, error))?;
    }
    Ok(())
}

/// The send and receive keys of an established connection, as the kernel takes them.
fn kernel_keys(mut conn: ServerConnection) -> Result<(CryptoInfo, CryptoInfo), HandoffError> {
    let negotiated = conn.negotiated_cipher_suite().map(|s| s.suite());
    let suite = conn
        .protocol_version()
        .zip(negotiated)
        .and_then(|(version, suite)| KernelSuite::of(version, suite))
        .ok_or(HandoffError::Suite(negotiated))?;
    // Plaintext rustls already decrypted would be lost with it; `handshake` reads none.
    if matches!(conn.reader().read(&mut [0; 1]), Ok(n) if n > 0) {
        return Err(HandoffError::ReadAhead);
    }
    let secrets = conn
        .dangerous_extract_secrets()
        .map_err(HandoffError::Secrets)?;
    Ok((
        CryptoInfo::from_secrets(suite, &secrets.tx)?,
        CryptoInfo::from_secrets(suite, &secrets.rx)?,
    ))
}

/// Writes everything rustls has queued, waiting for the socket as needed.
async fn send_queued(tcp: &TcpStream, conn: &mut ServerConnection) -> io::Result<()> {
    while conn.wants_write() {
        tcp.writable().await?;
        match conn.write_tls(&mut NonBlocking(tcp)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A `Write` over a tokio socket that never waits (`WouldBlock` instead).
struct NonBlocking<'a>(&'a TcpStream);

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "handoff/tests.rs"]
mod tests;
