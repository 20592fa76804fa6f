//! The bucket operations the media store is built from, each one verified: a put is confirmed
//! by its ETag (the MD5 of what was sent) or, for a multipart upload, by the stored size; a
//! download is renamed into place only once its length matches; a prefix delete lists again
//! and reports what is left.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use shared::objects::object_store::path::Path as Key;
use shared::objects::object_store::{self, ObjectStoreExt, PutPayload, WriteMultipart};
use shared::objects::Objects;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::StorageError;

/// An object's bytes as they arrive.
pub type BodyStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Files up to this size are sent in one PUT; larger ones as a multipart upload.
const SINGLE_PUT_MAX: u64 = 16 << 20;
/// Part size of a multipart upload (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 << 20;
/// Parts in flight at once: memory stays at about `PART_BYTES * (PARTS_IN_FLIGHT + 1)`
/// whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;

/// A bucket and the prefix this deployment lives under.
#[derive(Debug, Clone)]
pub struct Bucket {
    objects: Objects,
}

impl Bucket {
    pub fn new(objects: Objects) -> Self {
        Self { objects }
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    fn key(&self, name: &str) -> Result<Key, StorageError> {
        self.objects
            .key(name)
            .ok_or_else(|| StorageError::BadName(name.to_owned()))
    }

    fn failed(op: &'static str, name: &str) -> impl FnOnce(object_store::Error) -> StorageError {
        let name = name.to_owned();
        move |source| StorageError::Bucket { op, name, source }
    }

    /// Puts `bytes` as `name` and confirms the store holds exactly them.
    pub async fn put_bytes(&self, name: &str, bytes: Bytes) -> Result<(), StorageError> {
        let key = self.key(name)?;
        let md5: [u8; 16] = Md5::digest(&bytes).into();
        let len = bytes.len() as u64;
        let put = self
            .objects
            .store()
            .put(&key, PutPayload::from_bytes(bytes))
            .await
            .map_err(Self::failed("put", name))?;
        match self.objects.etag_md5(put.e_tag.as_deref()) {
            Some(etag) if etag == md5 => Ok(()),
            Some(_) => Err(StorageError::Mismatch {
                name: name.to_owned(),
                what: "the stored object's ETag is not the MD5 of what was sent".into(),
            }),
            // No MD5 ETag (multipart, or a store whose ETags are not MD5s): the size is what
            // can be checked.
            None => self.confirm_size(name, &key, len).await,
        }
    }

    /// Puts the file at `path` as `name`: one PUT when small, a multipart upload with flat
    /// memory otherwise (aborted on any error, so no object and no parts are left behind).
    pub async fn put_file(&self, name: &str, path: &Path) -> Result<(), StorageError> {
        let len = tokio::fs::metadata(path).await?.len();
        if len <= SINGLE_PUT_MAX {
            let bytes = tokio::fs::read(path).await?;
            return self.put_bytes(name, bytes.into()).await;
        }
        let key = self.key(name)?;
        let upload = self
            .objects
            .store()
            .put_multipart(&key)
            .await
            .map_err(Self::failed("start multipart upload", name))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let sent = async {
            let mut file = tokio::fs::File::open(path).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(Self::failed("upload part", name))?;
                writer.write(&buf[..n]);
            }
            Ok::<_, StorageError>(())
        }
        .await;
        if let Err(error) = sent {
            if let Err(e) = writer.abort().await {
                tracing::warn!(error = %e, name, "cannot abort a multipart upload");
            }
            return Err(error);
        }
        writer
            .finish()
            .await
            .map_err(Self::failed("complete multipart upload", name))?;
        self.confirm_size(name, &key, len).await
    }

    async fn confirm_size(&self, name: &str, key: &Key, len: u64) -> Result<(), StorageError> {
        let meta = self
            .objects
            .store()
            .head(key)
            .await
            .map_err(Self::failed("head", name))?;
        if meta.size == len {
            Ok(())
        } else {
            Err(StorageError::Mismatch {
                name: name.to_owned(),
                what: format!("{} bytes stored, {len} sent", meta.size),
            })
        }
    }

