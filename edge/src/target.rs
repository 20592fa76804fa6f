//! Request target -> nginx's `$uri` and `$args`.
//!
//! The signature covers `$uri`, the decoded and normalised path, so the edge must compute it
//! byte for byte as nginx does (`ngx_http_parse_request_line` + `ngx_http_parse_complex_uri`
//! with `merge_slashes on`): `%XX` decoded and the result re-read as path syntax (`%2F` is a
//! slash, `%2E%2E` a dot segment) except that a decoded `%`, `#` or `?` stays literal; `//`
//! merged; `.` and `..` resolved, `..` above the root is an error; `#` ends the path;
//! `$args` runs from the first `?` to `#`, raw.

use std::ops::Range;

/// A parsed request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// nginx's `$uri`: decoded, normalised, always starting with `/`.
    pub uri: Vec<u8>,
    /// Byte range of `$args` within the raw target (empty when there is no query).
    pub args: Range<usize>,
}

/// The target is malformed; nginx answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed request target")]
pub struct BadTarget;

impl Target {
    /// The raw `$args` bytes of `raw`, the target this was parsed from.
    pub fn args<'a>(&self, raw: &'a [u8]) -> &'a [u8] {
        &raw[self.args.clone()]
    }
}

/// Parses an origin-form (`/path?q`) or absolute-form (`http://host/path?q`) target.
pub fn parse(raw: &[u8]) -> Result<Target, BadTarget> {
    if raw.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Err(BadTarget);
    }
    let path_start = match raw.first() {
        Some(b'/') => 0,
        Some(c) if c.is_ascii_alphabetic() => absolute_form_path_start(raw)?,
        _ => return Err(BadTarget),
    };
    normalize(raw, path_start)
}

