//! `[upstream]`: where the edge pulls what its content root does not hold yet.
//!
//! Without it the root is the content (as behind nginx). With it the root is a disk cache:
//! `kind = "s3"` pulls from a bucket (the shared `shared::objects` block, read-only
//! credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`), `kind = "http"` from a base
//! URL (another edge as a shield, or any HTTP server holding the tree).
//!
//! The section is one flat table: the edge's own keys are taken out first and the rest is the
//! store block, which refuses unknown keys itself, so a typo still fails to parse.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use shared::env::EnvSource;
use shared::objects::config::split_section;
use shared::objects::{StoreConfig, StoreSettings};

/// Where misses come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// No upstream: the root is the content. The default.
    #[default]
    None,
    /// An S3-compatible bucket.
    S3,
    /// An HTTP base URL.
    Http,
}

impl std::str::FromStr for UpstreamKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.to_ascii_lowercase().as_str() {
            "s3" => Ok(Self::S3),
            "http" => Ok(Self::Http),
            "none" => Ok(Self::None),
            _ => Err(()),
        }
    }
}

/// The `[upstream]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// `s3`, `http`, or `none` (default).
    pub kind: UpstreamKind,
    /// `kind = "http"`: base URL the path under the prefix is appended to, with the request's
    /// query (so another edge verifies the same signature), e.g. `http://shield:8080/hls/`.
    pub url: String,
    /// Disk cache budget in bytes; least recently used files go first. Default 10 GiB.
    pub cache_max_bytes: u64,
    /// Seconds a pulled playlist is served before it is fetched again, and an object the
    /// upstream does not have is answered 404 from memory. Default 2, at most a day. Segments
    /// are immutable: cached until evicted.
    pub playlist_ttl_secs: u64,
    /// Seconds a request waits for another request's fill of the same object to start
    /// answering before it fetches the object itself, uncached. Default 5.
    pub lock_timeout_secs: u64,
    /// `kind = "s3"`: the bucket (the shared store block: bucket, prefix, endpoint, region,
    /// allow_http, virtual_hosted_style). Its `connect_timeout_secs`, `timeout_secs`,
    /// `max_retries` and `retry_timeout_secs` apply to `http` too.
    pub store: StoreConfig,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            kind: UpstreamKind::None,
            url: String::new(),
            cache_max_bytes: 10 << 30,
            playlist_ttl_secs: 2,
            lock_timeout_secs: 5,
            store: StoreConfig::default(),
        }
    }
}

/// The edge's own keys of the section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    kind: Option<UpstreamKind>,
    url: Option<String>,
    cache_max_bytes: Option<u64>,
    playlist_ttl_secs: Option<u64>,
    lock_timeout_secs: Option<u64>,
}

const OWN_KEYS: [&str; 5] = [
    "kind",
    "url",
    "cache_max_bytes",
    "playlist_ttl_secs",
    "lock_timeout_secs",
];

impl<'de> Deserialize<'de> for UpstreamConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = toml::Table::deserialize(d)?;
        let (own, store): (Own, StoreConfig) =
            split_section(table, &OWN_KEYS).map_err(D::Error::custom)?;
        let d = Self::default();
        Ok(Self {
            kind: own.kind.unwrap_or(d.kind),
            url: own.url.unwrap_or(d.url),
            cache_max_bytes: own.cache_max_bytes.unwrap_or(d.cache_max_bytes),
            playlist_ttl_secs: own.playlist_ttl_secs.unwrap_or(d.playlist_ttl_secs),
            lock_timeout_secs: own.lock_timeout_secs.unwrap_or(d.lock_timeout_secs),
            store,
        })
    }
}

/// Validated `[upstream]`.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub source: SourceSettings,
    pub cache_max_bytes: u64,
    pub playlist_ttl: Duration,
    pub lock_timeout: Duration,
}

/// Where misses come from, validated.
#[derive(Debug, Clone)]
pub enum SourceSettings {
    S3(StoreSettings),
    Http {
        /// Ends with `/`.
        url: String,
        connect_timeout: Duration,
        timeout: Duration,
    },
}

impl SourceSettings {
    /// How long the edge waits for an answer, and then for each chunk of its body.
    pub fn timeout(&self) -> Duration {
        match self {
            Self::S3(s) => s.timeout,
            Self::Http { timeout, .. } => *timeout,
        }
    }

    /// For logs: the bucket or the URL, never a credential.
    pub fn describe(&self) -> String {
        match self {
            Self::S3(s) => s.describe(),
            Self::Http { url, .. } => url.clone(),
        }
    }
}

