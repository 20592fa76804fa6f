//! Kernel TLS (kTLS, Linux `Documentation/networking/tls.rst`): after the rustls handshake a
//! connection's records are left to the kernel, so file bodies go out with `sendfile(2)`
//! encrypted in the kernel, as nginx does with OpenSSL 3 and `ssl_conf_command Options KTLS`.
//!
//! - [`probe`]: once at start, whether the kernel has its `tls` upper-layer protocol.
//! - [`decide`]: per connection, before the handshake, which [`Plan`] it follows, from the
//!   configuration, the probe and whether the kernel refused keys earlier.
//! - [`handoff`]: the handshake read one record at a time, so that nothing after it is
//!   consumed in userspace, then the traffic keys laid out by [`layout`] set on the socket.
//! - [`stream`]: the connection afterwards, a TCP socket whose bytes the kernel encrypts.
//!
//! At start every cipher is tried on a loopback connection. A connection's ClientHello is read
//! first: it is handed over only if the client offers a suite the kernel took (and then only
//! such suites are offered to it); otherwise rustls carries it. Should the kernel still refuse
//! keys (memory), that connection is closed and later ones stay in userspace: the process
//! never retries a kernel that said no.

pub mod handoff;
pub mod layout;
pub mod stream;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::KtlsMode;
use crate::sys;
use crate::sys::ktls::Direction;
use layout::{CryptoInfo, KernelSuite};

/// What the running kernel offers, probed once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The `tls` TCP upper-layer protocol exists (loaded, or loadable on demand).
    Available,
    /// It does not; the reason is for the start-up log.
    Missing(&'static str),
}

/// Asks the kernel for its `tls` upper-layer protocol on an unconnected socket.
pub fn probe() -> Kernel {
    classify(sys::ktls::probe_tls_ulp().map_err(|e| e.raw_os_error().unwrap_or(0)))
}

/// Reads the probe's answer: the kernel finds (or loads) the ULP before it looks at the socket,
/// so an unconnected socket is refused with `ENOTCONN` exactly when the ULP exists.
fn classify(probe: Result<(), i32>) -> Kernel {
    match probe {
        Ok(()) | Err(libc::ENOTCONN) => Kernel::Available,
        Err(libc::ENOENT) => Kernel::Missing("the kernel has no tls module (modprobe tls)"),
        Err(libc::ENOPROTOOPT | libc::EOPNOTSUPP) => {
            Kernel::Missing("the kernel has no TCP upper-layer protocols")
        }
        Err(libc::EPERM | libc::EACCES) => Kernel::Missing("the tls module may not be loaded"),
        Err(_) => Kernel::Missing("TCP_ULP tls refused"),
    }
}

/// Who will encrypt a connection's records after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The kernel: the handshake is driven by [`handoff`], then bodies go by `sendfile(2)`.
    Kernel,
    /// rustls, for this reason.
    Userspace(Fallback),
}

/// Why a connection stays in userspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `[tls] ktls = "off"`.
    Off,
    /// The kernel has no kTLS.
    NoKernel,
    /// The kernel refused the `tls` ULP on this socket, or keys on an earlier one.
    Refused,
    /// The client offered no cipher suite the kernel takes (see `handoff::kernel_fits`).
    Cipher,
}

/// The path of one connection, from the configuration, the start-up probe and whether the
/// kernel refused a handoff since.
pub fn decide(mode: KtlsMode, kernel: Kernel, refused_before: bool) -> Plan {
    match (mode, kernel) {
        (KtlsMode::Off, _) => Plan::Userspace(Fallback::Off),
        (_, Kernel::Missing(_)) => Plan::Userspace(Fallback::NoKernel),
        _ if refused_before => Plan::Userspace(Fallback::Refused),
        _ => Plan::Kernel,
    }
}

/// The start-up half of every decision (the configured mode and what the kernel offered),
/// and whether the kernel has refused a handoff since. Clones share that last answer.
#[derive(Debug, Clone)]
pub struct Ktls {
    mode: KtlsMode,
    kernel: Kernel,
    /// The versions and ciphers the kernel took keys for at start.
    suites: Vec<KernelSuite>,
    refused: Arc<AtomicBool>,
}

