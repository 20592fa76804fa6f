//! Edge configuration: a TOML file, environment overrides, command-line flags, in that order
//! of precedence (flags win), then one [`EdgeConfig::validate`] that reports every problem.
//!
//! [`env`] applies the overrides (and records the ones that do not parse), [`validate`] checks
//! everything, secrets included, and builds the [`Settings`] the server runs on; [`upstream`]
//! is the optional `[upstream]` section that turns the content root into a disk cache.

mod env;
#[cfg(test)]
mod tests;
pub mod upstream;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shared::secret::SecretString;
use shared::secure_link::SecureLink;
use shared::telemetry::LogFormat;

/// The whole file. Every section and field is optional; see `config/edge.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub content: ContentConfig,
    pub signing: SigningConfig,
    pub cache: CacheConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub upstream: upstream::UpstreamConfig,
    /// Environment overrides that did not parse, reported by `validate` with every other
    /// problem (logging is not set up yet when they are read).
    #[serde(skip)]
    env_problems: Vec<String>,
}

/// The public listener and connection handling.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain HTTP listen address. Default `0.0.0.0:8080`; empty disables it.
    pub listen: String,
    /// Runtime worker threads; 0 = one per CPU. Default 0.
    pub workers: usize,
    /// Connections open at once across all listeners; further ones wait in the backlog.
    /// Default 16384.
    pub max_connections: usize,
    /// Seconds to receive a complete request head once its first byte arrived (a deadline, not
    /// re-armed per read), and to complete a TLS handshake. Default 10.
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may sit idle between requests (HTTP/2: without an open
    /// stream; also the PING interval). Default 60.
    pub idle_timeout_secs: u64,
    /// Seconds a single write may wait for the client to read (HTTP/2: a stream whose answer
    /// could send nothing for this long, because its window or the connection stayed shut;
    /// also the PING timeout). Default 60.
    pub send_timeout_secs: u64,
    /// Largest request head in bytes (request line and headers). Default 32768, what nginx's
    /// default `large_client_header_buffers 4 8k` hold; each line is held to 8 KiB besides.
    pub max_header_bytes: usize,
    /// Seconds to let in-flight responses finish after SIGTERM. Default 30.
    pub shutdown_grace_secs: u64,
    /// Seconds to keep serving after SIGTERM while `/readyz` answers 503, so a load balancer
    /// stops sending new connections before the listeners close. Default 0 (close at once).
    pub shutdown_delay_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            workers: 0,
            max_connections: 16384,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            send_timeout_secs: 60,
            max_header_bytes: 32 * 1024,
            shutdown_grace_secs: 30,
            shutdown_delay_secs: 0,
        }
    }
}

/// HTTPS (HTTP/1.1 and HTTP/2 by ALPN). Disabled unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// HTTPS listen address, e.g. `0.0.0.0:8443`. Default empty (off).
    pub listen: String,
    /// PEM certificate chain; re-read on SIGHUP.
    pub cert: PathBuf,
    /// PEM private key; re-read on SIGHUP.
    pub key: PathBuf,
    /// Kernel TLS after the handshake where the kernel offers it: `auto` (default) or `off`.
    pub ktls: KtlsMode,
}

/// Whether the edge may hand a connection's records to the kernel (kTLS) after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KtlsMode {
    /// Use kTLS when the kernel has it and the negotiated cipher suite is one it implements;
    /// userspace TLS otherwise.
    #[default]
    Auto,
    /// Always userspace TLS (rustls).
    Off,
}

impl std::str::FromStr for KtlsMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "auto" => Ok(Self::Auto),
            "off" => Ok(Self::Off),
            _ => Err(()),
        }
    }
}

/// The admin listener: metrics, health, purge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address. Default `127.0.0.1:9090` (not public); empty disables it.
    pub listen: String,
    /// Bearer token for `POST /purge`, at least 16 bytes and not a placeholder. Default empty:
    /// purge refused.
    pub purge_token: SecretString,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            purge_token: SecretString::default(),
        }
    }
}

