//! CORS for players fetching cross-origin (hls.js). Off by default, so the edge answers exactly
//! like the nginx location; when on, refusals (403/410) carry the headers too, so a player's
//! script can see a 410 and refresh its manifest.

use crate::reply::{Reply, Value};

/// The configured origins.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
    any: bool,
}

impl Cors {
    pub fn new(origins: &[String]) -> Self {
        Self {
            any: origins.iter().any(|o| o == "*"),
            origins: origins.to_vec(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request's Origin, if allowed.
    fn allow(&self, origin: Option<&[u8]>) -> Option<Value> {
        if self.any {
            return Some(Value::Static("*"));
        }
        let origin = origin?;
        self.origins
            .iter()
            .find(|o| o.as_bytes() == origin)
            .map(|o| Value::Owned(o.clone()))
    }

    /// Adds the response headers when the origin is allowed. `Vary: Origin` is added to every
    /// response of a CORS-enabled edge by the service, allowed or not.
    pub fn decorate(&self, origin: Option<&[u8]>, reply: &mut Reply) {
        if let Some(allow) = self.allow(origin) {
            reply.header("Access-Control-Allow-Origin", allow);
            reply.header(
                "Access-Control-Expose-Headers",
                Value::Static("Content-Length, Content-Range, ETag"),
            );
        }
    }

    /// A preflight answer (204), when enabled and the origin is allowed.
    pub fn preflight(&self, origin: Option<&[u8]>) -> Option<Reply> {
        self.allow(origin)?;
        let mut r = Reply::new(204, crate::reply::Body::Empty, None);
        r.header(
            "Access-Control-Allow-Methods",
            Value::Static("GET, HEAD, OPTIONS"),
        );
        r.header(
            "Access-Control-Allow-Headers",
            Value::Static("Range, If-None-Match, If-Modified-Since"),
        );
        r.header("Access-Control-Max-Age", Value::Static("86400"));
        self.decorate(origin, &mut r);
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::Refusal;

    fn names(r: &Reply) -> Vec<&str> {
        r.headers.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn off_by_default_specific_when_listed() {
        let off = Cors::new(&[]);
        assert!(!off.enabled());
        assert!(off.preflight(Some(b"https://a.example")).is_none());
        let on = Cors::new(&["https://a.example".to_owned()]);
        let mut r = Refusal::Expired.reply();
        on.decorate(Some(b"https://a.example"), &mut r);
        assert!(names(&r).contains(&"Access-Control-Allow-Origin"));
        let mut r = Refusal::Expired.reply();
        on.decorate(Some(b"https://evil.example"), &mut r);
        assert!(!names(&r).contains(&"Access-Control-Allow-Origin"));
        assert_eq!(
            on.preflight(Some(b"https://a.example")).map(|r| r.status),
            Some(204)
        );
    }
}
