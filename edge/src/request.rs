//! The protocol-independent view of a request head that the service decides on.
//!
//! Both front ends fill it: the HTTP/1.1 fast path (plain and TLS) from `httparse` (borrowing
//! the connection buffer, no copies) and the HTTP/2 path (hyper) from `http::Request`.

use std::net::IpAddr;

/// HTTP version of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    H2,
}

/// The headers the edge looks at, raw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    pub host: Option<&'a [u8]>,
    pub host_count: u8,
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    pub access_control_request_method: Option<&'a [u8]>,
    pub access_control_request_headers: Option<&'a [u8]>,
    /// A body is announced (Content-Length > 0, or any Transfer-Encoding).
    pub has_body: bool,
    /// The announced Content-Length (the first, when valid).
    pub content_length: Option<u64>,
    /// Content-Length is not a number, or several disagree.
    pub bad_length: bool,
    /// `Connection: close` (HTTP/1.1) was sent.
    pub connection_close: bool,
    /// `Connection: keep-alive` (HTTP/1.0) was sent.
    pub connection_keep_alive: bool,
}

impl<'a> Headers<'a> {
    /// Records one header; names are matched case-insensitively.
    pub fn add(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count = self.host_count.saturating_add(1);
                &mut self.host
            }
            5 if name.eq_ignore_ascii_case(b"range") => &mut self.range,
            6 if name.eq_ignore_ascii_case(b"origin") => &mut self.origin,
            8 if name.eq_ignore_ascii_case(b"if-range") => &mut self.if_range,
            8 if name.eq_ignore_ascii_case(b"if-match") => &mut self.if_match,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    self.connection_close |= token.eq_ignore_ascii_case(b"close");
                    self.connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
                return;
            }
            13 if name.eq_ignore_ascii_case(b"if-none-match") => &mut self.if_none_match,
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                match std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    Some(n) => {
                        self.has_body |= n > 0;
                        self.content_length.get_or_insert(n);
                    }
                    None => self.bad_length = true,
                }
                return;
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.has_body = true;
                return;
            }
            17 if name.eq_ignore_ascii_case(b"if-modified-since") => &mut self.if_modified_since,
            19 if name.eq_ignore_ascii_case(b"if-unmodified-since") => {
                &mut self.if_unmodified_since
            }
            29 if name.eq_ignore_ascii_case(b"access-control-request-method") => {
                &mut self.access_control_request_method
            }
            30 if name.eq_ignore_ascii_case(b"access-control-request-headers") => {
                &mut self.access_control_request_headers
            }
            _ => return,
        };
        // nginx keeps the first of a repeated single-value header.
        if slot.is_none() {
            *slot = Some(value);
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a [u8],
    /// The raw request target (origin or absolute form).
    pub target: &'a [u8],
    pub version: Version,
    pub headers: Headers<'a>,
    pub peer: IpAddr,
    /// Whether the connection can send a file body with `sendfile(2)` (plain HTTP/1.1, or
    /// HTTP/1.1 over kTLS); bodies are planned by it.
    pub sendfile: bool,
}

impl RequestHead<'_> {
    /// `GET` or `HEAD`.
    pub fn is_get_or_head(&self) -> bool {
        self.method == b"GET" || self.method == b"HEAD"
    }

    /// `HEAD`: same headers as GET, no body.
    pub fn is_head(&self) -> bool {
        self.method == b"HEAD"
    }
}
