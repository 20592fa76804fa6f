//! The web app: upload with progress, the library, and the HLS player.
//!
//! Everything is embedded at compile time, so an installed binary serves the page it was built
//! with and needs no file beside it: the page files (`web/*.html|js|css`) and hls.js (from
//! `web/node_modules/hls.js/dist`, installed by `npm ci --prefix web`; `build.rs` refuses to
//! build without it). `ORIGIN_WEB_VENDOR_DIR` names a directory to serve hls.js from instead
//! (another version, a debug build); a file missing there answers 404 with a JSON error.
//!
//! `GET /api/dev/token?user=NAME` mints a (never admin) user token for the page's sign-in
//! button, and only in development mode (`server.dev`); otherwise it answers 404. It also
//! answers only to a loopback name in `Host`: development mode listens on loopback alone, but a
//! browser relays a remote page there once its DNS name rebinds to 127.0.0.1, and that page
//! would read the token.

use std::path::PathBuf;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::AppState;
use crate::jobs::model::unix_now;

/// Environment variable naming a directory that holds `hls.min.js`, served instead of the
/// embedded copy.
pub const VENDOR_DIR_ENV: &str = "ORIGIN_WEB_VENDOR_DIR";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const INDEX: &str = include_str!("../../../web/index.html");

/// Page files other than the index: URL path, body, content type.
const FILES: &[(&str, &str, &str)] = &[
    ("/app.js", include_str!("../../../web/app.js"), JS),
    ("/app.css", include_str!("../../../web/app.css"), CSS),
    ("/js/api.js", include_str!("../../../web/js/api.js"), JS),
    ("/js/ui.js", include_str!("../../../web/js/ui.js"), JS),
    (
        "/js/upload.js",
        include_str!("../../../web/js/upload.js"),
        JS,
    ),
    (
        "/js/library.js",
        include_str!("../../../web/js/library.js"),
        JS,
    ),
    (
        "/js/player.js",
        include_str!("../../../web/js/player.js"),
        JS,
    ),
    (
        "/js/refresh.js",
        include_str!("../../../web/js/refresh.js"),
        JS,
    ),
    (
        "/js/storyboard.js",
        include_str!("../../../web/js/storyboard.js"),
        JS,
    ),
];

/// hls.js: name under `/vendor/`, content type, the copy embedded by `build.rs`.
const VENDOR_FILES: &[(&str, &str, &[u8])] = &[
    ("hls.min.js", JS, include_bytes!(env!("ORIGIN_HLS_JS"))),
    (
        "hls.min.js.map",
        "application/json",
        include_bytes!(env!("ORIGIN_HLS_JS_MAP")),
    ),
];

/// `GET /`: the page; `data-dev` tells it whether it may offer to mint a token.
pub async fn index(State(state): State<AppState>) -> Response {
    let body = if state.settings.dev {
        INDEX.replacen("data-dev=\"false\"", "data-dev=\"true\"", 1)
    } else {
        INDEX.to_owned()
    };
    let mut response = page_response(HTML, body);
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(
        &state.settings.playback.edge_base_url,
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `GET /app.js`, `/app.css`, `/js/{module}.js`: the embedded page files.
pub async fn asset(uri: Uri) -> Response {
    match FILES.iter().find(|(path, _, _)| *path == uri.path()) {
        Some((_, body, content_type)) => page_response(content_type, *body),
        None => not_found("no such file"),
    }
}

/// `GET /vendor/{file}`: hls.js, embedded, or read from `ORIGIN_WEB_VENDOR_DIR` when set.
pub async fn vendor(UrlPath(file): UrlPath<String>) -> Response {
    let Some((name, content_type, embedded)) =
        VENDOR_FILES.iter().find(|(name, _, _)| *name == file)
    else {
        return not_found("no such file");
    };
    let Some(dir) = vendor_dir() else {
        return vendor_response(content_type, *embedded);
    };
    let path = dir.join(name);
    match tokio::fs::read(&path).await {
        Ok(bytes) => vendor_response(content_type, bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // The path is the operator's business, not the browser's.
            tracing::warn!(path = %path.display(), "{VENDOR_DIR_ENV} has no {name}");
            not_found(&format!(
                "{name} is not in {VENDOR_DIR_ENV}: point it at a directory holding hls.js \
                 (web/node_modules/hls.js/dist after `npm ci --prefix web`), or unset it to \
                 serve the hls.js built into the origin"
            ))
        }
        Err(error) => super::error::ApiError::internal(error).into_response(),
    }
}

fn vendor_response(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.into(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct DevTokenQuery {
    pub user: Option<String>,
}

/// `GET /api/dev/token?user=NAME` -> `{"token", "user", "expires_in"}`, development mode only.
/// The token never carries the admin role.
pub async fn dev_token(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    uri: Uri,
    Query(q): Query<DevTokenQuery>,
) -> Response {
    if !state.settings.dev {
        return not_found("not found");
    }
    // A request that names no host (HTTP/1.0, or a client of its own) cannot show that it
    // came from a page on this machine either. HTTP/2 names it in `:authority`.
    let host = match headers.get(header::HOST) {
        Some(host) => Some(host.as_bytes()),
        None => uri.authority().map(|a| a.as_str().as_bytes()),
    };
    if !host.is_some_and(is_loopback_host) {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({
                "error": "development tokens are given to pages on localhost, 127.0.0.1 or [::1] only"
            })),
        )
            .into_response();
    }
    let user = q.user.unwrap_or_default();
    if !valid_user(&user) {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "user: 1 to 64 characters among letters, digits, . _ - @"
            })),
        )
            .into_response();
    }
    let ttl = i64::try_from(state.settings.token_ttl.as_secs()).unwrap_or(3600);
    match state.auth.mint(&user, false, ttl, unix_now()) {
        Ok(token) => {
            tracing::info!(%user, "development token minted for the web page");
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(serde_json::json!({ "token": token, "user": user, "expires_in": ttl })),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Whether a `Host` header names this machine's loopback: `localhost`, `127.0.0.1` or `[::1]`,
/// with or without a port.
fn is_loopback_host(host: &[u8]) -> bool {
    let name = match host.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => return false,
        },
        None => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &b""[..]),
        },
    };
    let port_ok = match name.1 {
        [] => true,
        [b':', digits @ ..] => !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    port_ok
        && (name.0.eq_ignore_ascii_case(b"localhost") || name.0 == b"127.0.0.1" || name.0 == b"::1")
}

