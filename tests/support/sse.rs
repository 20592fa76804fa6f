//! Server-Sent Events read off a raw connection as they arrive.
//!
//! The request is sent verbatim; the response body is consumed incrementally (chunked or
//! delimited by close), split into events at blank lines, and handed to a predicate that
//! decides when the caller has seen enough. Everything is bounded by one deadline.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http::{self, RawResponse};

/// One event: its `event:` name (`message` when absent) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// What came back.
#[derive(Debug, Clone, Default)]
pub struct SseStream {
    /// The response head; for a status other than 200 also the whole body.
    pub response: RawResponse,
    /// Every event received, in order (the last one is the one that satisfied the predicate).
    pub events: Vec<SseEvent>,
    /// The server ended the stream.
    pub ended: bool,
    /// The deadline passed before the predicate held or the stream ended.
    pub timed_out: bool,
}

impl SseStream {
    /// The events as `name data` lines, for failure messages.
    pub fn transcript(&self) -> String {
        self.events
            .iter()
            .map(|e| format!("{}: {}", e.event, e.data))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Sends `request` to `addr` and reads events until `done` holds for one of them, the stream
/// ends, or `timeout` elapses. A non-200 answer is returned whole, with no events.
pub fn read_events(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    mut done: impl FnMut(&SseEvent) -> bool,
) -> io::Result<SseStream> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;

    let mut raw = Vec::new();
    let mut out = SseStream::default();
    let mut chunked = None;
    // Decoded body bytes not yet split into events.
    let mut body = Vec::new();
    loop {
        if chunked.is_none() {
            if let Some((head, len)) = http::response_head(&raw)? {
                if head.status != 200 {
                    raw.extend(http::read_to_close(&mut stream, deadline)?);
                    out.response = http::parse_response(&raw, false)?;
                    return Ok(out);
                }
                chunked = Some(
                    head.header("transfer-encoding")
                        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked")),
                );
                out.response = head;
                raw.drain(..len);
            }
        }
        let mut finished = false;
        match chunked {
            Some(true) => finished = take_chunks(&mut raw, &mut body)?,
            Some(false) => body.append(&mut raw),
            None => {}
        }
        while let Some(event) = next_event(&mut body) {
            let stop = done(&event);
            out.events.push(event);
            if stop {
                return Ok(out);
            }
        }
        if finished {
            out.ended = true;
            return Ok(out);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            out.timed_out = true;
            return Ok(out);
        }
        stream.set_read_timeout(Some(remaining))?;
        let mut chunk = [0; 16 * 1024];
        match stream.read(&mut chunk) {
            Ok(0) => {
                out.ended = true;
                return Ok(out);
            }
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                out.timed_out = true;
                return Ok(out);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Moves every complete chunk of `raw` into `body`; true once the terminating chunk arrived.
fn take_chunks(raw: &mut Vec<u8>, body: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(false);
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {size_text:?}"),
            )
        })?;
        if size == 0 {
            return Ok(true);
        }
        let start = line_end + 2;
        if raw.len() < start + size + 2 {
            return Ok(false);
        }
        body.extend_from_slice(&raw[start..start + size]);
        raw.drain(..start + size + 2);
    }
}

/// Takes the first complete event (ended by a blank line) off `body`. Comment-only blocks
/// (keep-alives) are skipped.
fn next_event(body: &mut Vec<u8>) -> Option<SseEvent> {
    loop {
        body.retain(|&b| b != b'\r');
        let end = body.windows(2).position(|w| w == b"\n\n")?;
        let block = String::from_utf8_lossy(&body[..end]).into_owned();
        body.drain(..end + 2);
        let mut name = None;
        let mut data: Vec<&str> = Vec::new();
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => name = Some(value.to_owned()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if name.is_some() || !data.is_empty() {
            return Some(SseEvent {
                event: name.unwrap_or_else(|| "message".to_owned()),
                data: data.join("\n"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_events_and_skips_comments() {
        let mut body =
            b": keep-alive\n\nevent: status\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\nevent: par"
                .to_vec();
        assert_eq!(
            next_event(&mut body),
            Some(SseEvent {
                event: "status".into(),
                data: "{\"a\":1}".into()
            })
        );
        assert_eq!(
            next_event(&mut body),
            Some(SseEvent {
                event: "message".into(),
                data: "x\ny".into()
            })
        );
        assert_eq!(next_event(&mut body), None);
        assert_eq!(body, b"event: par");
    }

    #[test]
    fn decodes_chunks_as_they_complete() {
        let mut raw = b"5\r\nhello\r\n3\r\nab".to_vec();
        let mut body = Vec::new();
        assert!(!take_chunks(&mut raw, &mut body).expect("valid"));
        assert_eq!(body, b"hello");
        raw.extend_from_slice(b"c\r\n0\r\n\r\n");
        assert!(take_chunks(&mut raw, &mut body).expect("valid"));
        assert_eq!(body, b"helloabc");
    }
}
