//! Kernel TLS (`Documentation/networking/tls.rst`): the `tls` TCP upper-layer protocol, the
//! traffic keys of each direction, and alerts sent as TLS records of their own type.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `setsockopt(SOL_TLS, ...)` options (include/uapi/linux/tls.h).
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;
/// The control message that sets the record type of what `sendmsg` sends.
const TLS_SET_RECORD_TYPE: libc::c_int = 1;
/// TLS content type of an alert record.
const RECORD_ALERT: u8 = 21;

/// Which direction's records a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Records the kernel encrypts and sends.
    Transmit,
    /// Records the kernel receives and decrypts.
    Receive,
}

/// Asks for the `tls` TCP upper-layer protocol on a new, unconnected TCP socket, which is
/// closed again. The kernel looks the ULP up (loading its module if it can) before it checks
/// the socket, so the answer is `ENOTCONN` when kTLS exists and `ENOENT` when it does not.
pub fn probe_tls_ulp() -> io::Result<()> {
    // SAFETY: socket(2) takes no pointers; the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    set_tls_ulp(socket.as_raw_fd())
}

/// Attaches the `tls` upper-layer protocol to the connected TCP socket `fd`. Until keys are
/// set the socket carries bytes as before; afterwards the kernel owns the records.
pub fn set_tls_ulp(fd: RawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: `name` is valid for reads of its length for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Hands one direction's key to the kernel: `crypto_info` is a `struct tls12_crypto_info_*`
/// (see `server::ktls::CryptoInfo`). The socket must carry the `tls` ULP.
pub fn set_crypto(fd: RawFd, direction: Direction, crypto_info: &[u8]) -> io::Result<()> {
    let option = match direction {
        Direction::Transmit => TLS_TX,
        Direction::Receive => TLS_RX,
    };
    let len = libc::socklen_t::try_from(crypto_info.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `crypto_info` is valid for reads of `len` bytes for the whole call; the kernel
    // copies it and checks its length against the cipher it names.
    let rc =
        unsafe { libc::setsockopt(fd, libc::SOL_TLS, option, crypto_info.as_ptr().cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `alert` (level, description) as an alert record on a kTLS socket, without waiting:
/// `WouldBlock` when the send buffer is full.
pub fn send_alert(fd: RawFd, alert: [u8; 2]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: alert.as_ptr().cast_mut().cast(),
        iov_len: alert.len(),
    };
    // u64s keep the buffer aligned for `cmsghdr`; 32 bytes hold CMSG_SPACE(1).
    let mut control = [0u64; 4];
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as _;
    // SAFETY: `msg` points at `control`, large enough for one header with one byte of data
    // (checked just below), so the first header and its data byte lie inside it; `iov`,
    // `alert` and `control` outlive the sendmsg call.
    let n = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || msg.msg_controllen as usize > std::mem::size_of_val(&control) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        (*cmsg).cmsg_level = libc::SOL_TLS;
        (*cmsg).cmsg_type = TLS_SET_RECORD_TYPE;
        (*cmsg).cmsg_len = libc::CMSG_LEN(1) as _;
        *libc::CMSG_DATA(cmsg) = RECORD_ALERT;
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_refused_on_a_socket_without_the_tls_ulp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        for fd in [client.as_raw_fd(), server.as_raw_fd()] {
            let err = set_crypto(fd, Direction::Transmit, &[0; 40]).expect_err("no ULP");
            // No `tls` ULP on the socket: SOL_TLS options are unknown to plain TCP.
            assert_eq!(err.raw_os_error(), Some(libc::ENOPROTOOPT), "{err}");
        }
    }
}
