//! nginx `secure_link` compatible URL signatures.
//!
//! A signed URL carries `md5=<base64url(MD5(text))>&expires=<unix seconds>`, where `text` is
//! rendered from a [`Template`] like nginx's `secure_link_md5` (by default
//! `$secure_link_expires$uri$secret`). [`SecureLink::verify`] reproduces every accept/reject
//! rule of nginx 1.22's `ngx_http_secure_link_module`, so an operator can swap nginx for the edge
//! without re-signing a URL; the rules are cited where they are applied.

mod args;
mod base64url;
mod template;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

pub use args::query_arg;
pub use template::{Template, TemplateError};

/// Why a link was refused. `Missing` and `Malformed` and `Mismatch` are nginx's 403,
/// `Expired` is its 410.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The md5 or the expires argument is absent.
    #[error("signature or expiry argument missing")]
    Missing,
    /// The md5 is not 16 bytes of base64url, or expires is not a positive decimal number.
    #[error("signature or expiry argument malformed")]
    Malformed,
    /// The hash does not match under any accepted secret.
    #[error("signature does not match")]
    Mismatch,
    /// The hash matched but `expires` is in the past.
    #[error("link expired")]
    Expired,
}

impl VerifyError {
    /// Stable label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "bad_hash",
            Self::Expired => "expired",
        }
    }

    /// The human-readable reason, as a static string (error bodies are built once from it).
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "signature or expiry argument missing",
            Self::Malformed => "signature or expiry argument malformed",
            Self::Mismatch => "signature does not match",
            Self::Expired => "link expired",
        }
    }

    /// `true` for the one refusal nginx answers with 410 instead of 403.
    pub fn is_expired(self) -> bool {
        self == Self::Expired
    }
}

/// A signing secret. Its bytes never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the secret has no bytes (configuration validation refuses that).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// The request facts a signature can cover.
#[derive(Debug, Clone, Copy)]
pub struct LinkRequest<'a> {
    /// nginx's `$uri`: the decoded, normalised path, without query.
    pub uri: &'a [u8],
    /// The raw query string (after `?`, before `#`), not percent-decoded.
    pub args: &'a [u8],
    /// The client address as nginx's `$remote_addr` prints it, for templates that bind it.
    pub remote_addr: &'a str,
}

/// A signature ready to append to a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// base64url MD5 without padding (22 characters).
    pub md5: String,
    /// Unix time in seconds after which the edge answers 410.
    pub expires: i64,
}

/// A key ring plus the rules that turn a request into the signed text.
#[derive(Debug, Clone)]
pub struct SecureLink {
    template: Template,
    secrets: Vec<Secret>,
    md5_arg: String,
    expires_arg: String,
}

/// Errors building a [`SecureLink`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecureLinkError {
    /// No secret, or an empty one.
    #[error("at least one non-empty signing secret is required")]
    NoSecret,
    /// An argument name is empty or holds `&`, `=` or `,`.
    #[error("argument name {0:?} is invalid")]
    BadArgName(String),
}

impl SecureLink {
    /// The default scheme: template `$secure_link_expires$uri$secret`, arguments `md5` and
    /// `expires`. The first secret signs; every secret verifies (rotation).
    pub fn new(secrets: Vec<Secret>) -> Result<Self, SecureLinkError> {
        Self::with_options(secrets, Template::default(), "md5", "expires")
    }

    /// A scheme with a custom template and argument names.
    pub fn with_options(
        secrets: Vec<Secret>,
        template: Template,
        md5_arg: &str,
        expires_arg: &str,
    ) -> Result<Self, SecureLinkError> {
        if secrets.is_empty() || secrets.iter().any(Secret::is_empty) {
            return Err(SecureLinkError::NoSecret);
        }
        for name in [md5_arg, expires_arg] {
            if name.is_empty() || name.bytes().any(|b| matches!(b, b'&' | b'=' | b',')) {
                return Err(SecureLinkError::BadArgName(name.to_owned()));
            }
        }
        Ok(Self {
            template,
            secrets,
            md5_arg: md5_arg.to_owned(),
            expires_arg: expires_arg.to_owned(),
        })
    }

    /// Name of the hash argument.
    pub fn md5_arg(&self) -> &str {
        &self.md5_arg
    }

    /// Name of the expiry argument.
    pub fn expires_arg(&self) -> &str {
        &self.expires_arg
    }

    /// Whether signatures depend on the client address.
    pub fn binds_remote_addr(&self) -> bool {
        self.template.uses_remote_addr()
    }

