//! `[webhooks]`: where ready/failed events are POSTed and how hard the origin tries. Checked
//! together with the rest of the configuration, every problem reported at once.

use std::time::Duration;

use ring::hmac;
use serde::Deserialize;
use shared::secret::{self, SecretString, Strength, Verdict};

use super::delivery::Backoff;
pub use crate::http_client::Target;

/// The most attempts per event: the whole of them bound how long an undelivered event is
/// held by the process delivering it.
pub const MAX_ATTEMPTS: u32 = 1000;

/// `[webhooks]`. Off unless `url` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Receiver of the events: `http://` or `https://` (verified against the Mozilla roots
    /// compiled in). Empty: no webhooks (the default). Env: ORIGIN_WEBHOOK_URL.
    pub url: String,
    /// HMAC-SHA256 key, at least 16 bytes. Only from the environment (`WEBHOOK_SECRET`) so it
    /// never sits in a file that is committed or shared; a `secret` key in the file is refused.
    #[serde(skip)]
    pub secret: SecretString,
    /// Seconds to open the connection (TCP and, for https, TLS). Default 5.
    pub connect_timeout_secs: u64,
    /// Seconds one attempt may take as a whole: connect, send, response head. Default 10.
    pub timeout_secs: u64,
    /// Attempts per event (the first included) before it is given up, 1 to 1000. Default 8.
    pub max_attempts: u32,
    /// Wait before the first retry, milliseconds; doubled for each retry. Default 1000.
    pub backoff_initial_ms: u64,
    /// Longest wait between two attempts, milliseconds. Default 60000.
    pub backoff_max_ms: u64,
    /// Events waiting for a delivery slot at most; more are dropped (logged and counted) so a
    /// dead receiver cannot grow memory without bound. Default 1024.
    pub queue: usize,
    /// Deliveries in progress at once (each may be waiting to retry). Default 4.
    pub concurrency: usize,
    /// Seconds a stopping process still gives deliveries in progress (their retries
    /// included) before it abandons them. Default 5.
    pub shutdown_grace_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: SecretString::default(),
            connect_timeout_secs: 5,
            timeout_secs: 10,
            max_attempts: 8,
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            queue: 1024,
            concurrency: 4,
            shutdown_grace_secs: 5,
        }
    }
}

/// Validated webhook settings (present only when webhooks are on).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub target: Target,
    /// HMAC-SHA256 key of `WEBHOOK_SECRET` (its `Debug` shows only the algorithm).
    pub key: hmac::Key,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub backoff: Backoff,
    pub queue: usize,
    pub concurrency: usize,
    pub shutdown_grace: Duration,
}

impl WebhooksConfig {
    /// `ORIGIN_WEBHOOK_URL`, `WEBHOOK_SECRET`.
    pub fn apply_env(&mut self, env: &dyn shared::env::EnvSource) {
        if let Some(url) = env.get("ORIGIN_WEBHOOK_URL") {
            self.url = url;
        }
        if let Some(secret) = env.get("WEBHOOK_SECRET") {
            self.secret = SecretString::new(secret);
        }
    }

