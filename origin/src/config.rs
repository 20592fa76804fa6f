//! Origin configuration: TOML file < environment < flags, one [`OriginConfig::validate`] that
//! reports every problem at once (values from the environment that do not parse included).
//! Secrets come from the environment, are held as [`SecretString`] (never printed) and are
//! refused when short or a placeholder.
//!
//! # Layout
//! - [`auth`]: `[auth]`, user token verification and the playback credential key.
//! - [`uploads`]: `[uploads]`, guards on the upload path (disk floor, per-user concurrency).
//! - `[limits]` is [`MediaLimits`], the largest source accepted.

pub mod auth;
pub mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shared::env::EnvSource;
use shared::secret::{self, SecretString, Strength, Verdict};
use shared::secure_link::{Secret, SecureLink};
use shared::telemetry::LogFormat;

use crate::transcode::ladder::{default_ladder, RungSpec};
use crate::transcode::limits::MediaLimits;
use crate::webhooks::settings::{WebhookSettings, WebhooksConfig};
pub use auth::{AuthConfig, AuthSettings, JwtAlgorithm, JwtKey};
pub use uploads::UploadLimits;

/// The whole file; see `config/origin.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub playback: PlaybackConfig,
    pub transcode: TranscodeConfig,
    pub limits: MediaLimits,
    pub uploads: UploadLimits,
    pub edge: EdgeAdminConfig,
    pub migration: MigrationConfig,
    pub store: StoreConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
    /// Environment values that did not parse, reported by `validate()` with everything else.
    #[serde(skip)]
    env_errors: Vec<String>,
}

/// Where jobs live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// A file in the data directory: one machine.
    #[default]
    Embedded,
    /// Redis, shared by every `origin serve` and `origin worker`.
    Redis,
}

impl std::str::FromStr for StoreBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Self::Embedded),
            "redis" => Ok(Self::Redis),
            other => Err(format!("{other:?} is not embedded or redis")),
        }
    }
}

/// Where jobs live.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (a file in the data directory, one machine) or `redis` (shared by every
    /// `origin serve` and `origin worker`). Env: ORIGIN_STORE. Default `embedded`.
    pub backend: StoreBackend,
    /// e.g. `redis://127.0.0.1:6379/0`. Env: REDIS_URL.
    pub redis_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// API listen address. Default `0.0.0.0:8000`.
    pub listen: String,
    /// Metrics listen address (loopback by default). Default `127.0.0.1:9091`; empty disables.
    pub admin_listen: String,
    /// Data directory: `hls/` (the edge's root), `keys/`, `thumbs/`, `sources/`, `tmp/`,
    /// `store/`. Default `/data`.
    pub data_dir: PathBuf,
    /// Largest upload in bytes. Default 4 GiB.
    pub max_upload_bytes: u64,
    /// Development mode: allows deriving the signing secret from the JWT secret and minting
    /// tokens from the web page. Refused unless `listen` is a loopback address. Default false.
    pub dev: bool,
    /// Seconds to receive a complete request head once its first byte arrived. Default 10.
    pub header_timeout_secs: u64,
    /// Seconds a connection may sit idle between requests. Default 60.
    pub idle_timeout_secs: u64,
    /// Seconds a write may wait for the client to read. Default 60.
    pub send_timeout_secs: u64,
    /// API connections open at once; further ones wait in the backlog. Default 4096.
    pub max_connections: usize,
    /// Seconds in-flight requests get to finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8000".into(),
            admin_listen: "127.0.0.1:9091".into(),
            data_dir: "/data".into(),
            max_upload_bytes: 4 << 30,
            dev: false,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            send_timeout_secs: 60,
            max_connections: 4096,
            shutdown_grace_secs: 30,
        }
    }
}

