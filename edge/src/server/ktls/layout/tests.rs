use std::io::Write;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::SupportedCipherSuite;

use super::*;
use crate::server::ktls::tests::{configs, KernelSide, AES128_13, AES256_13, TLS12, TLS13};

pub(crate) fn suite(version: ProtocolVersion, suite: CipherSuite) -> KernelSuite {
    KernelSuite::of(version, suite).expect("a kernel suite")
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
fn tls12_gcm_explicit_nonces_start_past_every_one_rustls_sent() {
    let iv = counting(12, 0xa0);
    let base = u64::from_be_bytes(iv[4..].try_into().expect("8 bytes"));
    let tls12 = suite(TLS12, CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let tls13 = suite(TLS13, AES128_13);
    for seq in [0u64, 1, 2, 7, 1000] {
        let b = CryptoInfo::new(tls12, &counting(16, 0), &iv, seq).expect("layout");
        let first = u64::from_be_bytes(b.as_bytes()[4..12].try_into().expect("8 bytes"));
        assert_eq!(first, base + seq);
        // rustls' nonces were base ^ k for k < seq; the kernel's are first, first + 1, ...
        for k in 0..seq {
            for j in 0..1000 {
                assert_ne!(base ^ k, first + j, "seq {seq}: reused after {j} records");
            }
        }
        // TLS 1.3 XORs the sequence number in: the IV goes as it is.
        let b = CryptoInfo::new(tls13, &counting(16, 0), &iv, seq).expect("layout");
        assert_eq!(&b.as_bytes()[4..12], &iv[4..]);
    }
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
    let (server, client) = configs(vec![suite], rustls::DEFAULT_VERSIONS);
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
    // Key and nonce rebuilt as the kernel does (salt || iv, sequence from rec_seq) open it.
    let mut kernel = KernelSide::from_crypto_info(info.as_bytes());
    assert_eq!(kernel.open(&record), b"GET / HTTP/1.1\r\n\r\n");
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