    /// Signs `uri` (the decoded path exactly as nginx's `$uri` will see it) with the first
    /// secret.
    pub fn sign(&self, uri: &str, expires: i64, remote_addr: &str) -> Signature {
        let expires_text = expires.to_string();
        let digest = self.digest(
            &self.secrets[0],
            expires_text.as_bytes(),
            uri.as_bytes(),
            remote_addr,
        );
        Signature {
            md5: base64url::encode(&digest),
            expires,
        }
    }

    /// `uri` percent-encoded where needed, followed by `?md5=..&expires=..`.
    pub fn signed_url(&self, uri: &str, expires: i64, remote_addr: &str) -> String {
        let sig = self.sign(uri, expires, remote_addr);
        format!(
            "{}?{}={}&{}={}",
            encode_path(uri),
            self.md5_arg,
            sig.md5,
            self.expires_arg,
            sig.expires
        )
    }

    /// Appends `<encoded uri>?md5=..&expires=..` to `out` for an expiry already formatted as
    /// `expires_text`: the allocation-free form for signing a whole playlist.
    pub fn append_signed_url(
        &self,
        out: &mut String,
        uri: &str,
        expires_text: &str,
        remote_addr: &str,
    ) {
        let digest = self.digest(
            &self.secrets[0],
            expires_text.as_bytes(),
            uri.as_bytes(),
            remote_addr,
        );
        encode_path_into(uri, out);
        out.push('?');
        out.push_str(&self.md5_arg);
        out.push('=');
        base64url::encode_into(&digest, out);
        out.push('&');
        out.push_str(&self.expires_arg);
        out.push('=');
        out.push_str(expires_text);
    }

    /// Verifies a request at time `now` (unix seconds) exactly as nginx does.
    pub fn verify(&self, req: &LinkRequest<'_>, now: i64) -> Result<(), VerifyError> {
        let md5 = query_arg(req.args, self.md5_arg.as_bytes());
        let expires = query_arg(req.args, self.expires_arg.as_bytes());
        let (md5, expires_text) = match (md5, expires) {
            (None, _) | (_, None) => return Err(VerifyError::Missing),
            (Some(m), Some(e)) => split_like_nginx(m, e),
        };
        // nginx: `expires = ngx_atotm(...); if (expires <= 0) goto not_found;`
        let expires = parse_expires(expires_text).ok_or(VerifyError::Malformed)?;
        // nginx: `if (val.len > 24) goto not_found;` then exactly 16 decoded bytes.
        if md5.len() > 24 {
            return Err(VerifyError::Malformed);
        }
        let given = base64url::decode_md5(md5).ok_or(VerifyError::Malformed)?;
        let mut matched = subtle::Choice::from(0);
        // Every secret is tried, so timing does not reveal which one matched.
        for secret in &self.secrets {
            let digest = self.digest(secret, expires_text, req.uri, req.remote_addr);
            matched |= digest.ct_eq(&given);
        }
        if !bool::from(matched) {
            return Err(VerifyError::Mismatch);
        }
        // Hash before expiry: an expired link with a wrong hash is 403, never 410.
        // `expires == now` is still valid (nginx: `expires < ngx_time()`).
        if expires < now {
            return Err(VerifyError::Expired);
        }
        Ok(())
    }

    fn digest(&self, secret: &Secret, expires: &[u8], uri: &[u8], remote_addr: &str) -> [u8; 16] {
        let mut hasher = Md5::new();
        self.template.render(
            template::Values {
                expires,
                uri,
                secret: secret.as_bytes(),
                remote_addr: remote_addr.as_bytes(),
            },
            |part| hasher.update(part),
        );
        hasher.finalize().into()
    }
}

/// nginx evaluates `secure_link $arg_md5,$arg_expires` as one string split at the first comma,
/// so a comma inside the md5 value moves the rest into the expires text.
fn split_like_nginx<'a>(md5: &'a [u8], expires: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    match md5.iter().position(|&b| b == b',') {
        // The expires text then holds a comma and fails `ngx_atotm`; any non-digit text does.
        Some(i) => (&md5[..i], b","),
        None => (md5, expires),
    }
}

/// nginx's `ngx_atotm` plus the `> 0` check: 1+ ASCII digits, no sign, no overflow of `time_t`.
/// Leading zeros are allowed (the hash covers the text as sent).
pub fn parse_expires(text: &[u8]) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut value: i64 = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    (value > 0).then_some(value)
}

/// Percent-encodes what a URL path cannot carry literally; `/` and unreserved bytes stay.
/// nginx decodes `$uri` before hashing, so the signature covers the decoded form.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    encode_path_into(path, &mut out);
    out
}

/// [`encode_path`], appending to `out`.
pub fn encode_path_into(path: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests;
