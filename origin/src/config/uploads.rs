//! `[uploads]`: guards on the upload path itself, before any media is looked at.

use std::time::Duration;

use serde::Deserialize;

/// The longest silence a request body may be allowed: an hour.
const MAX_BODY_TIMEOUT_SECS: u64 = 3600;

/// `[uploads]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadLimits {
    /// Free bytes the data filesystem must keep: an upload that would leave less is refused
    /// with 507 (checked against its declared length, and again while it streams). Default
    /// 1073741824 (1 GiB).
    pub min_free_bytes: u64,
    /// Uploads one user may have in progress at once; more are refused with 429. Default 2.
    pub max_concurrent_per_user: usize,
    /// Longest title, bytes (query `title=` or the multipart field); longer is refused with
    /// 400, without reading the rest. Default 256.
    pub max_title_bytes: usize,
    /// Seconds a request body (an upload, a subtitle file, between multipart fields) may send
    /// nothing before the request is answered 408 and abandoned (an upload's partial file
    /// removed), 1-3600. Default 60.
    pub body_timeout_secs: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            min_free_bytes: 1 << 30,
            max_concurrent_per_user: 2,
            max_title_bytes: 256,
            body_timeout_secs: 60,
        }
    }
}

impl UploadLimits {
    /// Problems with the values themselves.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_concurrent_per_user == 0 {
            out.push("uploads.max_concurrent_per_user must be at least 1".into());
        }
        if self.max_title_bytes == 0 || self.max_title_bytes > 4096 {
            out.push("uploads.max_title_bytes must be 1-4096".into());
        }
        if !(1..=MAX_BODY_TIMEOUT_SECS).contains(&self.body_timeout_secs) {
            out.push(format!(
                "uploads.body_timeout_secs must be 1-{MAX_BODY_TIMEOUT_SECS}"
            ));
        }
        out
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::UploadLimits;

    #[test]
    fn the_body_timeout_is_bounded_both_ways() {
        for (secs, ok) in [
            (0, false),
            (1, true),
            (3600, true),
            (3601, false),
            (u64::MAX, false),
        ] {
            let limits = UploadLimits {
                body_timeout_secs: secs,
                ..UploadLimits::default()
            };
            assert_eq!(
                limits.problems().is_empty(),
                ok,
                "{secs}: {:?}",
                limits.problems()
            );
        }
    }
}
