//! Edge configuration: a TOML file, environment overrides, command-line flags, in that order
//! of precedence (flags win), then one [`EdgeConfig::validate`] that reports every problem.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shared::env::EnvSource;
use shared::secure_link::{Secret, SecureLink, Template};
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
    /// Seconds to receive a complete request head once its first byte arrived. Default 10.
    pub header_timeout_secs: u64,
    /// Seconds a keep-alive connection may sit idle between requests. Default 60.
    pub idle_timeout_secs: u64,
    /// Seconds a single write may wait for the client to read. Default 60.
    pub send_timeout_secs: u64,
    /// Largest request head in bytes (request line and headers). Default 8192.
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
            max_header_bytes: 8192,
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
}

/// The admin listener: metrics, health, purge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address. Default `127.0.0.1:9090` (not public); empty disables it.
    pub listen: String,
    /// Bearer token for `POST /purge`. Default empty: purge refused.
    pub purge_token: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            purge_token: String::new(),
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
    /// without one. `HLS_SIGNING_SECRET` replaces the first.
    pub secrets: Vec<String>,
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
    pub purge_token: Option<String>,
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
}

/// HTTPS settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EdgeConfig {
    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(vec![e.to_string()]))
    }

    /// Applies environment overrides (`EDGE_*`, and `HLS_SIGNING_SECRET` as seed 001's nginx
    /// deployment names it).
    pub fn apply_env(&mut self, env: &dyn EnvSource) {
        let set = |target: &mut String, name: &str| {
            if let Some(v) = env.get(name) {
                *target = v;
            }
        };
        set(&mut self.server.listen, "EDGE_LISTEN");
        set(&mut self.admin.listen, "EDGE_ADMIN_LISTEN");
        set(&mut self.admin.purge_token, "EDGE_PURGE_TOKEN");
        set(&mut self.tls.listen, "EDGE_TLS_LISTEN");
        set(&mut self.content.prefix, "EDGE_PREFIX");
        if let Some(v) = env.get("EDGE_ROOT") {
            self.content.root = v.into();
        }
        if let Some(v) = env.get("EDGE_TLS_CERT") {
            self.tls.cert = v.into();
        }
        if let Some(v) = env.get("EDGE_TLS_KEY") {
            self.tls.key = v.into();
        }
        if let Some(secret) = env.get("HLS_SIGNING_SECRET") {
            match self.signing.secrets.first_mut() {
                Some(first) => *first = secret,
                None => self.signing.secrets.push(secret),
            }
        }
        // Numbers that fail to parse are kept as they were; validate() can't see env text, so
        // the parse error is reported here through the log.
        let num = |target: &mut u64, name: &str| {
            if let Some(v) = env.get(name) {
                match v.parse() {
                    Ok(n) => *target = n,
                    Err(_) => {
                        tracing::error!(variable = name, value = %v, "ignoring non-numeric override")
                    }
                }
            }
        };
        num(&mut self.cache.max_bytes, "EDGE_CACHE_MAX_BYTES");
        num(
            &mut self.cache.max_object_bytes,
            "EDGE_CACHE_MAX_OBJECT_BYTES",
        );
    }

    /// Checks everything and returns the parsed settings, or every problem at once.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let mut errors = Vec::new();
        let mut addr = |field: &str, value: &str| -> Option<SocketAddr> {
            if value.is_empty() {
                return None;
            }
            value
                .parse()
                .map_err(|_| {
                    errors.push(format!(
                        "{field}: {value:?} is not an address like 127.0.0.1:8080"
                    ))
                })
                .ok()
        };
        let listen = addr("server.listen", &self.server.listen);
        let admin_listen = addr("admin.listen", &self.admin.listen);
        let tls_listen = addr("tls.listen", &self.tls.listen);
        if listen.is_none() && tls_listen.is_none() && self.server.listen.is_empty() {
            errors.push("server.listen and tls.listen are both empty: nothing to serve".into());
        }
        let tls = tls_listen.map(|listen| TlsSettings {
            listen,
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        });
        if let Some(t) = &tls {
            for (field, path) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if path.as_os_str().is_empty() {
                    errors.push(format!("{field} is required when tls.listen is set"));
                } else if !path.is_file() {
                    errors.push(format!(
                        "{field}: {} is not a readable file",
                        path.display()
                    ));
                }
            }
        }
        let s = &self.server;
        for (field, v) in [
            ("server.header_timeout_secs", s.header_timeout_secs),
            ("server.idle_timeout_secs", s.idle_timeout_secs),
            ("server.send_timeout_secs", s.send_timeout_secs),
            ("server.max_connections", s.max_connections as u64),
            ("server.max_header_bytes", s.max_header_bytes as u64),
        ] {
            if v == 0 {
                errors.push(format!("{field} must be greater than 0"));
            }
        }
        if s.shutdown_delay_secs > 600 {
            errors.push("server.shutdown_delay_secs must be at most 600".into());
        }
        if s.max_header_bytes > 1 << 20 {
            errors.push("server.max_header_bytes must be at most 1048576".into());
        }
        if !self.content.root.is_dir() {
            errors.push(format!(
                "content.root: {} is not a directory",
                self.content.root.display()
            ));
        }
        let p = &self.content.prefix;
        if !p.starts_with('/') || !p.ends_with('/') {
            errors.push(format!("content.prefix: {p:?} must start and end with '/'"));
        }
        let link = self.signing_link(&mut errors);
        if self.cache.max_bytes > 0 && self.cache.max_object_bytes > self.cache.max_bytes {
            errors.push("cache.max_object_bytes must not exceed cache.max_bytes".into());
        }
        for o in &self.http.cors_allowed_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                errors.push(format!(
                    "http.cors_allowed_origins: {o:?} is not * or an http(s) origin"
                ));
            }
        }
        let (Some(link), true) = (link, errors.is_empty()) else {
            return Err(ConfigError(errors));
        };
        let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        Ok(Settings {
            listen,
            tls,
            admin_listen,
            purge_token: nonempty(&self.admin.purge_token),
            workers: s.workers,
            max_connections: s.max_connections,
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            idle_timeout: Duration::from_secs(s.idle_timeout_secs),
            send_timeout: Duration::from_secs(s.send_timeout_secs),
            max_header_bytes: s.max_header_bytes,
            shutdown_grace: Duration::from_secs(s.shutdown_grace_secs),
            shutdown_delay: Duration::from_secs(s.shutdown_delay_secs),
            root: self.content.root.clone(),
            prefix: self.content.prefix.clone(),
            link,
            cache_max_bytes: self.cache.max_bytes,
            cache_max_object: if self.cache.max_bytes == 0 {
                0
            } else {
                self.cache.max_object_bytes
            },
            sendfile_min_bytes: self.cache.sendfile_min_bytes,
            open_files_max: self.cache.open_files,
            open_files_idle: Duration::from_secs(self.cache.open_files_idle_secs.max(1)),
            cache_control_media: nonempty(&self.http.cache_control_media),
            cache_control_playlists: nonempty(&self.http.cache_control_playlists),
            cors_origins: self.http.cors_allowed_origins.clone(),
            log_format: self.log.format,
            access_log_every: self.log.access_log_every,
        })
    }

    /// Just the signing scheme, for `edge sign`.
    pub fn secure_link(&self) -> Result<SecureLink, ConfigError> {
        let mut errors = Vec::new();
        self.signing_link(&mut errors).ok_or(ConfigError(errors))
    }

    fn signing_link(&self, errors: &mut Vec<String>) -> Option<SecureLink> {
        let sig = &self.signing;
        if sig.secrets.is_empty() {
            errors.push(
                "signing.secrets is empty: set HLS_SIGNING_SECRET or signing.secrets (there is no default secret)"
                    .into(),
            );
            return None;
        }
        if sig.secrets.iter().any(String::is_empty) {
            errors.push("signing.secrets holds an empty secret".into());
            return None;
        }
        let template: Template = match sig.template.parse() {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("signing.template: {e}"));
                return None;
            }
        };
        let secrets = sig
            .secrets
            .iter()
            .map(|s| Secret::new(s.as_bytes()))
            .collect();
        SecureLink::with_options(secrets, template, &sig.md5_arg, &sig.expires_arg)
            .map_err(|e| errors.push(format!("signing: {e}")))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn refuses_to_start_without_secret_and_reports_everything() {
        let mut c = EdgeConfig::default();
        c.content.root = "/nonexistent-edge-root".into();
        c.content.prefix = "hls".into();
        c.server.listen = "nope".into();
        let err = c.validate().expect_err("invalid").0;
        assert_eq!(err.len(), 4, "{err:#?}");
        assert!(err.iter().any(|e| e.contains("HLS_SIGNING_SECRET")));
    }

    #[test]
    fn env_overrides_and_secret_rotation() {
        let mut c = EdgeConfig::from_toml(
            "[signing]\nsecrets = [\"old-current\", \"older\"]\n[content]\nroot = \"/\"\n",
        )
        .expect("parse");
        let env: HashMap<&str, &str> = HashMap::from([
            ("HLS_SIGNING_SECRET", "fresh"),
            ("EDGE_LISTEN", "127.0.0.1:0"),
        ]);
        c.apply_env(&env);
        assert_eq!(c.signing.secrets, ["fresh", "older"]);
        let s = c.validate().expect("valid");
        assert_eq!(s.listen, Some("127.0.0.1:0".parse().expect("addr")));
        assert_eq!(
            s.admin_listen,
            Some("127.0.0.1:9090".parse().expect("addr")),
            "admin stays local"
        );
        assert!(s.purge_token.is_none(), "purge is off by default");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(EdgeConfig::from_toml("[server]\nlisen = \"x\"\n").is_err());
    }

    #[test]
    fn example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/edge.toml");
        let text = std::fs::read_to_string(path).expect("config/edge.toml exists");
        let mut c = EdgeConfig::from_toml(&text).expect("parses");
        c.content.root = "/".into();
        c.signing.secrets = vec!["test".into()];
        c.validate().expect("valid apart from root and secret");
    }
}
