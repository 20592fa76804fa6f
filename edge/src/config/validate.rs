//! Validation: every problem in the configuration (and in its environment overrides) is
//! collected and reported at once, secrets included.

use std::net::SocketAddr;
use std::time::Duration;

use shared::secret::{self, SecretString, Strength, Verdict, MIN_SECRET_BYTES};
use shared::secure_link::{Secret, SecureLink, Template};

use super::{ConfigError, EdgeConfig, Settings, TlsSettings};

impl EdgeConfig {
    /// Checks everything and returns the parsed settings, or every problem at once.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let mut errors = self.env_problems.clone();
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
            ktls: self.tls.ktls,
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
        let mut warnings = Vec::new();
        let link = self.signing_link(&mut errors, &mut warnings);
        let purge_token = self.purge_token(&mut errors);
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
        let upstream = self.upstream.validate(&mut errors);
        if let (Some(u), Some(_)) = (&upstream, &tls) {
            // An HTTP/2 stream (offered over TLS only) whose body waits for an upstream chunk
            // cannot tell that wait from a client that stopped reading: the upstream must give
            // up first.
            let chunk = u.source.timeout().as_secs();
            if s.send_timeout_secs <= chunk {
                errors.push(format!(
                    "server.send_timeout_secs ({}) must be greater than the upstream's \
                     timeout_secs ({chunk}): an HTTP/2 stream waiting on a slow upstream \
                     would be dropped as a client that stopped reading",
                    s.send_timeout_secs
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
            purge_token,
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
            upstream,
            warnings,
        })
    }

    /// Just the signing scheme, for `edge sign`, with the warnings to print (a weak secret kept
    /// on purpose).
    pub fn secure_link(&self) -> Result<(SecureLink, Vec<String>), ConfigError> {
        let mut errors = self.env_problems.clone();
        let mut warnings = Vec::new();
        match self.signing_link(&mut errors, &mut warnings) {
            Some(link) if errors.is_empty() => Ok((link, warnings)),
            _ => Err(ConfigError(errors)),
        }
    }

    fn signing_link(
        &self,
        errors: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Option<SecureLink> {
        let sig = &self.signing;
        if sig.secrets.is_empty() {
            errors.push(
                "signing.secrets is empty: set HLS_SIGNING_SECRET or signing.secrets (there is no default secret)"
                    .into(),
            );
            return None;
        }
        if sig.secrets.iter().any(SecretString::is_empty) {
            errors.push("signing.secrets holds an empty secret".into());
            return None;
        }
        let strength = if sig.allow_weak_secret {
            Strength::WeakAllowed
        } else {
            Strength::Required
        };
        let refused = errors.len();
        for (i, s) in sig.secrets.iter().enumerate() {
            // The first is the one HLS_SIGNING_SECRET sets; name both so either is found.
            let name = match i {
                0 => "HLS_SIGNING_SECRET (signing.secrets[0])".to_owned(),
                _ => format!("signing.secrets[{i}]"),
            };
            match secret::check(&name, s.expose(), strength) {
                Verdict::Strong => {}
                Verdict::WeakAllowed(warning) => warnings.push(warning),
                Verdict::Refused(problem) => errors.push(problem),
            }
        }
        let template: Template = match sig.template.parse() {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("signing.template: {e}"));
                return None;
            }
        };
        if errors.len() > refused {
            return None;
        }
        let secrets = sig
            .secrets
            .iter()
            .map(|s| Secret::new(s.expose().as_bytes()))
            .collect();
        SecureLink::with_options(secrets, template, &sig.md5_arg, &sig.expires_arg)
            .map_err(|e| errors.push(format!("signing: {e}")))
            .ok()
    }

    /// The purge token, when set: as strong as a signing secret, with no weak override (it is
    /// new with the edge, so there is no old value to keep).
    fn purge_token(&self, errors: &mut Vec<String>) -> Option<SecretString> {
        let token = &self.admin.purge_token;
        if token.is_empty() {
            return None;
        }
        let name = "EDGE_PURGE_TOKEN (admin.purge_token)";
        match secret::check(name, token.expose(), Strength::WeakAllowed) {
            Verdict::Strong => Some(token.clone()),
            Verdict::Refused(problem) => {
                errors.push(problem);
                None
            }
            Verdict::WeakAllowed(_) => {
                errors.push(format!(
                    "{name} is {} bytes, shorter than {MIN_SECRET_BYTES}; generate one with \
                     `openssl rand -hex 32`",
                    token.expose().len()
                ));
                None
            }
        }
    }
}
