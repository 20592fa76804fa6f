//! Who is asking: user JWTs (HS256 by default, RS256/ES256 from an identity provider) and the
//! short-lived playback credentials the origin puts into manifest URLs instead of the user's
//! own token.
//!
//! Only the configured algorithm is accepted, so `alg: none` and algorithm-confusion tokens
//! (an HS256 token "signed" with an RS256 public key) fail. Playback credentials are signed
//! with a key derived for that purpose alone: a user token is never a playback credential and
//! the reverse.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Method;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use shared::media::VideoId;

use super::error::ApiError;
use super::AppState;
use crate::config::{AuthSettings, JwtKey};

/// A user token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub admin: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlaybackClaims {
    sub: String,
    vid: String,
    exp: i64,
}

/// Token verification and minting.
pub struct Auth {
    user_key: DecodingKey,
    user_validation: Validation,
    /// Present when users are HS256 with our secret (`origin token`, dev mode).
    mint_key: Option<EncodingKey>,
    playback_encode: EncodingKey,
    playback_decode: DecodingKey,
}

impl Auth {
    /// Fails only when a configured public key cannot be parsed.
    pub fn new(a: &AuthSettings) -> Result<Self, jsonwebtoken::errors::Error> {
        let (user_key, alg, mint_key) = match &a.jwt {
            JwtKey::Hs256(secret) => (
                DecodingKey::from_secret(secret),
                Algorithm::HS256,
                Some(EncodingKey::from_secret(secret)),
            ),
            JwtKey::Rs256(pem) => (DecodingKey::from_rsa_pem(pem)?, Algorithm::RS256, None),
            JwtKey::Es256(pem) => (DecodingKey::from_ec_pem(pem)?, Algorithm::ES256, None),
        };
        let mut user_validation = Validation::new(alg);
        user_validation.leeway = a.leeway_secs;
        user_validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &a.issuer {
            user_validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &a.audience {
            Some(audience) => {
                user_validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Unconfigured: a token naming an audience is not refused for it.
            None => user_validation.validate_aud = false,
        }
        user_validation.set_required_spec_claims(&required);
        let playback_secret = derive(&a.playback_key, b"playback-credential");
        Ok(Self {
            user_key,
            user_validation,
            mint_key,
            playback_encode: EncodingKey::from_secret(&playback_secret),
            playback_decode: DecodingKey::from_secret(&playback_secret),
        })
    }

    /// Verifies a user token.
    pub fn verify(&self, token: &str) -> Result<User, ApiError> {
        let data = decode::<Claims>(token, &self.user_key, &self.user_validation)
            .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))?;
        let c = data.claims;
        if c.sub.is_empty() {
            return Err(ApiError::Unauthorized("token has an empty subject".into()));
        }
        Ok(User {
            admin: c.role.as_deref() == Some("admin"),
            id: c.sub,
        })
    }

    /// Mints a user token (HS256 deployments only).
    pub fn mint(
        &self,
        user: &str,
        admin: bool,
        ttl_secs: i64,
        now: i64,
    ) -> Result<String, ApiError> {
        let key = self.mint_key.as_ref().ok_or_else(|| {
            ApiError::BadRequest("tokens come from the identity provider (RS256/ES256)".into())
        })?;
        mint_with(key, user, admin, ttl_secs, now)
    }

    /// A credential for playing `video` as `user` until `expires` (deterministic, so manifests
    /// within one expiry bucket are byte-identical).
    pub fn playback_token(
        &self,
        video: &VideoId,
        user: &str,
        expires: i64,
    ) -> Result<String, ApiError> {
        let claims = PlaybackClaims {
            sub: user.to_owned(),
            vid: video.to_string(),
            exp: expires,
        };
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.playback_encode,
        )
        .map_err(ApiError::internal)
    }

    /// Verifies a playback credential for `video`; returns its user id.
    pub fn verify_playback(&self, token: &str, video: &VideoId) -> Result<String, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        let data = decode::<PlaybackClaims>(token, &self.playback_decode, &v)
            .map_err(|e| ApiError::Unauthorized(format!("invalid playback credential: {e}")))?;
        if data.claims.vid != video.as_str() {
            return Err(ApiError::Forbidden(
                "playback credential is for another video".into(),
            ));
        }
        Ok(data.claims.sub)
    }
}

/// Mints an HS256 user token with `secret` (`origin token`).
pub fn mint_hs256(
    secret: &[u8],
    user: &str,
    admin: bool,
    ttl_secs: i64,
    now: i64,
) -> Result<String, ApiError> {
    mint_with(
        &EncodingKey::from_secret(secret),
        user,
        admin,
        ttl_secs,
        now,
    )
}

