//! `[auth]`: how user tokens are verified, and the key playback credentials are signed with.

use std::path::PathBuf;

use serde::Deserialize;
use shared::secret::{self, SecretString, Strength, Verdict};

/// Signature algorithm of user tokens; only this one is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    /// A shared secret (`JWT_SECRET`).
    #[default]
    HS256,
    /// An identity provider's RSA public key.
    RS256,
    /// An identity provider's P-256 public key.
    ES256,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `HS256` (shared secret, default), `RS256` or `ES256` (public key of an identity provider).
    pub algorithm: JwtAlgorithm,
    /// HS256 secret, at least 16 bytes. No default: set `JWT_SECRET`.
    pub jwt_secret: SecretString,
    /// PEM public key for RS256/ES256.
    pub public_key_file: PathBuf,
    /// Lifetime of tokens minted by `origin token`, seconds. Default 3600.
    pub token_ttl_secs: u64,
    /// Required `iss` claim; empty: not checked (only with HS256: RS256/ES256 require it).
    /// Default empty.
    pub issuer: String,
    /// Required `aud` claim; empty: not checked (only with HS256: RS256/ES256 require it).
    /// Default empty.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, seconds. Default 5.
    pub leeway_secs: u64,
    /// Key of the playback credentials (`pt`) in manifest URLs. Required with RS256/ES256;
    /// with HS256 it defaults to a key derived from `JWT_SECRET`. Never the edge's signing
    /// secret: whoever holds that (edge hosts, a CDN, an old nginx config) must not be able to
    /// mint a credential that fetches AES keys. Env: PLAYBACK_SECRET.
    pub playback_secret: SecretString,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::HS256,
            jwt_secret: SecretString::default(),
            public_key_file: PathBuf::new(),
            token_ttl_secs: 3600,
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 5,
            playback_secret: SecretString::default(),
        }
    }
}

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

