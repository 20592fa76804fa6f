//! The services' metrics as Prometheus sees them, and the deployment's monitoring files against
//! the real metrics.
//!
//! One test: the real edge and origin get a little traffic (signed segments, cache hits,
//! refused signatures, API calls, one upload transcoded by the real ffmpeg pipeline, a signed
//! manifest), then
//! - `promtool check metrics` accepts both `/metrics` texts;
//! - every `edge_*` / `origin_*` name used by `deploy/prometheus/alerts.yml` and
//!   `deploy/grafana/dashboard.json` is one the services really export;
//! - Debian's `prometheus`, scraping both admin listeners every second with `alerts.yml`
//!   loaded, reports both targets up, has the key series, evaluates every alerting rule
//!   without error, and answers every dashboard query without error and with data.
//!
//! Needs `prometheus`/`promtool` (Debian package `prometheus`) and `ffmpeg`, which
//! `scripts/test.sh` installs. Every wait is bounded; every process is stopped on drop.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::content::SEGMENT;
use e2e::origin::{generate_clip, json, mint_token, JWT_SECRET};
use e2e::prometheus::{self, Prometheus};
use e2e::{
    future_expires, metrics, past_expires, process, signer, wait_until, ContentTree, Edge,
    EdgeOptions, Origin, OriginOptions, Request,
};

/// How long Prometheus gets to see both targets up, the series, and every rule evaluated.
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(60);

/// A 1 s clip transcoded with libx264 `ultrafast`; generous for a loaded 2-core machine.
const TRANSCODE_TIMEOUT: Duration = Duration::from_secs(120);

/// No NVENC probe at start (saves a failing test encode), short segments, fastest preset.
const ORIGIN_CONFIG: &str = "[transcode]\nworkers = 1\nsegment_secs = 1\n\
                             x264_preset = \"ultrafast\"\nnvenc = \"off\"\n";

/// A file small enough for the edge's hot cache (segments may go out by sendfile instead).
const PLAYLIST: &str = "720p/index.m3u8";

/// Metric families the services must export for the monitoring files to make sense.
const KEY_SERIES: &[&str] = &[
    "edge_requests_total",
    "edge_cache_hits_total",
    "edge_bytes_sent_total",
    "edge_signature_failures_total",
    "origin_jobs",
    "origin_requests_total",
    "origin_transcode_speed_realtime_count",
];

fn deploy_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

fn read_deploy_file(rel: &str) -> String {
    let path = deploy_file(rel);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// A small playlist (a hot-cache miss, then hits), a large segment (sendfile), a Range
/// request, refused signatures and a 404.
fn edge_traffic(edge: &Edge) {
    for rel in [PLAYLIST, SEGMENT] {
        let target = signer().signed_url(&ContentTree::uri(rel), future_expires(), "");
        for _ in 0..3 {
            let r = edge.public(Request::get(target.as_str()));
            assert_eq!(r.status, 200, "GET {target}\n{}", edge.diagnostics());
        }
    }
    let uri = ContentTree::uri(SEGMENT);
    let good = signer().signed_url(&uri, future_expires(), "");
    let r = edge.public(Request::get(good.as_str()).header("Range", "bytes=0-99"));
    assert_eq!(r.status, 206, "ranged GET {good}\n{}", edge.diagnostics());
    let refused = [
        (
            format!(
                "{uri}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires={}",
                future_expires()
            ),
            403,
        ),
        (signer().signed_url(&uri, past_expires(), ""), 410),
        (uri.clone(), 403),
        ("/nowhere".to_owned(), 404),
    ];
    for (target, status) in refused {
        let r = edge.public(Request::get(target.as_str()));
        assert_eq!(r.status, status, "GET {target}\n{}", edge.diagnostics());
    }
}

/// API calls (ok and refused), one upload followed to ready, its signed master playlist.
fn origin_traffic(origin: &Origin, clip: &[u8]) {
    let token = mint_token(JWT_SECRET, "metrics-user", false, "1h");
    assert_eq!(
        origin.get("/api/videos").status,
        401,
        "unauthenticated list"
    );
    assert_eq!(origin.get_as(&token, "/api/videos").status, 200, "list");
    let upload = origin.upload(&token, clip, "video/mp4");
    assert_eq!(
        upload.status,
        202,
        "upload: {}\n{}",
        upload.text(),
        origin.diagnostics()
    );
    let id = json(&upload)["id"]
        .as_str()
        .expect("the upload answer has an id")
        .to_owned();
    let ready = wait_until(TRANSCODE_TIMEOUT, || {
        let text = origin.metrics();
        metrics::value(&text, "origin_transcodes_total", &[("outcome", "ready")])
            .is_some_and(|n| n >= 1.0)
    });
    assert!(
        ready,
        "no finished transcode of {id} within {TRANSCODE_TIMEOUT:?}\n{}",
        origin.diagnostics()
    );
    // Completion is recorded in the store just after the metric; the manifest needs it.
    let master = format!("/api/videos/{id}/hls/master.m3u8?token={token}");
    let served = wait_until(Duration::from_secs(10), || {
        origin.get(&master).status == 200
    });
    assert!(
        served,
        "GET {master} never answered 200\n{}",
        origin.diagnostics()
    );
}

/// The metric names in `text` (Prometheus exposition format), with histogram family names
/// (`x` for `x_bucket`, `x_sum`, `x_count`).
fn exported_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for sample in metrics::parse(text) {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = sample.name.strip_suffix(suffix) {
                names.push(family.to_owned());
            }
        }
        names.push(sample.name);
    }
    names.sort();
    names.dedup();
    names
}

