use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::cipher_suite as suites;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, ProtocolVersion};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::ktls::layout::KernelSuite;

use super::*;
use crate::server::ktls::tests::{configs, KernelSide};

const REQUEST: &[u8] = b"GET /v/720p/seg_00001.ts HTTP/1.1\r\nHost: edge\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

async fn connected() -> (TcpStream, std::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = std::thread::spawn(move || std::net::TcpStream::connect(addr).expect("connect"));
    let (server, _) = listener.accept().await.expect("accept");
    (server, client.join().expect("client thread"))
}

/// A blocking rustls client that sends its last handshake flight and `REQUEST` in one write
/// when it may (TLS 1.3, and a resumed TLS 1.2 session, where the client's Finished ends the
/// handshake: the request is then in the socket before the server has read that Finished).
/// Returns the first plaintext the server sends, and every byte it received.
fn client(config: Arc<rustls::ClientConfig>, mut sock: std::net::TcpStream) -> (Vec<u8>, Vec<u8>) {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    let mut buf = [0u8; 4096];
    let mut received = Vec::new();
    let mut request_sent = false;
    loop {
        if !conn.is_handshaking() && !request_sent {
            conn.writer().write_all(REQUEST).expect("request");
            request_sent = true;
        }
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).expect("client out");
        }
        sock.write_all(&out).expect("send");
        let mut plain = Vec::new();
        if let Ok(n) = conn.reader().read_to_end(&mut plain) {
            assert!(n == 0, "the server closed");
        }
        if !plain.is_empty() {
            return (plain, received);
        }
        let n = sock.read(&mut buf).expect("client read");
        assert!(n > 0, "server closed before answering");
        received.extend_from_slice(&buf[..n]);
        conn.read_tls(&mut &buf[..n]).expect("client in");
        conn.process_new_packets()
            .expect("records from the server verify");
    }
}

/// The records in `wire`: (content type, body).
fn records(mut wire: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while wire.len() >= HEADER {
        let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
        out.push((wire[0], &wire[HEADER..HEADER + len]));
        wire = &wire[HEADER + len..];
    }
    out
}

/// Hands real connections over as the edge would, with the kernel's part played by
/// [`KernelSide`]: the pipelined request must still be in the socket and open with the
/// receive key, and a record sealed with the send key must read as plaintext to the client
/// (which also proves the session tickets left before the keys and were counted). Two
/// connections with the same configurations: the second one resumes the first's session.
async fn hand_over(suite: SupportedCipherSuite, version: &'static SupportedProtocolVersion) {
    let (server_config, client_config) = configs(vec![suite], &[version]);
    let (server_config, client_config) = (Arc::new(server_config), Arc::new(client_config));
    for attempt in ["full", "resumed"] {
        let (mut tcp, sock) = connected().await;
        let config = client_config.clone();
        let peer = std::thread::spawn(move || client(config, sock));
        let hello = client_hello(&mut tcp, &server_config, |_| true);
        let start = tokio::time::timeout(Duration::from_secs(10), hello)
            .await
            .expect("in time")
            .expect("ClientHello");
        let Start::Kernel(mut conn) = start else {
            panic!("the kernel takes every suite here");
        };
        tokio::time::timeout(Duration::from_secs(10), handshake(&mut tcp, &mut conn))
            .await
            .expect("in time")
            .expect("handshake");
        assert_eq!(conn.negotiated_cipher_suite(), Some(suite));
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        assert_eq!(resumed, attempt == "resumed", "{suite:?}");
        let (tx, rx) = kernel_keys(*conn).expect("keys");

        // Had the handshake read the request's record, this would wait for nothing.
        let record = tokio::time::timeout(Duration::from_secs(10), next_record(&mut tcp))
            .await
            .expect("the request's record is still in the socket");
        let mut receive = KernelSide::from_crypto_info(rx.as_bytes());
        assert_eq!(receive.open(&record), REQUEST, "{suite:?} {attempt}");

        let mut send = KernelSide::from_crypto_info(tx.as_bytes());
        tcp.write_all(&send.seal(RESPONSE)).await.expect("send");
        let (got, wire) = tokio::task::spawn_blocking(move || peer.join().expect("client"))
            .await
            .expect("join");
        assert_eq!(got, RESPONSE, "{suite:?} {attempt}");
        if version == &rustls::version::TLS12
            && !suite.suite().as_str().is_some_and(|n| n.contains("CHACHA"))
        {
            // Every encrypted record the server sent, rustls' and the kernel's, carries an
            // explicit nonce of its own: a repeat would give the GCM key away.
            let sent = records(&wire);
            let ccs = sent
                .iter()
                .position(|(t, _)| *t == 20)
                .expect("ChangeCipherSpec");
            let nonces: Vec<&[u8]> = sent[ccs + 1..].iter().map(|(_, b)| &b[..8]).collect();
            let mut unique = nonces.clone();
            unique.sort();
            unique.dedup();
            assert!(
                nonces.len() >= 2,
                "{suite:?} {attempt}: {} records",
                nonces.len()
            );
            assert_eq!(
                unique.len(),
                nonces.len(),
                "{suite:?} {attempt}: a nonce repeats"
            );
        }
    }
}

