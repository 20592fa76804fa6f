//! The HTTP/1.1 fast path, over plain TCP and over TLS: an `httparse` request loop that
//! writes file bodies with `sendfile(2)` on TCP, which hyper cannot do (hyperium/hyper#3026),
//! and in large encrypted chunks on TLS ([`Transport`]).
//!
//! Keep-alive and pipelining, a header deadline (from the first byte of a request to the end
//! of its head), an idle timeout between requests, a send timeout on every write, a cap on the
//! head size, a lingering close after a refusal, and at shutdown: idle connections close at
//! once, busy ones after their response. TLS gets all of these from the same loop.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::shutdown::Switch;
use tokio::io::AsyncReadExt;
use tokio::time::timeout_at;

use super::linger::linger;
use super::request_line::{self, LineError};
use super::transport::{flush, write_all, write_vectored_all, Transport};
use crate::metrics::SendPath;
use crate::refusal::{Refusal, LINE_MAX};
use crate::reply::{self, Body, Reply, Streamed};
use crate::request::{Headers, RequestHead, Version};
use crate::service::Edge;

/// Header lines parsed without an allocation; a head with more (nginx counts none) gets a
/// vector as long as its lines.
const FEW_HEADERS: usize = 64;
/// A connection's read buffer to begin with, and what it shrinks back to between requests.
const INITIAL_BUFFER: usize = 4096;
/// Bodies up to this size are copied behind the head and leave in one write.
const COALESCE_LIMIT: usize = 16 * 1024;
/// Longest wait to end a connection politely (TLS close_notify).
const CLOSE_TIME: Duration = Duration::from_secs(1);

/// Serves one connection until it closes, times out or shutdown drains it.
pub async fn serve<S: Transport>(
    mut stream: S,
    peer: SocketAddr,
    edge: Arc<Edge>,
    shutdown: Switch,
) {
    let send_timeout = edge.settings.send_timeout;
    let mut conn = Connection {
        buf: Vec::with_capacity(INITIAL_BUFFER),
        start: 0,
        out: Vec::with_capacity(1024),
        edge,
        peer,
        shutdown,
        answered: false,
    };
    match conn.run(&mut stream).await {
        // A client that reads takes a close_notify at once; one that does not is not waited for.
        Ok(Ending::Close) => stream.finish(send_timeout.min(CLOSE_TIME)).await,
        Ok(Ending::Linger(expected)) => {
            linger(&mut stream, send_timeout.min(CLOSE_TIME), expected).await
        }
        // Timed out or broken: nothing more is sent.
        Err(error) => tracing::debug!(%error, "connection ended"),
    }
}

/// How a connection ends after its last response.
enum Ending {
    Close,
    /// A request was refused with more of it (a body of this many bytes, when known) on the
    /// way: see [`linger`]. Like nginx, only when bytes are announced or already waiting.
    Linger(Option<u64>),
}

struct Connection {
    /// Bytes read; `start` is where the next request begins (pipelining keeps the rest).
    buf: Vec<u8>,
    start: usize,
    out: Vec<u8>,
    edge: Arc<Edge>,
    peer: SocketAddr,
    /// Fired at shutdown: a connection idle between requests closes, a busy one after its
    /// response.
    shutdown: Switch,
    /// Whether a request was answered: until then the wait for a first byte is also bounded
    /// by the head's deadline (nginx's `client_header_timeout` from the accept), so a
    /// connection that never sends holds its slot no longer than a slow head would.
    answered: bool,
}

enum Head {
    /// A complete head of this many bytes from `start`.
    Complete(usize),
    /// The client closed, timed out idle, or shutdown began between requests.
    Closed,
    /// The head broke a limit; answer and close.
    Reject(Refusal),
}

