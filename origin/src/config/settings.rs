//! Validated settings, one type per role: each role checks only what it uses, and every
//! problem is reported at once.
//!
//! - [`MediaSettings`] (`origin transcode`): the data directory, the pipeline, the limits.
//! - [`WorkerSettings`] (`origin worker`): media plus the job store and webhooks. A worker
//!   needs no JWT secret, no API address and no edge URL.
//! - [`ServeSettings`] (`origin serve`): a worker's settings plus the API: listener,
//!   authentication, signed playback, uploads, purges, migration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shared::secret::{self, SecretString, Strength, Verdict};
use shared::secure_link::{Secret, SecureLink};

use super::{
    derive_signing_secret, AuthSettings, ConfigError, JwtAlgorithm, MigrationConfig, OriginConfig,
    StoreBackend, TranscodeConfig, UploadLimits,
};
use crate::http_client::Target;
use crate::transcode::ladder;
use crate::transcode::limits::MediaLimits;
use crate::webhooks::settings::WebhookSettings;

/// What transcoding needs.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub data_dir: PathBuf,
    /// Where published media, uploads and resume checkpoints live.
    pub storage: super::storage::StorageSettings,
    pub transcode: TranscodeConfig,
    pub limits: MediaLimits,
}

impl MediaSettings {
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.transcode.stall_timeout_secs)
    }
}

/// Where jobs live.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// `<data>/store`, one machine.
    Embedded,
    /// Shared by every process of a deployment.
    Redis { url: String },
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Redis { url } => f
                .debug_struct("Redis")
                .field("url", &redis_url_shown(url))
                .finish(),
        }
    }
}

/// A Redis URL as logs, errors and debug output may show it: without its credentials.
pub fn redis_url_shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    // The last `@` ends the credentials, whatever they hold (a `/` of a base64 password too).
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

/// What a worker process needs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub media: MediaSettings,
    pub store: StoreSettings,
    /// `Some` when ready/failed events are POSTed somewhere.
    pub webhooks: Option<WebhookSettings>,
    /// The metrics listener (`/metrics`, `/healthz`), if any.
    pub admin_listen: Option<SocketAddr>,
}

/// The API listener's connection handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub max_event_streams_per_user: usize,
    pub shutdown_grace: Duration,
}

/// Signed manifests for the edge.
#[derive(Debug, Clone)]
pub struct PlaybackSettings {
    /// e.g. `https://edge.example.com` (no trailing slash).
    pub edge_base_url: String,
    /// e.g. `/hls/`.
    pub edge_prefix: String,
    pub link: SecureLink,
    pub url_ttl_secs: i64,
    pub expiry_bucket_secs: i64,
}

/// Cache purges on the edges when a video is deleted.
#[derive(Debug, Clone, Default)]
pub struct PurgeSettings {
    /// Every edge's admin listener.
    pub edges: Vec<Target>,
    pub token: Option<SecretString>,
}

/// What `origin serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The in-process workers (`transcode.workers` of them, maybe none) and what they share
    /// with the API: data directory, job store, webhooks, metrics listener.
    pub worker: WorkerSettings,
    pub listen: SocketAddr,
    pub http: HttpSettings,
    pub dev: bool,
    pub auth: AuthSettings,
    pub token_ttl: Duration,
    pub playback: PlaybackSettings,
    pub uploads: UploadLimits,
    pub max_upload_bytes: u64,
    pub purge: PurgeSettings,
    pub migration: MigrationConfig,
}

impl ServeSettings {
    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.worker.media.data_dir
    }
}

impl OriginConfig {
    /// `origin transcode`.
    pub fn media(&self) -> Result<MediaSettings, ConfigError> {
        let mut errors = self.env_errors.clone();
        let media = self.check_media(&mut errors);
        finish(errors, media)
    }

    /// `origin worker`, with its metrics listener from `--admin-listen`.
    pub fn worker(&self, admin_listen: Option<&str>) -> Result<WorkerSettings, ConfigError> {
        let mut errors = self.env_errors.clone();
        let worker = self.check_worker(admin_listen.unwrap_or(""), &mut errors);
        finish(errors, worker)
    }