async fn next_record(tcp: &mut TcpStream) -> Vec<u8> {
    let mut record = vec![0u8; HEADER];
    tcp.read_exact(&mut record).await.expect("header");
    let len = usize::from(u16::from_be_bytes([record[3], record[4]]));
    record.resize(HEADER + len, 0);
    tcp.read_exact(&mut record[HEADER..]).await.expect("body");
    record
}

#[tokio::test]
async fn tls13_connections_are_handed_over_with_nothing_read_past_the_handshake() {
    for suite in [
        suites::TLS13_AES_128_GCM_SHA256,
        suites::TLS13_AES_256_GCM_SHA384,
        suites::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        hand_over(suite, &rustls::version::TLS13).await;
    }
}

#[tokio::test]
async fn tls12_connections_are_handed_over_with_nothing_read_past_the_handshake() {
    for suite in [
        suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ] {
        hand_over(suite, &rustls::version::TLS12).await;
    }
}

/// A client offering no suite the kernel takes is carried by rustls from its ClientHello on,
/// and its connection works.
#[tokio::test]
async fn a_client_offering_no_suite_the_kernel_takes_stays_in_userspace() {
    let (server_config, client_config) = configs(
        vec![suites::TLS13_AES_256_GCM_SHA384],
        &[&rustls::version::TLS13],
    );
    let server_config = Arc::new(server_config);
    let (mut tcp, sock) = connected().await;
    let peer = std::thread::spawn(move || client(Arc::new(client_config), sock));
    let aes128 = KernelSuite::of(
        ProtocolVersion::TLSv1_3,
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    );
    let start = client_hello(&mut tcp, &server_config, |s| Some(s) == aes128)
        .await
        .expect("ClientHello");
    let Start::Userspace(accepted) = start else {
        panic!("the kernel takes none of the client's suites");
    };
    let rest = tokio_rustls::StartHandshake::from_parts(*accepted, tcp);
    let mut tls = rest
        .into_stream(server_config.clone())
        .await
        .expect("handshake");
    let mut request = vec![0; REQUEST.len()];
    tls.read_exact(&mut request).await.expect("request");
    assert_eq!(request, REQUEST);
    tls.write_all(RESPONSE).await.expect("response");
    tls.flush().await.expect("flush");
    let (got, _) = tokio::task::spawn_blocking(move || peer.join().expect("client"))
        .await
        .expect("join");
    assert_eq!(got, RESPONSE);
}

#[test]
fn the_kernel_fits_a_client_only_with_a_suite_of_its_best_version() {
    use CipherSuite as S;
    let all = |_: KernelSuite| true;
    let only_12 = |s: KernelSuite| KernelSuite::ALL[3..].contains(&s);
    let browser = [
        S::TLS13_AES_128_GCM_SHA256,
        S::TLS13_CHACHA20_POLY1305_SHA256,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    assert!(kernel_fits(&browser, all));
    // A TLS 1.3 client is not held to TLS 1.2 by a kernel that has only 1.2.
    assert!(!kernel_fits(&browser, only_12));
    let old_client = [
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        S::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
    ];
    assert!(kernel_fits(&old_client, only_12));
    assert!(!kernel_fits(&[S::TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA], all));
}

#[tokio::test]
async fn what_is_not_a_tls_record_ends_the_handshake_at_once() {
    let (server_config, _) = configs(
        vec![suites::TLS13_AES_128_GCM_SHA256],
        &[&rustls::version::TLS13],
    );
    let server_config = Arc::new(server_config);
    for (what, first) in [
        ("an oversized record", &[22, 3, 1, 0xff, 0xff][..]),
        ("plain HTTP", b"GET / HTTP/1.1\r\n"),
        ("another version", &[22, 2, 0, 0, 5]),
    ] {
        let (mut tcp, mut sock) = connected().await;
        sock.write_all(first).expect("header");
        let mut conn = ServerConnection::new(server_config.clone()).expect("server");
        // The socket stays open: only refusing the header can end this in time.
        let ended = tokio::time::timeout(Duration::from_secs(2), handshake(&mut tcp, &mut conn))
            .await
            .unwrap_or_else(|_| panic!("{what}: still waiting"));
        let err = ended.expect_err(what);
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{what}");
    }
}

#[test]
fn an_unfinished_handshake_has_no_keys() {
    let (server_config, _) = configs(
        vec![suites::TLS13_AES_128_GCM_SHA256],
        &[&rustls::version::TLS13],
    );
    let conn = ServerConnection::new(Arc::new(server_config)).expect("server");
    assert!(matches!(kernel_keys(conn), Err(HandoffError::Suite(None))));
}