impl Connection {
    async fn run<S: Transport>(&mut self, stream: &mut S) -> io::Result<Ending> {
        loop {
            let head_len = match self.read_head(stream).await? {
                Head::Complete(n) => n,
                Head::Closed => return Ok(Ending::Close),
                Head::Reject(refusal) => {
                    self.write_reply(stream, self.edge.refuse(refusal), false)
                        .await?;
                    // A client too slow for the head deadline gets no more time; the rest of a
                    // head too large is still coming.
                    return Ok(match refusal {
                        Refusal::Timeout => Ending::Close,
                        _ => Ending::Linger(None),
                    });
                }
            };
            let head_end = self.start + head_len;
            let (reply, keep_alive, body) = {
                let head = &self.buf[self.start..head_end];
                let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
                let line = head[..line_end]
                    .strip_suffix(b"\r")
                    .unwrap_or(&head[..line_end]);
                let line = match request_line::parse(line) {
                    Ok(line) => Ok(line),
                    Err(LineError::Version) => Err(Refusal::VersionNotSupported),
                    Err(LineError::Malformed) => Err(Refusal::BadRequest("malformed request line")),
                };
                let (mut few, mut many) = ([httparse::EMPTY_HEADER; FEW_HEADERS], Vec::new());
                let rest = &head[(line_end + 1).min(head.len())..];
                let parsed = match line {
                    Err(refusal) => Err(refusal),
                    Ok(line) => parse_headers(rest, &mut few, &mut many).map(|h| (line, h)),
                };
                let (line, parsed) = match parsed {
                    Ok(parsed) => parsed,
                    Err(refusal) => {
                        self.write_reply(stream, self.edge.refuse(refusal), false)
                            .await?;
                        return Ok(self.ending(head_end, None));
                    }
                };
                let version = if line.http10 {
                    Version::Http10
                } else {
                    Version::Http11
                };
                let mut h = Headers::default();
                for header in parsed.iter() {
                    h.add(header.name.as_bytes(), header.value);
                }
                let req = RequestHead {
                    method: line.method,
                    target: line.target,
                    version,
                    headers: h,
                    peer: self.peer.ip(),
                    sendfile: S::SENDFILE,
                };
                let reply = self.edge.handle(&req).await;
                // The edge reads no body: whatever the answer (a TRACE's 405 comes before the
                // body is looked at), the bytes after this head are not a request, and reading
                // them as one would let a proxy's client smuggle requests. nginx discards them.
                let keep_alive = match version {
                    Version::Http10 => h.connection_keep_alive,
                    _ => !h.connection_close,
                } && !reply.close
                    && !h.has_body
                    && !self.shutdown.is_fired();
                (reply, keep_alive, h.has_body.then_some(h.content_length))
            };
            // Pipelined requests behind a last response (a close, HTTP/1.0, a drain) are not
            // read: closing over unread bytes would send a reset that can destroy the response.
            let ending = self.ending(head_end, body);
            self.start = head_end;
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
                // One large head must not keep its buffer for the rest of the connection.
                if self.buf.capacity() > 4 * INITIAL_BUFFER {
                    self.buf.shrink_to(INITIAL_BUFFER);
                }
            }
            self.write_reply(stream, reply, keep_alive).await?;
            self.answered = true;
            if !keep_alive {
                return Ok(ending);
            }
        }
    }

    /// How to close after the last answer, to the request whose head ends at `head_end`:
    /// linger while its body (`body`: announced, never read, with its length when known) or
    /// bytes already received (a refused head's rest, pipelined requests) follow.
    fn ending(&self, head_end: usize, body: Option<Option<u64>>) -> Ending {
        let waiting = self.buf.len().saturating_sub(head_end) as u64;
        match body {
            Some(len) => Ending::Linger(len.map(|n| n.saturating_sub(waiting))),
            None if waiting > 0 => Ending::Linger(None),
            None => Ending::Close,
        }
    }

    /// Reads until `buf[start..]` holds a complete request head.
    async fn read_head<S: Transport>(&mut self, stream: &mut S) -> io::Result<Head> {
        let settings = &self.edge.settings;
        let mut scanned = self.start;
        let mut lines = LineCheck::default();
        // nginx's client_header_timeout: one deadline for the whole head from its first byte,
        // so a client trickling bytes cannot hold the connection past it.
        let mut deadline = (self.start < self.buf.len())
            .then(|| tokio::time::Instant::now() + settings.header_timeout);
        loop {
            // nginx skips empty lines before a request line (RFC 9112 §2.2 allows it).
            while self
                .buf
                .get(self.start)
                .is_some_and(|&b| b == b'\r' || b == b'\n')
            {
                self.start += 1;
                scanned = scanned.max(self.start);
            }
            if let Some(end) = find_head_end(&self.buf, scanned) {
                let len = end - self.start;
                // A long line first: a request line too long is 414 whatever the head's size.
                if let Some(refusal) = lines.check(&self.buf[self.start..end]) {
                    return Ok(Head::Reject(refusal));
                }
                if len > settings.max_header_bytes {
                    return Ok(Head::Reject(Refusal::HeadTooLarge));
                }
                return Ok(Head::Complete(len));
            }
            scanned = self.buf.len().saturating_sub(3).max(self.start);
            // A line already too long is refused before the rest of the head, as nginx does
            // once it fills a buffer.
            if let Some(refusal) = lines.check(&self.buf[self.start..]) {
                return Ok(Head::Reject(refusal));
            }
            if self.buf.len() - self.start > settings.max_header_bytes {
                return Ok(Head::Reject(Refusal::HeadTooLarge));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                scanned -= self.start;
                self.start = 0;
            }
            // Empty lines skipped above still started the deadline: they count as head bytes.
            let idle = deadline.is_none();
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(4096);
            }
            let wait = match self.answered {
                true => settings.idle_timeout,
                false => settings.header_timeout.min(settings.idle_timeout),
            };
            let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + wait);
            let read = async {
                match timeout_at(until, stream.read_buf(&mut self.buf)).await {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                }
            };
            let n = if idle {
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    r = read => r?,
                    () = shutdown.fired() => return Ok(Head::Closed),
                }
            } else {
                read.await?
            };
            match n {
                Some(0) => return Ok(Head::Closed),
                None if idle => return Ok(Head::Closed),
                None => return Ok(Head::Reject(Refusal::Timeout)),
                Some(_) => {
                    deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + settings.header_timeout
                    });
                }
            }
        }
    }

    async fn write_reply<S: Transport>(
        &mut self,
        stream: &mut S,
        reply: Reply,
        keep_alive: bool,
    ) -> io::Result<()> {
        let send_timeout = self.edge.settings.send_timeout;
        self.out.clear();
        with_http_date(|date| reply::write_head(&reply, keep_alive, date, &mut self.out));
        let metrics = &self.edge.metrics;
        match reply.body {
            Body::Empty => write_all(stream, &self.out, send_timeout).await?,
            Body::Bytes(body, path) if body.len() <= COALESCE_LIMIT => {
                self.out.extend_from_slice(&body);
                write_all(stream, &self.out, send_timeout).await?;
                metrics.sent(path, body.len() as u64);
            }
            Body::Bytes(body, path) => {
                write_vectored_all(
                    stream,
                    &mut [IoSlice::new(&self.out), IoSlice::new(&body)],
                    send_timeout,
                )
                .await?;
                metrics.sent(path, body.len() as u64);
            }
            Body::File { file, offset, len } => {
                let head = &self.out;
                return stream
                    .send_file(head, &file, offset, len, send_timeout, metrics)
                    .await;
            }
            Body::Stream(Streamed(mut body)) => {
                use futures_util::StreamExt;
                write_all(stream, &self.out, send_timeout).await?;
                let announced = reply.content_length.unwrap_or(0);
                let mut sent = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk?;
                    sent += chunk.len() as u64;
                    if sent > announced {
                        return Err(io::Error::other("stream longer than announced"));
                    }
                    write_all(stream, &chunk, send_timeout).await?;
                    metrics.sent(SendPath::Upstream, chunk.len() as u64);
                }
                if sent != announced {
                    // The promised Content-Length cannot be met: close rather than desync.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upstream body ended short",
                    ));
                }
            }
        }
        flush(stream, send_timeout).await
    }
}

