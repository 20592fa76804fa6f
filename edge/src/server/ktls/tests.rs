//! The decisions, and helpers the layout and handoff tests share: certificates and
//! configurations for real handshakes, and the kernel's record layer rebuilt from the bytes
//! handed to it (the kernel here has no kTLS to ask).

use std::sync::Arc;

use ring::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{CipherSuite, ProtocolVersion, SupportedCipherSuite};

use super::*;

const TAG_LEN: usize = 16;

pub(crate) const TLS13: ProtocolVersion = ProtocolVersion::TLSv1_3;
pub(crate) const TLS12: ProtocolVersion = ProtocolVersion::TLSv1_2;
pub(crate) const AES128_13: CipherSuite = CipherSuite::TLS13_AES_128_GCM_SHA256;
pub(crate) const AES256_13: CipherSuite = CipherSuite::TLS13_AES_256_GCM_SHA384;

#[test]
fn the_probe_reads_errno_as_the_kernel_means_it() {
    assert_eq!(classify(Err(libc::ENOTCONN)), Kernel::Available);
    assert_eq!(classify(Ok(())), Kernel::Available);
    for errno in [
        libc::ENOENT,
        libc::ENOPROTOOPT,
        libc::EOPNOTSUPP,
        libc::EPERM,
        0,
    ] {
        assert!(
            matches!(classify(Err(errno)), Kernel::Missing(_)),
            "{errno}"
        );
    }
}

#[test]
fn the_probe_finds_a_loaded_tls_module() {
    // Only a loaded module is listed; an unlisted one may still load on demand.
    let loaded = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .is_ok_and(|ulps| ulps.split_whitespace().any(|u| u == "tls"));
    // Nor loadable: this kernel has no modules directory to load it from.
    let loadable = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .is_ok_and(|r| std::path::Path::new("/lib/modules").join(r.trim()).exists());
    match (loaded, loadable) {
        (true, _) => assert_eq!(probe(), Kernel::Available),
        (false, false) => assert!(matches!(probe(), Kernel::Missing(_)), "{:?}", probe()),
        // It may load on demand: either answer is right.
        (false, true) => eprintln!(
            "tls module not loaded but loadable: probe() = {:?}",
            probe()
        ),
    }
}

#[test]
fn decisions_fall_back_in_order() {
    let missing = Kernel::Missing("test");
    let (off, auto, avail) = (KtlsMode::Off, KtlsMode::Auto, Kernel::Available);
    assert_eq!(decide(off, avail, false), Plan::Userspace(Fallback::Off));
    assert_eq!(decide(off, missing, false), Plan::Userspace(Fallback::Off));
    assert_eq!(
        decide(auto, missing, false),
        Plan::Userspace(Fallback::NoKernel)
    );
    assert_eq!(
        decide(auto, avail, true),
        Plan::Userspace(Fallback::Refused)
    );
    assert_eq!(decide(auto, avail, false), Plan::Kernel);
}

#[test]
fn a_kernel_without_tls_plans_userspace_and_one_refusal_is_remembered() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let off = Ktls::start(KtlsMode::Off);
    assert_eq!(off.plan(fd), Plan::Userspace(Fallback::Off));
    // What `start` found decides; a kernel with kTLS would try the ULP (a listening socket
    // is refused it, as any socket not yet connected).
    let auto = Ktls::start(KtlsMode::Auto);
    match auto.kernel {
        Kernel::Available => assert_eq!(auto.plan(fd), Plan::Userspace(Fallback::Refused)),
        Kernel::Missing(_) => assert_eq!(auto.plan(fd), Plan::Userspace(Fallback::NoKernel)),
    }
    let forced = Ktls {
        kernel: Kernel::Available,
        ..auto.clone()
    };
    let other = forced.clone();
    assert!(!other.refused.load(Ordering::Relaxed));
    forced.refused(&handoff::HandoffError::ReadAhead);
    // Every clone of the listener's state sees it, and plans userspace from then on.
    assert!(other.refused.load(Ordering::Relaxed));
    assert_eq!(
        decide(
            KtlsMode::Auto,
            other.kernel,
            other.refused.load(Ordering::Relaxed)
        ),
        Plan::Userspace(Fallback::Refused)
    );
}

#[test]
fn at_start_only_the_ciphers_the_kernel_takes_are_offered() {
    let ktls = Ktls::start(KtlsMode::Auto);
    match probe() {
        Kernel::Missing(_) => {
            assert!(KernelSuite::ALL.iter().all(|s| !kernel_takes(*s)));
            assert!(!ktls.kernel_available());
            assert!(KernelSuite::ALL.iter().all(|s| !ktls.takes(*s)));
        }
        // TLS 1.2 AES-128-GCM was kTLS's first cipher (Linux 4.13): every kTLS kernel has it.
        Kernel::Available => assert!(ktls.takes(KernelSuite::ALL[3]), "{:?}", ktls.suites),
    }
    assert!(KernelSuite::ALL
        .iter()
        .all(|s| !Ktls::start(KtlsMode::Off).takes(*s)));
}