/// A token lifetime written as `90`, `30m`, `1h` or `7d`, in seconds.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("bad ttl {s:?}"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("unknown ttl unit {other:?} (s, m, h, d)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("ttl {s:?} is too long"))
}

fn mint_with(
    key: &EncodingKey,
    user: &str,
    admin: bool,
    ttl_secs: i64,
    now: i64,
) -> Result<String, ApiError> {
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl_secs,
        role: admin.then(|| "admin".to_owned()),
    };
    encode(&Header::new(Algorithm::HS256), &claims, key).map_err(ApiError::internal)
}

fn derive(secret: &[u8], context: &[u8]) -> Vec<u8> {
    use md5::{Digest, Md5};
    // Two rounds with distinct prefixes give 32 bytes of key separated from the user key.
    let mut out = Vec::with_capacity(32);
    for round in [b'a', b'b'] {
        let mut h = Md5::new();
        h.update([round]);
        h.update(context);
        h.update(secret);
        out.extend_from_slice(&h.finalize());
    }
    out
}

/// The token from `Authorization: Bearer`, or on reads the `token` query parameter (players,
/// `<img>` and `EventSource` cannot send headers). A request that changes state (POST,
/// DELETE) must send the header: a token in a URL ends up in logs, histories and referrers,
/// and must not be enough to delete a video.
pub fn bearer(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        return v.to_str().ok()?.strip_prefix("Bearer ").map(str::to_owned);
    }
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return None;
    }
    query_param(parts, "token")
}

/// The raw value of `name` in the query string.
pub fn query_param(parts: &Parts, name: &str) -> Option<String> {
    parts.uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            let why = if parts.uri.query().is_some_and(|q| q.contains("token=")) {
                "send the token in an Authorization: Bearer header (a token in the URL is \
                 accepted only on reads)"
            } else {
                "missing bearer token"
            };
            ApiError::Unauthorized(why.into())
        })?;
        state.auth.verify(&token)
    }
}

