use std::io::Write;
use std::sync::Arc;

use rustls::crypto::cipher::{AeadKey, InboundOpaqueMessage, Iv};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ContentType, SupportedCipherSuite};

use super::*;

const TLS13: ProtocolVersion = ProtocolVersion::TLSv1_3;
const TLS12: ProtocolVersion = ProtocolVersion::TLSv1_2;
const AES128_13: CipherSuite = CipherSuite::TLS13_AES_128_GCM_SHA256;
const AES256_13: CipherSuite = CipherSuite::TLS13_AES_256_GCM_SHA384;

fn suite(version: ProtocolVersion, suite: CipherSuite) -> KernelSuite {
    KernelSuite::of(version, suite).expect("a kernel suite")
}

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
fn only_the_aeads_the_kernel_implements_qualify() {
    use CipherSuite as S;
    for (v, s, cipher) in [
        (TLS13, AES128_13, Cipher::Aes128Gcm),
        (TLS13, AES256_13, Cipher::Aes256Gcm),
        (
            TLS13,
            S::TLS13_CHACHA20_POLY1305_SHA256,
            Cipher::Chacha20Poly1305,
        ),
        (
            TLS12,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Cipher::Aes128Gcm,
        ),
        (
            TLS12,
            S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            Cipher::Aes256Gcm,
        ),
        (
            TLS12,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            Cipher::Chacha20Poly1305,
        ),
    ] {
        let k = KernelSuite::of(v, s).expect("supported");
        assert_eq!((k.cipher, k.tls13), (cipher, v == TLS13), "{s:?}");
    }
    // CBC, a 1.3 suite under 1.2 (and the reverse), and versions the kernel never had.
    assert_eq!(
        KernelSuite::of(TLS12, S::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA),
        None
    );
    assert_eq!(KernelSuite::of(TLS12, AES128_13), None);
    assert_eq!(
        KernelSuite::of(TLS13, S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        None
    );
    assert_eq!(KernelSuite::of(ProtocolVersion::TLSv1_1, AES128_13), None);
}

#[test]
fn decisions_fall_back_in_order() {
    let on = Some((TLS13, AES128_13));
    let cbc = Some((TLS12, CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA));
    let missing = Kernel::Missing("test");
    let off = KtlsMode::Off;
    let auto = KtlsMode::Auto;
    let avail = Kernel::Available;
    assert_eq!(decide(off, avail, on, true), Path::Userspace(Fallback::Off));
    assert_eq!(
        decide(auto, missing, on, true),
        Path::Userspace(Fallback::NoKernel)
    );
    assert_eq!(
        decide(auto, avail, cbc, true),
        Path::Userspace(Fallback::Cipher)
    );
    assert_eq!(
        decide(auto, avail, None, true),
        Path::Userspace(Fallback::Cipher)
    );
    assert_eq!(
        decide(auto, avail, on, false),
        Path::Userspace(Fallback::Handoff)
    );
    assert_eq!(
        decide(auto, avail, on, true),
        Path::Kernel(suite(TLS13, AES128_13))
    );
    // The shipped build never hands over, whatever the kernel offers.
    assert_eq!(
        decide(auto, avail, on, HANDOFF),
        Path::Userspace(Fallback::Handoff)
    );
}

fn counting(n: usize, from: u8) -> Vec<u8> {
    (0..n).map(|i| from.wrapping_add(i as u8)).collect()
}

#[test]
fn aes_gcm_layout_is_the_kernels_struct() {
    let iv = counting(12, 0xa0);
    let seq = 0x0102_0304_0506_0708;
    for (s, key_len, cipher_type) in [(AES128_13, 16, 51u16), (AES256_13, 32, 52)] {
        let key = counting(key_len, 0x10);
        let info = CryptoInfo::new(suite(TLS13, s), &key, &iv, seq).expect("layout");
        let mut want = Vec::new();
        want.extend_from_slice(&0x0304u16.to_ne_bytes());
        want.extend_from_slice(&cipher_type.to_ne_bytes());
        want.extend_from_slice(&iv[4..]);
        want.extend_from_slice(&key);
        want.extend_from_slice(&iv[..4]);
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(info.as_bytes(), &want[..], "{s:?}");
        // sizeof(struct tls12_crypto_info_aes_gcm_128) = 40, _256 = 56.
        assert_eq!(info.as_bytes().len(), 8 + key_len + 16);
    }
    let tls12 = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    let info = CryptoInfo::new(suite(TLS12, tls12), &counting(16, 0), &iv, 0).expect("layout");
    assert_eq!(&info.as_bytes()[..2], &0x0303u16.to_ne_bytes());
}

#[test]
fn chacha_layout_keeps_the_whole_iv() {
    let (iv, key) = (counting(12, 0xa0), counting(32, 0x10));
    let s = suite(TLS13, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    let info = CryptoInfo::new(s, &key, &iv, 9).expect("layout");
    let b = info.as_bytes();
    // sizeof(struct tls12_crypto_info_chacha20_poly1305) = 56, no salt.
    assert_eq!(b.len(), 56);
    assert_eq!(&b[2..4], &54u16.to_ne_bytes());
    assert_eq!((&b[4..16], &b[16..48]), (&iv[..], &key[..]));
    assert_eq!(&b[48..], &9u64.to_be_bytes());
}

#[test]
fn wrong_lengths_are_refused() {
    let s = suite(TLS13, AES128_13);
    assert_eq!(
        CryptoInfo::new(s, &[0; 32], &[0; 12], 0).err(),
        Some(LayoutError::Length)
    );
    assert_eq!(
        CryptoInfo::new(s, &[0; 16], &[0; 8], 0).err(),
        Some(LayoutError::Length)
    );
}

/// A real handshake in memory, with secret extraction on both sides.
fn handshake(suite: SupportedCipherSuite) -> (rustls::ServerConnection, rustls::ClientConnection) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![suite];
    let provider = Arc::new(provider);
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    server.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.enable_secret_extraction = true;
    let mut s = rustls::ServerConnection::new(Arc::new(server)).expect("server");
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
    let mut wire = Vec::new();
    while s.is_handshaking() || c.is_handshaking() || s.wants_write() {
        wire.clear();
        c.write_tls(&mut wire).expect("client out");
        s.read_tls(&mut &wire[..]).expect("server in");
        s.process_new_packets().expect("server");
        wire.clear();
        s.write_tls(&mut wire).expect("server out");
        c.read_tls(&mut &wire[..]).expect("client in");
        c.process_new_packets().expect("client");
    }
    (s, c)
}

#[test]
fn extracted_secrets_decrypt_the_peers_records_with_the_kernels_nonce() {
    let aes256 = rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384;
    let (server, mut client) = handshake(aes256);
    let negotiated = server.negotiated_cipher_suite().expect("suite").suite();
    let ks = suite(TLS13, negotiated);
    // A request the kernel would receive after the handoff.
    client
        .writer()
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .expect("write");
    let mut record = Vec::new();
    client.write_tls(&mut record).expect("record");
    let client_tx = client
        .dangerous_extract_secrets()
        .expect("client secrets")
        .tx;
    let rx = server
        .dangerous_extract_secrets()
        .expect("server secrets")
        .rx;
    let info = CryptoInfo::from_secrets(ks, &rx).expect("layout");
    // The same key and IV laid out from the client's side of the same direction; its
    // sequence number is one ahead, past the record it just sealed.
    let same = CryptoInfo::from_secrets(ks, &client_tx).expect("layout");
    assert_eq!(info.as_bytes()[..48], same.as_bytes()[..48]);
    assert_eq!(client_tx.0, rx.0 + 1);

    // Rebuild key and nonce base as the kernel does (salt || iv, sequence from rec_seq) and
    // open the record with them.
    let b = info.as_bytes();
    let (iv8, key, salt, seq) = (&b[4..12], &b[12..44], &b[44..48], &b[48..56]);
    let nonce_base: Vec<u8> = salt.iter().chain(iv8).copied().collect();
    let key: [u8; 32] = key.try_into().expect("32 bytes");
    let seq = u64::from_be_bytes(seq.try_into().expect("8 bytes"));
    let SupportedCipherSuite::Tls13(tls13) = aes256 else {
        panic!("a TLS 1.3 suite");
    };
    let mut opener = tls13
        .aead_alg
        .decrypter(AeadKey::from(key), Iv::copy(&nonce_base));
    let (header, body) = record.split_at_mut(5);
    assert_eq!(header[0], u8::from(ContentType::ApplicationData));
    let msg = InboundOpaqueMessage::new(ContentType::ApplicationData, TLS12, body);
    let plain = opener.decrypt(msg, seq).expect("the kernel's key opens it");
    assert_eq!(plain.payload, b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn secrets_of_another_cipher_are_refused() {
    let aes128 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let (server, _client) = handshake(aes128);
    let tx = server.dangerous_extract_secrets().expect("secrets").tx;
    assert!(CryptoInfo::from_secrets(suite(TLS13, AES128_13), &tx).is_ok());
    assert_eq!(
        CryptoInfo::from_secrets(suite(TLS13, AES256_13), &tx).err(),
        Some(LayoutError::CipherMismatch)
    );
}