impl Ktls {
    /// Probes the kernel (unless kTLS is off) and logs what TLS connections will use.
    pub fn start(mode: KtlsMode) -> Self {
        let mut kernel = match mode {
            KtlsMode::Off => Kernel::Missing("off in the configuration"),
            KtlsMode::Auto => probe(),
        };
        let suites: Vec<KernelSuite> = match kernel {
            Kernel::Available => KernelSuite::ALL
                .into_iter()
                .filter(|s| kernel_takes(*s))
                .collect(),
            Kernel::Missing(_) => Vec::new(),
        };
        if kernel == Kernel::Available && suites.is_empty() {
            kernel = Kernel::Missing("the kernel took no TLS key");
        }
        match (mode, kernel) {
            (KtlsMode::Off, _) => tracing::info!("kTLS off: TLS records encrypted in userspace"),
            (_, Kernel::Missing(why)) => {
                tracing::info!("kTLS unavailable: {why}; TLS records encrypted in userspace")
            }
            (_, Kernel::Available) => tracing::info!(
                ciphers = ?suites,
                "kTLS available: TLS records encrypted by the kernel"
            ),
        }
        Self {
            mode,
            kernel,
            suites,
            refused: Arc::default(),
        }
    }

    /// Whether the kernel took keys of `suite` at start: what a connection to be handed over
    /// may negotiate.
    pub fn takes(&self, suite: KernelSuite) -> bool {
        self.suites.contains(&suite)
    }

    /// Whether the kernel offered kTLS at start.
    pub fn kernel_available(&self) -> bool {
        self.kernel == Kernel::Available
    }

    /// Why a listener without a configuration for the kernel keeps its connections in
    /// userspace.
    pub fn fallback(&self) -> Fallback {
        match decide(self.mode, self.kernel, self.refused.load(Ordering::Relaxed)) {
            Plan::Userspace(why) => why,
            Plan::Kernel => Fallback::Refused,
        }
    }

    /// The plan of a connection just accepted on `fd`. A kernel plan has already attached the
    /// `tls` ULP to the socket (bytes still pass as they are until keys are set).
    pub fn plan(&self, fd: std::os::fd::RawFd) -> Plan {
        let plan = decide(self.mode, self.kernel, self.refused.load(Ordering::Relaxed));
        if plan != Plan::Kernel {
            return plan;
        }
        match sys::ktls::set_tls_ulp(fd) {
            Ok(()) => Plan::Kernel,
            Err(error) => {
                tracing::debug!(%error, "TCP_ULP tls refused on a connection");
                Plan::Userspace(Fallback::Refused)
            }
        }
    }

    /// Notes that the kernel refused a handoff: later connections stay in userspace.
    pub fn refused(&self, error: &handoff::HandoffError) {
        if !self.refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                "kTLS handoff failed; TLS records encrypted in userspace from now on"
            );
        }
    }
}

/// Whether the kernel takes keys of `suite`: a zero key set in both directions on a loopback
/// connection. Asked once per suite at start, so that no client finds out at run time (a
/// connection lost, then kTLS off) that the kernel was built without a cipher.
fn kernel_takes(suite: KernelSuite) -> bool {
    let attempt = || -> io::Result<()> {
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        let limit = std::time::Duration::from_secs(1);
        let tcp = std::net::TcpStream::connect_timeout(&listener.local_addr()?, limit)?;
        // Established by the kernel's backlog; accepted only to close it tidily.
        let _peer = listener.accept()?;
        let fd = tcp.as_raw_fd();
        sys::ktls::set_tls_ulp(fd)?;
        let key = vec![0; suite.key_len()];
        let info = CryptoInfo::new(suite, &key, &[0; 12], 0).map_err(io::Error::other)?;
        sys::ktls::set_crypto(fd, Direction::Transmit, info.as_bytes())?;
        sys::ktls::set_crypto(fd, Direction::Receive, info.as_bytes())
    };
    match attempt() {
        Ok(()) => true,
        Err(error) => {
            tracing::info!(?suite, %error, "the kernel does not take this TLS cipher");
            false
        }
    }
}

#[cfg(test)]
#[path = "ktls/tests.rs"]
pub(crate) mod tests;