    /// `None` when webhooks are off or something is wrong (then `errors` says what).
    pub fn validate(&self, errors: &mut Vec<String>) -> Option<WebhookSettings> {
        if self.url.is_empty() {
            return None;
        }
        let before = errors.len();
        let target = Target::parse(&self.url)
            .map_err(|e| errors.push(format!("webhooks.url: {e}")))
            .ok();
        if self.secret.is_empty() {
            errors.push("WEBHOOK_SECRET must be set when webhooks.url is set".into());
        } else if let Verdict::Refused(why) =
            secret::check("WEBHOOK_SECRET", self.secret.expose(), Strength::Required)
        {
            errors.push(why);
        }
        if self.connect_timeout_secs == 0 || self.timeout_secs == 0 {
            errors.push("webhooks.connect_timeout_secs and timeout_secs must be at least 1".into());
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            errors.push(format!(
                "webhooks.max_attempts must be between 1 and {MAX_ATTEMPTS}"
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_initial_ms > self.backoff_max_ms {
            errors.push("webhooks.backoff_initial_ms must be between 1 and backoff_max_ms".into());
        }
        if self.queue == 0 || self.concurrency == 0 {
            errors.push("webhooks.queue and webhooks.concurrency must be at least 1".into());
        }
        let target = target.filter(|_| errors.len() == before)?;
        Some(WebhookSettings {
            target,
            key: hmac::Key::new(hmac::HMAC_SHA256, self.secret.expose().as_bytes()),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            timeout: Duration::from_secs(self.timeout_secs),
            backoff: Backoff {
                initial: Duration::from_millis(self.backoff_initial_ms),
                max: Duration::from_millis(self.backoff_max_ms),
                max_attempts: self.max_attempts,
            },
            queue: self.queue,
            concurrency: self.concurrency,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }
}

impl WebhookSettings {
    /// The longest one delivery can take: every attempt at its time limit (connecting
    /// included) and every wait between two attempts.
    pub fn delivery_window(&self) -> Duration {
        let attempts = self.backoff.max_attempts.max(1);
        let waits = (1..attempts)
            .map(|a| self.backoff.delay(a))
            .fold(Duration::ZERO, Duration::saturating_add);
        self.timeout.saturating_mul(attempts).saturating_add(waits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn attempts_are_bounded_and_the_window_never_overflows() {
        let mut errors = Vec::new();
        let mut c = enabled("http://hooks.example.com/");
        c.max_attempts = MAX_ATTEMPTS + 1;
        assert!(c.validate(&mut errors).is_none());
        assert!(errors[0].contains("between 1 and 1000"), "{errors:?}");
        c.max_attempts = MAX_ATTEMPTS;
        c.timeout_secs = u64::MAX;
        c.backoff_initial_ms = u64::MAX;
        c.backoff_max_ms = u64::MAX;
        let s = c.validate(&mut Vec::new()).expect("valid");
        assert_eq!(s.delivery_window(), Duration::MAX);
    }

    #[test]
    fn a_delivery_window_spans_every_attempt_and_wait() {
        let mut errors = Vec::new();
        let s = enabled("http://hooks.example.com/").validate(&mut errors);
        let s = s.expect("valid");
        // 8 attempts of 10 s, and waits of 1, 2, 4, 8, 16, 32 and 60 s.
        assert_eq!(s.delivery_window(), Duration::from_secs(8 * 10 + 123));
    }

    fn enabled(url: &str) -> WebhooksConfig {
        let mut c = WebhooksConfig::default();
        let env: HashMap<&str, &str> = HashMap::from([
            ("ORIGIN_WEBHOOK_URL", url),
            ("WEBHOOK_SECRET", "0123456789abcdef"),
        ]);
        c.apply_env(&env);
        c
    }

    #[test]
    fn off_by_default() {
        let mut errors = Vec::new();
        assert!(WebhooksConfig::default().validate(&mut errors).is_none());
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn url_and_secret_from_the_environment() {
        let mut errors = Vec::new();
        let s = enabled("http://hooks.example.com:8080/in?source=origin")
            .validate(&mut errors)
            .expect("valid");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            s.target,
            Target {
                https: false,
                host: "hooks.example.com".into(),
                port: 8080,
                authority: "hooks.example.com:8080".into(),
                path: "/in?source=origin".into(),
            }
        );
        assert_eq!(s.backoff.max_attempts, 8);
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        assert!(!format!("{:?}", enabled("http://a")).contains("0123456789abcdef"));
    }

    #[test]
    fn default_ports_and_ipv6() {
        let t = Target::parse("https://[::1]").expect("valid");
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.path.as_str()),
            (true, "::1", 443, "/")
        );
        assert_eq!(Target::parse("http://h/x").expect("valid").port, 80);
    }

    #[test]
    fn every_problem_reported() {
        let mut c = WebhooksConfig {
            url: "ftp://user:pw@host/".into(),
            max_attempts: 0,
            backoff_initial_ms: 5000,
            backoff_max_ms: 1000,
            queue: 0,
            timeout_secs: 0,
            ..WebhooksConfig::default()
        };
        c.secret = SecretString::new("short");
        let mut errors = Vec::new();
        assert!(c.validate(&mut errors).is_none());
        for needle in [
            "http:// or https://",
            "WEBHOOK_SECRET",
            "timeout_secs",
            "max_attempts",
            "backoff_initial_ms",
            "queue",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:#?}"
            );
        }
        let mut errors = Vec::new();
        assert!(enabled("http://user:pw@host/")
            .validate(&mut errors)
            .is_none());
        assert!(errors[0].contains("user:password@"), "{errors:?}");
    }

    #[test]
    fn secret_is_never_read_from_the_file() {
        let parsed: Result<WebhooksConfig, _> = toml::from_str("secret = \"in-the-file-0123456\"");
        assert!(parsed.is_err(), "a secret in the file is refused");
    }
}
