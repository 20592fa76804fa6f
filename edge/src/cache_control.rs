//! `Cache-Control` on signed responses: the configured value, with its lifetimes lowered so no
//! cache keeps a response past the expiry of the link that fetched it.
//!
//! The value is parsed once at start. A response whose link outlives every configured lifetime
//! shares the configured text; only a link that expires sooner pays for formatting.

use std::fmt::Write;
use std::sync::Arc;

use crate::reply::Value;

/// Directives that let a cache reuse a response without asking again (RFC 9111 §5.2.2.1 and
/// §5.2.2.10); both are clamped.
const LIFETIMES: [&str; 2] = ["max-age", "s-maxage"];

/// A configured `Cache-Control` value.
#[derive(Debug, Clone)]
pub struct CacheControl {
    value: Arc<str>,
    /// Byte ranges of the lifetime numbers in `value`, with the configured seconds.
    ages: Vec<(std::ops::Range<usize>, u64)>,
    /// The longest configured lifetime: links that live at least this long share `value`.
    longest: u64,
}

impl CacheControl {
    /// Parses a configured value; `None` for an empty one (no header).
    pub fn parse(value: &str) -> Option<Self> {
        if value.trim().is_empty() {
            return None;
        }
        let mut ages = Vec::new();
        let mut start = 0;
        for directive in value.split(',') {
            if let Some(eq) = directive.find('=') {
                let (name, number) = (directive[..eq].trim(), &directive[eq + 1..]);
                let digits = number.trim();
                let known = LIFETIMES.iter().any(|l| l.eq_ignore_ascii_case(name));
                if let (true, Ok(seconds)) = (known, digits.parse::<u64>()) {
                    // The digits' place in the whole value, so the rest is kept byte for byte.
                    let at = start + eq + 1 + (number.len() - number.trim_start().len());
                    ages.push((at..at + digits.len(), seconds));
                }
            }
            start += directive.len() + 1;
        }
        let longest = ages.iter().map(|(_, s)| *s).max().unwrap_or(0);
        Some(Self {
            value: Arc::from(value),
            ages,
            longest,
        })
    }

    /// The header for a response fetched with a link valid `remaining` more seconds.
    pub fn for_link(&self, remaining: u64) -> Value {
        if remaining >= self.longest {
            return Value::Shared(self.value.clone());
        }
        let mut out = String::with_capacity(self.value.len());
        let mut copied = 0;
        for (range, seconds) in &self.ages {
            out.push_str(&self.value[copied..range.start]);
            // Writing into a String cannot fail.
            let _ = write!(out, "{}", (*seconds).min(remaining));
            copied = range.end;
        }
        out.push_str(&self.value[copied..]);
        Value::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(configured: &str, remaining: u64) -> String {
        CacheControl::parse(configured)
            .expect("non-empty")
            .for_link(remaining)
            .as_str()
            .to_owned()
    }

    #[test]
    fn lifetimes_never_outlast_the_link() {
        let media = "public, max-age=86400";
        assert_eq!(header(media, 100_000), media);
        assert_eq!(header(media, 86_400), media);
        assert_eq!(header(media, 60), "public, max-age=60");
        assert_eq!(header(media, 0), "public, max-age=0");
        assert_eq!(
            header("public, MAX-AGE = 600 ,s-maxage=3600, immutable", 700),
            "public, MAX-AGE = 600 ,s-maxage=700, immutable"
        );
        assert_eq!(header("max-age=5", 3), "max-age=3");
    }

    #[test]
    fn values_without_a_lifetime_are_kept() {
        assert_eq!(header("no-store", 1), "no-store");
        assert_eq!(header("public, max-age=abc", 1), "public, max-age=abc");
        assert!(CacheControl::parse(" ").is_none());
    }

    #[test]
    fn a_long_lived_link_shares_the_configured_text() {
        let cc = CacheControl::parse("public, max-age=86400").expect("non-empty");
        assert!(matches!(cc.for_link(90_000), Value::Shared(_)));
    }
}
