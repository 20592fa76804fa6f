//! Origin configuration: TOML file < environment < flags, one [`OriginConfig::validate`] that
//! reports every problem at once (values from the environment that do not parse included).
//! Secrets come from the environment, are held as [`SecretString`] (never printed) and are
//! refused when short or a placeholder.
//!
//! # Layout
//! - [`settings`]: the validated settings of each role (`serve`, `worker`, `transcode`).
//! - [`auth`]: `[auth]`, user token verification and the playback credential key.
//! - [`storage`]: `[storage]`, where media lives (the data directory or a bucket).
//! - [`uploads`]: `[uploads]`, guards on the upload path (disk floor, per-user concurrency).
//! - `[limits]` is [`MediaLimits`], the largest source accepted.

pub mod auth;
pub mod settings;
pub mod storage;
pub mod uploads;

use std::path::PathBuf;

use serde::Deserialize;
use shared::env::EnvSource;
use shared::secret::SecretString;
use shared::telemetry::LogFormat;

use crate::transcode::ladder::{default_ladder, RungSpec};
use crate::transcode::limits::MediaLimits;
use crate::webhooks::settings::WebhooksConfig;
pub use auth::{AuthConfig, AuthSettings, JwtAlgorithm, JwtKey};
pub use settings::{
    HttpSettings, MediaSettings, PlaybackSettings, PurgeSettings, ServeSettings, StoreSettings,
    WorkerSettings,
};
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
    pub storage: storage::StorageConfig,
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
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (a file in the data directory, one machine) or `redis` (shared by every
    /// `origin serve` and `origin worker`). Env: ORIGIN_STORE. Default `embedded`.
    pub backend: StoreBackend,
    /// e.g. `redis://127.0.0.1:6379/0`. Env: REDIS_URL.
    pub redis_url: String,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("backend", &self.backend)
            .field("redis_url", &settings::redis_url_shown(&self.redis_url))
            .finish()
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
    /// Event streams (`/api/videos/{id}/events`) one user may have open at once; more are
    /// refused with 429. Each holds a connection for as long as its video encodes. Default 16.
    pub max_event_streams_per_user: usize,
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
            max_event_streams_per_user: 16,
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

/// Whether sources between two rungs get a rung at their own size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceRungMode {
    #[default]
    Auto,
    Never,
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
    /// Seconds without ffmpeg progress before it is killed. Default 120; at least 5.
    pub stall_timeout_secs: u64,
    /// Attempts before a job fails for good. Default 3.
    pub max_attempts: u32,
    /// Seconds a worker's claim lasts without a heartbeat. Default 30.
    pub lease_secs: i64,
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// The ladder; default 2160p..240p as in `config/origin.toml`.
    pub ladder: Vec<RungSpec>,
    /// `auto`: one audio track is muxed into every video rung (what every player plays) and
    /// several become separate audio renditions; `separate`: always separate. Default `auto`.
    pub audio_layout: crate::transcode::tracks::AudioLayout,
    /// `auto`: a source whose short side lies between two rungs, more than
    /// `source_rung_margin` above the lower one, also gets a rung at its own size (rates
    /// interpolated); `never`: configured rungs only. Default `auto`.
    pub source_rung: SourceRungMode,
    /// See `source_rung`, as a fraction. Default 0.10.
    pub source_rung_margin: f64,
    /// Publish each segment as the encode completes it, so a video can be watched seconds
    /// after its upload (EVENT playlists that become VOD at the end); `false` publishes the
    /// whole ladder at once when the encode is done. Default true.
    pub publish_while_encoding: bool,
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
            publish_while_encoding: true,
            source_rung: SourceRungMode::Auto,
            source_rung_margin: 0.10,
            audio_layout: Default::default(),
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
    /// Directory of MP4/MOV/MKV files to import; empty: none.
    pub import_dir: PathBuf,
    /// Directory of the storage bucket (under `[storage] prefix`) whose MP4/MOV/MKV objects
    /// are imported (`backend = "s3"` only); empty: none. The objects are copied, not moved.
    pub import_prefix: String,
    /// Owner (user id) of imported videos. Default `admin`.
    pub owner: String,
    /// Queue processing at import time (`true`) or on first play (`false`). Default true.
    pub process_now: bool,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            import_dir: PathBuf::new(),
            import_prefix: String::new(),
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

impl OriginConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))
    }

    /// The file at `path` (defaults without one), then the environment on top.
    pub fn load(path: Option<&std::path::Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(vec![format!("reading {}: {e}", path.display())]))?;
                Self::from_toml(&text)?
            }
            None => Self::default(),
        };
        config.apply_env(env);
        Ok(config)
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
        self.storage.apply_env(env, &mut errors);
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
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected 1/true/yes or 0/false/no".into()),
    }
}

/// Development-only derivation of the HLS signing secret (seed 001).
pub(crate) fn derive_signing_secret(jwt_secret: &[u8]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(b"hls-signing:");
    h.update(jwt_secret);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