    /// The object `name`, or `None` when there is none.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        let key = self.key(name)?;
        match self.objects.store().get(&key).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(Self::failed("get", name))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::failed("get", name)(e)),
        }
    }

    /// Opens bytes of `name` for an HTTP `Range` header (`None`: all of it): the object's
    /// size and, when it exists, `Some(start, end, body)` for a satisfiable range or `None`
    /// for an unsatisfiable one.
    #[allow(clippy::type_complexity)]
    pub async fn open_range(
        &self,
        name: &str,
        range: Option<&str>,
    ) -> Result<(u64, Option<Option<(u64, u64, BodyStream)>>), StorageError> {
        use shared::range::RangeDecision;
        let key = self.key(name)?;
        let store = self.objects.store();
        let size = match store.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok((0, None)),
            Err(e) => return Err(Self::failed("head", name)(e)),
        };
        let (start, end) = match shared::range::decide(range.map(str::as_bytes), size) {
            RangeDecision::Full => (0, size),
            RangeDecision::Partial { start, end } => (start, end),
            RangeDecision::Unsatisfiable => return Ok((size, Some(None))),
        };
        if start == end {
            return Ok((size, Some(Some((start, end, stream::empty().boxed())))));
        }
        let got = store
            .get_opts(
                &key,
                object_store::GetOptions {
                    range: Some((start..end).into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(Self::failed("get", name))?;
        let body = got.into_stream().map_err(std::io::Error::other).boxed();
        Ok((size, Some(Some((start, end, body)))))
    }

    /// A presigned GET URL of `name`, valid for `ttl`.
    pub async fn presign_get(
        &self,
        name: &str,
        ttl: std::time::Duration,
    ) -> Result<String, StorageError> {
        let key = self.key(name)?;
        match self.objects.presign_get(&key, ttl).await {
            Some(url) => url.map_err(Self::failed("presign", name)),
            None => Err(StorageError::Mismatch {
                name: name.to_owned(),
                what: "this store cannot presign URLs".into(),
            }),
        }
    }

    /// Whether `name` exists.
    pub async fn exists(&self, name: &str) -> Result<bool, StorageError> {
        let key = self.key(name)?;
        match self.objects.store().head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::failed("head", name)(e)),
        }
    }

    /// Downloads `name` to `path` (through a `.part` file, renamed once the length matches).
    /// `Ok(false)` when there is no such object.
    pub async fn download(&self, name: &str, path: &Path) -> Result<bool, StorageError> {
        let key = self.key(name)?;
        let got = match self.objects.store().get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(Self::failed("get", name)(e)),
        };
        let expected = got.meta.size;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut part = Part::new(path);
        let (file, held) = super::leftovers::create_held(&part.path)?;
        part.held = Some(held);
        let mut file = tokio::fs::File::from_std(file);
        let mut stream = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(Self::failed("get", name))?;
            written += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        if written != expected {
            return Err(StorageError::Mismatch {
                name: name.to_owned(),
                what: format!("{written} bytes received of {expected}"),
            });
        }
        tokio::fs::rename(&part.path, path).await?;
        part.renamed = true;
        Ok(true)
    }

    /// Every object under the directory `dir` (paged through however many there are), as
    /// names relative to the deployment's prefix, with their sizes.
    pub async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let key = self.key(dir)?;
        let prefix = self.objects.prefix().to_owned();
        self.objects
            .store()
            .list(Some(&key))
            .map_ok(|meta| {
                let full = meta.location.to_string();
                let name = full.strip_prefix(&prefix).unwrap_or(&full).to_owned();
                (name, meta.size)
            })
            .try_collect()
            .await
            .map_err(Self::failed("list", dir))
    }

    /// The immediate sub-directories of `dir` (names relative to `dir`).
    pub async fn subdirectories(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let key = self.key(dir)?;
        let listed = self
            .objects
            .store()
            .list_with_delimiter(Some(&key))
            .await
            .map_err(Self::failed("list", dir))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    /// Deletes `name` (absent is fine).
    pub async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let key = self.key(name)?;
        match self.objects.store().delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::failed("delete", name)(e)),
        }
    }

    /// Deletes every object under `dir` (listed page by page, deleted in batches), then lists
    /// again: [`StorageError::Left`] says how many objects a failed delete left.
    pub async fn delete_dir(&self, dir: &str) -> Result<(), StorageError> {
        let key = self.key(dir)?;
        let store = self.objects.store();
        let locations = store.list(Some(&key)).map_ok(|m| m.location).boxed();
        let mut failure = None;
        let mut deleted = store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        drop(deleted);
        let left = self.list(dir).await?.len();
        match (left, failure) {
            (0, _) => Ok(()),
            (left, first) => Err(StorageError::Left {
                dir: dir.to_owned(),
                left,
                first: first.map(|e| e.to_string()).unwrap_or_default(),
            }),
        }
    }
}

/// A download's `<path>.<writer>-<n>.part`, removed unless it became the file: a download
/// that fails or is dropped (its job cancelled) leaves no partial copy behind, and one whose
/// process was killed is removed at a later start ([`super::leftovers`]). Named per
/// download: two pulls of one directory (an API change and a job's start on one machine, or
/// two processes sharing the data directory) must neither write into nor remove each other's.
struct Part {
    path: PathBuf,
    renamed: bool,
    /// Held until the download ends: a sweep at another process's start leaves it alone.
    held: Option<super::leftovers::Held>,
}

impl Part {
    fn new(path: &Path) -> Self {
        static DOWNLOADS: AtomicU64 = AtomicU64::new(0);
        let n = DOWNLOADS.fetch_add(1, Ordering::Relaxed);
        let mut part = path.as_os_str().to_owned();
        part.push(format!(".{}-{n}.part", super::leftovers::writer()));
        Self {
            path: PathBuf::from(part),
            renamed: false,
            held: None,
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
