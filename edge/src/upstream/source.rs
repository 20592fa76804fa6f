//! One GET against the upstream: a bucket through `shared::objects`, or an HTTP base URL.
//! Either way the answer is the object's length, its validators and its bytes as they arrive.

use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use shared::objects::check::{classify, Failure};
use shared::objects::object_store::ObjectStoreExt;
use shared::objects::Objects;

use crate::config::upstream::SourceSettings;

/// Bytes as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Why an object could not be fetched. Cheap to clone: every request waiting on one fill gets
/// the same answer; the cause is logged once, where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The upstream has no such object: 404.
    #[error("not found upstream")]
    NotFound,
    /// No answer in time: 504.
    #[error("upstream timed out")]
    Timeout,
    /// Unreachable, 5xx, refused, or bytes that do not add up: 502.
    #[error("{0}")]
    Bad(&'static str),
}

impl FetchError {
    /// The metric label.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::Bad(_) => "error",
        }
    }
}

/// An answer being received.
pub struct Fetched {
    pub size: u64,
    /// The body's MD5, when the upstream vouches for one: an S3 ETag of a single-part object.
    /// (An HTTP server's ETag is an opaque validator, never taken for a digest.)
    pub md5: Option<[u8; 16]>,
    pub last_modified: Option<SystemTime>,
    pub body: ByteStream,
}

/// The upstream.
#[derive(Debug)]
pub enum Source {
    S3(Objects),
    Http {
        client: reqwest::Client,
        base: String,
    },
}

/// Why the upstream's client or disk cache could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("building the S3 client: {0}")]
    S3(#[from] shared::objects::object_store::Error),
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("opening the disk cache: {0}")]
    Disk(#[from] std::io::Error),
}

impl Source {
    /// Builds the client (nothing is sent yet).
    pub fn new(settings: &SourceSettings) -> Result<Self, SetupError> {
        Ok(match settings {
            SourceSettings::S3(s) => Self::S3(s.connect()?),
            SourceSettings::Http {
                url,
                connect_timeout,
                timeout,
            } => Self::Http {
                // A redirect is an error, not another URL's bytes cached under this path;
                // plain http only when the configured upstream is.
                client: shared::objects::client::http_client_builder(
                    *connect_timeout,
                    Some(*timeout),
                    url.starts_with("http:"),
                )
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
                base: url.clone(),
            },
        })
    }

    /// Tries the upstream once, for `edge check` and the start-up log.
    pub async fn check(&self) -> Result<(), String> {
        match self {
            Self::S3(objects) => objects.check().await.map_err(|e| e.to_string()),
            Self::Http { client, base } => match client.head(base).send().await {
                // Any HTTP answer proves the server is there; paths are checked per request.
                Ok(_) => Ok(()),
                Err(e) if e.is_timeout() => Err(format!("{base}: timed out: {e}")),
                Err(e) => Err(format!(
                    "{base}: unreachable: {}",
                    shared::objects::check::root_cause(&e)
                )),
            },
        }
    }

    /// GETs `rel` (the path under the prefix; `args` is the request's query, forwarded to an
    /// HTTP upstream so another edge verifies the same signature). `timeout` bounds the wait
    /// for the answer's head.
    pub async fn fetch(
        &self,
        rel: &str,
        args: &[u8],
        timeout: Duration,
    ) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(timeout, self.fetch_head(rel, args)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(path = rel, ?timeout, "upstream did not answer in time");
                Err(FetchError::Timeout)
            }
        }
    }

    async fn fetch_head(&self, rel: &str, args: &[u8]) -> Result<Fetched, FetchError> {
        match self {
            Self::S3(objects) => {
                let key = objects.key(rel).ok_or(FetchError::NotFound)?;
                let got = objects.store().get(&key).await.map_err(|e| {
                    let failure = classify(&e);
                    if failure != Failure::NotFound {
                        tracing::warn!(path = rel, error = %e, "upstream GET failed");
                    }
                    match failure {
                        Failure::NotFound => FetchError::NotFound,
                        Failure::Timeout => FetchError::Timeout,
                        Failure::Unreachable => FetchError::Bad("upstream unreachable"),
                        Failure::NoSuchBucket => FetchError::Bad("upstream has no such bucket"),
                        Failure::BadCredentials(_) | Failure::AccessDenied => {
                            FetchError::Bad("upstream refused the edge's credentials")
                        }
                        Failure::Other => FetchError::Bad("upstream error"),
                    }
                })?;
                let meta = got.meta.clone();
                let last_modified = u64::try_from(meta.last_modified.timestamp())
                    .ok()
                    .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
                let body = got.into_stream().map_err(io::Error::other).boxed();
                Ok(Fetched {
                    size: meta.size,
                    md5: objects.etag_md5(meta.e_tag.as_deref()),
                    last_modified,
                    body,
                })
            }
            Self::Http { client, base } => {
                let mut url = String::with_capacity(base.len() + rel.len() + args.len() + 8);
                url.push_str(base);
                crate::service::push_encoded_path(rel.as_bytes(), &mut url);
                if !args.is_empty() {
                    url.push('?');
                    // target::parse refused control bytes and spaces in the query.
                    url.push_str(&String::from_utf8_lossy(args));
                }
                let resp = client.get(&url).send().await.map_err(|e| {
                    // Without the URL: it carries the viewer's signed query.
                    let e = e.without_url();
                    tracing::warn!(path = rel, error = %shared::objects::check::chain_text(&e), "upstream GET failed");
                    if e.is_timeout() {
                        FetchError::Timeout
                    } else {
                        FetchError::Bad("upstream unreachable")
                    }
                })?;
                match resp.status().as_u16() {
                    200 => {}
                    404 => return Err(FetchError::NotFound),
                    status => {
                        tracing::warn!(path = rel, status, "upstream answered an error");
                        return Err(FetchError::Bad("upstream error"));
                    }
                }
                let last_modified = resp
                    .headers()
                    .get(http::header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| httpdate::parse_http_date(v).ok());
                let Some(size) = resp.content_length() else {
                    tracing::warn!(path = rel, "upstream answered without Content-Length");
                    return Err(FetchError::Bad("upstream sent no length"));
                };
                let body = resp
                    .bytes_stream()
                    .map_err(|e| io::Error::other(e.without_url()))
                    .boxed();
                Ok(Fetched {
                    size,
                    md5: None,
                    last_modified,
                    body,
                })
            }
        }
    }
}