/// nginx's refusal of a head holding a line that does not fit its [`LINE_MAX`] buffer with its
/// line feed: 414 for the request line, 400 for a header line. Looked at as the head arrives,
/// each byte once (a head trickled a byte per read is not scanned again per read), and only
/// once the head has reached [`LINE_MAX`]: a head shorter than that holds no such line.
#[derive(Debug, Default)]
struct LineCheck {
    /// Offsets from the head's start: bytes looked at, and where the current line starts.
    scanned: usize,
    line_start: usize,
    past_request_line: bool,
}

impl LineCheck {
    /// Looks at what `head` (the head so far, from its start) holds beyond the last call.
    fn check(&mut self, head: &[u8]) -> Option<Refusal> {
        if head.len() < LINE_MAX {
            return None;
        }
        let refusal = |past_request_line| match past_request_line {
            false => Refusal::UriTooLong,
            true => Refusal::HeadTooLarge,
        };
        while let Some(at) = head[self.scanned..].iter().position(|&b| b == b'\n') {
            let newline = self.scanned + at;
            // The line without its `\n` (a `\r` stays): it fits while shorter than the buffer.
            if newline - self.line_start >= LINE_MAX {
                return Some(refusal(self.past_request_line));
            }
            self.past_request_line = true;
            self.line_start = newline + 1;
            self.scanned = newline + 1;
        }
        self.scanned = head.len();
        (head.len() - self.line_start >= LINE_MAX).then(|| refusal(self.past_request_line))
    }
}