/// Polls until `check` returns `Ok`, at most until `deadline`; the last `Err` is the panic.
fn eventually<T>(
    deadline: Instant,
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    loop {
        let last = match check() {
            Ok(value) => return value,
            Err(err) => err,
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PROMETHEUS_TIMEOUT:?}; last: {last}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every `expr` string anywhere in the dashboard JSON.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                dashboard_exprs(v, out);
            }
        }
        _ => {}
    }
}

#[test]
fn prometheus_scrapes_both_services_and_the_deploy_files_match_their_metrics() {
    prometheus::require_tools();
    assert!(
        process::on_path("ffmpeg"),
        "`ffmpeg` is not installed; the README's test command (./scripts/test.sh) installs it"
    );
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("e2e-prometheus-test-")
        .tempdir()
        .expect("create temp dir");
    let clip_path = scratch.path().join("clip.mp4");
    generate_clip(&clip_path, 1, 160, 120);
    let clip = fs::read(&clip_path).expect("read the clip");

    let content = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(content.root()));
    let origin = Origin::start(
        OriginOptions::new(&scratch.path().join("data"), "http://127.0.0.1:1")
            .config(ORIGIN_CONFIG),
    );
    let context = || format!("{}\n{}", edge.diagnostics(), origin.diagnostics());

    edge_traffic(&edge);
    origin_traffic(&origin, &clip);

    // 1. promtool accepts both expositions as they are after traffic (labelled series exist).
    let edge_text = edge.metrics();
    let origin_text = origin.metrics();
    for (service, text) in [("edge", &edge_text), ("origin", &origin_text)] {
        if let Err(report) = prometheus::check_metrics(text) {
            panic!("{service} /metrics fails promtool: {report}\n--- exposition ---\n{text}");
        }
    }

    // 2. The monitoring files only name metrics the services export.
    let mut exported = exported_names(&edge_text);
    exported.extend(exported_names(&origin_text));
    for series in KEY_SERIES {
        assert!(
            exported.iter().any(|name| name == series),
            "{series} is not exported; exported: {exported:?}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read_deploy_file("grafana/dashboard.json"))
            .expect("deploy/grafana/dashboard.json is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 10, "only {} dashboard queries", exprs.len());
    let sources = [
        (
            "prometheus/alerts.yml",
            read_deploy_file("prometheus/alerts.yml"),
        ),
        ("grafana/dashboard.json (queries)", exprs.join("\n")),
    ];
    for (file, text) in &sources {
        let used = prometheus::metric_names(text, &["edge_", "origin_"]);
        assert!(!used.is_empty(), "deploy/{file} names no metric");
        let unknown: Vec<_> = used
            .iter()
            .filter(|name| !exported.contains(name))
            .collect();
        assert!(
            unknown.is_empty(),
            "deploy/{file} uses metrics the services do not export: {unknown:?}\n\
             exported: {exported:?}"
        );
    }

    // 3. A real Prometheus scraping both admin listeners, with the deployment's rules.
    let prom = Prometheus::start(
        &[("edge", edge.admin_addr), ("origin", origin.admin_addr)],
        &[deploy_file("prometheus/alerts.yml")],
    );
    let context = || format!("{}\n{}", prom.diagnostics(), context());
    let deadline = Instant::now() + PROMETHEUS_TIMEOUT;

    eventually(deadline, "both targets up", context, || {
        let data = prom.api("/api/v1/targets?state=active")?;
        let targets = data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let health = |job: &str| {
            targets
                .iter()
                .find(|t| t["labels"]["job"] == job)
                .map(|t| format!("{} {}", t["health"], t["lastError"]))
        };
        for job in ["edge", "origin"] {
            match health(job) {
                Some(h) if h.starts_with("\"up\"") => {}
                other => return Err(format!("target {job}: {other:?}")),
            }
        }
        Ok(())
    });
    eventually(deadline, "up == 1 for both jobs", context, || {
        for job in ["edge", "origin"] {
            let v = prom.values(&format!("up{{job=\"{job}\"}}"))?;
            if v != [1.0] {
                return Err(format!("up{{job=\"{job}\"}} = {v:?}"));
            }
        }
        Ok(())
    });
    eventually(deadline, "key series in the TSDB", context, || {
        let checks = [
            // The traffic above: three GETs each of a playlist and a segment, one Range.
            (
                "sum(edge_requests_total{route=\"content\",status_class=\"2xx\"})",
                7.0,
            ),
            // The playlist's second and third GETs.
            ("sum(edge_cache_hits_total)", 2.0),
            (
                "sum(edge_signature_failures_total{reason=\"bad_hash\"})",
                1.0,
            ),
            (
                "sum(edge_signature_failures_total{reason=\"expired\"})",
                1.0,
            ),
            ("count(origin_jobs)", 5.0),
            ("sum(origin_transcode_speed_realtime_count)", 1.0),
            ("sum(origin_manifest_signing_seconds_count)", 1.0),
        ];
        for (expr, at_least) in checks {
            let v = prom.values(expr)?;
            if !v.first().is_some_and(|x| *x >= at_least) {
                return Err(format!("{expr} = {v:?}, expected >= {at_least}"));
            }
        }
        Ok(())
    });

    // Every rule of alerts.yml evaluated at least once against the real series, no errors.
    let rule_count = eventually(deadline, "every alerting rule evaluated", context, || {
        let data = prom.api("/api/v1/rules?type=alert")?;
        let mut count = 0;
        for group in data["groups"].as_array().cloned().unwrap_or_default() {
            for rule in group["rules"].as_array().cloned().unwrap_or_default() {
                count += 1;
                let name = &rule["name"];
                match rule["health"].as_str() {
                    Some("ok") => {}
                    Some("err") => panic!(
                        "rule {name} fails to evaluate: {}\n{}",
                        rule["lastError"],
                        context()
                    ),
                    other => return Err(format!("rule {name} health {other:?}")),
                }
            }
        }
        if count == 0 {
            return Err("no alerting rules loaded".into());
        }
        Ok(count)
    });
    assert!(rule_count >= 10, "only {rule_count} alerting rules loaded");

    // Every dashboard query parses, evaluates, and finds data (wrong label or metric names
    // would come back empty).
    for expr in &exprs {
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$edge_instance", ".*")
            .replace("$origin_instance", ".*");
        eventually(
            deadline,
            &format!("dashboard query {expr}"),
            context,
            || {
                match prom.query(&promql) {
                    Ok(result) if !result.is_empty() => Ok(()),
                    Ok(_) => Err("empty result".into()),
                    // Bad PromQL never gets better: fail at once.
                    Err(err) if err.starts_with("400") => {
                        panic!("dashboard query {expr} is rejected: {err}")
                    }
                    Err(err) => Err(err),
                }
            },
        );
    }
    eprintln!(
        "prometheus test: {rule_count} rules ok, {} dashboard queries ok, {:.1} s",
        exprs.len(),
        started.elapsed().as_secs_f64()
    );
}
