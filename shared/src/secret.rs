//! Secrets in configuration: never printed, never weak, never a placeholder.
//!
//! Every secret both services take (the edge's signing secret, the origin's JWT, playback,
//! purge and webhook secrets) is held as a [`SecretString`], whose `Debug` shows only its
//! length, and checked by [`check`] at start: at least [`MIN_SECRET_BYTES`] bytes and not one
//! of the placeholders the example files in `deploy/` and `config/` ship with. An operator who
//! migrates from nginx with a shorter secret that already signed every URL in flight may keep
//! it with `allow_weak_secret = true`, which is logged as a warning at every start.

use serde::Deserialize;

/// The shortest secret accepted without `allow_weak_secret`.
pub const MIN_SECRET_BYTES: usize = 16;

/// A secret string. `Debug` never shows it; read it with [`SecretString::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("<empty>")
        } else {
            write!(f, "<redacted, {} bytes>", self.0.len())
        }
    }
}

/// How weak a secret may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    /// At least [`MIN_SECRET_BYTES`] and not a placeholder.
    Required,
    /// An existing short secret kept on purpose (`allow_weak_secret`); placeholders are still
    /// refused.
    WeakAllowed,
}

/// Why a secret was refused, or the warning to log for an allowed weak one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Strong,
    /// Allowed by `allow_weak_secret`; log this at every start.
    WeakAllowed(String),
    Refused(String),
}

/// Checks the secret configured as `name` (e.g. `HLS_SIGNING_SECRET`).
pub fn check(name: &str, value: &str, strength: Strength) -> Verdict {
    if is_placeholder(value) {
        return Verdict::Refused(format!(
            "{name} is the placeholder from an example file; generate one with `openssl rand -hex 32`"
        ));
    }
    if value.len() >= MIN_SECRET_BYTES {
        return Verdict::Strong;
    }
    let short = format!(
        "{name} is {} bytes, shorter than {MIN_SECRET_BYTES}",
        value.len()
    );
    match strength {
        Strength::Required => Verdict::Refused(format!(
            "{short}; generate one with `openssl rand -hex 32` (an existing nginx secret can be \
             kept with allow_weak_secret = true)"
        )),
        Strength::WeakAllowed => Verdict::WeakAllowed(format!(
            "{short}: kept because allow_weak_secret = true; rotate it (see the README)"
        )),
    }
}

/// Placeholders shipped in `deploy/` and `config/` examples: `CHANGE-ME` in any spelling, on its
/// own or inside a longer value.
pub fn is_placeholder(value: &str) -> bool {
    let folded: String = value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    folded.contains("changeme")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::new("super-secret-value-123");
        let shown = format!("{s:?} {:?}", Some(&s));
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("22 bytes"), "{shown}");
        assert_eq!(format!("{:?}", SecretString::default()), "<empty>");
    }

    #[test]
    fn short_and_placeholder_secrets_are_refused() {
        assert_eq!(
            check("S", "0123456789abcdef", Strength::Required),
            Verdict::Strong
        );
        assert!(matches!(
            check("S", "short", Strength::Required),
            Verdict::Refused(m) if m.contains("5 bytes") && m.contains("allow_weak_secret")
        ));
        assert!(matches!(
            check("S", "short", Strength::WeakAllowed),
            Verdict::WeakAllowed(_)
        ));
        for placeholder in [
            "CHANGE-ME",
            "CHANGE-ME-AT-LEAST-16-BYTES",
            "change_me_please!!",
        ] {
            for strength in [Strength::Required, Strength::WeakAllowed] {
                assert!(
                    matches!(check("S", placeholder, strength), Verdict::Refused(_)),
                    "{placeholder}"
                );
            }
        }
    }

    /// Every secret value written in the example files is recognised as a placeholder, so an
    /// operator who copies an example unchanged cannot start a service with it.
    #[test]
    fn example_files_hold_only_placeholders() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = [
            "deploy/hls.env.example",
            "deploy/k8s/secret.example.yaml",
            "config/edge.toml",
            "config/origin.toml",
        ];
        let mut seen = 0;
        for file in files {
            let text = std::fs::read_to_string(root.join(file)).expect("example file exists");
            for line in text.lines() {
                let line = line.trim_start_matches(['#', ' ']);
                let Some((name, value)) = line.split_once(['=', ':']) else {
                    continue;
                };
                let name = name.trim();
                let value = value.trim().trim_matches('"');
                let secret_name = ["SECRET", "TOKEN", "PASSWORD"]
                    .iter()
                    .any(|k| name.to_ascii_uppercase().ends_with(k));
                let flag = matches!(value, "true" | "false");
                if !secret_name || flag || value.is_empty() || value.starts_with('{') {
                    continue;
                }
                seen += 1;
                assert!(is_placeholder(value), "{file}: {name} = {value:?}");
            }
        }
        assert!(seen >= 8, "found only {seen} example secrets");
    }
}