/// Signed manifests for the edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaybackConfig {
    /// Where players fetch segments, e.g. `https://edge.example.com`. Required.
    pub edge_base_url: String,
    /// URL prefix the edge serves `<data>/hls` under. Default `/hls/`.
    pub edge_prefix: String,
    /// Secrets shared with the edge (first signs), at least 16 bytes each.
    /// `HLS_SIGNING_SECRET` replaces the first.
    pub signing_secrets: Vec<SecretString>,
    /// Keep a signing secret shorter than 16 bytes (an existing nginx secret that already
    /// signed the URLs in flight); logged as a warning at every start. Default false.
    /// Env: ORIGIN_ALLOW_WEAK_SECRET.
    pub allow_weak_secret: bool,
    /// Lifetime of signed segment URLs and playback credentials, seconds. Default 43200 (12 h).
    pub url_ttl_secs: u64,
    /// Expiry is rounded up to a multiple of this, so one manifest is byte-identical for
    /// everyone within the bucket (cacheable). Default 300.
    pub expiry_bucket_secs: u64,
}

impl Default for PlaybackConfig {
    fn default() -> Self {
        Self {
            edge_base_url: String::new(),
            edge_prefix: "/hls/".into(),
            signing_secrets: Vec::new(),
            allow_weak_secret: false,
            url_ttl_secs: 12 * 3600,
            expiry_bucket_secs: 300,
        }
    }
}

/// Whether to look for NVENC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NvencMode {
    /// Use NVENC when a test encode works at start.
    #[default]
    Auto,
    /// libx264 only.
    Off,
}

/// Transcoding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscodeConfig {
    /// In-process workers (jobs at once); 0 = none (API only). Default 1.
    pub workers: usize,
    /// Segment duration, seconds. Default 6.
    pub segment_secs: u32,
    /// libx264 preset. Default `veryfast`.
    pub x264_preset: String,
    /// NVENC preset. Default `p4`.
    pub nvenc_preset: String,
    /// `auto` (use NVENC when a test encode works), `off`. Default `auto`.
    pub nvenc: NvencMode,
    /// Concurrent NVENC sessions (consumer GPUs allow few). Default 3.
    pub nvenc_sessions: usize,
    /// Seconds without ffmpeg progress before it is killed. Default 120.
    pub stall_timeout_secs: u64,
    /// Attempts before a job fails for good. Default 3.
    pub max_attempts: u32,
    /// Seconds a worker's claim lasts without a heartbeat. Default 30.
    pub lease_secs: i64,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// The ladder; default 2160p..240p as in `config/origin.toml`.
    pub ladder: Vec<RungSpec>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            segment_secs: 6,
            x264_preset: "veryfast".into(),
            nvenc_preset: "p4".into(),
            nvenc: NvencMode::Auto,
            nvenc_sessions: 3,
            stall_timeout_secs: 120,
            max_attempts: 3,
            lease_secs: 30,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ladder: default_ladder(),
        }
    }
}

/// The edge's admin listener, for cache purges on delete.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeAdminConfig {
    /// e.g. `http://127.0.0.1:9090`, or several separated by commas (every edge is purged);
    /// empty: no purge (the edge revalidates files anyway).
    pub admin_url: String,
    /// Bearer token, at least 16 bytes (`EDGE_PURGE_TOKEN`).
    pub purge_token: SecretString,
}

/// Importing existing files (seed 001's migration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationConfig {
    /// Directory of MP4/MOV/MKV files to import; empty disables migration.
    pub import_dir: PathBuf,
    /// Owner (user id) of imported videos. Default `admin`.
    pub owner: String,
    /// Queue processing at import time (`true`) or on first play (`false`). Default true.
    pub process_now: bool,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            import_dir: PathBuf::new(),
            owner: "admin".into(),
            process_now: true,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Every problem found, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// The API listener's connection handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub dev: bool,
    pub http: HttpSettings,
    pub auth: AuthSettings,
    pub token_ttl: Duration,
    pub edge_base_url: String,
    pub edge_prefix: String,
    pub link: SecureLink,
    pub url_ttl_secs: i64,
    pub expiry_bucket_secs: i64,
    pub transcode: TranscodeConfig,
    pub limits: MediaLimits,
    pub uploads: UploadLimits,
    /// Every edge's admin URL (purges go to all of them).
    pub edge_admin_urls: Vec<String>,
    pub edge_purge_token: Option<SecretString>,
    pub migration: MigrationConfig,
    /// `Some(url)` when jobs live in Redis.
    pub redis_url: Option<String>,
    /// `Some` when ready/failed events are POSTed somewhere.
    pub webhooks: Option<WebhookSettings>,
    pub log_format: LogFormat,
}