/// A server and a client configuration trusting each other, with secret extraction on both
/// sides, offering only `suites` and `versions`.
pub(crate) fn configs(
    suites: Vec<SupportedCipherSuite>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (rustls::ServerConfig, rustls::ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = suites;
    let provider = Arc::new(provider);
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    server.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.enable_secret_extraction = true;
    (server, client)
}

/// One direction of the kernel's record layer (`net/tls/tls_sw.c`), rebuilt with ring from
/// the `crypto_info` bytes it was given: key, nonce material and next sequence number read
/// back from the struct as the kernel reads them.
pub(crate) struct KernelSide {
    tls13: bool,
    key: LessSafeKey,
    /// AES-GCM: salt (4) then the struct's iv (8); ChaCha20-Poly1305: the iv (12).
    nonce: [u8; 12],
    chacha: bool,
    seq: u64,
    /// TLS 1.2 AES-GCM: the explicit nonce of the next record sent (the struct's iv, plus one
    /// per record, as `tls_advance_record_sn` does).
    explicit: u64,
}

impl KernelSide {
    pub(crate) fn from_crypto_info(b: &[u8]) -> Self {
        let tls13 = u16::from_ne_bytes([b[0], b[1]]) == 0x0304;
        let cipher_type = u16::from_ne_bytes([b[2], b[3]]);
        let mut nonce = [0u8; 12];
        let (alg, key, seq) = match cipher_type {
            51 | 52 => {
                let (alg, key_len) = match cipher_type {
                    51 => (&AES_128_GCM, 16),
                    _ => (&AES_256_GCM, 32),
                };
                let (iv8, rest) = b[4..].split_at(8);
                let (key, rest) = rest.split_at(key_len);
                let (salt, seq) = rest.split_at(4);
                nonce[..4].copy_from_slice(salt);
                nonce[4..].copy_from_slice(iv8);
                (alg, key, seq)
            }
            54 => {
                let (iv, rest) = b[4..].split_at(12);
                let (key, seq) = rest.split_at(32);
                nonce.copy_from_slice(iv);
                (&CHACHA20_POLY1305, key, seq)
            }
            other => panic!("cipher type {other}"),
        };
        Self {
            tls13,
            key: LessSafeKey::new(UnboundKey::new(alg, key).expect("key length")),
            explicit: u64::from_be_bytes(nonce[4..].try_into().expect("8 bytes")),
            nonce,
            chacha: cipher_type == 54,
            seq: u64::from_be_bytes(seq.try_into().expect("8 bytes of rec_seq")),
        }
    }

    /// The per-record nonce of TLS 1.3 and of ChaCha20-Poly1305 under 1.2: the base XOR the
    /// sequence number.
    fn xored_nonce(&self) -> Nonce {
        let mut n = self.nonce;
        for (b, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// TLS 1.2's additional data: sequence number, type, version, plaintext length.
    fn aad12(&self, len: usize) -> [u8; 13] {
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&self.seq.to_be_bytes());
        aad[8..].copy_from_slice(&[23, 3, 3, (len >> 8) as u8, len as u8]);
        aad
    }

    /// Opens the next application-data record received (header included).
    pub(crate) fn open(&mut self, record: &[u8]) -> Vec<u8> {
        assert_eq!(record[0], 23, "an application-data record");
        let mut body = record[5..].to_vec();
        let plain = if self.tls13 {
            let aad: [u8; 5] = record[..5].try_into().expect("header");
            let nonce = self.xored_nonce();
            let mut inner = self
                .key
                .open_in_place(nonce, Aad::from(aad), &mut body)
                .expect("the kernel's key opens it")
                .to_vec();
            // TLSInnerPlaintext: content, the real type, zero padding.
            while inner.last() == Some(&0) {
                inner.pop();
            }
            assert_eq!(inner.pop(), Some(23), "inner type");
            inner
        } else if self.chacha {
            let aad = self.aad12(body.len() - TAG_LEN);
            let nonce = self.xored_nonce();
            let plain = self.key.open_in_place(nonce, Aad::from(aad), &mut body);
            plain.expect("the kernel's key opens it").to_vec()
        } else {
            let (explicit, sealed) = body.split_at_mut(8);
            let mut n = self.nonce;
            n[4..].copy_from_slice(explicit);
            let aad = self.aad12(sealed.len() - TAG_LEN);
            let nonce = Nonce::assume_unique_for_key(n);
            let plain = self.key.open_in_place(nonce, Aad::from(aad), sealed);
            plain.expect("the kernel's key opens it").to_vec()
        };
        self.seq += 1;
        plain
    }

    /// Seals `data` into the next application-data record sent, header included.
    pub(crate) fn seal(&mut self, data: &[u8]) -> Vec<u8> {
        let mut body = data.to_vec();
        let mut out = Vec::new();
        if self.tls13 {
            body.push(23);
            let len = body.len() + TAG_LEN;
            let header = [23, 3, 3, (len >> 8) as u8, len as u8];
            let nonce = self.xored_nonce();
            self.key
                .seal_in_place_append_tag(nonce, Aad::from(header), &mut body)
                .expect("seal");
            out.extend_from_slice(&header);
        } else {
            let aad = self.aad12(body.len());
            let explicit = self.explicit.to_be_bytes();
            self.explicit = self.explicit.wrapping_add(1);
            let nonce = match self.chacha {
                true => self.xored_nonce(),
                false => {
                    let mut n = self.nonce;
                    n[4..].copy_from_slice(&explicit);
                    Nonce::assume_unique_for_key(n)
                }
            };
            self.key
                .seal_in_place_append_tag(nonce, Aad::from(aad), &mut body)
                .expect("seal");
            if !self.chacha {
                body.splice(0..0, explicit);
            }
            let len = body.len();
            out.extend_from_slice(&[23, 3, 3, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(&body);
        self.seq += 1;
        out
    }
}
