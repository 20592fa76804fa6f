//! A small keep-alive HTTP/1.1 client: each simulated viewer holds one connection per server,
//! the way a player does, and reconnects when the server closed it.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no complete answer within the request timeout")]
    Timeout,
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("unusable URL {0:?} (only http:// is supported)")]
    Url(String),
}

impl Failure {
    /// The short label errors are counted under in the summary.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Timeout => "timeout",
            Self::Http(_) => "http",
            Self::Request(_) | Self::Url(_) => "url",
        }
    }
}

/// An answer: the status, and the body when the caller asked to keep it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub len: u64,
}

/// An `http://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`.
    pub authority: String,
    /// Path and query.
    pub target: String,
}

impl Url {
    /// Parses `http://host[:port]/path?query`.
    pub fn parse(url: &str) -> Result<Self, Failure> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| Failure::Url(url.to_owned()))?;
        let (authority, target) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(Failure::Url(url.to_owned()));
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            target: target.to_owned(),
        })
    }

    /// Resolves a playlist reference against this URL (RFC 3986 for the three forms playlists
    /// use: absolute, absolute-path, and relative to the playlist's directory).
    pub fn join(&self, reference: &str) -> Result<Self, Failure> {
        if reference.contains("://") {
            return Self::parse(reference);
        }
        if reference.starts_with('/') {
            return Ok(Self {
                authority: self.authority.clone(),
                target: reference.to_owned(),
            });
        }
        let path = self.target.split('?').next().unwrap_or_default();
        let dir = &path[..path.rfind('/').map_or(0, |at| at + 1)];
        Ok(Self {
            authority: self.authority.clone(),
            target: format!("{dir}{reference}"),
        })
    }
}

/// One keep-alive connection to one server.
pub struct Client {
    authority: String,
    timeout: Duration,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    pub fn new(authority: &str, timeout: Duration) -> Self {
        Self {
            authority: authority.to_owned(),
            timeout,
            sender: None,
        }
    }

    /// `GET target`; the body is read to the end either way (so the connection can be reused
    /// and the latency covers the whole transfer) but only kept when `keep_body`.
    pub async fn get(
        &mut self,
        target: &str,
        bearer: Option<&str>,
        keep_body: bool,
    ) -> Result<Answer, Failure> {
        let result = tokio::time::timeout(self.timeout, async {
            // A kept connection may have been closed by the server while idle; that race is
            // not the server's failure, so one fresh connection is tried before reporting it.
            let reused = self.sender.is_some();
            match self.exchange(target, bearer, keep_body).await {
                Err(Failure::Http(_)) if reused => {
                    self.sender = None;
                    self.exchange(target, bearer, keep_body).await
                }
                other => other,
            }
        })
        .await;
        let answer = result.unwrap_or(Err(Failure::Timeout));
        if answer.is_err() {
            // Whatever state the connection is in, it is not one to send the next request on.
            self.sender = None;
        }
        answer
    }

    async fn exchange(
        &mut self,
        target: &str,
        bearer: Option<&str>,
        keep_body: bool,
    ) -> Result<Answer, Failure> {
        let mut request = Request::get(target).header(HOST, &self.authority);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Empty::new())?;
        let sender = self.sender().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut kept = Vec::new();
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                len += data.len() as u64;
                if keep_body {
                    kept.extend_from_slice(&data);
                }
            }
        }
        Ok(Answer {
            status,
            body: Bytes::from(kept),
            len,
        })
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Empty<Bytes>>, Failure> {
        if let Some(sender) = &mut self.sender {
            if sender.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(&self.authority)
                .await
                .map_err(Failure::Connect)?;
            stream.set_nodelay(true).map_err(Failure::Connect)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            // The connection task ends when the sender is dropped or the server closes.
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| Failure::Url(self.authority.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_resolve_like_a_player() {
        let variant = Url::parse("http://127.0.0.1:8081/api/videos/v1/hls/720p/index.m3u8?pt=T")
            .expect("parse");
        assert_eq!(variant.authority, "127.0.0.1:8081");
        assert_eq!(
            variant.join("key?pt=T").expect("join").target,
            "/api/videos/v1/hls/720p/key?pt=T"
        );
        assert_eq!(
            variant.join("/hls/x.ts").expect("join"),
            Url {
                authority: "127.0.0.1:8081".into(),
                target: "/hls/x.ts".into()
            }
        );
        let edge = variant
            .join("http://edge.example/hls/v1/720p/s.ts?md5=a&expires=1")
            .expect("join");
        assert_eq!(edge.authority, "edge.example:80");
        assert_eq!(edge.target, "/hls/v1/720p/s.ts?md5=a&expires=1");
        assert!(Url::parse("https://secure.example/").is_err());
        assert!(Url::parse("http:///path").is_err());
    }
}