impl OriginConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))
    }

    /// `ORIGIN_*`, `JWT_SECRET`, `PLAYBACK_SECRET`, `HLS_SIGNING_SECRET`, `EDGE_PURGE_TOKEN`,
    /// `WEBHOOK_SECRET`, `REDIS_URL`. A value that does not parse is kept for `validate()`.
    pub fn apply_env(&mut self, env: &dyn EnvSource) {
        let set = |t: &mut String, name: &str| {
            if let Some(v) = env.get(name) {
                *t = v;
            }
        };
        set(&mut self.server.listen, "ORIGIN_LISTEN");
        set(&mut self.server.admin_listen, "ORIGIN_ADMIN_LISTEN");
        set(&mut self.playback.edge_base_url, "ORIGIN_EDGE_BASE_URL");
        set(&mut self.edge.admin_url, "ORIGIN_EDGE_ADMIN_URL");
        self.auth.apply_env(env);
        if let Some(v) = env.get("EDGE_PURGE_TOKEN") {
            self.edge.purge_token = v.into();
        }
        let mut errors = Vec::new();
        let mut parse = |name: &str, apply: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(v) = env.get(name) {
                if let Err(why) = apply(&v) {
                    errors.push(format!("{name}={v:?}: {why}"));
                }
            }
        };
        parse("ORIGIN_STORE", &mut |v| {
            self.store.backend = v.parse()?;
            Ok(())
        });
        parse("ORIGIN_DEV", &mut |v| {
            self.server.dev = parse_bool(v)?;
            Ok(())
        });
        parse("ORIGIN_ALLOW_WEAK_SECRET", &mut |v| {
            self.playback.allow_weak_secret = parse_bool(v)?;
            Ok(())
        });
        self.env_errors = errors;
        if let Some(url) = env.get("REDIS_URL") {
            self.store.redis_url = url;
            // A Redis URL alone means: use it.
            if env.get("ORIGIN_STORE").is_none() {
                self.store.backend = StoreBackend::Redis;
            }
        }
        if let Some(v) = env.get("ORIGIN_DATA_DIR") {
            self.server.data_dir = v.into();
        }
        self.webhooks.apply_env(env);
        if let Some(secret) = env.get("HLS_SIGNING_SECRET") {
            match self.playback.signing_secrets.first_mut() {
                Some(first) => *first = secret.into(),
                None => self.playback.signing_secrets.push(secret.into()),
            }
        }
    }

    /// Checks everything; returns parsed settings or all problems.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let mut errors = self.env_errors.clone();
        let listen: Option<SocketAddr> = self
            .server
            .listen
            .parse()
            .map_err(|_| {
                errors.push(format!(
                    "server.listen: {:?} is not an address",
                    self.server.listen
                ))
            })
            .ok();
        let admin_listen = if self.server.admin_listen.is_empty() {
            None
        } else {
            self.server
                .admin_listen
                .parse()
                .map_err(|_| {
                    errors.push(format!(
                        "server.admin_listen: {:?} is not an address",
                        self.server.admin_listen
                    ))
                })
                .ok()
        };
        if self.server.dev && listen.is_some_and(|l| !l.ip().is_loopback()) {
            errors.push(format!(
                "server.dev (--dev) mints tokens for anyone who asks: it is refused unless \
                 server.listen is a loopback address (got {})",
                self.server.listen
            ));
        }
        let http = self.http_settings(&mut errors);
        let p = &self.playback;
        if !(p.edge_base_url.starts_with("http://") || p.edge_base_url.starts_with("https://")) {
            errors.push("playback.edge_base_url must be an http(s) URL (ORIGIN_EDGE_BASE_URL or --edge-base-url)".into());
        }
        if !p.edge_prefix.starts_with('/') || !p.edge_prefix.ends_with('/') {
            errors.push("playback.edge_prefix must start and end with '/'".into());
        }
        let mut secrets: Vec<String> = p
            .signing_secrets
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.expose().to_owned())
            .collect();
        if secrets.is_empty() {
            match (self.auth.algorithm, self.server.dev, self.auth.jwt_secret.is_empty()) {
                (JwtAlgorithm::HS256, true, false) => {
                    // Seed 001 derives the signing secret from the app secret; only acceptable
                    // in development, where it is announced.
                    tracing::warn!("development mode: deriving the HLS signing secret from JWT_SECRET");
                    secrets.push(derive_signing_secret(self.auth.jwt_secret.expose().as_bytes()));
                }
                _ => errors.push("HLS_SIGNING_SECRET is not set (it is derived from JWT_SECRET only in dev mode)".into()),
            }
        }
        check_signing_secrets(&secrets, p.allow_weak_secret, &mut errors);
        let link = SecureLink::new(secrets.iter().map(|s| Secret::new(s.as_bytes())).collect())
            .map_err(|e| errors.push(format!("playback.signing_secrets: {e}")))
            .ok();
        let signing: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let auth = self.auth.validate(&signing, &mut errors);
        let purge = &self.edge.purge_token;
        if !purge.is_empty() {
            if let Verdict::Refused(why) =
                secret::check("EDGE_PURGE_TOKEN", purge.expose(), Strength::Required)
            {
                errors.push(why);
            }
        }
        if p.url_ttl_secs < 10 {
            errors.push("playback.url_ttl_secs must be at least 10".into());
        }
        if p.expiry_bucket_secs == 0 || p.expiry_bucket_secs > p.url_ttl_secs {
            errors.push("playback.expiry_bucket_secs must be between 1 and url_ttl_secs".into());
        }
        let t = &self.transcode;
        if t.segment_secs == 0 || t.segment_secs > 60 {
            errors.push("transcode.segment_secs must be 1-60".into());
        }
        if t.ladder.is_empty() {
            errors.push("transcode.ladder must have at least one rung".into());
        }
        if t.lease_secs < 3 {
            errors.push("transcode.lease_secs must be at least 3".into());
        }
        if t.max_attempts == 0 {
            errors.push("transcode.max_attempts must be at least 1".into());
        }
        errors.extend(self.limits.problems());
        errors.extend(self.uploads.problems());
        let redis_url = match self.store.backend {
            StoreBackend::Embedded => None,
            StoreBackend::Redis => {
                let url = &self.store.redis_url;
                if !url.starts_with("redis://") {
                    errors.push("store.redis_url must be a redis:// URL when store.backend = \"redis\" (REDIS_URL)".into());
                }
                Some(url.clone())
            }
        };
        let webhooks = self.webhooks.validate(&mut errors);
        let (Some(listen), Some(auth), Some(link), true) = (listen, auth, link, errors.is_empty())
        else {
            return Err(ConfigError(errors));
        };
        let migration = self.migration.clone();
        Ok(Settings {
            listen,
            admin_listen,
            data_dir: self.server.data_dir.clone(),
            max_upload_bytes: self.server.max_upload_bytes,
            dev: self.server.dev,
            http,
            auth,
            token_ttl: Duration::from_secs(self.auth.token_ttl_secs),
            edge_base_url: p.edge_base_url.trim_end_matches('/').to_owned(),
            edge_prefix: p.edge_prefix.clone(),
            link,
            url_ttl_secs: p.url_ttl_secs as i64,
            expiry_bucket_secs: p.expiry_bucket_secs as i64,
            transcode: self.transcode.clone(),
            limits: self.limits.clone(),
            uploads: self.uploads.clone(),
            edge_admin_urls: self
                .edge
                .admin_url
                .split([',', ' '])
                .filter(|u| !u.is_empty())
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            edge_purge_token: (!purge.is_empty()).then(|| purge.clone()),
            migration,
            redis_url,
            webhooks,
            log_format: self.log.format,
        })
    }

    fn http_settings(&self, errors: &mut Vec<String>) -> HttpSettings {
        let s = &self.server;
        for (field, v) in [
            ("server.header_timeout_secs", s.header_timeout_secs),
            ("server.idle_timeout_secs", s.idle_timeout_secs),
            ("server.send_timeout_secs", s.send_timeout_secs),
            ("server.max_connections", s.max_connections as u64),
        ] {
            if v == 0 {
                errors.push(format!("{field} must be greater than 0"));
            }
        }
        HttpSettings {
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            send_timeout: Duration::from_secs(s.send_timeout_secs),
            max_connections: s.max_connections,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
        }
    }
}

