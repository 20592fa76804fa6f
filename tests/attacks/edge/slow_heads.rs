//! Request heads trickled a byte at a time: the header timeout is a deadline for the whole head
//! from its first byte (nginx's `client_header_timeout`), not a timeout per read.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use e2e::content::{SEGMENT, SEGMENT_SIZE};
use e2e::edge::signed_target;
use e2e::http::{parse_response, raw_request_within};
use e2e::{wait_until, ContentTree, Edge, EdgeOptions, Request};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// A head that never ends: a request line and then header bytes forever.
const ENDLESS_HEAD: &[u8] = b"GET /hls/x/720p/segment_000.ts HTTP/1.1\r\nHost: edge\r\nX-Pad: \
      aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// What happened to a trickling connection after a write.
enum Fate {
    /// Still open, nothing received.
    Open,
    /// The edge answered (these bytes) or closed.
    Ended(Vec<u8>),
}

/// Checks a non-blocking stream for an answer or a close without waiting.
fn fate(stream: &mut TcpStream) -> Fate {
    let mut buf = [0u8; 1024];
    match stream.read(&mut buf) {
        Ok(n) => Fate::Ended(buf[..n].to_vec()),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Fate::Open,
        Err(_) => Fate::Ended(Vec::new()),
    }
}

/// One client writing a byte per second is answered 408 (or closed) no later than the header
/// timeout plus a second after its first byte, however regularly it writes.
#[test]
fn a_head_trickled_a_byte_a_second_is_cut_off_at_the_header_timeout() {
    let tree = ContentTree::new();
    let edge =
        Edge::start(EdgeOptions::new(tree.root()).config("[server]\nheader_timeout_secs = 2\n"));
    let mut stream = TcpStream::connect(edge.public_addr).expect("connect");
    stream.set_nonblocking(true).expect("non-blocking");
    let started = Instant::now();
    let bound = HEADER_TIMEOUT + Duration::from_secs(1);
    let mut ended = None;
    for byte in ENDLESS_HEAD {
        if stream.write_all(&[*byte]).is_err() {
            ended = Some(Vec::new());
            break;
        }
        // Waits up to a second for an answer: the pace of the trickle.
        let second = Instant::now() + Duration::from_secs(1);
        while Instant::now() < second {
            if let Fate::Ended(bytes) = fate(&mut stream) {
                ended = Some(bytes);
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if ended.is_some() || started.elapsed() > bound + Duration::from_secs(5) {
            break;
        }
    }
    let elapsed = started.elapsed();
    let Some(bytes) = ended else {
        panic!(
            "a head trickled a byte a second for {elapsed:?} is still open (header timeout \
             {HEADER_TIMEOUT:?})\n{}",
            edge.diagnostics()
        );
    };
    assert!(
        elapsed <= bound,
        "cut off after {elapsed:?}, want at most {bound:?}"
    );
    if !bytes.is_empty() {
        let response = parse_response(&bytes, false).expect("a parsable answer");
        assert_eq!(
            response.status, 408,
            "the only answer to a late head is 408"
        );
    }
}

/// A connection that never sends a byte holds its slot for the header timeout, as a slow head
/// would (nginx's `client_header_timeout` from the accept), not for the idle timeout kept for
/// connections between requests; one that was answered waits that idle timeout.
#[test]
fn a_silent_connection_is_closed_at_the_header_timeout() {
    let tree = ContentTree::new();
    let config = "[server]\nheader_timeout_secs = 1\nidle_timeout_secs = 30\n";
    let edge = Edge::start(EdgeOptions::new(tree.root()).config(config));
    let closed_within = |stream: &mut TcpStream, bound: Duration| -> Option<Duration> {
        let started = Instant::now();
        stream.set_read_timeout(Some(bound)).expect("timeout");
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => Some(started.elapsed()),
            Ok(n) => panic!(
                "an answer to nothing: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Some(started.elapsed()),
            Err(_) => None,
        }
    };
    let mut silent = TcpStream::connect(edge.public_addr).expect("connect");
    let closed = closed_within(&mut silent, Duration::from_secs(5));
    assert!(
        closed.is_some(),
        "a silent connection was still open after 5 s"
    );
    // Answered once, a connection is kept for the idle timeout.
    let mut kept = TcpStream::connect(edge.public_addr).expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        .expect("request");
    kept.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = [0u8; 256];
    let n = kept.read(&mut answer).expect("answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert_eq!(
        closed_within(&mut kept, Duration::from_secs(3)),
        None,
        "kept alive"
    );
}

/// The attacker: keeps up to `target` connections open, each trickling one byte a second,
/// and replaces every connection the edge cuts off.
struct Slowloris {
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
    worker: Option<thread::JoinHandle<()>>,
}

impl Slowloris {
    /// Connections opened per second at most, so the kernel backlog is never flooded at once.
    const BATCH: usize = 1000;

    fn start(addr: SocketAddr, target: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let (stop2, open2, cut2) = (stop.clone(), open.clone(), cut.clone());
        let worker = thread::spawn(move || {
            let mut conns: Vec<(TcpStream, usize)> = Vec::with_capacity(target);
            while !stop2.load(Ordering::Relaxed) {
                let tick = Instant::now();
                conns.retain_mut(|(stream, sent)| {
                    let byte = ENDLESS_HEAD[*sent % ENDLESS_HEAD.len()];
                    let alive =
                        stream.write_all(&[byte]).is_ok() && matches!(fate(stream), Fate::Open);
                    *sent += 1;
                    if !alive {
                        cut2.fetch_add(1, Ordering::Relaxed);
                    }
                    alive
                });
                // A connect that does not complete quickly means the accept queue is full: the
                // tick goes on with the next one, and stops opening at half a second.
                let mut opened = 0;
                while conns.len() < target
                    && opened < Self::BATCH
                    && tick.elapsed() < Duration::from_millis(500)
                {
                    if let Ok(stream) =
                        TcpStream::connect_timeout(&addr, Duration::from_millis(100))
                    {
                        if stream.set_nonblocking(true).is_ok() {
                            conns.push((stream, 0));
                            opened += 1;
                        }
                    }
                }
                open2.store(conns.len(), Ordering::Relaxed);
                if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
                    thread::sleep(rest);
                }
            }
        });
        Self {
            stop,
            open,
            cut,
            worker: Some(worker),
        }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn cut(&self) -> usize {
        self.cut.load(Ordering::Relaxed)
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// 2,000 connections trickle heads at an edge that admits 1,000 at a time: each is cut off at
/// its head deadline and its slot goes to the next in line, so a viewer arriving in the middle
/// is served within seconds, again and again. With a timeout re-armed on every read the
/// trickling connections would hold every slot forever.
#[test]
fn a_viewer_is_served_throughout_a_slowloris_of_2000_connections() {
    const ATTACKERS: usize = 2000;
    let tree = ContentTree::new();
    let edge = Edge::start(
        EdgeOptions::new(tree.root())
            .config("[server]\nheader_timeout_secs = 2\nmax_connections = 1000\n"),
    );
    let attack = Slowloris::start(edge.public_addr, ATTACKERS);
    let ramped = wait_until(Duration::from_secs(12), || attack.open() >= ATTACKERS);
    assert!(
        ramped,
        "the attacker opened only {} connections\n{}",
        attack.open(),
        edge.diagnostics()
    );

    let request = Request::get(signed_target(SEGMENT))
        .host(edge.public_addr.to_string())
        .build();
    let attack_phase = Instant::now();
    let mut served = 0;
    while attack_phase.elapsed() < Duration::from_secs(8) {
        let asked = Instant::now();
        let response = raw_request_within(edge.public_addr, &request, Duration::from_secs(8))
            .unwrap_or_else(|err| {
                panic!(
                    "viewer request #{served} during the slowloris ({} attacker connections \
                     open, {} cut so far): {err}\n{}",
                    attack.open(),
                    attack.cut(),
                    edge.diagnostics()
                )
            });
        assert_eq!(response.status, 200, "viewer request #{served}");
        assert_eq!(response.body.len(), SEGMENT_SIZE, "the whole segment");
        served += 1;
        println!(
            "viewer request #{served} served in {:?} ({} attacker connections open)",
            asked.elapsed(),
            attack.open()
        );
    }
    assert!(
        attack.open() >= ATTACKERS / 2,
        "the attack was still on at the end ({} open)",
        attack.open()
    );
    assert!(served >= 2, "the viewer was served {served} times");
    assert!(
        attack.cut() >= ATTACKERS / 2,
        "the edge cut off trickling connections at their deadline ({} cut)",
        attack.cut()
    );
}
