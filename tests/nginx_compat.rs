//! nginx compatibility: the same raw requests go to a real nginx 1.22 configured like
//! production and to the edge, on the same content root and secret, and the answers must agree.
//!
//! Statuses are compared for every case; for successful answers (200/206/304) the key headers
//! and the body too, for 416 the `Content-Range`, for 301 the `Location` path (the edge's is
//! relative, nginx's absolute, on purpose). Error bodies are not compared: nginx sends HTML
//! pages, the edge JSON, on purpose.
//!
//! All mismatches are collected and reported in one table. Differences that are intended are
//! listed in [`ALLOWED_DIFFERENCES`], each pinned to the edge's exact status so it can still
//! fail. Set `E2E_COMPAT_REPORT=<file>` to also get the full table of every case.

#[path = "nginx_compat/cases.rs"]
mod cases;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use cases::Case;
use e2e::http::raw_request_within;
use e2e::{ContentTree, Edge, EdgeOptions, Nginx, RawResponse, TEST_SECRET};

/// Bound on one exchange: generous for a 1.3 MB body on loopback, short enough that a server
/// stuck on one malformed request cannot stall the suite for long.
const CASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A difference from nginx that is intended.
struct Allowed {
    /// The case name, exactly as in `cases.rs`.
    case: &'static str,
    /// The status the edge must answer instead.
    edge_status: u16,
    /// Why the edge differs.
    reason: &'static str,
}

const OUTSIDE_SYMLINK: &str = "a symlink leading outside the content root must not leak files \
                               (nginx follows it, `disable_symlinks off`)";
const MULTI_RANGE: &str = "multi-range requests are answered with the full body (allowed by RFC \
                           9110 §14.2); players never send them and multipart costs zero-copy";

const REQUEST_BODY: &str = "the edge never needs a request body: any body (Content-Length > 0 \
                            or chunked) is refused with 400 and the connection closed";

/// Intended differences; keep this minimal. A listed case for which the edge answers like
/// nginx fails as "stale", so the list cannot silently outlive the difference.
const ALLOWED_DIFFERENCES: &[Allowed] = &[
    Allowed {
        case: "leak.ts: valid GET",
        edge_status: 404,
        reason: OUTSIDE_SYMLINK,
    },
    Allowed {
        case: "leak.ts: valid HEAD",
        edge_status: 404,
        reason: OUTSIDE_SYMLINK,
    },
    Allowed {
        case: "leak.ts: Range bytes=0-99",
        edge_status: 404,
        reason: OUTSIDE_SYMLINK,
    },
    Allowed {
        case: "leak.ts: If-None-Match current ETag",
        edge_status: 404,
        reason: OUTSIDE_SYMLINK,
    },
    Allowed {
        case: "leak.ts: If-Modified-Since Last-Modified",
        edge_status: 404,
        reason: OUTSIDE_SYMLINK,
    },
    Allowed {
        case: "range: multi-range",
        edge_status: 200,
        reason: MULTI_RANGE,
    },
    Allowed {
        case: "range: multi: two disjoint",
        edge_status: 200,
        reason: MULTI_RANGE,
    },
    Allowed {
        case: "range: multi: overlapping",
        edge_status: 200,
        reason: MULTI_RANGE,
    },
    Allowed {
        case: "range: multi: suffix and prefix",
        edge_status: 200,
        reason: MULTI_RANGE,
    },
    Allowed {
        case: "method: POST valid with a 5-byte body",
        edge_status: 400,
        reason: REQUEST_BODY,
    },
    Allowed {
        case: "protocol: Transfer-Encoding chunked empty body",
        edge_status: 400,
        reason: REQUEST_BODY,
    },
    Allowed {
        case: "outside: '/healthz'",
        edge_status: 200,
        reason: "the public listener answers health checks; nginx's `location /` has none",
    },
];

/// A response header the edge sets differently on purpose, for paths ending in `extension`.
struct AllowedHeader {
    extension: &'static str,
    /// Lower-case header name.
    header: &'static str,
    /// The value the edge must send instead of nginx's.
    edge_value: &'static str,
    reason: &'static str,
}

const MIME_TYPES: &str = "players and browsers need the right type for fMP4 and subtitles; \
                          Debian's mime.types has none, so nginx sends application/octet-stream";

/// The redirect of a directory to its slash form: nginx builds an absolute `Location` from the
/// client's Host header; the edge sends the path and query only. Only the path is compared.
const RELATIVE_LOCATION: &str = "a relative Location (RFC 9110 §10.2.2) never carries a Host \
                                 header of the client's choosing";

