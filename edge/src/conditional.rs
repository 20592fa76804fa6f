//! Conditional requests as nginx's not-modified filter evaluates them (304 / 412).

use std::time::SystemTime;

/// The validators of the representation being served.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// The quoted ETag, e.g. `"6b02433d-14aed8"`.
    pub etag: &'a str,
    /// Last-Modified, whole seconds since the epoch.
    pub mtime: i64,
}

/// The conditional request headers, raw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a [u8]>,
    pub if_none_match: Option<&'a [u8]>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
}

/// Outcome for a request that would otherwise be a 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Proceed,
    NotModified,
    PreconditionFailed,
}

/// nginx's order: If-Unmodified-Since, If-Match (412), then If-Modified-Since and
/// If-None-Match (304). `if_modified_since exact` (nginx's default): only an exact date match
/// is "not modified"; when both 304 headers are present both must agree.
pub fn evaluate(c: &Conditions<'_>, v: &Validators<'_>) -> Outcome {
    if let Some(ius) = c.if_unmodified_since {
        // An unparsable date fails the precondition, as in nginx (-1 >= mtime is false).
        if http_date(ius).is_none_or(|t| t < v.mtime) {
            return Outcome::PreconditionFailed;
        }
    }
    if let Some(im) = c.if_match {
        if !etag_listed(im, v.etag, false) {
            return Outcome::PreconditionFailed;
        }
    }
    if c.if_modified_since.is_none() && c.if_none_match.is_none() {
        return Outcome::Proceed;
    }
    if let Some(ims) = c.if_modified_since {
        if http_date(ims) != Some(v.mtime) {
            return Outcome::Proceed;
        }
    }
    if let Some(inm) = c.if_none_match {
        if !etag_listed(inm, v.etag, true) {
            return Outcome::Proceed;
        }
    }
    Outcome::NotModified
}

/// Whether `If-Range` lets a range through: an ETag must match exactly, a date must equal
/// Last-Modified exactly.
pub fn if_range_matches(if_range: &[u8], v: &Validators<'_>) -> bool {
    if if_range.len() >= 2 && if_range.last() == Some(&b'"') {
        return if_range == v.etag.as_bytes();
    }
    http_date(if_range) == Some(v.mtime)
}

/// nginx's `ngx_http_test_if_match`: `*`, or `etag` as one element of a comma list;
/// `weak` lets `W/"..."` match too.
fn etag_listed(list: &[u8], etag: &str, weak: bool) -> bool {
    if list == b"*" {
        return true;
    }
    let etag = etag.as_bytes();
    list.split(|&b| b == b',').any(|item| {
        let item = item.trim_ascii();
        let item = match item.strip_prefix(b"W/") {
            Some(rest) if weak => rest,
            _ => item,
        };
        item == etag
    })
}

fn http_date(v: &[u8]) -> Option<i64> {
    // nginx's date parser stops after the zone, so old clients' `; length=N` suffix is ignored.
    let v = v.split(|&b| b == b';').next().unwrap_or_default();
    let s = std::str::from_utf8(v).ok()?.trim();
    let t = httpdate::parse_http_date(s).ok()?;
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Validators<'static> = Validators {
        etag: "\"6b02433d-14aed8\"",
        mtime: 1_795_310_397,
    };
    const LM: &[u8] = b"Sun, 22 Nov 2026 01:19:57 GMT";

    fn eval(c: Conditions<'_>) -> Outcome {
        evaluate(&c, &V)
    }

    #[test]
    fn probed_rows() {
        use Outcome::*;
        let none = Conditions::default();
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some(LM),
                ..none
            }),
            NotModified
        );
        let older = Some(&b"Sat, 21 Nov 2026 01:19:57 GMT"[..]);
        let newer = Some(&b"Mon, 23 Nov 2026 01:19:57 GMT"[..]);
        assert_eq!(
            eval(Conditions {
                if_modified_since: older,
                ..none
            }),
            Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: newer,
                ..none
            }),
            Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_modified_since: Some(b"yesterday"),
                ..none
            }),
            Proceed
        );
        let inm = Some(V.etag.as_bytes());
        assert_eq!(
            eval(Conditions {
                if_none_match: inm,
                if_modified_since: older,
                ..none
            }),
            Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: inm,
                ..none
            }),
            NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(b"W/\"6b02433d-14aed8\""),
                ..none
            }),
            NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(b"\"abc-123\""),
                ..none
            }),
            Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_none_match: Some(b"*"),
                ..none
            }),
            NotModified
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some(b"\"abc-123\""),
                ..none
            }),
            PreconditionFailed
        );
        assert_eq!(
            eval(Conditions {
                if_unmodified_since: older,
                ..none
            }),
            PreconditionFailed
        );
        assert_eq!(
            eval(Conditions {
                if_unmodified_since: Some(LM),
                ..none
            }),
            Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some(b"\"x\", \"6b02433d-14aed8\""),
                ..none
            }),
            Proceed
        );
        assert_eq!(
            eval(Conditions {
                if_match: Some(b"W/\"6b02433d-14aed8\""),
                ..none
            }),
            PreconditionFailed,
            "If-Match compares strongly"
        );
    }

    #[test]
    fn if_range() {
        assert!(if_range_matches(V.etag.as_bytes(), &V));
        assert!(!if_range_matches(b"\"abc-123\"", &V));
        assert!(if_range_matches(LM, &V));
        assert!(!if_range_matches(b"Sat, 21 Nov 2026 01:19:57 GMT", &V));
    }
}
