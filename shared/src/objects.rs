//! Media in S3-compatible object storage (AWS S3, Cloudflare R2, MinIO, SeaweedFS), for both
//! services: the origin publishes into a bucket, the edge pulls from it.
//!
//! One configuration block ([`StoreConfig`]: bucket, prefix, endpoint, region, path-style by
//! default) that the origin embeds as `[storage]` and the edge as `[upstream]`; credentials
//! come only from the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment and
//! are refused in a file. [`StoreSettings::connect`] builds an [`Objects`]: the store (through
//! the `object_store` crate, retries and timeouts set) and the key prefix every path lives
//! under. [`Objects::check`] asks the bucket once and says exactly what is wrong.
//!
//! # Layout
//! - [`config`]: the block, its environment overrides (`S3_*`, `AWS_*`) and validation.
//! - [`client`]: the HTTP client (rustls with ring and the Mozilla roots, like the rest of the
//!   workspace: no second crypto provider) and the `AmazonS3` built on it.
//! - [`check`]: one request against the bucket, its failure classified.

pub mod check;
pub mod client;
pub mod config;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use check::CheckError;
pub use config::{Credentials, StoreConfig, StoreSettings};
pub use object_store;
use object_store::path::Path;
use object_store::ObjectStore;

/// A bucket (or any [`ObjectStore`]) and the prefix this deployment's objects live under.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// Presigns URLs for the store (S3 only).
    signer: Option<Arc<dyn object_store::signer::Signer>>,
    prefix: String,
    describe: String,
    /// Whether single-part ETags are MD5s ([`StoreConfig::etags_are_md5`]).
    md5_etags: bool,
}

impl Objects {
    /// Wraps `store`; every key is `prefix` + the relative path (`prefix` empty or ending in
    /// `/`). Tests pass `object_store::memory::InMemory` here.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, describe: impl Into<String>) -> Self {
        Self {
            store,
            signer: None,
            prefix: config::normalise_prefix(prefix),
            describe: describe.into(),
            md5_etags: true,
        }
    }

    /// Whether this store's single-part ETags are MD5s of the bytes (true unless the bucket
    /// encrypts with SSE-KMS or SSE-C: see [`StoreConfig::etags_are_md5`]).
    pub fn with_md5_etags(mut self, md5_etags: bool) -> Self {
        self.md5_etags = md5_etags;
        self
    }

    /// The MD5 an object's ETag promises, if this store's ETags are MD5s and this one is a
    /// single-part ETag ([`etag_md5`]).
    pub fn etag_md5(&self, etag: Option<&str>) -> Option<[u8; 16]> {
        etag.filter(|_| self.md5_etags).and_then(etag_md5)
    }

    /// Lets [`Objects::presign_get`] sign URLs with `signer` (the same store's credentials).
    pub fn with_signer(mut self, signer: Arc<dyn object_store::signer::Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// A URL anyone holding it may GET `key` with until `ttl` has passed (SigV4 query
    /// signature), or `None` when the store cannot presign.
    pub async fn presign_get(
        &self,
        key: &Path,
        ttl: std::time::Duration,
    ) -> Option<object_store::Result<String>> {
        let signer = self.signer.as_ref()?;
        Some(
            signer
                .signed_url(object_store::signer::Method::GET, key, ttl)
                .await
                .map(|url| url.to_string()),
        )
    }

    /// The store itself, for everything the `ObjectStore` trait offers.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The key prefix (empty, or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `s3://bucket/prefix` at the endpoint, for logs and messages (never a credential).
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The key of `rel` (a path relative to the prefix, such as `<video>/720p/segment_000.ts`),
    /// or `None` when it is not a valid object path (empty, `.`/`..` segments, empty segments,
    /// control characters).
    pub fn key(&self, rel: &str) -> Option<Path> {
        let rel = rel.strip_prefix('/').unwrap_or(rel);
        if rel.is_empty() || rel.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return None;
        }
        let full = format!("{}{rel}", self.prefix);
        let path = Path::parse(&full).ok()?;
        (path.as_ref() == full).then_some(path)
    }

    /// The prefix as a path, for listing everything under it (`None`: the whole bucket).
    pub fn prefix_path(&self) -> Option<Path> {
        let p = self.prefix.trim_end_matches('/');
        (!p.is_empty()).then(|| Path::from(p))
    }

    /// Asks the bucket once (a one-byte ranged GET of a key that need not exist) and reports
    /// what failed: unreachable, bad credentials, no such bucket, access denied.
    pub async fn check(&self) -> Result<(), CheckError> {
        check::run(self).await
    }
}

/// The MD5 an S3 ETag carries for a single-part upload (`"<32 hex>"`), `None` for multipart
/// ETags (`"<hex>-<parts>"`) and anything else: what a downloader can verify bytes against.
pub fn etag_md5(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim().trim_start_matches("W/").trim_matches('"');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