/// Validated `[auth]`.
#[derive(Clone)]
pub struct AuthSettings {
    pub jwt: JwtKey,
    /// Secret playback credentials are derived from.
    pub playback_key: Vec<u8>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt", &self.jwt)
            .field("playback_key", &"<secret>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl AuthConfig {
    /// `JWT_SECRET`, `PLAYBACK_SECRET`.
    pub fn apply_env(&mut self, env: &dyn shared::env::EnvSource) {
        if let Some(v) = env.get("JWT_SECRET") {
            self.jwt_secret = v.into();
        }
        if let Some(v) = env.get("PLAYBACK_SECRET") {
            self.playback_secret = v.into();
        }
    }

    /// Checks `[auth]`; `signing_secrets` are the edge's, which no auth key may equal.
    pub fn validate(
        &self,
        signing_secrets: &[&str],
        errors: &mut Vec<String>,
    ) -> Option<AuthSettings> {
        let before = errors.len();
        let jwt = self.jwt_key(errors);
        let mut strong = |name: &str, value: &str| {
            if let Verdict::Refused(why) = secret::check(name, value, Strength::Required) {
                errors.push(why);
            } else if signing_secrets.contains(&value) {
                errors.push(format!(
                    "{name} must differ from HLS_SIGNING_SECRET: the edge's secret must not \
                     open the origin"
                ));
            }
        };
        if !self.playback_secret.is_empty() {
            strong("PLAYBACK_SECRET", self.playback_secret.expose());
        }
        let playback_key = match (&jwt, self.playback_secret.is_empty()) {
            (_, false) => Some(self.playback_secret.expose().as_bytes().to_vec()),
            (Some(JwtKey::Hs256(k)), true) => Some(k.clone()),
            (Some(_), true) => {
                errors.push(
                    "PLAYBACK_SECRET must be set with RS256/ES256 (at least 16 bytes, not the \
                     signing secret)"
                        .into(),
                );
                None
            }
            (None, true) => None,
        };
        if self.algorithm == JwtAlgorithm::HS256 && !self.jwt_secret.is_empty() {
            if let Verdict::Refused(why) =
                secret::check("JWT_SECRET", self.jwt_secret.expose(), Strength::Required)
            {
                errors.push(why);
            } else if signing_secrets.contains(&self.jwt_secret.expose()) {
                errors.push(
                    "JWT_SECRET must differ from HLS_SIGNING_SECRET: the edge's secret must not \
                     open the origin"
                        .into(),
                );
            }
        }
        if self.leeway_secs > 300 {
            errors.push("auth.leeway_secs must be at most 300".into());
        }
        if self.algorithm != JwtAlgorithm::HS256
            && (self.issuer.is_empty() || self.audience.is_empty())
        {
            errors.push(
                "auth.issuer and auth.audience must be set with RS256/ES256: an identity \
                 provider signs tokens for other applications too, and only these claims say \
                 a token is meant for this origin"
                    .into(),
            );
        }
        let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        if errors.len() > before {
            return None;
        }
        Some(AuthSettings {
            jwt: jwt?,
            playback_key: playback_key?,
            issuer: nonempty(&self.issuer),
            audience: nonempty(&self.audience),
            leeway_secs: self.leeway_secs,
        })
    }

    fn jwt_key(&self, errors: &mut Vec<String>) -> Option<JwtKey> {
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.jwt_secret.is_empty() {
                    errors.push("JWT_SECRET must be set (no default secret)".into());
                    return None;
                }
                Some(JwtKey::Hs256(self.jwt_secret.expose().as_bytes().to_vec()))
            }
            alg @ (JwtAlgorithm::RS256 | JwtAlgorithm::ES256) => {
                match std::fs::read(&self.public_key_file) {
                    Ok(pem) if alg == JwtAlgorithm::RS256 => Some(JwtKey::Rs256(pem)),
                    Ok(pem) => Some(JwtKey::Es256(pem)),
                    Err(e) => {
                        errors.push(format!(
                            "auth.public_key_file {}: {e}",
                            self.public_key_file.display()
                        ));
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs256(jwt: &str) -> AuthConfig {
        AuthConfig {
            jwt_secret: jwt.into(),
            ..AuthConfig::default()
        }
    }

    #[test]
    fn weak_placeholder_and_shared_secrets_are_refused() {
        let mut errors = Vec::new();
        assert!(hs256("short").validate(&[], &mut errors).is_none());
        assert!(errors[0].contains("JWT_SECRET"), "{errors:?}");
        let mut errors = Vec::new();
        assert!(hs256("CHANGE-ME-AT-LEAST-16-BYTES")
            .validate(&[], &mut errors)
            .is_none());
        let mut errors = Vec::new();
        let same = "the-same-secret-0123456789";
        assert!(hs256(same).validate(&[same], &mut errors).is_none());
        assert!(errors[0].contains("differ"), "{errors:?}");
    }

    #[test]
    fn playback_key_is_dedicated_with_public_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let pem = dir.path().join("pub.pem");
        std::fs::write(&pem, "not checked here").expect("write");
        let mut c = AuthConfig {
            algorithm: JwtAlgorithm::ES256,
            public_key_file: pem,
            issuer: "https://idp.example".into(),
            audience: "hls-origin".into(),
            ..AuthConfig::default()
        };
        let mut errors = Vec::new();
        assert!(c
            .validate(&["edge-signing-secret-0123"], &mut errors)
            .is_none());
        assert!(errors[0].contains("PLAYBACK_SECRET"), "{errors:?}");
        c.playback_secret = "edge-signing-secret-0123".into();
        let mut errors = Vec::new();
        assert!(c
            .validate(&["edge-signing-secret-0123"], &mut errors)
            .is_none());
        assert!(errors[0].contains("differ"), "{errors:?}");
        c.playback_secret = "a-dedicated-playback-secret".into();
        let mut errors = Vec::new();
        let s = c
            .validate(&["edge-signing-secret-0123"], &mut errors)
            .expect("valid");
        assert_eq!(s.playback_key, b"a-dedicated-playback-secret");
        assert!(!format!("{s:?}").contains("dedicated"), "{s:?}");
        // A provider's key signs other applications' tokens too: they must name this origin.
        for (issuer, audience) in [("", "hls-origin"), ("https://idp.example", "")] {
            c.issuer = issuer.into();
            c.audience = audience.into();
            let mut errors = Vec::new();
            assert!(c
                .validate(&["edge-signing-secret-0123"], &mut errors)
                .is_none());
            assert!(
                errors[0].contains("auth.issuer and auth.audience"),
                "{errors:?}"
            );
        }
    }
}
