//! `Range: bytes=...` as nginx's range filter reads it (206 / 416 / ignore).

/// What to do with a request's Range header for a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// Send the whole representation (no header, another unit, or nginx "declines").
    Full,
    /// Send `start..end` (end exclusive) with 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Applies nginx's rules: only `bytes=` (case-insensitive) with at least one character after
/// it is considered; a syntax error or no satisfiable range is 416; an end past EOF is clamped;
/// `-N` is a suffix. Several ranges are served as the full body (nginx would send
/// `multipart/byteranges`, which no HLS player asks for), as nginx itself does when the ranges
/// add up to more than the file.
pub fn decide(header: Option<&[u8]>, len: u64) -> RangeDecision {
    let Some(h) = header else {
        return RangeDecision::Full;
    };
    if h.len() < 7 || !h[..6].eq_ignore_ascii_case(b"bytes=") {
        return RangeDecision::Full;
    }
    let mut p = Cursor { s: &h[6..], i: 0 };
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut total: u64 = 0;
    loop {
        p.skip_spaces();
        let (start, end);
        if p.peek() != Some(b'-') {
            let Some(s) = p.number() else {
                return RangeDecision::Unsatisfiable;
            };
            p.skip_spaces();
            if p.next() != Some(b'-') {
                return RangeDecision::Unsatisfiable;
            }
            p.skip_spaces();
            if matches!(p.peek(), Some(b',') | None) {
                (start, end) = (s, len);
            } else {
                let Some(e) = p.number() else {
                    return RangeDecision::Unsatisfiable;
                };
                p.skip_spaces();
                if !matches!(p.peek(), Some(b',') | None) {
                    return RangeDecision::Unsatisfiable;
                }
                (start, end) = (s, if e >= len { len } else { e + 1 });
            }
        } else {
            p.next();
            let Some(n) = p.number() else {
                return RangeDecision::Unsatisfiable;
            };
            p.skip_spaces();
            if !matches!(p.peek(), Some(b',') | None) {
                return RangeDecision::Unsatisfiable;
            }
            (start, end) = (len.saturating_sub(n), len);
        }
        if start < end {
            total = total.saturating_add(end - start);
            ranges.push((start, end));
        } else if start == 0 {
            return RangeDecision::Full;
        }
        if p.next() != Some(b',') {
            break;
        }
    }
    match ranges.as_slice() {
        [] => RangeDecision::Unsatisfiable,
        _ if total > len => RangeDecision::Full,
        [(start, end)] => RangeDecision::Partial {
            start: *start,
            end: *end,
        },
        _ => RangeDecision::Full,
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// One or more digits, refusing overflow of `off_t` as nginx does.
    fn number(&mut self) -> Option<u64> {
        let first = self.i;
        let mut v: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            self.i += 1;
        }
        (self.i > first).then_some(v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::{self, *};
    use super::*;
    use proptest::prelude::*;

    const LEN: u64 = 1_355_480;

    fn d(h: &str) -> RangeDecision {
        decide(Some(h.as_bytes()), LEN)
    }

    #[test]
    fn probed_rows() {
        assert_eq!(d("bytes=0-99"), Partial { start: 0, end: 100 });
        assert_eq!(
            d("bytes=-100"),
            Partial {
                start: LEN - 100,
                end: LEN
            }
        );
        assert_eq!(
            d("bytes=100-"),
            Partial {
                start: 100,
                end: LEN
            }
        );
        assert_eq!(d("bytes=0-1356480"), Partial { start: 0, end: LEN });
        assert_eq!(d("bytes=1355480-"), Unsatisfiable);
        assert_eq!(d("bytes=-0"), Unsatisfiable);
        assert_eq!(d("bytes=100-50"), Unsatisfiable);
        assert_eq!(d("bytes=abc"), Unsatisfiable);
        assert_eq!(d("items=0-99"), Full);
        assert_eq!(decide(None, LEN), Full);
    }

    #[test]
    fn nginx_details() {
        assert_eq!(d("BYTES=0-0"), Partial { start: 0, end: 1 });
        assert_eq!(d("bytes="), Full, "shorter than 7 bytes is ignored");
        assert_eq!(d("bytes= 1 - 2 "), Partial { start: 1, end: 3 });
        assert_eq!(d("bytes=0-0,10-19"), Full, "multi-range served whole");
        assert_eq!(d("bytes=0-,0-"), Full, "more than the file: declined");
        assert_eq!(d("bytes=1-2x"), Unsatisfiable);
        assert_eq!(d("bytes=99999999999999999999-"), Unsatisfiable);
        assert_eq!(d("bytes=-99999999"), Partial { start: 0, end: LEN });
        assert_eq!(decide(Some(b"bytes=0-"), 0), Full, "empty file: declined");
        assert_eq!(decide(Some(b"bytes=5-"), 0), Unsatisfiable);
    }

    proptest! {
        #[test]
        fn partial_is_always_inside(h in "bytes=[0-9 ,-]{1,24}", len in 0u64..5000) {
            if let Partial { start, end } = decide(Some(h.as_bytes()), len) {
                prop_assert!(start < end && end <= len);
            }
        }

        #[test]
        fn never_panics(h in proptest::collection::vec(any::<u8>(), 0..40), len in any::<u64>()) {
            let _ = decide(Some(&h), len);
        }
    }
}