/// The longest `playlist_ttl_secs`: a playlist or a 404 older than a day is not worth serving
/// from memory, and the cache refuses lifetimes of centuries.
const MAX_PLAYLIST_TTL_SECS: u64 = 86_400;

/// Whether an http(s) URL names a user (and password) before its host, as the client that
/// will send it reads the URL.
fn url_has_credentials(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

impl UpstreamConfig {
    /// `EDGE_UPSTREAM_KIND`, `EDGE_UPSTREAM_URL`, `EDGE_UPSTREAM_CACHE_MAX_BYTES`, and for an
    /// `s3` upstream the store's `S3_*` / `AWS_*` variables.
    pub fn apply_env(&mut self, env: &dyn EnvSource, problems: &mut Vec<String>) {
        let kinds = "s3, http or none";
        super::env::parse(env, "EDGE_UPSTREAM_KIND", kinds, &mut self.kind, problems);
        if let Some(v) = env.get("EDGE_UPSTREAM_URL") {
            self.url = v;
        }
        let bytes = "a whole number of bytes";
        let max = &mut self.cache_max_bytes;
        super::env::parse(env, "EDGE_UPSTREAM_CACHE_MAX_BYTES", bytes, max, problems);
        // Only an s3 upstream reads them: an edge without one ignores a shared environment.
        if self.kind == UpstreamKind::S3 {
            self.store.apply_env(env);
        }
    }

    /// Checks the section; `None` when there is no upstream or it has problems.
    pub fn validate(&self, errors: &mut Vec<String>) -> Option<UpstreamSettings> {
        let before = errors.len();
        let store = &self.store;
        let source = match self.kind {
            UpstreamKind::None => {
                if !self.url.is_empty() || store.names_a_bucket() {
                    errors.push(
                        "upstream: url or bucket is set but upstream.kind is not (s3 or http)"
                            .into(),
                    );
                }
                return None;
            }
            UpstreamKind::S3 => {
                if !self.url.is_empty() {
                    errors.push("upstream.url is for kind = \"http\", not \"s3\"".into());
                }
                store.validate("upstream", errors).map(SourceSettings::S3)
            }
            UpstreamKind::Http => {
                if store.names_a_bucket() {
                    errors.push(
                        "upstream: bucket, prefix and endpoint are for kind = \"s3\", not \"http\""
                            .into(),
                    );
                }
                let url = self.url.trim();
                let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                if !scheme_ok || url.contains(['?', '#']) || url.contains(char::is_whitespace) {
                    errors.push(format!(
                        "upstream.url (EDGE_UPSTREAM_URL): {url:?} is not an http(s):// base URL \
                         without query, like http://shield:8080/hls/"
                    ));
                } else if url_has_credentials(url) {
                    // It is logged and shown by `edge check`; the upstream edge verifies the
                    // viewers' signatures, forwarded with each request, and needs no more.
                    errors.push(
                        "upstream.url (EDGE_UPSTREAM_URL) must not carry a user or password: \
                         the upstream is asked with the viewer's signed query"
                            .into(),
                    );
                }
                if store.connect_timeout_secs == 0 || store.timeout_secs == 0 {
                    errors.push(
                        "upstream.connect_timeout_secs and upstream.timeout_secs must be greater \
                         than 0"
                            .into(),
                    );
                }
                let url = match url.ends_with('/') {
                    true => url.to_owned(),
                    false => format!("{url}/"),
                };
                Some(SourceSettings::Http {
                    url,
                    connect_timeout: Duration::from_secs(store.connect_timeout_secs),
                    timeout: Duration::from_secs(store.timeout_secs),
                })
            }
        };
        if self.cache_max_bytes == 0 {
            errors.push("upstream.cache_max_bytes must be greater than 0".into());
        }
        if self.playlist_ttl_secs > MAX_PLAYLIST_TTL_SECS {
            errors.push(format!(
                "upstream.playlist_ttl_secs must be at most {MAX_PLAYLIST_TTL_SECS} (a day)"
            ));
        }
        if self.lock_timeout_secs == 0 {
            errors.push("upstream.lock_timeout_secs must be greater than 0".into());
        }
        if errors.len() > before {
            return None;
        }
        Some(UpstreamSettings {
            source: source?,
            cache_max_bytes: self.cache_max_bytes,
            playlist_ttl: Duration::from_secs(self.playlist_ttl_secs),
            lock_timeout: Duration::from_secs(self.lock_timeout_secs),
        })
    }
}
