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
    /// Content-Length is not a number nginx reads.
    pub bad_length: bool,
    /// A header nginx takes once came again ([`Headers::add`]).
    pub repeated: bool,
    /// The value-less ones of those headers seen so far, one bit each.
    seen_once: u8,
    /// `Connection: close` (HTTP/1.1) was sent.
    pub connection_close: bool,
    /// `Connection: keep-alive` (HTTP/1.0) was sent.
    pub connection_keep_alive: bool,
}

/// Bits of [`Headers::seen_once`].
const CONTENT_LENGTH: u8 = 1;
const EXPECT: u8 = 2;
const AUTHORIZATION: u8 = 4;
const CONTENT_RANGE: u8 = 8;

impl<'a> Headers<'a> {
    /// Records one header; names are matched case-insensitively.
    pub fn add(&mut self, name: &[u8], value: &'a [u8]) {
        let (slot, once) = match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count = self.host_count.saturating_add(1);
                (&mut self.host, false)
            }
            5 if name.eq_ignore_ascii_case(b"range") => (&mut self.range, false),
            6 if name.eq_ignore_ascii_case(b"origin") => (&mut self.origin, false),
            6 if name.eq_ignore_ascii_case(b"expect") => return self.once(EXPECT),
            8 if name.eq_ignore_ascii_case(b"if-range") => (&mut self.if_range, true),
            8 if name.eq_ignore_ascii_case(b"if-match") => (&mut self.if_match, true),
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    self.connection_close |= token.eq_ignore_ascii_case(b"close");
                    self.connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
                return;
            }
            13 if name.eq_ignore_ascii_case(b"if-none-match") => (&mut self.if_none_match, true),
            13 if name.eq_ignore_ascii_case(b"authorization") => return self.once(AUTHORIZATION),
            13 if name.eq_ignore_ascii_case(b"content-range") => return self.once(CONTENT_RANGE),
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                self.once(CONTENT_LENGTH);
                match content_length(value) {
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
            17 if name.eq_ignore_ascii_case(b"if-modified-since") => {
                (&mut self.if_modified_since, true)
            }
            19 if name.eq_ignore_ascii_case(b"if-unmodified-since") => {
                (&mut self.if_unmodified_since, true)
            }
            29 if name.eq_ignore_ascii_case(b"access-control-request-method") => {
                (&mut self.access_control_request_method, false)
            }
            30 if name.eq_ignore_ascii_case(b"access-control-request-headers") => {
                (&mut self.access_control_request_headers, false)
            }
            _ => return,
        };
        // nginx 1.22 answers 400 to a second of the headers it takes once, and keeps the
        // first of the others.
        if slot.is_some() {
            self.repeated |= once;
        } else {
            *slot = Some(value);
        }
    }

    /// Notes a header nginx takes once whose value the edge does not need.
    fn once(&mut self, bit: u8) {
        self.repeated |= self.seen_once & bit != 0;
        self.seen_once |= bit;
    }
}

/// A Content-Length as nginx reads it (`ngx_atoof`): digits only, no sign, within `off_t`.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    u64::try_from(n).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&'static str, &'static str)]) -> Headers<'static> {
        let mut h = Headers::default();
        for (name, value) in lines {
            h.add(name.as_bytes(), value.as_bytes());
        }
        h
    }

    #[test]
    fn a_header_nginx_takes_once_may_not_come_twice() {
        for name in [
            "If-Match",
            "if-none-match",
            "If-Modified-Since",
            "If-Unmodified-Since",
            "If-Range",
            "Content-Length",
            "Expect",
            "Authorization",
            "Content-Range",
        ] {
            assert!(!headers(&[(name, "0")]).repeated, "{name} once");
            assert!(
                headers(&[(name, "0"), (name, "0")]).repeated,
                "{name} twice"
            );
        }
        for name in ["Range", "Origin", "Connection", "X-Other"] {
            assert!(
                !headers(&[(name, "0"), (name, "0")]).repeated,
                "{name} twice"
            );
        }
        let first = headers(&[("Range", "bytes=0-1"), ("Range", "bytes=2-3")]);
        assert_eq!(first.range, Some(&b"bytes=0-1"[..]), "the first is kept");
    }

    #[test]
    fn content_length_is_digits_within_off_t() {
        for good in ["0", " 12 ", "9223372036854775807"] {
            assert!(!headers(&[("Content-Length", good)]).bad_length, "{good:?}");
        }
        for bad in ["+0", "-0", "", "1e3", "0x10", "9223372036854775808", "1 2"] {
            assert!(headers(&[("Content-Length", bad)]).bad_length, "{bad:?}");
        }
    }
}
