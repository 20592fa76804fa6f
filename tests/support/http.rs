//! Raw HTTP/1.x on a socket: exact request bytes out, a tolerant parse of what comes back.
//!
//! Nothing here normalises a URL or fixes up a header, because the point of the tests is to
//! see what a server does with exactly the bytes a client may send.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one exchange may take before the test gives up on the server.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// A parsed response.
#[derive(Debug, Clone, Default)]
pub struct RawResponse {
    /// `HTTP/1.1` etc., as sent.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// Headers in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body with transfer coding removed (empty for HEAD, 1xx, 204 and 304).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as text, for assertions and diagnostics.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server announced it will close the connection.
    pub fn closes_connection(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// Builds request bytes. Defaults: `GET`, `HTTP/1.1`, no Host (set one with [`Request::host`]),
/// `Connection: close` (so a response is delimited by EOF, whatever the server does).
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    target: String,
    version: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    body: Vec<u8>,
}

impl Request {
    /// A `GET` for `target` (sent verbatim: percent-escapes, `..` and all).
    pub fn get(target: impl Into<String>) -> Self {
        Self {
            method: "GET".to_owned(),
            target: target.into(),
            version: "HTTP/1.1".to_owned(),
            host: None,
            headers: Vec::new(),
            keep_alive: false,
            body: Vec::new(),
        }
    }

    /// Replaces the method (sent verbatim, so `get` or `FOO` are possible).
    pub fn method(mut self, method: &str) -> Self {
        method.clone_into(&mut self.method);
        self
    }

    /// Replaces the protocol version token, e.g. `HTTP/1.0`.
    pub fn version(mut self, version: &str) -> Self {
        version.clone_into(&mut self.version);
        self
    }

    /// Sends `Host: <host>` as the first header.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds a header line verbatim.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Leaves out `Connection: close`, for keep-alive and pipelining.
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    /// Appends a body after the header block (no `Content-Length` is added: set it yourself).
    pub fn body(mut self, body: &[u8]) -> Self {
        body.clone_into(&mut self.body);
        self
    }

    /// Appends `body` and a matching `Content-Length` header.
    pub fn sized_body(self, body: &[u8]) -> Self {
        self.header("Content-Length", body.len().to_string())
            .body(body)
    }

    /// The bytes to put on the wire.
    pub fn build(&self) -> Vec<u8> {
        let mut head = format!("{} {} {}\r\n", self.method, self.target, self.version);
        if let Some(host) = &self.host {
            head.push_str(&format!("Host: {host}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Sends `request` on a fresh connection and reads the response until the server closes.
///
/// The request should ask for `Connection: close` (what [`Request`] does by default); the
/// body is then framed by the response headers when possible and by EOF otherwise.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> io::Result<RawResponse> {
    raw_request_within(addr, request, IO_TIMEOUT)
}

/// [`raw_request`] with a custom bound on the whole exchange.
pub fn raw_request_within(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> io::Result<RawResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let bytes = read_to_close(&mut stream, deadline)?;
    let is_head = request.starts_with(b"HEAD ");
    parse_response(&bytes, is_head)
}

/// Sends a request head carrying `Expect: 100-continue` (and no body), then `body` only if the
/// server answers `100 Continue` first, like curl does for large uploads. Returns whether the
/// body was sent, and the final response. A server that refuses from the headers alone (a
/// declared length over its limit) answers without ever reading the body.
pub fn exchange_expect_continue(
    addr: SocketAddr,
    head: &[u8],
    body: &[u8],
    timeout: Duration,
) -> io::Result<(bool, RawResponse)> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(head)?;
    let mut bytes = Vec::new();
    let mut chunk = [0; 16 * 1024];
    let first = loop {
        if let Some(first) = parse_single_head(&bytes)? {
            break first;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no response head within the deadline",
            ));
        }
        stream.set_read_timeout(Some(remaining))?;
        match stream.read(&mut chunk)? {
            0 => return Err(invalid("connection closed before a response head".into())),
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    };
    let continued = first.response.status == 100;
    if continued {
        stream.write_all(body)?;
    }
    bytes.extend(read_to_close(&mut stream, deadline)?);
    Ok((continued, parse_response(&bytes, false)?))
}

/// Writes `request` from a second thread while this one reads the response, so a server that
/// answers early (a refused upload) and closes is seen answering instead of leaving the client
/// blocked in a write. Errors writing the rest of the request after the server closed are
/// expected and ignored; the response is what counts.
pub fn exchange_while_sending(
    addr: SocketAddr,
    request: Vec<u8>,
    timeout: Duration,
) -> io::Result<RawResponse> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let mut writer = stream.try_clone()?;
    writer.set_write_timeout(Some(timeout))?;
    let sender = std::thread::spawn(move || {
        // A refused upload is answered and closed mid-body: EPIPE/ECONNRESET here is normal.
        let _ = writer.write_all(&request);
        let _ = writer.flush();
    });
    let bytes = read_to_close(&mut stream, deadline);
    // Unblocks the writer if the server stopped reading without closing.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    parse_response(&bytes?, false)
}

/// `body` in chunked transfer coding, `chunk` bytes a chunk, with the terminating chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 8 + 8);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Reads until EOF or `deadline`. A reset after some data counts as EOF: servers may reset a
/// connection they close with unread request bytes, after the response has been sent.
pub fn read_to_close(stream: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "server did not close within the deadline ({} bytes read)",
                    bytes.len()
                ),
            ));
        }
        stream.set_read_timeout(Some(remaining))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset && !bytes.is_empty() => {
                return Ok(bytes)
            }
            Err(err) => return Err(err),
        }
    }
}