/// Every signing secret must be strong, unless the operator keeps an existing weak one on
/// purpose (`allow_weak_secret`), which is announced at every start.
fn check_signing_secrets(secrets: &[String], allow_weak: bool, errors: &mut Vec<String>) {
    let strength = if allow_weak {
        Strength::WeakAllowed
    } else {
        Strength::Required
    };
    for value in secrets {
        match secret::check("HLS_SIGNING_SECRET", value, strength) {
            Verdict::Strong => {}
            Verdict::WeakAllowed(warning) => tracing::warn!("{warning}"),
            Verdict::Refused(why) => errors.push(why),
        }
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected 1/true/yes or 0/false/no".into()),
    }
}

/// Development-only derivation of the HLS signing secret (seed 001).
fn derive_signing_secret(jwt_secret: &[u8]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(b"hls-signing:");
    h.update(jwt_secret);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Settings {
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.transcode.stall_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const JWT: &str = "0123456789abcdef0123";
    const EDGE: &str = "edge-secret-0123456789";

    fn base() -> OriginConfig {
        let mut c = OriginConfig::default();
        c.server.listen = "127.0.0.1:0".into();
        c.playback.edge_base_url = "http://127.0.0.1:8080".into();
        c
    }

    fn with_env(pairs: &[(&str, &str)]) -> OriginConfig {
        let mut c = base();
        c.apply_env(&pairs.iter().copied().collect::<HashMap<&str, &str>>());
        c
    }

    #[test]
    fn no_default_secrets_and_every_problem_reported() {
        let mut c = OriginConfig::default();
        c.server.listen = "nope".into();
        let errors = c.validate().expect_err("invalid").0;
        assert!(
            errors.iter().any(|e| e.contains("JWT_SECRET")),
            "{errors:#?}"
        );
        assert!(errors.iter().any(|e| e.contains("server.listen")));
        assert!(errors.iter().any(|e| e.contains("edge_base_url")));
        assert!(errors.iter().any(|e| e.contains("HLS_SIGNING_SECRET")));
    }

    #[test]
    fn signing_secret_derived_only_in_dev_mode() {
        let mut c = with_env(&[("JWT_SECRET", JWT)]);
        assert!(c.validate().is_err(), "production refuses to derive");
        c.server.dev = true;
        let s = c.validate().expect("dev derives");
        assert!(s.dev);
        let s = with_env(&[("JWT_SECRET", JWT), ("HLS_SIGNING_SECRET", EDGE)])
            .validate()
            .expect("valid");
        assert_eq!(
            s.link.sign("/hls/a", 10, ""),
            SecureLink::new(vec![Secret::new(EDGE)])
                .expect("link")
                .sign("/hls/a", 10, "")
        );
    }

    #[test]
    fn dev_mode_only_on_loopback() {
        let mut c = with_env(&[("JWT_SECRET", JWT), ("HLS_SIGNING_SECRET", EDGE)]);
        c.server.dev = true;
        c.server.listen = "0.0.0.0:8000".into();
        let errors = c.validate().expect_err("refused").0;
        assert!(errors[0].contains("loopback"), "{errors:?}");
        c.server.listen = "[::1]:8000".into();
        c.validate().expect("loopback is fine");
    }

    #[test]
    fn weak_signing_secret_only_when_allowed() {
        let c = with_env(&[("JWT_SECRET", JWT), ("HLS_SIGNING_SECRET", "nginx-secret")]);
        let errors = c.validate().expect_err("weak").0;
        assert!(
            errors[0].contains("HLS_SIGNING_SECRET is 12 bytes"),
            "{errors:?}"
        );
        let c = with_env(&[
            ("JWT_SECRET", JWT),
            ("HLS_SIGNING_SECRET", "nginx-secret"),
            ("ORIGIN_ALLOW_WEAK_SECRET", "true"),
        ]);
        c.validate().expect("kept on purpose");
        let c = with_env(&[
            ("JWT_SECRET", JWT),
            ("HLS_SIGNING_SECRET", "CHANGE-ME"),
            ("ORIGIN_ALLOW_WEAK_SECRET", "1"),
        ]);
        assert!(c.validate().is_err(), "a placeholder never");
    }

    #[test]
    fn env_values_that_do_not_parse_are_problems() {
        let c = with_env(&[
            ("JWT_SECRET", JWT),
            ("HLS_SIGNING_SECRET", EDGE),
            ("ORIGIN_STORE", "postgres"),
            ("ORIGIN_DEV", "maybe"),
        ]);
        let errors = c.validate().expect_err("invalid").0;
        assert!(
            errors.iter().any(|e| e.starts_with("ORIGIN_STORE=")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("ORIGIN_DEV=")),
            "{errors:?}"
        );
    }

    #[test]
    fn secrets_never_in_debug_output() {
        let c = with_env(&[
            ("JWT_SECRET", JWT),
            ("HLS_SIGNING_SECRET", EDGE),
            ("EDGE_PURGE_TOKEN", "purge-token-0123456789"),
            ("PLAYBACK_SECRET", "playback-secret-0123456789"),
        ]);
        let s = c.validate().expect("valid");
        for shown in [format!("{c:?}"), format!("{s:?}")] {
            for secret in [JWT, EDGE, "purge-token", "playback-secret"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }

    #[test]
    fn example_config_is_valid() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/origin.toml"
        ))
        .expect("exists");
        let mut c = OriginConfig::from_toml(&text).expect("parses");
        c.auth.jwt_secret = JWT.into();
        c.playback.signing_secrets = vec![EDGE.into()];
        c.playback.edge_base_url = "https://edge.example.com".into();
        c.validate().expect("valid with secrets and the edge URL");
    }

    #[test]
    fn webhook_problems_join_the_others() {
        let mut c = OriginConfig::from_toml("[webhooks]\nurl = \"http://hooks.local/in\"\n")
            .expect("parses");
        c.server.listen = "nope".into();
        let errors = c.validate().expect_err("invalid").0;
        assert!(
            errors.iter().any(|e| e.contains("WEBHOOK_SECRET")),
            "{errors:#?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("server.listen")),
            "{errors:#?}"
        );
        let c = with_env(&[
            ("JWT_SECRET", JWT),
            ("HLS_SIGNING_SECRET", EDGE),
            ("ORIGIN_WEBHOOK_URL", "https://hooks.example.com/video"),
            ("WEBHOOK_SECRET", "whsec-0123456789abcdef"),
        ]);
        let s = c.validate().expect("valid");
        let w = s.webhooks.expect("enabled");
        assert_eq!(
            (w.target.host.as_str(), w.target.port),
            ("hooks.example.com", 443)
        );
        assert!(base().webhooks.url.is_empty(), "off by default");
    }
}
