//! The HTTP/1 request line as nginx's `ngx_http_parse_request_line` accepts it: method of
//! `A-Z _ -`, any number of spaces between the parts, any `HTTP/1.x` read as HTTP/1.1, a major
//! version above 1 answered 505, trailing spaces allowed.

/// A parsed request line, borrowing the connection buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    /// HTTP/1.0 (or older) rather than 1.1+.
    pub http10: bool,
}

/// Why a request line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// 400.
    Malformed,
    /// 505: a major version above 1.
    Version,
}

/// Parses `line` (without its line ending).
pub fn parse(line: &[u8]) -> Result<RequestLine<'_>, LineError> {
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let method = parts.next().ok_or(LineError::Malformed)?;
    let target = parts.next().ok_or(LineError::Malformed)?;
    // HTTP/0.9 (no version) is not served.
    let version = parts.next().ok_or(LineError::Malformed)?;
    if parts.next().is_some() || line.first() == Some(&b' ') {
        return Err(LineError::Malformed);
    }
    if !method
        .iter()
        .all(|&c| c.is_ascii_uppercase() || c == b'_' || c == b'-')
    {
        return Err(LineError::Malformed);
    }
    let digits = version.strip_prefix(b"HTTP/").ok_or(LineError::Malformed)?;
    let (major, minor) = split_once(digits, b'.').ok_or(LineError::Malformed)?;
    let major = number(major, 3).ok_or(LineError::Malformed)?;
    let minor = number(minor, 3).ok_or(LineError::Malformed)?;
    match major {
        0 => Err(LineError::Malformed),
        1 => Ok(RequestLine {
            method,
            target,
            http10: minor == 0,
        }),
        _ => Err(LineError::Version),
    }
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// 1 to `max_len` ASCII digits; nginx's first major digit may not be 0, which `major == 0`
/// covers for the single-digit case.
fn number(s: &[u8], max_len: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max_len || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |v, &d| v * 10 + u32::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_what_nginx_accepts() {
        let l = parse(b"GET /hls/a.ts?x=1 HTTP/1.1").expect("valid");
        assert_eq!(
            (l.method, l.target, l.http10),
            (&b"GET"[..], &b"/hls/a.ts?x=1"[..], false)
        );
        assert!(parse(b"GET  /a   HTTP/1.1  ").is_ok(), "extra spaces");
        assert!(!parse(b"GET /a HTTP/1.2").expect("1.x").http10);
        assert!(!parse(b"GET /a HTTP/1.10").expect("1.x").http10);
        assert!(parse(b"GET /a HTTP/1.0").expect("1.0").http10);
        assert!(parse(b"M-SEARCH * HTTP/1.1").is_ok());
    }

    #[test]
    fn refuses_what_nginx_refuses() {
        assert_eq!(parse(b"GET /a HTTP/2.0"), Err(LineError::Version));
        assert_eq!(parse(b"GET /a HTTP/3.0"), Err(LineError::Version));
        for bad in [
            &b"get /a HTTP/1.1"[..],
            b"GET /a",
            b"GET /a HTTP/1",
            b"GET /a HTTPS/1.1",
            b"GET /a b HTTP/1.1",
            b" GET /a HTTP/1.1",
            b"",
            b"GET /a HTTP/0.9",
        ] {
            assert_eq!(
                parse(bad),
                Err(LineError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(line in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse(&line);
        }
    }
}
