//! Every answer the edge gives instead of content, for both HTTP paths: its status, its JSON
//! message, and whether the connection closes after it.
//!
//! The statuses and the order in which they are decided follow nginx 1.22
//! (`docs/nginx-secure-link.md`); only the bodies differ (JSON instead of nginx's HTML page).

use shared::secure_link::VerifyError;

use crate::reply::{Reply, Value};

/// The longest request line or header line, bytes: nginx's `large_client_header_buffers`
/// size (8k), which one line must fit.
pub const LINE_MAX: usize = 8 * 1024;

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a request line, header or target nginx refuses too, or a request with a body.
    BadRequest(&'static str),
    /// 403: a signature that does not verify, a path outside the rules, a directory listing.
    Forbidden(&'static str),
    /// 404.
    NotFound,
    /// 405 with `Allow: GET, HEAD`.
    MethodNotAllowed,
    /// 408: the request head was not complete by the header deadline.
    Timeout,
    /// 410: the link verified but expired.
    Expired,
    /// 412: an `If-Match` / `If-Unmodified-Since` that does not hold.
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */<size>`.
    RangeNotSatisfiable { size: u64 },
    /// 400: the request head is larger than `server.max_header_bytes`, or one of its header
    /// lines longer than [`LINE_MAX`] (nginx's "Request Header Or Cookie Too Large").
    HeadTooLarge,
    /// 414: the request line is longer than [`LINE_MAX`].
    UriTooLong,
    /// 500: the file could not be read; the cause is logged where it happened.
    Internal(&'static str),
    /// 502: the upstream is unreachable, failed, or sent bytes that do not add up.
    BadGateway(&'static str),
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
    /// 505: not HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl Refusal {
    /// nginx's answer to a link that does not verify: 410 when it expired, else 403.
    pub fn link(error: VerifyError) -> Self {
        match error {
            VerifyError::Expired => Self::Expired,
            other => Self::Forbidden(other.message()),
        }
    }

    /// The status code.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Timeout => 408,
            Self::Expired => 410,
            Self::PreconditionFailed => 412,
            Self::RangeNotSatisfiable { .. } => 416,
            Self::HeadTooLarge => 400,
            Self::UriTooLong => 414,
            Self::Internal(_) => 500,
            Self::BadGateway(_) => 502,
            Self::GatewayTimeout => 504,
            Self::VersionNotSupported => 505,
        }
    }

    /// The message of the JSON body.
    pub fn message(self) -> &'static str {
        match self {
            Self::BadRequest(m) | Self::Forbidden(m) | Self::Internal(m) | Self::BadGateway(m) => m,
            Self::GatewayTimeout => "upstream timed out",
            Self::NotFound => "not found",
            Self::MethodNotAllowed => "method not allowed",
            Self::Timeout => "request head timed out",
            Self::Expired => "link expired",
            Self::PreconditionFailed => "precondition failed",
            Self::RangeNotSatisfiable { .. } => "range not satisfiable",
            Self::HeadTooLarge => "request head too large",
            Self::UriTooLong => "request line too long",
            Self::VersionNotSupported => "HTTP version not supported",
        }
    }

    /// Whether the connection closes after the answer. A request that could not be read
    /// whole (a bad head, a body the edge does not read) leaves the stream at an unknown
    /// position, so nothing after it can be trusted to start a request; nginx closes too.
    pub fn closes(self) -> bool {
        matches!(
            self,
            Self::BadRequest(_)
                | Self::Timeout
                | Self::HeadTooLarge
                | Self::UriTooLong
                | Self::VersionNotSupported
        )
    }

    /// The reply: JSON `{"error": message}` and the headers the status requires.
    pub fn reply(self) -> Reply {
        let mut r = Reply::error(self.status(), self.message());
        r.close = self.closes();
        match self {
            Self::MethodNotAllowed => {
                r.header("Allow", Value::Static("GET, HEAD"));
            }
            Self::RangeNotSatisfiable { size } => {
                r.header("Content-Range", Value::Owned(format!("bytes */{size}")));
            }
            _ => {}
        }
        r
    }
}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Self {
        refusal.reply()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_messages_and_closing() {
        let cases = [
            (Refusal::BadRequest("malformed request line"), 400, true),
            (Refusal::Forbidden("forbidden"), 403, false),
            (Refusal::NotFound, 404, false),
            (Refusal::MethodNotAllowed, 405, false),
            (Refusal::Timeout, 408, true),
            (Refusal::Expired, 410, false),
            (Refusal::PreconditionFailed, 412, false),
            (Refusal::RangeNotSatisfiable { size: 9 }, 416, false),
            (Refusal::HeadTooLarge, 400, true),
            (Refusal::UriTooLong, 414, true),
            (Refusal::Internal("internal error"), 500, false),
            (Refusal::BadGateway("upstream unreachable"), 502, false),
            (Refusal::GatewayTimeout, 504, false),
            (Refusal::VersionNotSupported, 505, true),
        ];
        for (refusal, status, closes) in cases {
            let r = refusal.reply();
            assert_eq!((r.status, r.close), (status, closes), "{refusal:?}");
            assert_eq!(r.content_length, Some(12 + refusal.message().len() as u64));
        }
    }

    #[test]
    fn links_are_refused_like_nginx() {
        assert_eq!(Refusal::link(VerifyError::Expired).status(), 410);
        let mismatch = Refusal::link(VerifyError::Mismatch);
        assert_eq!(
            (mismatch.status(), mismatch.message()),
            (403, "signature does not match")
        );
    }

    #[test]
    fn status_specific_headers() {
        let header = |r: &Reply, name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str().to_owned())
        };
        let allow = Refusal::MethodNotAllowed.reply();
        assert_eq!(header(&allow, "Allow").as_deref(), Some("GET, HEAD"));
        let range = Refusal::RangeNotSatisfiable { size: 1234 }.reply();
        assert_eq!(
            header(&range, "Content-Range").as_deref(),
            Some("bytes */1234")
        );
    }
}
