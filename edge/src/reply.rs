//! The response the service decides on, independent of the protocol that carries it.
//!
//! The HTTP/1.1 fast path serialises it by hand and sends file bodies with `sendfile(2)` (or,
//! over TLS, in encrypted chunks); the HTTP/2 path turns it into an `http::Response`.

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

use crate::metrics::SendPath;

/// A header value that is usually shared or static, so building a reply rarely allocates.
#[derive(Debug, Clone)]
pub enum Value {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl Value {
    pub fn as_str(&self) -> &str {
        match self {
            Value::Static(s) => s,
            Value::Shared(s) => s,
            Value::Owned(s) => s,
        }
    }
}

/// The body of a reply.
#[derive(Debug)]
pub enum Body {
    Empty,
    /// In memory (hot cache, error messages).
    Bytes(Bytes, SendPath),
    /// `len` bytes of `file` from `offset` (shared: one descriptor serves many responses).
    File {
        file: Arc<File>,
        offset: u64,
        len: u64,
    },
    /// Bytes as they arrive from the upstream (exactly the announced Content-Length; an error
    /// or a short stream ends the connection).
    Stream(Streamed),
}

/// A streamed body.
pub struct Streamed(pub crate::upstream::source::ByteStream);

impl std::fmt::Debug for Streamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Streamed")
    }
}

/// A decided response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Names in canonical case, as nginx writes them.
    pub headers: Vec<(&'static str, Value)>,
    pub body: Body,
    /// Content-Length to announce (`None` for 304 and 204).
    pub content_length: Option<u64>,
    /// Close the connection after this reply.
    pub close: bool,
}

impl Reply {
    /// A reply with no headers yet.
    pub fn new(status: u16, body: Body, content_length: Option<u64>) -> Self {
        Self {
            status,
            headers: Vec::with_capacity(8),
            body,
            content_length,
            close: false,
        }
    }

    /// A JSON error: `{"error": "<message>"}`. Messages are static, so each body is built once
    /// per thread and then shared (403 floods cost no allocation for the body). Refusals are
    /// built through [`crate::refusal::Refusal`], which knows their statuses and headers.
    pub fn error(status: u16, message: &'static str) -> Self {
        use std::cell::RefCell;
        use std::collections::HashMap;
        thread_local! {
            static BODIES: RefCell<HashMap<(usize, usize), Bytes>> = RefCell::new(HashMap::new());
        }
        let key = (message.as_ptr() as usize, message.len());
        let body = BODIES.with(|b| {
            b.borrow_mut()
                .entry(key)
                .or_insert_with(|| Bytes::from(serde_json::json!({ "error": message }).to_string()))
                .clone()
        });
        let len = body.len() as u64;
        let mut r = Self::new(status, Body::Bytes(body, SendPath::Buffered), Some(len));
        r.header("Content-Type", Value::Static("application/json"));
        r
    }

    /// Adds a header.
    pub fn header(&mut self, name: &'static str, value: Value) -> &mut Self {
        self.headers.push((name, value));
        self
    }

    /// Drops the body but keeps Content-Length (HEAD).
    pub fn strip_body(&mut self) {
        self.body = Body::Empty;
    }
}

/// The reason phrase for the statuses the edge sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        408 => "Request Time-out",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        416 => "Requested Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        504 => "Gateway Time-out",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends the HTTP/1.1 status line and headers (with Date, Content-Length and Connection).
pub fn write_head(reply: &Reply, keep_alive: bool, date: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writes into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: edge\r\nDate: {date}\r\n",
        reply.status,
        reason(reply.status)
    );
    for (name, value) in &reply.headers {
        let _ = write!(out, "{name}: {}\r\n", value.as_str());
    }
    if let Some(len) = reply.content_length {
        let _ = write!(out, "Content-Length: {len}\r\n");
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_json_and_head_is_well_formed() {
        let r = Reply::error(403, "signature does not match");
        let mut out = Vec::new();
        write_head(&r, true, "Sun, 22 Nov 2026 01:19:57 GMT", &mut out);
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
        assert!(text.contains("Content-Type: application/json\r\n"));
        assert!(text.contains("Content-Length: 36\r\n"), "{text}");
        assert!(text.ends_with("Connection: keep-alive\r\n\r\n"));
        match r.body {
            Body::Bytes(b, _) => assert_eq!(&b[..], br#"{"error":"signature does not match"}"#),
            other => panic!("unexpected body {other:?}"),
        }
    }
}
