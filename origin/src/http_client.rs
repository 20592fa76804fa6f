//! One POST per attempt over a fresh connection: hyper's HTTP/1.1 client on a tokio socket,
//! TLS through rustls for https receivers. A new connection each time keeps no state between
//! attempts (a receiver that restarted or moved behind DNS is simply reached again).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::settings::{Target, WebhookSettings};

/// Why an attempt did not get a 2xx answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("connecting to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    #[error("TLS setup: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    #[error("HTTP exchange: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the receiver answered {0}")]
    Status(StatusCode),
}

/// Posts to the configured receiver.
#[derive(Clone)]
pub struct Client {
    target: Target,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Client {
    /// A client that trusts the Mozilla root certificates compiled in (`webpki-roots`), so
    /// https works the same in a minimal container without a system CA bundle.
    pub fn new(settings: &WebhookSettings) -> Result<Self, DeliveryError> {
        let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(settings, roots)
    }

    /// A client that trusts only `roots` (tests use their own CA).
    pub fn with_roots(
        settings: &WebhookSettings,
        roots: RootCertStore,
    ) -> Result<Self, DeliveryError> {
        let target = settings.target.clone();
        let tls = if target.https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| DeliveryError::ServerName(target.host.clone()))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            target,
            tls,
            connect_timeout: settings.connect_timeout,
            timeout: settings.timeout,
        })
    }

    /// Sends `body` with `headers` and returns the status of the answer (any status: the
    /// caller decides what counts as delivered). Bounded by the whole-attempt timeout.
    pub async fn post(
        &self,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<StatusCode, DeliveryError> {
        let t = &self.target;
        let mut request = Request::post(t.path.as_str())
            .header(HOST, t.authority.as_str())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len())
            .header(
                USER_AGENT,
                concat!("hls-origin/", env!("CARGO_PKG_VERSION")),
            )
            // One request per connection: nothing to keep alive between attempts.
            .header(CONNECTION, "close");
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Full::new(body))?;
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| DeliveryError::Timeout(self.timeout))?
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<StatusCode, DeliveryError> {
        let (host, port) = (self.target.host.as_str(), self.target.port);
        let connect = async {
            let tcp = TcpStream::connect((host, port)).await.map_err(|source| {
                DeliveryError::Connect {
                    host: host.to_owned(),
                    port,
                    source,
                }
            })?;
            // The request goes out in one write; don't let Nagle hold its tail back.
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(DeliveryError::Tls),
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| DeliveryError::ConnectTimeout(self.connect_timeout))??;
        match stream {
            Stream::Plain(s) => send(s, request).await,
            Stream::Tls(s) => send(*s, request).await,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// One HTTP/1.1 exchange on `io`; returns once the response head is in.
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<StatusCode, DeliveryError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let response = sender.send_request(request);
    tokio::pin!(conn, response);
    // The connection future does the I/O and must be polled alongside the request. If it ends
    // first, the answer (if there was one) is already queued for `response`.
    let response = tokio::select! {
        biased;
        r = &mut response => r?,
        r = &mut conn => {
            r?;
            response.await?
        }
    };
    Ok(response.status())
}