/// An admin user (role `admin`).
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = User::from_request_parts(parts, state).await?;
        if !user.admin {
            return Err(ApiError::Forbidden("admin role required".into()));
        }
        Ok(Admin(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JwtAlgorithm, OriginConfig};

    const EDGE_SECRET: &str = "edge-signing-secret-01";

    /// The identity provider's tokens, for public-key configurations.
    const ISSUER: &str = "https://idp.example";
    const AUDIENCE: &str = "hls-origin";

    fn config(algorithm: JwtAlgorithm, public_key: Option<&std::path::Path>) -> OriginConfig {
        let mut c = OriginConfig::default();
        c.server.listen = "127.0.0.1:0".into();
        c.auth.algorithm = algorithm;
        c.auth.jwt_secret = "0123456789abcdef0123".into();
        if let Some(p) = public_key {
            c.auth.public_key_file = p.to_owned();
            c.auth.playback_secret = "dedicated-playback-secret".into();
            c.auth.issuer = ISSUER.into();
            c.auth.audience = AUDIENCE.into();
        }
        c.playback.edge_base_url = "http://edge".into();
        c.playback.signing_secrets = vec![EDGE_SECRET.into()];
        c
    }

    fn settings(algorithm: JwtAlgorithm, public_key: Option<&std::path::Path>) -> AuthSettings {
        config(algorithm, public_key).serve().expect("valid").auth
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn hs256_round_trip_roles_and_expiry() {
        let auth = Auth::new(&settings(JwtAlgorithm::HS256, None)).expect("auth");
        let now = crate::jobs::model::unix_now();
        let t = auth.mint("alice", false, 60, now).expect("mint");
        assert_eq!(
            auth.verify(&t).expect("valid"),
            User {
                id: "alice".into(),
                admin: false
            }
        );
        let admin = auth.mint("root", true, 60, now).expect("mint");
        assert!(auth.verify(&admin).expect("valid").admin);
        let expired = auth.mint("alice", false, -60, now).expect("mint");
        assert!(matches!(
            auth.verify(&expired),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn alg_none_and_tampering_are_rejected() {
        let auth = Auth::new(&settings(JwtAlgorithm::HS256, None)).expect("auth");
        let exp = crate::jobs::model::unix_now() + 60;
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(r#"{{"sub":"alice","exp":{exp}}}"#).as_bytes())
        );
        assert!(auth.verify(&none).is_err());
        let good = auth.mint("alice", false, 60, exp - 60).expect("mint");
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = b64(format!(r#"{{"sub":"bob","exp":{exp}}}"#).as_bytes());
        parts[1] = &forged;
        assert!(auth.verify(&parts.join(".")).is_err(), "payload swapped");
    }

    #[test]
    fn es256_verifies_and_refuses_algorithm_confusion() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let dir = tempfile::tempdir().expect("tmp");
        let public = dir.path().join("pub.pem");
        std::fs::write(&public, key.public_key_pem()).expect("write");
        let auth = Auth::new(&settings(JwtAlgorithm::ES256, Some(&public))).expect("auth");
        let exp = crate::jobs::model::unix_now() + 60;
        let claims =
            serde_json::json!({"sub": "carol", "exp": exp, "iss": ISSUER, "aud": AUDIENCE});
        let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).expect("pem");
        let token = encode(&Header::new(Algorithm::ES256), &claims, &signing).expect("sign");
        assert_eq!(auth.verify(&token).expect("valid").id, "carol");
        // The same provider's token for another application.
        let elsewhere =
            serde_json::json!({"sub": "carol", "exp": exp, "iss": ISSUER, "aud": "wiki"});
        let elsewhere = encode(&Header::new(Algorithm::ES256), &elsewhere, &signing).expect("sign");
        assert!(auth.verify(&elsewhere).is_err(), "another audience's token");
        // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key.public_key_pem().as_bytes()),
        )
        .expect("sign");
        assert!(auth.verify(&confused).is_err());
        assert!(
            auth.mint("x", false, 60, exp).is_err(),
            "no minting without our own secret"
        );
    }

    #[test]
    fn playback_credentials_are_scoped_and_not_user_tokens() {
        let auth = Auth::new(&settings(JwtAlgorithm::HS256, None)).expect("auth");
        let exp = crate::jobs::model::unix_now() + 60;
        let v1: VideoId = "v1".parse().expect("id");
        let v2: VideoId = "v2".parse().expect("id");
        let pt = auth.playback_token(&v1, "alice", exp).expect("pt");
        assert_eq!(
            auth.playback_token(&v1, "alice", exp).expect("pt"),
            pt,
            "deterministic"
        );
        assert_eq!(auth.verify_playback(&pt, &v1).expect("valid"), "alice");
        assert!(matches!(
            auth.verify_playback(&pt, &v2),
            Err(ApiError::Forbidden(_))
        ));
        assert!(
            auth.verify(&pt).is_err(),
            "a playback credential is not a user token"
        );
        let user = auth.mint("alice", false, 60, exp - 60).expect("mint");
        assert!(
            auth.verify_playback(&user, &v1).is_err(),
            "a user token is not a credential"
        );
    }

    #[test]
    fn not_before_issuer_and_audience() {
        let mut c = config(JwtAlgorithm::HS256, None);
        c.auth.leeway_secs = 0;
        let auth = Auth::new(&c.serve().expect("valid").auth).expect("auth");
        let now = crate::jobs::model::unix_now();
        let key = EncodingKey::from_secret(b"0123456789abcdef0123");
        let sign = |claims: serde_json::Value| {
            encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
        };
        let later = sign(serde_json::json!({"sub": "a", "exp": now + 600, "nbf": now + 300}));
        assert!(auth.verify(&later).is_err(), "not valid before nbf");
        let fine = sign(serde_json::json!({"sub": "a", "exp": now + 600, "nbf": now - 1}));
        assert!(auth.verify(&fine).is_ok());
        c.auth.issuer = "https://id.example.com".into();
        c.auth.audience = "hls-origin".into();
        let auth = Auth::new(&c.serve().expect("valid").auth).expect("auth");
        assert!(
            auth.verify(&fine).is_err(),
            "iss and aud are required when configured"
        );
        let wrong = sign(serde_json::json!({"sub": "a", "exp": now + 600,
            "iss": "https://id.example.com", "aud": "someone-else"}));
        assert!(auth.verify(&wrong).is_err());
        let right = sign(serde_json::json!({"sub": "a", "exp": now + 600,
            "iss": "https://id.example.com", "aud": "hls-origin"}));
        assert_eq!(auth.verify(&right).expect("valid").id, "a");
    }

    #[test]
    fn the_edge_secret_cannot_mint_playback_credentials() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let dir = tempfile::tempdir().expect("tmp");
        let public = dir.path().join("pub.pem");
        std::fs::write(&public, key.public_key_pem()).expect("write");
        let auth = Auth::new(&settings(JwtAlgorithm::ES256, Some(&public))).expect("auth");
        let video: VideoId = "v1".parse().expect("id");
        let exp = crate::jobs::model::unix_now() + 60;
        // What someone holding only the edge's secret could compute.
        let forged_key = derive(EDGE_SECRET.as_bytes(), b"playback-credential");
        let claims = serde_json::json!({"sub": "alice", "vid": "v1", "exp": exp});
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&forged_key),
        )
        .expect("sign");
        assert!(auth.verify_playback(&forged, &video).is_err());
        let real = auth.playback_token(&video, "alice", exp).expect("pt");
        assert_eq!(auth.verify_playback(&real, &video).expect("valid"), "alice");
    }
}
