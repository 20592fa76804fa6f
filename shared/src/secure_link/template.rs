//! The signed text, configurable like nginx's `secure_link_md5`.
//!
//! Variables: `$secure_link_expires` (the expires text as sent), `$uri`, `$secret` (replaced
//! by each secret of the key ring in turn) and `$remote_addr`; `${name}` delimits a name from
//! following letters. Everything else is literal.

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Expires,
    Uri,
    Secret,
    RemoteAddr,
}

/// A template that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `$name` is not one of the supported variables.
    #[error("unknown variable ${0} (known: secure_link_expires, uri, secret, remote_addr)")]
    UnknownVariable(String),
    /// `${` without `}`.
    #[error("unterminated ${{ in template")]
    Unterminated,
    /// A template without `$secret` signs nothing secret.
    #[error("template must contain $secret")]
    NoSecret,
}

pub(super) struct Values<'a> {
    pub expires: &'a [u8],
    pub uri: &'a [u8],
    pub secret: &'a [u8],
    pub remote_addr: &'a [u8],
}

impl Default for Template {
    /// `$secure_link_expires$uri$secret`: seed 001's nginx location.
    fn default() -> Self {
        Self {
            parts: vec![Part::Expires, Part::Uri, Part::Secret],
        }
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            literal.extend_from_slice(&rest.as_bytes()[..i]);
            let after = &rest[i + 1..];
            let (name, next) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced.find('}').ok_or(TemplateError::Unterminated)?;
                (&braced[..end], &braced[end + 1..])
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            };
            let part = match name {
                "secure_link_expires" => Part::Expires,
                "uri" => Part::Uri,
                "secret" => Part::Secret,
                "remote_addr" => Part::RemoteAddr,
                other => return Err(TemplateError::UnknownVariable(other.to_owned())),
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = next;
        }
        literal.extend_from_slice(rest.as_bytes());
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.contains(&Part::Secret) {
            return Err(TemplateError::NoSecret);
        }
        Ok(Self { parts })
    }
}

impl Template {
    pub(super) fn uses_remote_addr(&self) -> bool {
        self.parts.contains(&Part::RemoteAddr)
    }

    /// Feeds the rendered text to `sink` piece by piece (no allocation on the verify path).
    pub(super) fn render(&self, values: Values<'_>, mut sink: impl FnMut(&[u8])) {
        for part in &self.parts {
            sink(match part {
                Part::Literal(bytes) => bytes,
                Part::Expires => values.expires,
                Part::Uri => values.uri,
                Part::Secret => values.secret,
                Part::RemoteAddr => values.remote_addr,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(t: &Template) -> Vec<u8> {
        let mut out = Vec::new();
        t.render(
            Values {
                expires: b"E",
                uri: b"/u",
                secret: b"S",
                remote_addr: b"1.2.3.4",
            },
            |p| out.extend_from_slice(p),
        );
        out
    }

    #[test]
    fn default_is_expires_uri_secret() {
        assert_eq!(rendered(&Template::default()), b"E/uS");
        let parsed: Template = "$secure_link_expires$uri$secret".parse().expect("valid");
        assert_eq!(parsed, Template::default());
        let braced: Template = "$secure_link_expires${uri}${secret}"
            .parse()
            .expect("valid");
        assert_eq!(braced, Template::default());
    }

    #[test]
    fn literals_and_remote_addr() {
        let t: Template = "$secure_link_expires$uri$remote_addr $secret"
            .parse()
            .expect("valid");
        assert!(t.uses_remote_addr());
        assert_eq!(rendered(&t), b"E/u1.2.3.4 S");
    }

    #[test]
    fn rejects_bad_templates() {
        assert_eq!(
            "$uri$nope$secret".parse::<Template>(),
            Err(TemplateError::UnknownVariable("nope".into()))
        );
        assert_eq!(
            "${uri".parse::<Template>(),
            Err(TemplateError::Unterminated)
        );
        assert_eq!("$uri".parse::<Template>(), Err(TemplateError::NoSecret));
    }
}
