//! nginx's checks of the request line and Host, applied before anything else.

/// nginx's `ngx_http_validate_host`: no `/`, no control bytes or spaces, no `..`, and a
/// non-empty name before the port.
pub(super) fn valid_host(host: &[u8]) -> bool {
    let mut name_len = host.len();
    let mut last_dot: Option<usize> = None;
    let mut literal = false;
    let mut in_port = false;
    for (i, &c) in host.iter().enumerate() {
        match c {
            b'.' => {
                if last_dot.is_some_and(|d| d + 1 == i) {
                    return false;
                }
                last_dot = Some(i);
            }
            b':' if !literal && !in_port => {
                name_len = i;
                in_port = true;
            }
            b'[' if i == 0 => literal = true,
            b']' if literal => {
                name_len = i + 1;
                literal = false;
                in_port = true;
            }
            b'/' | 0..=0x20 | 0x7f => return false,
            _ => {}
        }
    }
    if last_dot.is_some_and(|d| d + 1 == name_len) {
        name_len -= 1;
    }
    name_len > 0
}

/// nginx accepts methods made of `A-Z`, `_` and `-` (unknown ones reach the 405 check).
pub(super) fn valid_method(m: &[u8]) -> bool {
    !m.is_empty()
        && m.iter()
            .all(|&c| c.is_ascii_uppercase() || c == b'_' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts_like_nginx() {
        for ok in [
            "127.0.0.1:8080",
            "example.com",
            "example.com.",
            "[::1]:80",
            "a-b.c",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ":8080", "a/b", "a..b", "a b", ".", "a\x01"] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?}");
        }
    }
}