/// `ORIGIN_WEB_VENDOR_DIR`, when set and not empty.
fn vendor_dir() -> Option<PathBuf> {
    std::env::var_os(VENDOR_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// The page's policy: scripts and styles from here only; media, playlists and segments from
/// here and the edge; hls.js's transmuxing worker and MediaSource from `blob:`.
fn content_security_policy(edge_base_url: &str) -> String {
    let edge = origin_of(edge_base_url)
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:{edge}; connect-src 'self'{edge}; worker-src 'self' blob:; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    )
}

/// `scheme://authority` of an absolute http(s) URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let clean = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    clean.then(|| format!("{scheme}://{authority}"))
}

fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
}

fn page_response(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidate: a rebuilt origin serves the new page at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body.into(),
    )
        .into_response()
}

fn not_found(why: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_get_development_tokens() {
        for ok in [
            "localhost",
            "LocalHost:8000",
            "127.0.0.1",
            "127.0.0.1:8000",
            "[::1]",
            "[::1]:8000",
        ] {
            assert!(is_loopback_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "rebind.example:8000",
            "localhost.example",
            "127.0.0.1.nip.io:8000",
            "127.0.0.2",
            "[::1",
            "[::1]x",
            "localhost:",
            "localhost:80a",
            "",
        ] {
            assert!(!is_loopback_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn every_page_file_is_embedded_and_referenced() {
        assert!(INDEX.contains("data-dev=\"false\""), "the dev marker");
        assert!(INDEX.contains("/vendor/hls.min.js") && INDEX.contains("/app.js"));
        for (path, body, _) in FILES {
            assert!(!body.is_empty(), "{path} is empty");
        }
        // Every module the page imports is served.
        let imports = FILES
            .iter()
            .flat_map(|(_, body, _)| body.lines())
            .filter_map(|l| l.split_once(" from '").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split_once('\''))
            .map(|(target, _)| target.trim_start_matches('.'));
        for target in imports {
            let served = FILES.iter().any(|(p, _, _)| p.ends_with(target));
            assert!(served, "import of {target} is not served");
        }
    }

    #[test]
    fn hls_js_is_embedded_as_npm_installed_it() {
        let dist = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../web/node_modules/hls.js/dist"
        );
        for (name, _, embedded) in VENDOR_FILES {
            let installed = std::fs::read(format!("{dist}/{name}")).expect("npm ci --prefix web");
            assert!(!embedded.is_empty(), "{name}");
            assert!(
                *embedded == installed.as_slice(),
                "{name} differs from {dist}"
            );
        }
    }

    #[test]
    fn csp_names_the_edge_origin_only() {
        assert_eq!(
            origin_of("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin_of("https://edge.example.com/base").as_deref(),
            Some("https://edge.example.com")
        );
        assert_eq!(origin_of("edge:8080"), None);
        assert_eq!(origin_of("http://a b;script-src *"), None);
        let csp = content_security_policy("https://edge.example.com/x");
        assert!(csp.contains("connect-src 'self' https://edge.example.com;"));
        assert!(csp.contains("script-src 'self';"));
    }

    #[test]
    fn dev_user_names() {
        assert!(valid_user("alice") && valid_user("a.b-c_d@e"));
        assert!(!valid_user("") && !valid_user("a b") && !valid_user(&"x".repeat(65)));
    }
}
