//! The object-store block both services embed (`[storage]` in the origin, `[upstream]` with
//! `kind = "s3"` in the edge), its environment overrides and its validation.
//!
//! Credentials are read only from the standard AWS environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), never from a file: a file is
//! copied, committed and printed far more often than an environment is. A file that names one
//! is refused, with the variable to use instead.

use std::time::Duration;

use serde::Deserialize;

use crate::env::EnvSource;
use crate::secret::SecretString;

/// Where the objects live. Every field has a default except `bucket`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Bucket name (`S3_BUCKET`). Required.
    pub bucket: String,
    /// Key prefix every object lives under, e.g. `hls/` (`S3_PREFIX`). Default empty (the
    /// bucket's root); a trailing `/` is added when missing.
    pub prefix: String,
    /// S3 endpoint URL, e.g. `https://<account>.r2.cloudflarestorage.com` or
    /// `http://127.0.0.1:8333` (`S3_ENDPOINT`). Default empty: AWS itself.
    pub endpoint: String,
    /// Region (`S3_REGION`): `auto` for R2, anything for MinIO/SeaweedFS. Default `us-east-1`.
    pub region: String,
    /// Allows an `http://` endpoint (`S3_ALLOW_HTTP`). Default false.
    pub allow_http: bool,
    /// Virtual-hosted-style addressing (`bucket.endpoint/key`) instead of path-style
    /// (`endpoint/bucket/key`), which every S3-compatible server accepts. Default false.
    pub virtual_hosted_style: bool,
    /// Seconds to establish a connection. Default 5.
    pub connect_timeout_secs: u64,
    /// Seconds a request waits for its answer (an upload part: to be sent and answered), and
    /// then for each piece of the answer's body; a large object may take longer as a whole.
    /// Default 30.
    pub timeout_secs: u64,
    /// Retries of a failed idempotent request (connection errors, 5xx, 429). Default 2.
    pub max_retries: usize,
    /// Seconds after the first attempt past which no retry starts. Default 5.
    pub retry_timeout_secs: u64,
    /// Whether a single-part object's ETag is the MD5 of its bytes, so that every put and
    /// download is checked against it (`S3_ETAGS_ARE_MD5`). Default true: AWS with SSE-S3,
    /// R2, MinIO, SeaweedFS. Set false for AWS buckets encrypting with SSE-KMS or SSE-C, whose
    /// ETags look the same but are not MD5s: sizes are checked then.
    pub etags_are_md5: bool,
    /// Refused: credentials come only from `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<SecretString>,
    /// Refused: credentials come only from `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<SecretString>,
    /// Refused: credentials come only from `AWS_SESSION_TOKEN`.
    pub session_token: Option<SecretString>,
    /// From the environment ([`StoreConfig::apply_env`]), never from the file.
    #[serde(skip)]
    pub credentials: Option<Credentials>,
    /// Environment overrides that did not parse, reported by `validate`.
    #[serde(skip)]
    env_problems: Vec<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            allow_http: false,
            virtual_hosted_style: false,
            connect_timeout_secs: 5,
            timeout_secs: 30,
            max_retries: 2,
            retry_timeout_secs: 5,
            etags_are_md5: true,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            credentials: None,
            env_problems: Vec::new(),
        }
    }
}

/// Splits a section that embeds the store block beside keys of its own (the edge's
/// `[upstream]`, the origin's `[storage]`): the `own` keys are taken out and deserialized as
/// `O`, the rest is the store block, which refuses unknown keys itself, so a typo still fails.
pub fn split_section<O: serde::de::DeserializeOwned>(
    mut table: toml::Table,
    own: &[&str],
) -> Result<(O, StoreConfig), toml::de::Error> {
    let mut own_table = toml::Table::new();
    for key in own {
        if let Some(v) = table.remove(*key) {
            own_table.insert((*key).to_owned(), v);
        }
    }
    let own: O = toml::Value::Table(own_table).try_into()?;
    let store: StoreConfig = toml::Value::Table(table).try_into()?;
    Ok((own, store))
}

/// An access key, from the environment. `Debug` shows neither part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

/// A validated [`StoreConfig`], ready to [`StoreSettings::connect`].
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub bucket: String,
    /// Empty or ending in `/`.
    pub prefix: String,
    /// `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub allow_http: bool,
    pub virtual_hosted_style: bool,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_retries: usize,
    pub retry_timeout: Duration,
    pub etags_are_md5: bool,
    pub credentials: Credentials,
}