/// Parses one complete response from `bytes` (everything the server sent before closing).
pub fn parse_response(bytes: &[u8], is_head: bool) -> io::Result<RawResponse> {
    match parse_one(bytes, is_head)? {
        Parsed::Complete(response, _) => Ok(response),
        Parsed::Partial(Some(Framing::UntilClose), head) => {
            let mut response = head.response;
            response.body = bytes[head.len..].to_vec();
            Ok(response)
        }
        Parsed::Partial(..) => Err(invalid(format!(
            "truncated response ({} bytes): {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ))),
    }
}

/// Reads framed responses one after another from a kept-alive connection (plain or TLS).
pub struct ResponseReader<S> {
    stream: S,
    buffer: Vec<u8>,
}

impl<S: Read + Write> ResponseReader<S> {
    /// Wraps a connected stream. Set a read timeout on it: reads here block.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    /// The underlying stream, e.g. to write the next request.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The underlying stream, for a client that speaks something else on it (HTTP/2); bytes
    /// read but not yet parsed are dropped.
    pub fn into_stream(self) -> S {
        self.stream
    }

    /// Writes `request` and reads its response.
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<RawResponse> {
        self.stream.write_all(request)?;
        self.stream.flush()?;
        self.read_response(request.starts_with(b"HEAD "))
    }

    /// Reads the next response; `is_head` says whether it answers a HEAD (no body follows).
    pub fn read_response(&mut self, is_head: bool) -> io::Result<RawResponse> {
        loop {
            let parsed = parse_one(&self.buffer, is_head)?;
            if let Parsed::Complete(response, consumed) = parsed {
                self.buffer.drain(..consumed);
                return Ok(response);
            }
            let mut chunk = [0; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return match parsed {
                    Parsed::Partial(Some(Framing::UntilClose), head) => {
                        let mut response = head.response;
                        response.body = self.buffer.split_off(head.len);
                        self.buffer.clear();
                        Ok(response)
                    }
                    _ => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed after {} bytes of a response",
                            self.buffer.len()
                        ),
                    )),
                };
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the peer has closed the connection (reads EOF or a reset) within `timeout`;
    /// any bytes that arrive instead are an error because nothing was asked.
    pub fn peer_closed_within(&mut self, timeout: Duration) -> io::Result<bool>
    where
        S: ReadTimeout,
    {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut byte = [0; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => Ok(true),
            Ok(_) => Err(invalid(
                "unsolicited bytes on an idle connection".to_owned(),
            )),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(true),
            Err(err) => Err(err),
        }
    }
}

/// Streams whose read timeout can be changed.
pub trait ReadTimeout {
    /// See [`TcpStream::set_read_timeout`].
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// Opens a kept-alive plain connection with [`IO_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> io::Result<ResponseReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(ResponseReader::new(stream))
}

/// The final response head at the start of `bytes` (interim 1xx skipped) and its length in
/// bytes, or `None` while it is incomplete. For readers that consume a body incrementally.
pub(crate) fn response_head(bytes: &[u8]) -> io::Result<Option<(RawResponse, usize)>> {
    Ok(parse_head(bytes)?.map(|head| (head.response, head.len)))
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// A parsed header block: the response without body, and the header block's length.
struct Head {
    response: RawResponse,
    len: usize,
}

enum Parsed {
    /// A whole response and the number of bytes it took.
    Complete(RawResponse, usize),
    /// More bytes are needed; the framing and head are known once the head is complete.
    Partial(Option<Framing>, Head),
}

fn parse_one(bytes: &[u8], is_head: bool) -> io::Result<Parsed> {
    let Some(head) = parse_head(bytes)? else {
        return Ok(Parsed::Partial(
            None,
            Head {
                response: RawResponse::default(),
                len: 0,
            },
        ));
    };
    let framing = framing(&head.response, is_head)?;
    let body = &bytes[head.len..];
    let complete = match framing {
        Framing::Empty => Some((Vec::new(), 0)),
        Framing::Length(len) => (body.len() >= len).then(|| (body[..len].to_vec(), len)),
        Framing::Chunked => decode_chunked(body)?,
        Framing::UntilClose => None,
    };
    Ok(match complete {
        Some((decoded, consumed)) => {
            let mut response = head.response;
            response.body = decoded;
            Parsed::Complete(response, head.len + consumed)
        }
        None => Parsed::Partial(Some(framing), head),
    })
}

/// The final response head, skipping interim ones (`100 Continue`, `103 Early Hints`) that
/// may precede it.
fn parse_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    let mut offset = 0;
    loop {
        let Some(head) = parse_single_head(&bytes[offset..])? else {
            return Ok(None);
        };
        let status = head.response.status;
        if (100..200).contains(&status) && status != 101 {
            offset += head.len;
            continue;
        }
        return Ok(Some(Head {
            len: offset + head.len,
            ..head
        }));
    }
}

fn parse_single_head(bytes: &[u8]) -> io::Result<Option<Head>> {
    let mut header_slots = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut header_slots);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => {
            return Err(invalid(format!(
                "unparsable response ({err}): {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )))
        }
    };
    let headers = parsed
        .headers
        .iter()
        .map(|header| {
            (
                header.name.to_ascii_lowercase(),
                String::from_utf8_lossy(header.value).trim().to_owned(),
            )
        })
        .collect();
    let response = RawResponse {
        version: format!("HTTP/1.{}", parsed.version.unwrap_or(1)),
        status: parsed.code.unwrap_or(0),
        headers,
        body: Vec::new(),
    };
    Ok(Some(Head { response, len }))
}

fn framing(response: &RawResponse, is_head: bool) -> io::Result<Framing> {
    let no_body = is_head || matches!(response.status, 100..=199 | 204 | 304);
    if no_body {
        return Ok(Framing::Empty);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return Ok(Framing::Chunked);
    }
    match response.header("content-length") {
        Some(value) => value
            .parse()
            .map(Framing::Length)
            .map_err(|_| invalid(format!("bad content-length {value:?}"))),
        None => Ok(Framing::UntilClose),
    }
}

/// Decodes a chunked body; `None` while incomplete, else the data and the bytes consumed.
fn decode_chunked(mut body: &[u8]) -> io::Result<Option<(Vec<u8>, usize)>> {
    let total = body.len();
    let mut data = Vec::new();
    loop {
        let Some(line_end) = find(body, b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        body = &body[line_end + 2..];
        if size == 0 {
            // No trailers are expected; the terminating empty line ends the body.
            let Some(end) = find(body, b"\r\n") else {
                return Ok(None);
            };
            body = &body[end + 2..];
            return Ok(Some((data, total - body.len())));
        }
        if body.len() < size + 2 {
            return Ok(None);
        }
        data.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_leaves_the_rest() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"x\"\r\n\r\nabcHTTP/1.1";
        let Parsed::Complete(response, used) = parse_one(bytes, false).expect("parse") else {
            panic!("expected a complete response");
        };
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"abc");
        assert_eq!(response.header("ETAG"), Some("\"x\""));
        assert_eq!(used, bytes.len() - b"HTTP/1.1".len());
    }

    #[test]
    fn head_and_304_have_no_body() {
        let bytes = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
        let response = parse_response(bytes, false).expect("parse");
        assert!(response.body.is_empty());
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        assert!(parse_response(bytes, true).expect("parse").body.is_empty());
    }

    #[test]
    fn skips_interim_responses() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let response = parse_response(bytes, false).expect("parse");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"ok");
    }

    #[test]
    fn decodes_chunked_and_until_close() {
        let bytes =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n";
        assert_eq!(parse_response(bytes, false).expect("parse").body, b"abcd");
        let bytes = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        assert_eq!(
            parse_response(bytes, false).expect("parse").body,
            b"all of it"
        );
    }

    #[test]
    fn builds_exact_bytes() {
        let bytes = Request::get("/a%20b?x=1")
            .host("h")
            .header("Range", "bytes=0-1")
            .build();
        assert_eq!(
            bytes,
            b"GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nConnection: close\r\n\r\n"
        );
    }
}
