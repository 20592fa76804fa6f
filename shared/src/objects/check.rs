//! What is wrong with a bucket, from one request: [`run`] GETs one byte of a key that need
//! not exist. A `NoSuchKey` answer proves the endpoint, the credentials and the bucket are
//! all right; anything else is classified by [`classify`], which the edge also uses for its
//! upstream errors.
//!
//! A GET, not a HEAD: S3 answers HEAD errors without a body, so a missing bucket and a missing
//! key, or a bad signature and a denied read, would look alike.

use object_store::client::{HttpError, HttpErrorKind};
use object_store::{GetOptions, GetRange};

use super::Objects;

/// The key [`run`] asks for, under the prefix.
pub const CHECK_KEY: &str = ".objects-check";

/// Why the bucket cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No connection (refused, no route, DNS, TLS).
    #[error("{store}: unreachable: {detail}")]
    Unreachable { store: String, detail: String },
    /// Connected, but no answer in time.
    #[error("{store}: timed out: {detail}")]
    Timeout { store: String, detail: String },
    /// The server does not accept the key or its signature.
    #[error(
        "{store}: credentials refused ({code}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    BadCredentials { store: String, code: String },
    /// The bucket does not exist.
    #[error("{store}: no such bucket")]
    NoSuchBucket { store: String },
    /// Valid credentials that may not read here.
    #[error("{store}: access denied: the credentials may not read objects under this prefix")]
    AccessDenied { store: String },
    /// Anything else (a 5xx, an unexpected answer).
    #[error("{store}: {detail}")]
    Other { store: String, detail: String },
}

/// What kind of failure an object-store error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The object does not exist (`NoSuchKey`, 404).
    NotFound,
    NoSuchBucket,
    BadCredentials(&'static str),
    AccessDenied,
    Unreachable,
    Timeout,
    Other,
}

/// S3 error codes meaning "these credentials are not accepted".
const CREDENTIAL_CODES: [&str; 5] = [
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
];

/// Classifies `error` from its variant, the HTTP error kind in its chain and the S3 error code
/// in the response body (object_store keeps the body in the error's text).
pub fn classify(error: &object_store::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return match http.kind() {
                HttpErrorKind::Timeout => Failure::Timeout,
                HttpErrorKind::Connect | HttpErrorKind::Request => Failure::Unreachable,
                _ => Failure::Other,
            };
        }
        source = e.source();
    }
    let text = chain_text(error);
    if text.contains("NoSuchBucket") {
        return Failure::NoSuchBucket;
    }
    if let Some(code) = CREDENTIAL_CODES.iter().find(|c| text.contains(*c)) {
        return Failure::BadCredentials(code);
    }
    match error {
        object_store::Error::NotFound { .. } => Failure::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Failure::AccessDenied,
        _ if text.contains("AccessDenied") => Failure::AccessDenied,
        _ => Failure::Other,
    }
}

/// The error and its sources, joined: what object_store knows, status and body included.
pub fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The innermost error's message (`tcp connect error: Connection refused`): the cause, without
/// each layer's restatement of the request.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// One request against the bucket; see the module docs.
pub async fn run(objects: &Objects) -> Result<(), CheckError> {
    let store = objects.describe().to_owned();
    let Some(key) = objects.key(CHECK_KEY) else {
        return Err(CheckError::Other {
            store,
            detail: "the prefix makes no valid key".into(),
        });
    };
    let options = GetOptions {
        range: Some(GetRange::Bounded(0..1)),
        ..GetOptions::default()
    };
    let error = match objects.store().get_opts(&key, options).await {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let detail = chain_text(&error);
    Err(match classify(&error) {
        Failure::NotFound => return Ok(()),
        // An empty object at the check key answers 416: the bucket is fine.
        Failure::Other if detail.contains("416") => return Ok(()),
        Failure::NoSuchBucket => CheckError::NoSuchBucket { store },
        Failure::BadCredentials(code) => CheckError::BadCredentials {
            store,
            code: code.to_owned(),
        },
        Failure::AccessDenied => CheckError::AccessDenied { store },
        Failure::Unreachable => CheckError::Unreachable {
            store,
            detail: root_cause(&error),
        },
        Failure::Timeout => CheckError::Timeout {
            store,
            detail: root_cause(&error),
        },
        Failure::Other => CheckError::Other { store, detail },
    })
}