/// Parses the header lines `rest` into `few`, or into `many` when there are more of them.
fn parse_headers<'b, 'h>(
    rest: &'b [u8],
    few: &'h mut [httparse::Header<'b>],
    many: &'h mut Vec<httparse::Header<'b>>,
) -> Result<&'h [httparse::Header<'b>], Refusal> {
    let malformed = Refusal::BadRequest("malformed request headers");
    match httparse::parse_headers(rest, few) {
        Ok(httparse::Status::Complete((_, parsed))) => Ok(parsed),
        Err(httparse::Error::TooManyHeaders) => {
            let lines = rest.iter().filter(|&&b| b == b'\n').count();
            many.resize(lines, httparse::EMPTY_HEADER);
            match httparse::parse_headers(rest, many) {
                Ok(httparse::Status::Complete((_, parsed))) => Ok(parsed),
                _ => Err(malformed),
            }
        }
        Ok(httparse::Status::Partial) | Err(_) => Err(malformed),
    }
}

/// The end (exclusive) of the first request head in `buf`, searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Calls `f` with the current IMF-fixdate, formatted at most once per second per thread.
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs || cached.1.is_empty() {
            *cached = (secs, httpdate::fmt_http_date(now));
        }
        f(&cached.1)
    })
}

#[cfg(test)]
mod tests {
    use super::{find_head_end, LineCheck, Refusal, LINE_MAX};

    /// The verdict on `head` given whole, and given a byte at a time as a trickling client
    /// sends it: the same, with each byte looked at once.
    fn long_line(head: &[u8]) -> Option<Refusal> {
        let whole = LineCheck::default().check(head);
        let mut trickled = LineCheck::default();
        let mut verdict = None;
        for end in 1..=head.len() {
            verdict = trickled.check(&head[..end]);
            if verdict.is_some() {
                break;
            }
        }
        assert_eq!(whole, verdict, "{} bytes", head.len());
        whole
    }

    #[test]
    fn a_line_must_fit_nginxs_buffer_with_its_line_feed() {
        let line = |n: usize| vec![b'a'; n];
        let head = |request: usize, header: usize| {
            [
                line(request),
                b"\r\n".to_vec(),
                line(header),
                b"\r\n\r\n".to_vec(),
            ]
            .concat()
        };
        // The line with its `\r` but without its `\n` is at most LINE_MAX - 1 bytes.
        assert_eq!(long_line(&head(LINE_MAX - 2, 10)), None);
        assert_eq!(
            long_line(&head(LINE_MAX - 1, 10)),
            Some(Refusal::UriTooLong)
        );
        assert_eq!(long_line(&head(100, LINE_MAX - 2)), None);
        assert_eq!(
            long_line(&head(100, LINE_MAX - 1)),
            Some(Refusal::HeadTooLarge)
        );
        assert_eq!(long_line(&line(3 * LINE_MAX)), Some(Refusal::UriTooLong));
        let many = [line(100), b"\r\n".to_vec(), line(6000), b"\r\n".to_vec()]
            .concat()
            .repeat(3);
        assert_eq!(long_line(&many), None);
    }

    #[test]
    fn finds_head_ends() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 0),
            Some(27)
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }
}
