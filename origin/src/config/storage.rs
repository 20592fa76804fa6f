//! `[storage]`: where media lives. `backend = "fs"` (the default) is the data directory itself,
//! one disk every process of the deployment sees; `backend = "s3"` is an S3-compatible bucket
//! (the shared `shared::objects` block: bucket, prefix, endpoint, region, allow_http; the
//! credentials only from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`), and each machine's
//! data directory is its working copy.
//!
//! The section is one flat table: the origin's own keys are taken out first and the rest is the
//! store block, which refuses unknown keys itself, so a typo still fails to parse.

use serde::{Deserialize, Deserializer};
use shared::env::EnvSource;
use shared::objects::config::split_section;
use shared::objects::{StoreConfig, StoreSettings};

/// Where media lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The data directory (`<data>/hls`, `<data>/keys`, ...). The default.
    #[default]
    Fs,
    /// An S3-compatible bucket.
    S3,
}

/// How a worker reads an upload kept in a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceAccess {
    /// Downloaded into the work directory first (the default: ffmpeg reads a local file).
    #[default]
    Download,
    /// ffmpeg reads it from a presigned URL (no local copy; the input allow-list then admits
    /// exactly that URL's scheme).
    Presigned,
}

/// The `[storage]` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StorageConfig {
    /// `fs` (default) or `s3` (`STORAGE_BACKEND`).
    pub backend: StorageBackend,
    /// `download` (default) or `presigned` (`STORAGE_SOURCE_ACCESS`).
    pub source_access: SourceAccess,
    /// `backend = "s3"`: the bucket block.
    pub store: StoreConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Own {
    backend: Option<StorageBackend>,
    source_access: Option<SourceAccess>,
}

const OWN_KEYS: [&str; 2] = ["backend", "source_access"];

impl<'de> Deserialize<'de> for StorageConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = toml::Table::deserialize(d)?;
        let (own, store): (Own, StoreConfig) =
            split_section(table, &OWN_KEYS).map_err(D::Error::custom)?;
        Ok(Self {
            backend: own.backend.unwrap_or_default(),
            source_access: own.source_access.unwrap_or_default(),
            store,
        })
    }
}

/// Validated `[storage]`.
#[derive(Debug, Clone, Default)]
pub enum StorageSettings {
    /// The data directory.
    #[default]
    Fs,
    /// A bucket.
    S3 {
        store: Box<StoreSettings>,
        source_access: SourceAccess,
    },
}

impl StorageConfig {
    /// `STORAGE_BACKEND`, `STORAGE_SOURCE_ACCESS`, and for an `s3` backend the store's `S3_*`
    /// / `AWS_*` variables.
    pub fn apply_env(&mut self, env: &dyn EnvSource, problems: &mut Vec<String>) {
        if let Some(v) = env.get("STORAGE_BACKEND") {
            match v.trim().to_ascii_lowercase().as_str() {
                "fs" => self.backend = StorageBackend::Fs,
                "s3" => self.backend = StorageBackend::S3,
                _ => problems.push(format!("STORAGE_BACKEND={v:?}: expected fs or s3")),
            }
        }
        if let Some(v) = env.get("STORAGE_SOURCE_ACCESS") {
            match v.trim().to_ascii_lowercase().as_str() {
                "download" => self.source_access = SourceAccess::Download,
                "presigned" => self.source_access = SourceAccess::Presigned,
                _ => problems.push(format!(
                    "STORAGE_SOURCE_ACCESS={v:?}: expected download or presigned"
                )),
            }
        }
        // Only an s3 backend reads them: a process on the fs backend ignores a shared
        // environment meant for an edge.
        if self.backend == StorageBackend::S3 {
            self.store.apply_env(env);
        }
    }

    /// Checks the section, adding every problem to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) -> Option<StorageSettings> {
        match self.backend {
            StorageBackend::Fs => {
                if self.store.names_a_bucket() {
                    errors.push(
                        "storage: bucket, prefix and endpoint are for backend = \"s3\" \
                         (STORAGE_BACKEND=s3)"
                            .into(),
                    );
                    return None;
                }
                Some(StorageSettings::Fs)
            }
            StorageBackend::S3 => {
                self.store
                    .validate("storage", errors)
                    .map(|store| StorageSettings::S3 {
                        store: Box::new(store),
                        source_access: self.source_access,
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(text: &str) -> Result<StorageConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_to_the_data_directory() {
        let c = parse("").expect("empty");
        assert_eq!(c.backend, StorageBackend::Fs);
        let mut errors = Vec::new();
        assert!(matches!(c.validate(&mut errors), Some(StorageSettings::Fs)));
        assert!(errors.is_empty());
    }

    #[test]
    fn an_s3_backend_takes_its_bucket_from_the_file_and_credentials_from_the_environment() {
        let mut c = parse(
            "backend = \"s3\"\nbucket = \"media\"\nendpoint = \"http://127.0.0.1:8333\"\n\
             allow_http = true\nsource_access = \"presigned\"\n",
        )
        .expect("parses");
        let env: HashMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", "origin"),
            ("AWS_SECRET_ACCESS_KEY", "origin-secret-0123456789"),
            ("S3_PREFIX", "prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut errors = Vec::new();
        c.apply_env(&env, &mut errors);
        match c.validate(&mut errors) {
            Some(StorageSettings::S3 {
                store,
                source_access,
            }) => {
                assert_eq!(store.bucket, "media");
                assert_eq!(store.prefix, "prod/");
                assert_eq!(source_access, SourceAccess::Presigned);
            }
            other => panic!("expected s3 settings, got {other:?} ({errors:?})"),
        }
    }

    #[test]
    fn every_problem_is_reported_together() {
        let mut c = parse("backend = \"s3\"\nendpoint = \"http://x\"\n").expect("parses");
        let mut errors = Vec::new();
        let env: HashMap<String, String> =
            [("S3_ALLOW_HTTP".to_owned(), "maybe".to_owned())].into();
        c.apply_env(&env, &mut errors);
        assert!(c.validate(&mut errors).is_none());
        let all = errors.join("\n");
        for needle in [
            "S3_ALLOW_HTTP",
            "storage.bucket",
            "allow_http",
            "AWS_ACCESS_KEY_ID",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
        assert!(
            parse("backend = \"s3\"\nbuckett = \"x\"\n").is_err(),
            "typo refused"
        );
        let mut errors = Vec::new();
        let fs = parse("bucket = \"media\"\n").expect("parses");
        assert!(
            fs.validate(&mut errors).is_none(),
            "a bucket on fs is a mistake"
        );
    }
}
