//! Origin configuration: TOML file < environment < flags, one [`OriginConfig::validate`] that
//! reports every problem at once. Secrets come from the environment and are never logged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shared::env::EnvSource;
use shared::secure_link::{Secret, SecureLink};
use shared::telemetry::LogFormat;

use crate::transcode::ladder::{default_ladder, RungSpec};
use crate::webhooks::settings::{WebhookSettings, WebhooksConfig};

/// The whole file; see `config/origin.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginConfig {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub playback: PlaybackConfig,
    pub transcode: TranscodeConfig,
    pub edge: EdgeAdminConfig,
    pub migration: MigrationConfig,
    pub store: StoreConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
}

/// Where jobs live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (a file in the data directory, one machine) or `redis` (shared by every
    /// `origin serve` and `origin worker`). Env: ORIGIN_STORE. Default `embedded`.
    pub backend: String,
    /// e.g. `redis://127.0.0.1:6379/0`. Env: REDIS_URL.
    pub redis_url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: "embedded".into(),
            redis_url: String::new(),
        }
    }
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
    /// tokens from the web page. Never in production. Default false.
    pub dev: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8000".into(),
            admin_listen: "127.0.0.1:9091".into(),
            data_dir: "/data".into(),
            max_upload_bytes: 4 << 30,
            dev: false,
        }
    }
}

/// JWT verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `HS256` (shared secret, default), `RS256` or `ES256` (public key of an identity provider).
    pub algorithm: String,
    /// HS256 secret. No default: set `JWT_SECRET`.
    pub jwt_secret: String,
    /// PEM public key for RS256/ES256.
    pub public_key_file: PathBuf,
    /// Lifetime of tokens minted by `origin token`, seconds. Default 3600.
    pub token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: "HS256".into(),
            jwt_secret: String::new(),
            public_key_file: PathBuf::new(),
            token_ttl_secs: 3600,
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
    /// Secrets shared with the edge (first signs). `HLS_SIGNING_SECRET` replaces the first.
    pub signing_secrets: Vec<String>,
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
            url_ttl_secs: 12 * 3600,
            expiry_bucket_secs: 300,
        }
    }
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
    pub nvenc: String,
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
            nvenc: "auto".into(),
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
    /// Bearer token (`EDGE_PURGE_TOKEN`).
    pub purge_token: String,
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