/// Skips `scheme://host[:port]` the way nginx's request-line parser accepts it.
fn absolute_form_path_start(raw: &[u8]) -> Result<usize, BadTarget> {
    let colon = raw.iter().position(|&b| b == b':').ok_or(BadTarget)?;
    let scheme_ok = raw[..colon]
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok || raw.get(colon + 1..colon + 3) != Some(b"//") {
        return Err(BadTarget);
    }
    let mut i = colon + 3;
    if raw.get(i) == Some(&b'[') {
        let close = raw[i..].iter().position(|&b| b == b']').ok_or(BadTarget)?;
        i += close + 1;
    } else {
        while raw
            .get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
        {
            i += 1;
        }
    }
    if raw.get(i) == Some(&b':') {
        i += 1;
        while raw.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    match raw.get(i) {
        None | Some(b'/') | Some(b'?') => Ok(i),
        Some(_) => Err(BadTarget),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Usual,
    Slash,
    Dot,
    DotDot,
}

/// `ngx_http_parse_complex_uri`, state for state.
fn normalize(raw: &[u8], start: usize) -> Result<Target, BadTarget> {
    let mut uri = Vec::with_capacity(raw.len() - start + 1);
    let mut state = State::Usual;
    let mut i = start;
    if raw.get(start) != Some(&b'/') {
        // Absolute form with an empty path: nginx uses "/".
        uri.push(b'/');
        state = State::Slash;
    }
    let mut args = raw.len()..raw.len();
    // A byte to re-read in `state` (decoded from %XX), or the next raw byte.
    let mut pending: Option<u8> = None;
    loop {
        let (ch, decoded) = match pending.take() {
            Some(c) => (c, true),
            None => match raw.get(i) {
                Some(&c) => {
                    i += 1;
                    (c, false)
                }
                None => break,
            },
        };
        if !decoded && ch == b'%' {
            let hi = raw.get(i).and_then(|&c| hex(c)).ok_or(BadTarget)?;
            let lo_raw = *raw.get(i + 1).ok_or(BadTarget)?;
            let lo = hex(lo_raw).ok_or(BadTarget)?;
            i += 2;
            let c = (hi << 4) | lo;
            match c {
                0 => return Err(BadTarget),
                // Decoded `%`, `#` and `?` are ordinary path bytes, never syntax.
                b'%' | b'#' | b'?' => {
                    uri.push(c);
                    state = State::Usual;
                }
                _ => pending = Some(c),
            }
            continue;
        }
        match (state, ch) {
            (_, b'?') if !decoded => {
                args = arg_range(raw, i);
                finish(&mut uri, state)?;
                return Ok(Target { uri, args });
            }
            (_, b'#') if !decoded => {
                finish(&mut uri, state)?;
                return Ok(Target { uri, args });
            }
            (State::Slash, b'/') => {} // merge_slashes
            (State::Usual, b'/') => {
                uri.push(b'/');
                state = State::Slash;
            }
            (State::Slash, b'.') => {
                uri.push(b'.');
                state = State::Dot;
            }
            (State::Dot, b'/') => {
                uri.pop();
                state = State::Slash;
            }
            (State::Dot, b'.') => {
                uri.push(b'.');
                state = State::DotDot;
            }
            (State::DotDot, b'/') => {
                pop_segment(&mut uri)?;
                state = State::Slash;
            }
            (_, c) => {
                uri.push(c);
                state = State::Usual;
            }
        }
    }
    finish(&mut uri, state)?;
    Ok(Target { uri, args })
}

/// nginx's end-of-path handling of a trailing `/.` or `/..`.
fn finish(uri: &mut Vec<u8>, state: State) -> Result<(), BadTarget> {
    match state {
        State::Dot => {
            uri.pop();
        }
        State::DotDot => pop_segment(uri)?,
        State::Usual | State::Slash => {}
    }
    Ok(())
}

/// `uri` ends with `/..`: drop it and the segment before it, keeping that segment's `/`.
fn pop_segment(uri: &mut Vec<u8>) -> Result<(), BadTarget> {
    // Remove "/..", then everything back to (not including) the previous '/'.
    let keep = uri.len().checked_sub(3).ok_or(BadTarget)?;
    uri.truncate(keep);
    let slash = uri.iter().rposition(|&b| b == b'/').ok_or(BadTarget)?;
    uri.truncate(slash + 1);
    Ok(())
}

/// `$args`: from just after `?` up to the first `#`.
fn arg_range(raw: &[u8], from: usize) -> Range<usize> {
    let end = raw[from..]
        .iter()
        .position(|&b| b == b'#')
        .map_or(raw.len(), |p| from + p);
    from..end
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uri(raw: &str) -> Result<String, BadTarget> {
        parse(raw.as_bytes()).map(|t| String::from_utf8_lossy(&t.uri).into_owned())
    }

    fn args(raw: &str) -> String {
        let t = parse(raw.as_bytes()).expect("valid");
        String::from_utf8_lossy(t.args(raw.as_bytes())).into_owned()
    }

    #[test]
    fn normalises_like_nginx() {
        let want = "/hls/v/720p/s_0.ts";
        for raw in [
            "/hls/v/720p/s_0.ts",
            "/hls/%76/720p/s_0.ts",
            "/hls/v/720p/s%5F0.ts",
            "/hls/v%2F720p/s_0.ts",
            "/hls//v//720p/s_0.ts",
            "/hls/v/360p/../720p/s_0.ts",
            "/hls/v/360p/%2E%2E/720p/s_0.ts",
            "/hls/v/360p/.%2e/720p/s_0.ts",
            "/hls/v/./720p/s_0.ts",
            "/hls/../hls/v/720p/s_0.ts",
            "http://127.0.0.1:8080/hls/v/720p/s_0.ts",
            "http://[::1]:8080/hls/v/720p/s_0.ts",
            "/hls/v/720p/s_0.ts#frag",
            "/hls/v/720p/s_0.ts?md5=x#frag",
        ] {
            assert_eq!(uri(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn trailing_dots_and_slashes() {
        assert_eq!(uri("/hls/v/.").as_deref(), Ok("/hls/v/"));
        assert_eq!(uri("/hls/v/..").as_deref(), Ok("/hls/"));
        assert_eq!(uri("/hls/v/").as_deref(), Ok("/hls/v/"));
        assert_eq!(uri("/hls/v/...").as_deref(), Ok("/hls/v/..."));
        assert_eq!(uri("/hls/v/..x").as_deref(), Ok("/hls/v/..x"));
        assert_eq!(uri("http://h?a=1").as_deref(), Ok("/"));
        assert_eq!(uri("http://h").as_deref(), Ok("/"));
    }

    #[test]
    fn decoded_syntax_stays_literal() {
        assert_eq!(uri("/a%3Fb").as_deref(), Ok("/a?b"));
        assert_eq!(uri("/a%23b").as_deref(), Ok("/a#b"));
        assert_eq!(uri("/a%25b").as_deref(), Ok("/a%b"));
        assert_eq!(uri("/a%20b").as_deref(), Ok("/a b"));
    }

    #[test]
    fn rejects_what_nginx_rejects() {
        for raw in [
            "/../hls/x",
            "/hls/../../x",
            "/..",
            "/a%zz",
            "/a%0",
            "/a%",
            "/a%00b",
            "*",
            "",
            "hls/x",
            "/a b",
            "/a\x01",
            "http:/x",
            "http://h x/",
        ] {
            assert_eq!(uri(raw), Err(BadTarget), "{raw:?}");
        }
    }

    #[test]
    fn args_are_raw_and_end_at_fragment() {
        assert_eq!(args("/x?md5=a%3D&e=1#f"), "md5=a%3D&e=1");
        assert_eq!(args("/x?"), "");
        assert_eq!(args("/x"), "");
        assert_eq!(args("/x#a?b=1"), "");
        assert_eq!(args("/x%3Fa=1?b=2"), "b=2");
        assert_eq!(args("/a/..?q=1"), "q=1");
        assert_eq!(uri("/a/b/..?q=1").as_deref(), Ok("/a/"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_and_stays_rooted(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(t) = parse(&raw) {
                prop_assert_eq!(t.uri.first(), Some(&b'/'));
                prop_assert!(!t.uri.contains(&0));
                // No dot segments and no empty segments survive normalisation.
                for seg in t.uri.split(|&b| b == b'/').skip(1) {
                    prop_assert!(seg != b"." && seg != b"..");
                }
                prop_assert!(!t.uri.windows(2).any(|w| w == b"//"));
            }
        }

        #[test]
        fn plain_paths_are_unchanged(path in "(/[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,8}){1,6}") {
            prop_assert_eq!(uri(&path), Ok(path.clone()));
        }
    }
}