/// Intended header differences; like [`ALLOWED_DIFFERENCES`], pinned to the edge's value.
const ALLOWED_HEADER_DIFFERENCES: &[AllowedHeader] = &[
    AllowedHeader {
        extension: ".vtt",
        header: "content-type",
        edge_value: "text/vtt",
        reason: MIME_TYPES,
    },
    AllowedHeader {
        extension: ".m4s",
        header: "content-type",
        edge_value: "video/iso.segment",
        reason: MIME_TYPES,
    },
];

/// What one server answered to one case.
struct Outcome {
    response: Option<RawResponse>,
    error: Option<String>,
}

impl Outcome {
    /// The status, or 0 when nothing parsable came back.
    fn status(&self) -> u16 {
        self.response.as_ref().map_or(0, |response| response.status)
    }

    fn describe(&self) -> String {
        match &self.error {
            Some(error) => format!("no response ({error})"),
            None => self.status().to_string(),
        }
    }
}

fn send(case: &Case, addr: SocketAddr) -> Outcome {
    match raw_request_within(addr, &case.render(&addr.to_string()), CASE_TIMEOUT) {
        Ok(response) => Outcome {
            response: Some(response),
            error: None,
        },
        Err(err) => Outcome {
            response: None,
            error: Some(err.to_string()),
        },
    }
}

/// One row of a report table.
struct Row<'a> {
    case: &'a Case,
    nginx: String,
    edge: String,
    detail: String,
}

fn table(title: &str, rows: &[Row<'_>]) -> String {
    let mut out =
        format!("{title}\n\n| case | request | nginx | edge | detail |\n|---|---|---|---|---|\n");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            row.case.name,
            row.case.request.escape_debug(),
            row.nginx,
            row.edge,
            row.detail
        );
    }
    out
}

/// Headers that must be equal on answers that carry the file.
const REPRESENTATION_HEADERS: &[&str] = &[
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "accept-ranges",
];

/// How the edge's answer to `case` differs from nginx's beyond the status (equal here).
fn header_differences(case: &Case, nginx: &RawResponse, edge: &RawResponse) -> Vec<String> {
    let names: &[&str] = match nginx.status {
        200 | 206 | 304 => REPRESENTATION_HEADERS,
        416 => &["content-range"],
        _ => &[],
    };
    let path = case.path();
    let mut differences: Vec<String> = names
        .iter()
        .filter_map(|&name| {
            let allowed = ALLOWED_HEADER_DIFFERENCES
                .iter()
                .find(|entry| entry.header == name && path.ends_with(entry.extension));
            header_difference(name, nginx.header(name), edge.header(name), allowed)
        })
        .collect();
    if nginx.status == 301 {
        let (nginx_location, edge_location) = (nginx.header("location"), edge.header("location"));
        if nginx_location.map(strip_authority) != edge_location.map(strip_authority) {
            differences.push(format!(
                "location path: nginx {nginx_location:?} edge {edge_location:?}"
            ));
        }
        // Pinned like the allow-list entries: the edge must stay relative, and once nginx is
        // relative too the difference is stale.
        if edge_location.is_some_and(|l| !l.starts_with('/')) {
            differences.push(format!(
                "location: allowed difference, but the edge must send a relative Location \
                 ({RELATIVE_LOCATION}), sent {edge_location:?}"
            ));
        }
        if nginx_location.is_some_and(|l| l.starts_with('/')) {
            differences.push(
                "location: stale allowed difference: nginx now sends a relative Location".into(),
            );
        }
    }
    let multipart = nginx
        .header("content-type")
        .is_some_and(|value| value.starts_with("multipart/"));
    if matches!(nginx.status, 200 | 206) && !multipart && nginx.body != edge.body {
        differences.push(format!(
            "body differs ({} vs {} bytes)",
            nginx.body.len(),
            edge.body.len()
        ));
    }
    differences
}

/// The difference for one header, or `None` when the edge sends what it should.
fn header_difference(
    name: &str,
    nginx: Option<&str>,
    edge: Option<&str>,
    allowed: Option<&AllowedHeader>,
) -> Option<String> {
    match allowed {
        // Neither sends it (a 304 carries no Content-Type): nothing to differ.
        Some(_) if nginx.is_none() && edge.is_none() => None,
        Some(entry) if nginx == Some(entry.edge_value) => Some(format!(
            "{name}: stale header allow-list entry for {}: nginx now agrees",
            entry.extension
        )),
        Some(entry) if edge != Some(entry.edge_value) => Some(format!(
            "{name}: allowed difference, but the edge must send {:?} ({}), sent {edge:?}",
            entry.edge_value, entry.reason
        )),
        Some(_) => None,
        None if nginx != edge => Some(format!("{name}: nginx {nginx:?} edge {edge:?}")),
        None => None,
    }
}