/// JWT verification key.
#[derive(Clone)]
pub enum JwtKey {
    Hs256(Vec<u8>),
    Rs256(Vec<u8>),
    Es256(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtKey::Hs256(_) => "JwtKey::Hs256(<secret>)",
            JwtKey::Rs256(_) => "JwtKey::Rs256(<pem>)",
            JwtKey::Es256(_) => "JwtKey::Es256(<pem>)",
        })
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub max_upload_bytes: u64,
    pub dev: bool,
    pub jwt: JwtKey,
    /// Secret for playback credentials and minted tokens (HS256): the JWT secret, or for
    /// RS/ES deployments the signing secret.
    pub internal_secret: Vec<u8>,
    pub token_ttl: Duration,
    pub edge_base_url: String,
    pub edge_prefix: String,
    pub link: SecureLink,
    pub url_ttl_secs: i64,
    pub expiry_bucket_secs: i64,
    pub transcode: TranscodeConfig,
    /// Every edge's admin URL (purges go to all of them).
    pub edge_admin_urls: Vec<String>,
    pub edge_purge_token: Option<String>,
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

    /// `ORIGIN_*`, `JWT_SECRET`, `HLS_SIGNING_SECRET`, `EDGE_PURGE_TOKEN`, `WEBHOOK_SECRET`.
    pub fn apply_env(&mut self, env: &dyn EnvSource) {
        let set = |t: &mut String, name: &str| {
            if let Some(v) = env.get(name) {
                *t = v;
            }
        };
        set(&mut self.server.listen, "ORIGIN_LISTEN");
        set(&mut self.server.admin_listen, "ORIGIN_ADMIN_LISTEN");
        set(&mut self.auth.jwt_secret, "JWT_SECRET");
        set(&mut self.playback.edge_base_url, "ORIGIN_EDGE_BASE_URL");
        set(&mut self.edge.admin_url, "ORIGIN_EDGE_ADMIN_URL");
        set(&mut self.edge.purge_token, "EDGE_PURGE_TOKEN");
        set(&mut self.store.backend, "ORIGIN_STORE");
        if let Some(url) = env.get("REDIS_URL") {
            self.store.redis_url = url;
            // A Redis URL alone means: use it.
            if env.get("ORIGIN_STORE").is_none() {
                self.store.backend = "redis".into();
            }
        }
        if let Some(v) = env.get("ORIGIN_DATA_DIR") {
            self.server.data_dir = v.into();
        }
        if let Some(v) = env.get("ORIGIN_DEV") {
            self.server.dev = matches!(v.as_str(), "1" | "true" | "yes");
        }
        self.webhooks.apply_env(env);
        if let Some(secret) = env.get("HLS_SIGNING_SECRET") {
            match self.playback.signing_secrets.first_mut() {
                Some(first) => *first = secret,
                None => self.playback.signing_secrets.push(secret),
            }
        }
    }

    /// Checks everything; returns parsed settings or all problems.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let mut errors = Vec::new();
        let listen = self
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
        let jwt = self.jwt_key(&mut errors);
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
            .cloned()
            .collect();
        if secrets.is_empty() {
            match (&jwt, self.server.dev) {
                (Some(JwtKey::Hs256(k)), true) => {
                    // Seed 001 derives the signing secret from the app secret; only acceptable
                    // in development, where it is announced.
                    tracing::warn!("development mode: deriving the HLS signing secret from JWT_SECRET");
                    secrets.push(derive_signing_secret(k));
                }
                _ => errors.push("HLS_SIGNING_SECRET is not set (it is derived from JWT_SECRET only in dev mode)".into()),
            }
        }
        let link = SecureLink::new(secrets.iter().map(|s| Secret::new(s.as_bytes())).collect())
            .map_err(|e| errors.push(format!("playback.signing_secrets: {e}")))
            .ok();
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
        if !matches!(t.nvenc.as_str(), "auto" | "off") {
            errors.push("transcode.nvenc must be auto or off".into());
        }
        if t.lease_secs < 3 {
            errors.push("transcode.lease_secs must be at least 3".into());
        }
        if t.max_attempts == 0 {
            errors.push("transcode.max_attempts must be at least 1".into());
        }
        let redis_url = match self.store.backend.as_str() {
            "embedded" => None,
            "redis" => {
                let url = &self.store.redis_url;
                if !url.starts_with("redis://") {
                    errors.push("store.redis_url must be a redis:// URL when store.backend = \"redis\" (REDIS_URL)".into());
                }
                Some(url.clone())
            }
            other => {
                errors.push(format!("store.backend {other:?} is not embedded or redis"));
                None
            }
        };
        let webhooks = self.webhooks.validate(&mut errors);
        let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let (Some(listen), Some(jwt), Some(link), true) = (listen, jwt, link, errors.is_empty())
        else {
            return Err(ConfigError(errors));
        };
        let internal_secret = match &jwt {
            JwtKey::Hs256(k) => k.clone(),
            _ => secrets[0].as_bytes().to_vec(),
        };
        let migration = self.migration.clone();
        Ok(Settings {
            listen,
            admin_listen,
            data_dir: self.server.data_dir.clone(),
            max_upload_bytes: self.server.max_upload_bytes,
            dev: self.server.dev,
            jwt,
            internal_secret,
            token_ttl: Duration::from_secs(self.auth.token_ttl_secs),
            edge_base_url: p.edge_base_url.trim_end_matches('/').to_owned(),
            edge_prefix: p.edge_prefix.clone(),
            link,
            url_ttl_secs: p.url_ttl_secs as i64,
            expiry_bucket_secs: p.expiry_bucket_secs as i64,
            transcode: self.transcode.clone(),
            edge_admin_urls: self
                .edge
                .admin_url
                .split([',', ' '])
                .filter(|u| !u.is_empty())
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            edge_purge_token: nonempty(&self.edge.purge_token),
            migration,
            redis_url,
            webhooks,
            log_format: self.log.format,
        })
    }

    fn jwt_key(&self, errors: &mut Vec<String>) -> Option<JwtKey> {
        let a = &self.auth;
        match a.algorithm.as_str() {
            "HS256" => {
                if a.jwt_secret.len() < 16 {
                    errors.push(
                        "JWT_SECRET must be set and at least 16 bytes (no default secret)".into(),
                    );
                    return None;
                }
                Some(JwtKey::Hs256(a.jwt_secret.as_bytes().to_vec()))
            }
            alg @ ("RS256" | "ES256") => match std::fs::read(&a.public_key_file) {
                Ok(pem) if alg == "RS256" => Some(JwtKey::Rs256(pem)),
                Ok(pem) => Some(JwtKey::Es256(pem)),
                Err(e) => {
                    errors.push(format!(
                        "auth.public_key_file {}: {e}",
                        a.public_key_file.display()
                    ));
                    None
                }
            },
            other => {
                errors.push(format!(
                    "auth.algorithm {other:?} is not HS256, RS256 or ES256"
                ));
                None
            }
        }
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

    fn base() -> OriginConfig {
        let mut c = OriginConfig::default();
        c.playback.edge_base_url = "http://127.0.0.1:8080".into();
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
        let mut c = base();
        let env: HashMap<&str, &str> = HashMap::from([("JWT_SECRET", "0123456789abcdef0123")]);
        c.apply_env(&env);
        assert!(c.validate().is_err(), "production refuses to derive");
        c.server.dev = true;
        let s = c.validate().expect("dev derives");
        assert!(s.dev);
        let mut c = base();
        let env: HashMap<&str, &str> = HashMap::from([
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("HLS_SIGNING_SECRET", "edge-secret"),
        ]);
        c.apply_env(&env);
        let s = c.validate().expect("valid");
        assert_eq!(
            s.link.sign("/hls/a", 10, ""),
            SecureLink::new(vec![Secret::new("edge-secret")])
                .expect("link")
                .sign("/hls/a", 10, "")
        );
        assert!(
            !format!("{:?}", s.jwt).contains("0123456789"),
            "secrets never in Debug"
        );
    }

    #[test]
    fn example_config_is_valid() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/origin.toml"
        ))
        .expect("exists");
        let mut c = OriginConfig::from_toml(&text).expect("parses");
        c.auth.jwt_secret = "0123456789abcdef0123".into();
        c.playback.signing_secrets = vec!["s".into()];
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
        let mut c = base();
        let env: HashMap<&str, &str> = HashMap::from([
            ("JWT_SECRET", "0123456789abcdef0123"),
            ("HLS_SIGNING_SECRET", "edge-secret"),
            ("ORIGIN_WEBHOOK_URL", "https://hooks.example.com/video"),
            ("WEBHOOK_SECRET", "whsec-0123456789abcdef"),
        ]);
        c.apply_env(&env);
        let s = c.validate().expect("valid");
        let w = s.webhooks.expect("enabled");
        assert_eq!(
            (w.target.host.as_str(), w.target.port),
            ("hooks.example.com", 443)
        );
        assert!(base().webhooks.url.is_empty(), "off by default");
    }
}
