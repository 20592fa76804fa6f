//! The HTTP client under the object store, and the store built on it.
//!
//! object_store's `aws` feature would bring reqwest's default TLS, which is aws-lc; the
//! workspace's one provider is ring. So the store is built with `aws-base` + `reqwest` +
//! `ring`, and reqwest gets a preconfigured rustls `ClientConfig`: ring, and the Mozilla roots
//! compiled in (`webpki-roots`, as the origin's webhook client), so it needs no system bundle.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use super::config::StoreSettings;
use super::Objects;

/// rustls with ring and the Mozilla roots.
pub fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        // ring supports every safe default version: this cannot fail.
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
}

/// A reqwest client builder with the workspace's TLS and the given timeouts; `https_only`
/// unless `allow_http`. Also the edge's client for an `http` upstream.
///
/// `timeout` bounds the wait for an answer's head, and then each wait for a piece of its
/// body, never the whole transfer: a multi-gigabyte source or a large segment over a slow
/// link takes longer than any deadline fit for a stalled server. (The wait for the head
/// runs from the start of the request, so it also bounds sending a body: one upload part.)
pub fn http_client(
    connect_timeout: Duration,
    timeout: Option<Duration>,
    allow_http: bool,
) -> reqwest::Result<reqwest::Client> {
    http_client_builder(connect_timeout, timeout, allow_http).build()
}

/// [`http_client`] before it is built, for a caller that needs more (the edge refuses
/// redirects from its upstream).
pub fn http_client_builder(
    connect_timeout: Duration,
    timeout: Option<Duration>,
    allow_http: bool,
) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .https_only(!allow_http)
        .user_agent(concat!("hls-edge/", env!("CARGO_PKG_VERSION")))
        // Bytes are stored and compared as sent: no transparent decompression.
        .no_proxy();
    if let Some(t) = timeout {
        b = b.read_timeout(t);
    }
    b
}

/// object_store's connector, handing it [`http_client`].
#[derive(Debug)]
struct Connector {
    connect_timeout: Duration,
    timeout: Duration,
    allow_http: bool,
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        http_client(self.connect_timeout, Some(self.timeout), self.allow_http)
            .map(HttpClient::new)
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })
    }
}

impl StoreSettings {
    /// Builds the store (nothing is sent yet: see [`Objects::check`]).
    pub fn connect(&self) -> object_store::Result<Objects> {
        let c = &self.credentials;
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(c.access_key_id.expose())
            .with_secret_access_key(c.secret_access_key.expose())
            .with_allow_http(self.allow_http)
            .with_virtual_hosted_style_request(self.virtual_hosted_style)
            .with_retry(retry)
            .with_http_connector(Connector {
                connect_timeout: self.connect_timeout,
                timeout: self.timeout,
                allow_http: self.allow_http,
            });
        if let Some(token) = &c.session_token {
            b = b.with_token(token.expose());
        }
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint);
        }
        let store = Arc::new(b.build()?);
        Ok(Objects::new(store.clone(), &self.prefix, self.describe())
            .with_signer(store)
            .with_md5_etags(self.etags_are_md5))
    }
}