/// `http://host:port/path?q` -> `/path?q`: the two servers listen on different ports.
fn strip_authority(location: &str) -> &str {
    location
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
        .unwrap_or(location)
}

/// The harness itself: nginx as started here answers every reproduced spec row as recorded.
#[test]
fn nginx_reproduces_the_spec() {
    let tree = ContentTree::new();
    let nginx = Nginx::start(tree.root(), TEST_SECRET);
    let all = cases::all(&tree);
    let spec_cases: Vec<&Case> = all
        .iter()
        .filter(|case| case.spec_status.is_some())
        .collect();
    assert!(spec_cases.len() > 90, "most spec rows are reproduced");
    let mut rows = Vec::new();
    for case in &spec_cases {
        let outcome = send(case, nginx.addr());
        let expected = case.spec_status.unwrap_or_default();
        if outcome.status() != expected {
            rows.push(Row {
                case,
                nginx: outcome.describe(),
                edge: "-".to_owned(),
                detail: format!("spec says {expected}"),
            });
        }
    }
    assert!(
        rows.is_empty(),
        "{}\n{}",
        table(
            &format!(
                "{} of {} spec rows differ from this nginx",
                rows.len(),
                spec_cases.len()
            ),
            &rows
        ),
        nginx.diagnostics()
    );
}

/// The point of the suite: the edge answers every case like nginx.
#[test]
fn edge_answers_like_nginx() {
    let tree = ContentTree::new();
    let nginx = Nginx::start(tree.root(), TEST_SECRET);
    let edge = Edge::start(EdgeOptions::new(tree.root()));
    let all = cases::all(&tree);
    let allowed: HashMap<&str, &Allowed> = ALLOWED_DIFFERENCES
        .iter()
        .map(|entry| (entry.case, entry))
        .collect();
    for entry in ALLOWED_DIFFERENCES {
        assert!(
            all.iter().any(|case| case.name == entry.case),
            "allow-list entry {:?} names no case",
            entry.case
        );
    }
    for entry in ALLOWED_HEADER_DIFFERENCES {
        assert!(
            all.iter()
                .any(|case| case.path().ends_with(entry.extension)),
            "header allow-list entry for {:?} matches no case",
            entry.extension
        );
    }

    let mut mismatches = Vec::new();
    let mut everything = Vec::new();
    for case in &all {
        let from_nginx = send(case, nginx.addr());
        let from_edge = send(case, edge.public_addr);
        let detail = match (
            &from_nginx.response,
            &from_edge.response,
            allowed.get(case.name.as_str()),
        ) {
            (_, _, Some(entry)) => allowed_difference(entry, &from_nginx, &from_edge),
            (Some(n), Some(e), None) if n.status == e.status => {
                header_differences(case, n, e).join("; ")
            }
            _ => "status differs".to_owned(),
        };
        let row = Row {
            case,
            nginx: from_nginx.describe(),
            edge: from_edge.describe(),
            detail,
        };
        if !row.detail.is_empty() {
            mismatches.push(Row {
                case,
                nginx: row.nginx.clone(),
                edge: row.edge.clone(),
                detail: row.detail.clone(),
            });
        }
        everything.push(row);
    }

    if let Some(path) = std::env::var_os("E2E_COMPAT_REPORT") {
        let report = table(&format!("all {} cases", everything.len()), &everything);
        std::fs::write(&path, report).expect("write E2E_COMPAT_REPORT");
    }
    assert!(
        mismatches.is_empty(),
        "{}\n{}",
        table(
            &format!(
                "{} of {} cases differ between nginx and the edge",
                mismatches.len(),
                all.len()
            ),
            &mismatches
        ),
        edge.diagnostics()
    );
}

/// Empty when the edge differs from nginx exactly as the allow-list says.
fn allowed_difference(entry: &Allowed, nginx: &Outcome, edge: &Outcome) -> String {
    if edge.status() == nginx.status() {
        return format!(
            "stale allow-list entry: the edge now answers like nginx; remove it ({})",
            entry.reason
        );
    }
    if edge.status() != entry.edge_status {
        return format!(
            "allowed difference, but the edge must answer {} ({})",
            entry.edge_status, entry.reason
        );
    }
    String::new()
}
