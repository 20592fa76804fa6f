//! TLS connections get the limits of plain ones: a connection that goes silent after the
//! handshake is closed by the idle timeout (HTTP/2 and HTTP/1.1), a trickled head by the head
//! deadline, and HTTP/2 streams that never read cannot make the edge buffer a segment per
//! stream. Clients that fail their handshakes do not write to the log.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::content::{pseudo_random_bytes, world_readable_tempdir, SEGMENT};
use e2e::edge::signed_target;
use e2e::tls::{self, CertFiles, TestCa, TlsStream};
use e2e::{ContentTree, Edge, EdgeOptions, Request};
use tempfile::TempDir;

use super::h2;

/// An edge with an HTTPS listener and a client configuration that trusts it.
struct TlsEdge {
    edge: Edge,
    ca: TestCa,
    _dir: TempDir,
}

impl TlsEdge {
    fn start(tree: &ContentTree, config: &str) -> Self {
        let ca = TestCa::new();
        let dir = world_readable_tempdir("e2e-attack-tls-");
        let files = CertFiles::in_dir(dir.path());
        files.install(&ca.issue("edge", 1));
        let edge = Edge::start(EdgeOptions::new(tree.root()).config(config).tls(&files));
        Self {
            edge,
            ca,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.edge.tls_addr.expect("the TLS listener was reported")
    }

    /// A completed handshake offering only `alpn`.
    fn connect(&self, alpn: &[u8]) -> TlsStream {
        let mut reader = tls::connect(self.addr(), self.ca.client_config(&[alpn]))
            .unwrap_or_else(|err| panic!("TLS handshake: {err}\n{}", self.edge.diagnostics()));
        assert_eq!(tls::alpn(reader.stream()).as_deref(), Some(alpn));
        reader.into_stream()
    }
}

/// How long until the edge closes `stream`, reading (and ignoring) whatever it sends first
/// (HTTP/2 SETTINGS, GOAWAY); `None` if it is still open after `bound`.
fn closed_after(stream: &mut TlsStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < bound {
        let left = bound
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1));
        stream
            .sock
            .set_read_timeout(Some(left))
            .expect("read timeout");
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // A close without close_notify, or a reset: closed all the same.
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// After the handshake, a client that sends nothing (not even the HTTP/2 preface, or no
/// HTTP/1.1 request) is closed at the idle timeout.
#[test]
fn silent_tls_connections_are_closed_by_the_idle_timeout() {
    let idle = Duration::from_secs(2);
    let tree = ContentTree::new();
    let server = TlsEdge::start(&tree, "[server]\nidle_timeout_secs = 2\n");
    for alpn in [&b"h2"[..], b"http/1.1"] {
        let mut stream = server.connect(alpn);
        let bound = idle + Duration::from_secs(2);
        let closed = closed_after(&mut stream, bound + Duration::from_secs(8));
        let name = String::from_utf8_lossy(alpn);
        let Some(after) = closed else {
            panic!(
                "a silent {name} connection is still open after {:?}\n{}",
                bound + Duration::from_secs(8),
                server.edge.diagnostics()
            );
        };
        assert!(
            after <= bound,
            "{name}: closed after {after:?}, want at most {bound:?}"
        );
        assert!(
            after >= idle - Duration::from_millis(500),
            "{name}: closed after {after:?}, not before the idle timeout"
        );
    }
}

/// HTTP/1.1 over TLS runs the plain connection loop: its head deadline holds against a client
/// that trickles a byte a second, as on plain HTTP.
#[test]
fn a_head_trickled_over_tls_is_cut_off_at_the_header_timeout() {
    let tree = ContentTree::new();
    let server = TlsEdge::start(&tree, "[server]\nheader_timeout_secs = 2\n");
    let mut stream = server.connect(b"http/1.1");
    let head = Request::get(signed_target("720p/index.m3u8"))
        .host(server.addr().to_string())
        .header("X-Pad", "a".repeat(100))
        .build();
    let started = Instant::now();
    let bound = Duration::from_secs(3);
    for byte in &head[..head.len() - 4] {
        // A write after the edge closed may fail: that is the close we wait for.
        let _ = stream.write_all(&[*byte]).and_then(|()| stream.flush());
        if closed_after(&mut stream, Duration::from_secs(1)).is_some()
            || started.elapsed() > bound + Duration::from_secs(5)
        {
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed <= bound,
        "a head trickled over TLS was cut off after {elapsed:?}, want at most {bound:?}\n{}",
        server.edge.diagnostics()
    );
    assert!(
        elapsed >= Duration::from_millis(1500),
        "cut off after {elapsed:?}, before the deadline"
    );
}

/// The edge's resident memory, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("edge status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// Several connections each open 150 streams on a 4 MiB segment (too large for the cache) with
/// every flow-control window shut, and never read. The edge caps streams per connection and
/// the file bytes it reads ahead per connection, so its memory stays within the cache budget
/// plus 50 MB; before, every stream held a 256 KiB chunk.
#[test]
fn http2_streams_that_never_read_do_not_grow_memory() {
    const CONNECTIONS: usize = 4;
    const STREAMS: u32 = 150;
    const CACHE_BUDGET: u64 = 8 << 20;
    let tree = ContentTree::new();
    let big = "1080p/segment_000.ts";
    tree.write(big, &pseudo_random_bytes(77, 4 << 20));
    let server = TlsEdge::start(
        &tree,
        &format!("[cache]\nmax_bytes = {CACHE_BUDGET}\nmax_object_bytes = 1048576\n"),
    );
    let target = signed_target(big);
    let authority = server.addr().to_string();

    // A first whole download: the file is in the page cache and the edge's pools are warm.
    let mut warm = tls::connect(server.addr(), server.ca.client_config(&[b"http/1.1"]))
        .expect("TLS handshake");
    let response = warm
        .exchange(&Request::get(&target).host(&authority).keep_alive().build())
        .expect("a warm-up download");
    assert_eq!(response.body.len(), 4 << 20, "the whole segment over TLS");
    assert_eq!(response.status, 200);
    let before = rss_bytes(server.edge.pid());

    let mut attackers = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = server.connect(b"h2");
        let mut bytes = h2::PREFACE.to_vec();
        bytes.extend(h2::settings(&[
            (h2::INITIAL_WINDOW_SIZE, 0),
            (h2::ENABLE_PUSH, 0),
        ]));
        for i in 0..STREAMS {
            bytes.extend(h2::get(2 * i + 1, &authority, &target));
        }
        stream.write_all(&bytes).expect("write the streams");
        stream.flush().expect("flush");
        attackers.push(stream);
    }
    // Let the edge take every stream and read whatever it is going to read.
    let mut peak = before;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(4) {
        peak = peak.max(rss_bytes(server.edge.pid()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let growth = peak.saturating_sub(before);
    let limit = CACHE_BUDGET + 50_000_000;
    println!("RSS {before} -> peak {peak} bytes (+{growth})");
    assert!(
        growth <= limit,
        "{CONNECTIONS} connections x {STREAMS} unread streams grew the edge by {growth} bytes \
         (limit {limit})\n{}",
        server.edge.diagnostics()
    );

    // And a viewer is still served meanwhile.
    let response = warm
        .exchange(
            &Request::get(signed_target("720p/index.m3u8"))
                .host(&authority)
                .keep_alive()
                .build(),
        )
        .expect("a viewer during the attack");
    assert_eq!(response.status, 200);
    drop(attackers);
}

/// A stream whose window the client keeps shut can be sent nothing: it is dropped at the send
/// timeout, however busy the client keeps the connection otherwise (a PING every 250 ms, each
/// answered). Before, any write (a PING's acknowledgement) counted as progress, so one such
/// connection held its stream, and a connection slot, forever.
#[test]
fn an_http2_stream_without_a_window_is_dropped_at_the_send_timeout_despite_pings() {
    const SEND_TIMEOUT: Duration = Duration::from_secs(2);
    let tree = ContentTree::new();
    let server = TlsEdge::start(
        &tree,
        "[server]\nidle_timeout_secs = 60\nsend_timeout_secs = 2\n",
    );
    let authority = server.addr().to_string();
    let mut stream = server.connect(b"h2");
    let mut bytes = h2::PREFACE.to_vec();
    bytes.extend(h2::settings(&[
        (h2::INITIAL_WINDOW_SIZE, 0),
        (h2::ENABLE_PUSH, 0),
    ]));
    bytes.extend(h2::get(1, &authority, &signed_target(SEGMENT)));
    stream.write_all(&bytes).expect("write the stream");
    stream.flush().expect("flush");
    let started = Instant::now();
    let mut closed = None;
    let mut n = 0u64;
    while closed.is_none() && started.elapsed() < 5 * SEND_TIMEOUT {
        n += 1;
        let pinged = stream
            .write_all(&h2::ping(n.to_be_bytes()))
            .and_then(|()| stream.flush());
        closed = match pinged {
            Err(_) => Some(started.elapsed()),
            Ok(()) => {
                closed_after(&mut stream, Duration::from_millis(250)).map(|_| started.elapsed())
            }
        };
    }
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "the connection was still open after {:?} of PINGs\n{}",
            5 * SEND_TIMEOUT,
            server.edge.diagnostics()
        )
    });
    assert!(
        closed >= SEND_TIMEOUT - Duration::from_millis(100),
        "closed after {closed:?}, before the send timeout"
    );
}

/// A draining HTTP/2 connection closes once the client acknowledges the server's PING; a
/// client that never does (gone without a FIN, or hostile) must not hold the shutdown for the
/// whole grace, nor past it: once the drain begins, a connection without streams is closed.
#[test]
fn an_http2_client_that_never_answers_pings_does_not_hold_the_shutdown() {
    let tree = ContentTree::new();
    let server = TlsEdge::start(
        &tree,
        "[server]\nidle_timeout_secs = 60\nshutdown_grace_secs = 10\n",
    );
    let authority = server.addr().to_string();
    let mut stream = server.connect(b"h2");
    let mut bytes = h2::PREFACE.to_vec();
    bytes.extend(h2::settings(&[(h2::ENABLE_PUSH, 0)]));
    bytes.extend(h2::get(1, &authority, "/healthz"));
    stream.write_all(&bytes).expect("write the stream");
    stream.flush().expect("flush");
    // The answer, whatever else comes: read a little, then never again.
    let mut buf = [0u8; 4096];
    stream
        .sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let _ = stream.read(&mut buf);
    std::thread::sleep(Duration::from_millis(300));
    let mut edge = server.edge;
    let stopping = Instant::now();
    edge.signal(e2e::process::Signal::Term);
    let status = edge.wait_exit(Duration::from_secs(20));
    let took = stopping.elapsed();
    assert!(
        status.as_ref().is_some_and(|s| s.success()),
        "the edge exits 0: {status:?}"
    );
    assert!(took < Duration::from_secs(4), "the drain took {took:?}");
    drop(stream);
}

/// Plain HTTP sent to the TLS port, and a ClientHello naming an IP address as SNI (wrk does),
/// make rustls warn once per connection: a stream of such clients must not fill the log.
#[test]
fn failed_and_odd_handshakes_do_not_fill_the_log() {
    let tree = ContentTree::new();
    let server = TlsEdge::start(&tree, "");
    let before = server.edge.stderr_lines().len();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: edge\r\n\r\n")
            .expect("write");
        // The edge refuses it and closes the connection.
        let _ = s.read_to_end(&mut Vec::new());
    }
    let ip_sni = wrk_like_client_hello();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(server.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(&ip_sni).expect("write");
        // The edge answers with its first flight; this client goes no further.
        let _ = s.read(&mut [0; 4096]);
    }
    // A working connection afterwards proves the edge read and answered all of the above.
    let mut ok = server.connect(b"http/1.1");
    let request = Request::get(signed_target("master.m3u8"))
        .host("edge")
        .build();
    ok.write_all(&request).expect("request");
    let mut head = [0u8; 12];
    ok.read_exact(&mut head).expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");
    let lines = server.edge.stderr_lines();
    let new: Vec<_> = lines[before..]
        .iter()
        .filter(|l| !l.contains(" INFO ") && !l.contains(r#""level":"INFO""#))
        .collect();
    assert!(new.is_empty(), "the log grew with:\n{new:#?}");
}

/// A TLS 1.3 ClientHello with an IP address in the server_name extension, as OpenSSL (wrk)
/// sends for `https://127.0.0.1/`, built by hand: rustls clients never send one.
fn wrk_like_client_hello() -> Vec<u8> {
    let ext = |kind: u16, body: &[u8]| -> Vec<u8> {
        let mut e = kind.to_be_bytes().to_vec();
        e.extend_from_slice(&(body.len() as u16).to_be_bytes());
        e.extend_from_slice(body);
        e
    };
    let host = b"127.0.0.1";
    let mut sni = ((host.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    let mut key_share = 36u16.to_be_bytes().to_vec();
    key_share.extend_from_slice(&0x001du16.to_be_bytes());
    key_share.extend_from_slice(&32u16.to_be_bytes());
    key_share.extend_from_slice(&[9; 32]);
    let mut extensions = Vec::new();
    extensions.extend(ext(0x0000, &sni));
    extensions.extend(ext(0x000a, &[0, 2, 0, 0x1d])); // supported_groups: x25519
    extensions.extend(ext(0x000d, &[0, 2, 0x04, 0x03])); // signature_algorithms: ecdsa p256
    extensions.extend(ext(0x002b, &[2, 3, 4])); // supported_versions: TLS 1.3
    extensions.extend(ext(0x0033, &key_share));
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[7; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    hello.extend_from_slice(&[1, 0]); // null compression
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}