    /// `origin serve`.
    pub fn serve(&self) -> Result<ServeSettings, ConfigError> {
        let mut errors = self.env_errors.clone();
        let worker = self.check_worker(&self.server.admin_listen, &mut errors);
        let listen = address("server.listen", &self.server.listen, &mut errors);
        if self.server.dev && listen.is_some_and(|l| !l.ip().is_loopback()) {
            errors.push(format!(
                "server.dev (--dev) mints tokens for anyone who asks: it is refused unless \
                 server.listen is a loopback address (got {})",
                self.server.listen
            ));
        }
        let http = self.http_settings(&mut errors);
        let (playback, signing) = self.check_playback(&mut errors);
        let signing: Vec<&str> = signing.iter().map(String::as_str).collect();
        let auth = self.auth.validate(&signing, &mut errors);
        let purge = self.check_purge(&mut errors);
        errors.extend(self.uploads.problems());
        if self.server.max_upload_bytes == 0 {
            errors.push("server.max_upload_bytes must be at least 1".into());
        }
        if !self.migration.import_prefix.is_empty()
            && self.storage.backend != super::storage::StorageBackend::S3
        {
            errors.push(
                "migration.import_prefix imports from the storage bucket: it needs [storage] \
                 backend = \"s3\""
                    .into(),
            );
        }
        let (Some(worker), Some(listen), Some(auth), Some(playback), true) =
            (worker, listen, auth, playback, errors.is_empty())
        else {
            return Err(ConfigError(errors));
        };
        Ok(ServeSettings {
            worker,
            listen,
            http,
            dev: self.server.dev,
            auth,
            token_ttl: Duration::from_secs(self.auth.token_ttl_secs),
            playback,
            uploads: self.uploads.clone(),
            max_upload_bytes: self.server.max_upload_bytes,
            purge,
            migration: self.migration.clone(),
        })
    }

