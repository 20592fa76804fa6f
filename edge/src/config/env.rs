//! Environment overrides: `EDGE_*`, and `HLS_SIGNING_SECRET` as the nginx deployment names it.
//!
//! A value that does not parse is not skipped silently: it is recorded and `validate` reports it
//! with every other problem, so `edge check` fails on it.

use std::str::FromStr;

use shared::env::{parse_bool, EnvSource};

use super::EdgeConfig;

impl EdgeConfig {
    /// Applies environment overrides. Values that do not parse leave the setting as it was and
    /// become problems that [`EdgeConfig::validate`] reports.
    pub fn apply_env(&mut self, env: &dyn EnvSource) {
        let set = |target: &mut String, name: &str| {
            if let Some(v) = env.get(name) {
                *target = v;
            }
        };
        set(&mut self.server.listen, "EDGE_LISTEN");
        set(&mut self.admin.listen, "EDGE_ADMIN_LISTEN");
        set(&mut self.tls.listen, "EDGE_TLS_LISTEN");
        set(&mut self.content.prefix, "EDGE_PREFIX");
        if let Some(v) = env.get("EDGE_PURGE_TOKEN") {
            self.admin.purge_token = v.into();
        }
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
                Some(first) => *first = secret.into(),
                None => self.signing.secrets.push(secret.into()),
            }
        }
        let mut problems = Vec::new();
        parse(
            env,
            "EDGE_CACHE_MAX_BYTES",
            "a whole number of bytes",
            &mut self.cache.max_bytes,
            &mut problems,
        );
        parse(
            env,
            "EDGE_CACHE_MAX_OBJECT_BYTES",
            "a whole number of bytes",
            &mut self.cache.max_object_bytes,
            &mut problems,
        );
        parse(
            env,
            "EDGE_TLS_KTLS",
            "auto or off",
            &mut self.tls.ktls,
            &mut problems,
        );
        if let Some(v) = env.get("EDGE_ALLOW_WEAK_SECRET") {
            match parse_bool(&v) {
                Some(b) => self.signing.allow_weak_secret = b,
                None => problems.push(format!(
                    "EDGE_ALLOW_WEAK_SECRET: {v:?} is not true or false"
                )),
            }
        }
        self.upstream.apply_env(env, &mut problems);
        self.env_problems.extend(problems);
    }
}

/// Sets `target` from variable `name`, or records why its value is not `what`.
pub(super) fn parse<T: FromStr>(
    env: &dyn EnvSource,
    name: &str,
    what: &str,
    target: &mut T,
    problems: &mut Vec<String>,
) {
    if let Some(v) = env.get(name) {
        match v.trim().parse() {
            Ok(n) => *target = n,
            Err(_) => problems.push(format!("{name}: {v:?} is not {what}")),
        }
    }
}