/// What is served, like nginx's `location <prefix> { alias <root>/; }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    /// Directory served. Default `/data/uploads/videos`.
    pub root: PathBuf,
    /// URL prefix mapped onto `root`; starts and ends with `/`. Default `/hls/`.
    pub prefix: String,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            root: "/data/uploads/videos".into(),
            prefix: "/hls/".into(),
        }
    }
}

/// nginx `secure_link` parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningConfig {
    /// Accepted secrets; the first is the current one. No default: the edge refuses to start
    /// without one. `HLS_SIGNING_SECRET` replaces the first. Each must be at least 16 bytes
    /// and not a placeholder.
    pub secrets: Vec<SecretString>,
    /// Keeps secrets shorter than 16 bytes (an existing nginx secret that signed every URL in
    /// flight), with a warning at every start. Placeholders are refused even so. Default false.
    pub allow_weak_secret: bool,
    /// The signed text, like `secure_link_md5`. Default `$secure_link_expires$uri$secret`.
    pub template: String,
    /// Query argument holding the hash. Default `md5`.
    pub md5_arg: String,
    /// Query argument holding the expiry. Default `expires`.
    pub expires_arg: String,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            secrets: Vec::new(),
            allow_weak_secret: false,
            template: "$secure_link_expires$uri$secret".into(),
            md5_arg: "md5".into(),
            expires_arg: "expires".into(),
        }
    }
}

/// The in-memory hot cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Memory budget in bytes. Default 268435456 (256 MiB); 0 disables the cache.
    pub max_bytes: u64,
    /// Largest file kept in memory, bytes. Default 1572864.
    pub max_object_bytes: u64,
    /// On plain HTTP, files at least this large go out with sendfile from an open descriptor
    /// instead of memory (zero-copy beats copying from memory for large bodies); memory then
    /// serves small files, and TLS/HTTP/2 (which cannot use sendfile). Default 65536.
    pub sendfile_min_bytes: u64,
    /// Open descriptors kept for sendfile, like nginx `open_file_cache max=`. Default 10000.
    pub open_files: u64,
    /// Seconds an unused descriptor stays open. Default 60.
    pub open_files_idle_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_object_bytes: 1536 << 10,
            sendfile_min_bytes: 64 << 10,
            open_files: 10_000,
            open_files_idle_secs: 60,
        }
    }
}

/// Response headers beyond nginx's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Cache-Control for media (segments, keys, images). Default `public, max-age=86400`;
    /// empty sends none.
    pub cache_control_media: String,
    /// Cache-Control for `.m3u8` playlists. Default `public, max-age=5`; empty sends none.
    pub cache_control_playlists: String,
    /// Origins allowed by CORS (`*` for any). Default empty: no CORS headers and no preflight,
    /// exactly like the nginx location.
    pub cors_allowed_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cache_control_media: "public, max-age=86400".into(),
            cache_control_playlists: "public, max-age=5".into(),
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// Log one request in N as an access-log line; 0 = off. Default 0.
    pub access_log_every: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            access_log_every: 0,
        }
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// The validated, parsed settings the server runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: Option<SocketAddr>,
    pub tls: Option<TlsSettings>,
    pub admin_listen: Option<SocketAddr>,
    pub purge_token: Option<SecretString>,
    pub workers: usize,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub shutdown_delay: Duration,
    pub root: PathBuf,
    pub prefix: String,
    pub link: SecureLink,
    pub cache_max_bytes: u64,
    pub cache_max_object: u64,
    pub sendfile_min_bytes: u64,
    pub open_files_max: u64,
    pub open_files_idle: Duration,
    pub cache_control_media: Option<String>,
    pub cache_control_playlists: Option<String>,
    pub cors_origins: Vec<String>,
    pub log_format: LogFormat,
    pub access_log_every: u64,
    /// Where misses are pulled from; `None`: the root is the content.
    pub upstream: Option<upstream::UpstreamSettings>,
    /// Problems that do not stop the edge (a weak secret kept on purpose), to log at start.
    pub warnings: Vec<String>,
}

/// HTTPS settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ktls: KtlsMode,
}

impl EdgeConfig {
    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))
    }
}
