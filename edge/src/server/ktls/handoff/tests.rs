use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::ring::cipher_suite as suites;
use rustls::pki_types::ServerName;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use tokio::io::AsyncWriteExt;

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
/// (the request is in the socket before the server has read the handshake's end), then
/// returns the first plaintext the server sends.
fn client(config: rustls::ClientConfig, mut sock: std::net::TcpStream) -> Vec<u8> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut buf = [0u8; 4096];
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
            return plain;
        }
        let n = sock.read(&mut buf).expect("client read");
        assert!(n > 0, "server closed before answering");
        conn.read_tls(&mut &buf[..n]).expect("client in");
        conn.process_new_packets()
            .expect("records from the server verify");
    }
}

/// Hands a real connection over as the edge would, with the kernel's part played by
/// [`KernelSide`]: the pipelined request must still be in the socket and open with the
/// receive key, and a record sealed with the send key must read as plaintext to the client
/// (which also proves the session tickets left before the keys and were counted).
async fn hand_over(suite: SupportedCipherSuite, version: &'static SupportedProtocolVersion) {
    let (server_config, client_config) = configs(vec![suite], &[version]);
    let (mut tcp, sock) = connected().await;
    let peer = std::thread::spawn(move || client(client_config, sock));
    let mut conn = ServerConnection::new(Arc::new(server_config)).expect("server");
    tokio::time::timeout(Duration::from_secs(10), handshake(&mut tcp, &mut conn))
        .await
        .expect("in time")
        .expect("handshake");
    assert_eq!(conn.negotiated_cipher_suite(), Some(suite));
    let (tx, rx) = kernel_keys(conn).expect("keys");

    // Had the handshake read the request's record, this would wait for nothing.
    let record = tokio::time::timeout(Duration::from_secs(10), next_record(&mut tcp))
        .await
        .expect("the request's record is still in the socket");
    let mut receive = KernelSide::from_crypto_info(rx.as_bytes());
    assert_eq!(receive.open(&record), REQUEST, "{suite:?}");

    let mut send = KernelSide::from_crypto_info(tx.as_bytes());
    tcp.write_all(&send.seal(RESPONSE)).await.expect("send");
    let got = tokio::task::spawn_blocking(move || peer.join().expect("client"))
        .await
        .expect("join");
    assert_eq!(got, RESPONSE, "{suite:?}");
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

#[tokio::test]
async fn an_oversized_record_ends_the_handshake() {
    let (server_config, _) = configs(
        vec![suites::TLS13_AES_128_GCM_SHA256],
        &[&rustls::version::TLS13],
    );
    let (mut tcp, mut sock) = connected().await;
    sock.write_all(&[22, 3, 1, 0xff, 0xff]).expect("header");
    let mut conn = ServerConnection::new(Arc::new(server_config)).expect("server");
    let err = handshake(&mut tcp, &mut conn).await.expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
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
