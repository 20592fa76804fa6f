//! The origin's one HTTP client, for webhooks and edge purges: one POST per attempt over a
//! fresh connection (hyper's HTTP/1.1 client on a tokio socket, TLS through rustls for https),
//! with a connect timeout and a whole-attempt timeout. A new connection each time keeps no
//! state between attempts (a receiver that restarted or moved behind DNS is simply reached
//! again).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Where to connect and what to ask for, parsed once from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    /// Host name or IP address (IPv6 without brackets), for connecting and TLS.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the Host header.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url:?} must start with http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        // Credentials would be silently dropped (nothing sends them).
        if authority.as_str().contains('@') {
            return Err(format!("{url:?} must not contain user:password@"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self {
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }
}

/// Why an attempt did not get an answer (or, for callers that want one, a 2xx answer).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
    #[error("the server answered {0}")]
    Status(StatusCode),
}

/// Posts to one server.
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
    pub fn new(
        target: &Target,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(target, connect_timeout, timeout, roots)
    }

    /// A client that trusts only `roots` (tests use their own CA).
    pub fn with_roots(
        target: &Target,
        connect_timeout: Duration,
        timeout: Duration,
        roots: RootCertStore,
    ) -> Result<Self, ClientError> {
        let target = target.clone();
        let tls = if target.https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| ClientError::ServerName(target.host.clone()))?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            target,
            tls,
            connect_timeout,
            timeout,
        })
    }

    /// The server this client posts to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// POSTs `body` to `path` (with its query) with `headers`, and returns the status of the
    /// answer (any status: the caller decides what counts). Bounded by the attempt timeout.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<StatusCode, ClientError> {
        let t = &self.target;
        let mut request = Request::post(path)
            .header(HOST, t.authority.as_str())
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
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<StatusCode, ClientError> {
        let (host, port) = (self.target.host.as_str(), self.target.port);
        let connect = async {
            let tcp =
                TcpStream::connect((host, port))
                    .await
                    .map_err(|source| ClientError::Connect {
                        host: host.to_owned(),
                        port,
                        source,
                    })?;
            // The request goes out in one write; don't let Nagle hold its tail back.
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some((connector, name)) => connector
                    .connect(name.clone(), tcp)
                    .await
                    .map(|tls| Stream::Tls(Box::new(tls)))
                    .map_err(ClientError::Tls),
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| ClientError::ConnectTimeout(self.connect_timeout))??;
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
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<StatusCode, ClientError>
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