impl StoreConfig {
    /// Applies `S3_BUCKET`, `S3_ENDPOINT`, `S3_REGION`, `S3_PREFIX`, `S3_ALLOW_HTTP`,
    /// `S3_ETAGS_ARE_MD5` and reads
    /// the credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    /// A value that does not parse becomes a problem [`StoreConfig::validate`] reports.
    pub fn apply_env(&mut self, env: &dyn EnvSource) {
        for (name, field) in [
            ("S3_BUCKET", &mut self.bucket),
            ("S3_ENDPOINT", &mut self.endpoint),
            ("S3_REGION", &mut self.region),
            ("S3_PREFIX", &mut self.prefix),
        ] {
            if let Some(v) = env.get(name) {
                *field = v;
            }
        }
        for (name, field) in [
            ("S3_ALLOW_HTTP", &mut self.allow_http),
            ("S3_ETAGS_ARE_MD5", &mut self.etags_are_md5),
        ] {
            if let Some(v) = env.get(name) {
                match crate::env::parse_bool(&v) {
                    Some(b) => *field = b,
                    None => self
                        .env_problems
                        .push(format!("{name}: {v:?} is not true or false")),
                }
            }
        }
        let id = env.get("AWS_ACCESS_KEY_ID");
        let secret = env.get("AWS_SECRET_ACCESS_KEY");
        match (id, secret) {
            (Some(id), Some(secret)) => {
                self.credentials = Some(Credentials {
                    access_key_id: id.into(),
                    secret_access_key: secret.into(),
                    session_token: env.get("AWS_SESSION_TOKEN").map(Into::into),
                })
            }
            (Some(_), None) => self
                .env_problems
                .push("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()),
            (None, Some(_)) => self
                .env_problems
                .push("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into()),
            (None, None) => {}
        }
    }

    /// Checks everything, adding each problem to `problems` with the field named as
    /// `<section>.<field>`; returns the settings when this block has none.
    pub fn validate(&self, section: &str, problems: &mut Vec<String>) -> Option<StoreSettings> {
        let before = problems.len();
        problems.extend(self.env_problems.iter().cloned());
        for (field, value, var) in [
            ("access_key_id", &self.access_key_id, "AWS_ACCESS_KEY_ID"),
            (
                "secret_access_key",
                &self.secret_access_key,
                "AWS_SECRET_ACCESS_KEY",
            ),
            ("session_token", &self.session_token, "AWS_SESSION_TOKEN"),
        ] {
            if value.is_some() {
                problems.push(format!(
                    "{section}.{field}: credentials are never read from a file; remove it and \
                     set {var} in the environment"
                ));
            }
        }
        if let Some(why) = bucket_problem(&self.bucket) {
            problems.push(format!("{section}.bucket (S3_BUCKET): {why}"));
        }
        if let Some(why) = prefix_problem(&self.prefix) {
            problems.push(format!("{section}.prefix (S3_PREFIX): {why}"));
        }
        let endpoint = self.endpoint.trim().trim_end_matches('/');
        if !endpoint.is_empty() {
            if endpoint.starts_with("http://") {
                if !self.allow_http {
                    problems.push(format!(
                        "{section}.endpoint (S3_ENDPOINT): {endpoint:?} is plain http; set \
                         {section}.allow_http = true (S3_ALLOW_HTTP) to allow it"
                    ));
                }
            } else if !endpoint.starts_with("https://") {
                problems.push(format!(
                    "{section}.endpoint (S3_ENDPOINT): {endpoint:?} is not an http(s):// URL"
                ));
            }
        }
        if self.region.trim().is_empty() {
            problems.push(format!(
                "{section}.region (S3_REGION) is empty (R2 uses \"auto\")"
            ));
        }
        for (field, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("timeout_secs", self.timeout_secs),
        ] {
            if v == 0 {
                problems.push(format!("{section}.{field} must be greater than 0"));
            }
        }
        if self.credentials.is_none()
            && !self
                .env_problems
                .iter()
                .any(|p| p.starts_with("AWS_ACCESS_KEY_ID") || p.starts_with("AWS_SECRET"))
        {
            problems.push(format!(
                "{section}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment \
                 (credentials are never read from a file)"
            ));
        }
        if problems.len() > before {
            return None;
        }
        Some(StoreSettings {
            bucket: self.bucket.clone(),
            prefix: normalise_prefix(&self.prefix),
            endpoint: (!endpoint.is_empty()).then(|| endpoint.to_owned()),
            region: self.region.trim().to_owned(),
            allow_http: self.allow_http,
            virtual_hosted_style: self.virtual_hosted_style,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            timeout: Duration::from_secs(self.timeout_secs),
            max_retries: self.max_retries,
            retry_timeout: Duration::from_secs(self.retry_timeout_secs),
            etags_are_md5: self.etags_are_md5,
            credentials: self.credentials.clone()?,
        })
    }

    /// Whether anything but the defaults was set (an edge with `kind = "http"` must not carry
    /// bucket settings it would ignore).
    pub fn names_a_bucket(&self) -> bool {
        !self.bucket.is_empty() || !self.endpoint.is_empty() || !self.prefix.is_empty()
    }
}

impl StoreSettings {
    /// `s3://bucket/prefix at endpoint`, for logs and messages.
    pub fn describe(&self) -> String {
        let at = self.endpoint.as_deref().unwrap_or("AWS");
        format!("s3://{}/{} at {at}", self.bucket, self.prefix)
    }
}

/// S3's bucket naming rules (3-63 of `a-z 0-9 . -`, starting and ending alphanumeric), which
/// R2, MinIO and SeaweedFS share.
fn bucket_problem(bucket: &str) -> Option<&'static str> {
    if bucket.is_empty() {
        return Some("is required");
    }
    let ok_chars = bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let edges = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !ok_chars
        || !edges(bucket.bytes().next())
        || !edges(bucket.bytes().last())
    {
        return Some(
            "must be 3-63 characters of a-z 0-9 . - starting and ending with a letter or digit",
        );
    }
    None
}

fn prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.starts_with('/') {
        return Some("must not start with '/'");
    }
    let trimmed = prefix.trim_end_matches('/');
    if !trimmed.is_empty()
        && trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some("must not hold empty, '.' or '..' segments");
    }
    if prefix.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Some("must not hold control characters");
    }
    None
}

/// Empty, or ending in exactly one `/`.
pub(crate) fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/').trim_end_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}