    fn check_media(&self, errors: &mut Vec<String>) -> Option<MediaSettings> {
        let before = errors.len();
        let t = &self.transcode;
        if t.segment_secs == 0 || t.segment_secs > 60 {
            errors.push("transcode.segment_secs must be 1-60".into());
        }
        if t.ladder.is_empty() {
            errors.push("transcode.ladder must have at least one rung".into());
        }
        for (i, rung) in t.ladder.iter().enumerate() {
            if let Some(problem) = ladder::rung_problem(rung) {
                errors.push(format!("transcode.ladder[{i}]: {problem}"));
            }
            if t.ladder[..i].iter().any(|r| r.name == rung.name) {
                errors.push(format!(
                    "transcode.ladder[{i}]: the name {:?} is used by an earlier rung",
                    rung.name
                ));
            }
        }
        if t.stall_timeout_secs < 5 {
            errors.push(
                "transcode.stall_timeout_secs must be at least 5 (an encoder reports its \
                 progress about every second)"
                    .into(),
            );
        }
        if t.lease_secs < 3 {
            errors.push("transcode.lease_secs must be at least 3".into());
        }
        if t.max_attempts == 0 {
            errors.push("transcode.max_attempts must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&t.source_rung_margin) {
            errors.push("transcode.source_rung_margin must be between 0 and 1".into());
        }
        errors.extend(self.limits.problems());
        let storage = self.storage.validate(errors);
        (errors.len() == before).then(|| MediaSettings {
            data_dir: self.server.data_dir.clone(),
            storage: storage.unwrap_or_default(),
            transcode: t.clone(),
            limits: self.limits.clone(),
        })
    }

    fn check_worker(&self, admin_listen: &str, errors: &mut Vec<String>) -> Option<WorkerSettings> {
        let before = errors.len();
        let media = self.check_media(errors);
        let admin_listen = if admin_listen.is_empty() {
            None
        } else {
            address("server.admin_listen", admin_listen, errors)
        };
        let store = match self.store.backend {
            StoreBackend::Embedded => StoreSettings::Embedded,
            StoreBackend::Redis => {
                let url = &self.store.redis_url;
                if !url.starts_with("redis://") {
                    errors.push("store.redis_url must be a redis:// URL when store.backend = \"redis\" (REDIS_URL)".into());
                }
                StoreSettings::Redis { url: url.clone() }
            }
        };
        let webhooks = self.webhooks.validate(errors);
        if errors.len() > before {
            return None;
        }
        Some(WorkerSettings {
            media: media?,
            store,
            webhooks,
            admin_listen,
        })
    }

    /// The playback settings, and the signing secrets in force (which no other secret may
    /// equal).
    fn check_playback(&self, errors: &mut Vec<String>) -> (Option<PlaybackSettings>, Vec<String>) {
        let p = &self.playback;
        let before = errors.len();
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
            let dev_hs256 = self.server.dev
                && self.auth.algorithm == JwtAlgorithm::HS256
                && !self.auth.jwt_secret.is_empty();
            if dev_hs256 {
                // Seed 001 derives the signing secret from the app secret; only acceptable in
                // development, where it is announced.
                tracing::warn!("development mode: deriving the HLS signing secret from JWT_SECRET");
                secrets.push(derive_signing_secret(
                    self.auth.jwt_secret.expose().as_bytes(),
                ));
            } else {
                errors.push("HLS_SIGNING_SECRET is not set (it is derived from JWT_SECRET only in dev mode)".into());
            }
        }
        let strength = if p.allow_weak_secret {
            Strength::WeakAllowed
        } else {
            Strength::Required
        };
        for value in &secrets {
            match secret::check("HLS_SIGNING_SECRET", value, strength) {
                Verdict::Strong => {}
                Verdict::WeakAllowed(warning) => tracing::warn!("{warning}"),
                Verdict::Refused(why) => errors.push(why),
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
        let settings = link
            .filter(|_| errors.len() == before)
            .map(|link| PlaybackSettings {
                edge_base_url: p.edge_base_url.trim_end_matches('/').to_owned(),
                edge_prefix: p.edge_prefix.clone(),
                link,
                url_ttl_secs: i64::try_from(p.url_ttl_secs).unwrap_or(i64::MAX),
                expiry_bucket_secs: i64::try_from(p.expiry_bucket_secs).unwrap_or(i64::MAX),
            });
        (settings, secrets)
    }

    fn check_purge(&self, errors: &mut Vec<String>) -> PurgeSettings {
        let token = &self.edge.purge_token;
        if !token.is_empty() {
            if let Verdict::Refused(why) =
                secret::check("EDGE_PURGE_TOKEN", token.expose(), Strength::Required)
            {
                errors.push(why);
            }
        }
        let edges = self
            .edge
            .admin_url
            .split([',', ' '])
            .filter(|u| !u.is_empty())
            .filter_map(|u| {
                Target::parse(u)
                    .map_err(|e| errors.push(format!("edge.admin_url: {e}")))
                    .ok()
            })
            .collect();
        PurgeSettings {
            edges,
            token: (!token.is_empty()).then(|| token.clone()),
        }
    }

    fn http_settings(&self, errors: &mut Vec<String>) -> HttpSettings {
        let s = &self.server;
        for (field, v) in [
            ("server.header_timeout_secs", s.header_timeout_secs),
            ("server.idle_timeout_secs", s.idle_timeout_secs),
            ("server.send_timeout_secs", s.send_timeout_secs),
            ("server.max_connections", s.max_connections as u64),
            (
                "server.max_event_streams_per_user",
                s.max_event_streams_per_user as u64,
            ),
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
            max_event_streams_per_user: s.max_event_streams_per_user,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
        }
    }
}

fn address(field: &str, value: &str, errors: &mut Vec<String>) -> Option<SocketAddr> {
    value
        .parse()
        .map_err(|_| errors.push(format!("{field}: {value:?} is not an address")))
        .ok()
}

fn finish<T>(errors: Vec<String>, value: Option<T>) -> Result<T, ConfigError> {
    match value {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(ConfigError(errors)),
    }
}
