//! Debian's Prometheus and promtool, driven from tests.
//!
//! - [`require_tools`]: the binaries, or a panic that says how to get them.
//! - [`check_metrics`]: `promtool check metrics` on an exposition text (piped to its stdin).
//! - [`Prometheus`]: a throw-away server scraping given targets every second, with a temp
//!   TSDB, on a free loopback port, queried over its HTTP API; stopped on drop.
//! - [`metric_names`], [`url_encode`]: small helpers for checking deployment files.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::http::{raw_request, Request};
use crate::process::{self, LineLog, Signal};

/// How long Prometheus may take to answer `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long Prometheus gets to exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Panics unless `prometheus` and `promtool` are on `PATH`.
pub fn require_tools() {
    let missing: Vec<_> = ["prometheus", "promtool"]
        .into_iter()
        .filter(|tool| !process::on_path(tool))
        .collect();
    assert!(
        missing.is_empty(),
        "{missing:?} not found on PATH. Run the README's test command, `./scripts/test.sh`, \
         which installs the test packages, or install Debian's `prometheus` package (it \
         provides both binaries): `apt-get install --no-install-recommends prometheus`"
    );
}

/// Runs `promtool check metrics` with `text` on stdin; `Err` carries its report.
pub fn check_metrics(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run promtool: {err}"));
    let stdout = LineLog::drain(child.stdout.take().expect("stdout is piped"));
    let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
    {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(text.as_bytes())
            .expect("write metrics to promtool");
        // Dropping stdin closes it: promtool reads to EOF.
    }
    let Some(status) = process::wait_exit(&mut child, Duration::from_secs(30)) else {
        process::stop(&mut child, Signal::Kill, Duration::from_secs(1));
        panic!("promtool check metrics did not finish within 30 s");
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    stdout.wait_closed(deadline);
    stderr.wait_closed(deadline);
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics: {status}\n{}\n{}",
            stdout.lines().join("\n"),
            stderr.lines().join("\n")
        ))
    }
}

/// A running Prometheus; stopped on drop.
pub struct Prometheus {
    child: Child,
    stderr: LineLog,
    /// Its HTTP listener (`--web.listen-address`).
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each `(job, admin address)` at `/metrics` every second and
    /// evaluating `rule_files` every second, and waits until it is ready.
    pub fn start(targets: &[(&str, SocketAddr)], rule_files: &[PathBuf]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("e2e-prometheus-")
            .tempdir()
            .expect("create prometheus dir");
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, config_yaml(targets, rule_files)).expect("write prometheus.yml");
        // The port is picked by binding :0 and released before Prometheus binds it; another
        // process can take it in between, so a lost race is retried.
        let mut last_failure = String::new();
        for _ in 0..3 {
            let addr = free_loopback_port();
            match Self::spawn(&config, dir.path(), addr) {
                Ok((child, stderr)) => {
                    return Self {
                        child,
                        stderr,
                        addr,
                        _dir: dir,
                    }
                }
                Err(failure) => last_failure = failure,
            }
        }
        panic!("prometheus did not start: {last_failure}");
    }

    fn spawn(config: &Path, dir: &Path, addr: SocketAddr) -> Result<(Child, LineLog), String> {
        let mut child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start prometheus: {err}"));
        let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "exited with {status}; stderr:\n{}",
                    stderr.tail(40)
                ));
            }
            let ready = Request::get("/-/ready").host(addr.to_string()).build();
            if raw_request(addr, &ready).is_ok_and(|r| r.status == 200) {
                return Ok((child, stderr));
            }
            if Instant::now() >= deadline {
                process::stop(&mut child, Signal::Kill, STOP_GRACE);
                return Err(format!(
                    "not ready within {START_TIMEOUT:?}; stderr:\n{}",
                    stderr.tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last stderr lines, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!("prometheus stderr (tail):\n{}", self.stderr.tail(40))
    }

    /// `GET target` on the HTTP API: the `data` member of a `"status": "success"` answer, or
    /// the whole answer (or transport error) as `Err`.
    pub fn api(&self, target: &str) -> Result<serde_json::Value, String> {
        let request = Request::get(target).host(self.addr.to_string()).build();
        let response = raw_request(self.addr, &request).map_err(|err| format!("{err}"))?;
        let body: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|err| format!("{} {err}: {}", response.status, response.text()))?;
        if response.status == 200 && body["status"] == "success" {
            Ok(body["data"].clone())
        } else {
            Err(format!("{}: {body}", response.status))
        }
    }

    /// An instant query: the result vector (`[{metric, value: [ts, "v"]}, ...]`).
    pub fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        match &data["result"] {
            serde_json::Value::Array(items) => Ok(items.clone()),
            // Scalars and strings are `[ts, "v"]`: one pseudo-sample.
            other => Ok(vec![serde_json::json!({ "metric": {}, "value": other })]),
        }
    }

    /// The values of an instant query, as numbers.
    pub fn values(&self, expr: &str) -> Result<Vec<f64>, String> {
        Ok(self
            .query(expr)?
            .iter()
            .filter_map(|sample| sample["value"][1].as_str()?.parse().ok())
            .collect())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        process::stop(&mut self.child, Signal::Term, STOP_GRACE);
    }
}

fn config_yaml(targets: &[(&str, SocketAddr)], rule_files: &[PathBuf]) -> String {
    let mut yaml = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
    );
    if !rule_files.is_empty() {
        yaml.push_str("rule_files:\n");
        for file in rule_files {
            // JSON strings are valid YAML scalars: paths need no other quoting.
            let path = serde_json::Value::from(file.display().to_string());
            let _ = writeln!(yaml, "  - {path}");
        }
    }
    yaml.push_str("scrape_configs:\n");
    for (job, addr) in targets {
        let _ = writeln!(
            yaml,
            "  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]"
        );
    }
    yaml
}

fn free_loopback_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query arguments).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The distinct metric names starting with one of `prefixes` (`edge_`, `origin_`) that appear
/// as words in `text` (PromQL, YAML, JSON); `$edge_instance`-style template variables and
/// longer identifiers that merely contain a prefix are skipped.
pub fn metric_names(text: &str, prefixes: &[&str]) -> Vec<String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = Vec::new();
    for (start, _) in text.char_indices() {
        let rest = &text[start..];
        if !prefixes.iter().any(|prefix| rest.starts_with(prefix)) {
            continue;
        }
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| is_word(c) || c == '$') {
            continue;
        }
        let end = rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_unreserved_only() {
        assert_eq!(
            url_encode(r#"sum(rate(x{a="b"}[1m])) > 0.5"#),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29%20%3E%200.5"
        );
    }

    #[test]
    fn finds_metric_names_but_not_variables() {
        let text = r#"rate(edge_requests_total{instance=~"$edge_instance"}[1m]) / origin_jobs{x="y"} my_edge_thing"#;
        assert_eq!(
            metric_names(text, &["edge_", "origin_"]),
            ["edge_requests_total", "origin_jobs"]
        );
    }

    #[test]
    fn config_lists_jobs_and_rules() {
        let yaml = config_yaml(
            &[("edge", "127.0.0.1:9".parse().expect("addr"))],
            &[PathBuf::from("/a b/alerts.yml")],
        );
        assert!(yaml.contains("  - \"/a b/alerts.yml\"\n"), "{yaml}");
        assert!(
            yaml.contains(
                "  - job_name: edge\n    static_configs:\n      - targets: [\"127.0.0.1:9\"]"
            ),
            "{yaml}"
        );
    }
}
