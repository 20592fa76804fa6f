//! The `edge` binary under test, started on ephemeral ports.
//!
//! Ports are never fixed: the edge binds `127.0.0.1:0` and logs one `listening` line per
//! listener (`listener="public"|"admin"|"tls"`, `addr=127.0.0.1:PORT`), which is read back from
//! its stderr. Stderr keeps being drained afterwards so the pipe never blocks the server, and
//! the lines are kept for failure messages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use tempfile::TempDir;

use crate::http::{raw_request, RawResponse, Request};
use crate::process::{self, LineLog, Signal};
use crate::{future_expires, signer, ContentTree, PREFIX, TEST_SECRET};

/// How long the edge may take to report all its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What to start the edge with. `public` and `admin` listeners are always on `127.0.0.1:0`.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Content root (`--root`).
    pub root: PathBuf,
    /// Signing secret (`HLS_SIGNING_SECRET`).
    pub secret: String,
    /// TOML written to a temp file and passed as `--config`.
    pub config: Option<String>,
    /// More command-line arguments, appended last.
    pub extra_args: Vec<String>,
    /// More environment variables (these win over the defaults set here).
    pub env: Vec<(String, String)>,
}

impl EdgeOptions {
    /// Defaults: the test secret, no config file, no extra arguments.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            secret: TEST_SECRET.to_owned(),
            config: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Passes `toml` as the configuration file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Appends command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an HTTPS listener on `127.0.0.1:0` serving the certificate `files`.
    pub fn tls(self, files: &crate::tls::CertFiles) -> Self {
        self.args([
            "--tls-listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--tls-cert".to_owned(),
            files.cert.display().to_string(),
            "--tls-key".to_owned(),
            files.key.display().to_string(),
        ])
    }

    /// Sets an environment variable for the edge.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    fn wants_tls(&self) -> bool {
        self.extra_args.iter().any(|arg| arg == "--tls-listen")
    }
}

/// A running edge; killed on drop.
pub struct Edge {
    child: Child,
    stderr: LineLog,
    exit_status: Option<ExitStatus>,
    /// The plain-HTTP public listener.
    pub public_addr: SocketAddr,
    /// The metrics / purge listener.
    pub admin_addr: SocketAddr,
    /// The HTTPS listener, when `--tls-listen` was passed.
    pub tls_addr: Option<SocketAddr>,
    // Holds the `--config` file for the lifetime of the process.
    _config_dir: Option<TempDir>,
}

impl Edge {
    /// Starts the edge and waits until it reported every listener it was asked for.
    pub fn start(options: EdgeOptions) -> Self {
        let binary = edge_binary();
        let mut command = Command::new(&binary);
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--root")
            .arg(&options.root)
            .arg("--prefix")
            .arg(PREFIX);
        let config_dir = process::config_file(&mut command, "edge.toml", options.config.as_deref());
        command
            .args(&options.extra_args)
            .env("HLS_SIGNING_SECRET", &options.secret);
        let mut wanted = vec!["public", "admin"];
        if options.wants_tls() {
            wanted.push("tls");
        }
        let what = format!("the edge ({})", binary.display());
        let launched = process::launch(&mut command, &what, &options.env, &wanted, START_TIMEOUT);
        let found = &launched.listeners;
        Self {
            public_addr: found["public"],
            admin_addr: found["admin"],
            tls_addr: found.get("tls").copied(),
            child: launched.child,
            stderr: launched.stderr,
            exit_status: None,
            _config_dir: config_dir,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines()
    }

    /// The last stderr lines, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!("edge stderr (tail):\n{}", self.stderr.tail(60))
    }

    /// Sends `signal` to the edge.
    pub fn signal(&self, signal: Signal) {
        process::send_signal(self.pid(), signal);
    }

    /// Waits at most `timeout` for the edge to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            self.exit_status = process::wait_exit(&mut self.child, timeout);
        }
        self.exit_status
    }

    /// `GET path` on the admin listener with optional extra headers.
    pub fn admin_get(&self, path: &str) -> RawResponse {
        let request = Request::get(path).host(self.admin_addr.to_string()).build();
        raw_request(self.admin_addr, &request)
            .unwrap_or_else(|err| panic!("GET {path} on admin: {err}\n{}", self.diagnostics()))
    }

    /// The current `/metrics` text.
    pub fn metrics(&self) -> String {
        let response = self.admin_get("/metrics");
        assert_eq!(response.status, 200, "GET /metrics\n{}", self.diagnostics());
        response.text()
    }

    /// Sends `request` (built without Host) to the public listener with its Host header.
    pub fn public(&self, request: Request) -> RawResponse {
        let bytes = request.host(self.public_addr.to_string()).build();
        raw_request(self.public_addr, &bytes).unwrap_or_else(|err| {
            panic!(
                "request {:?} failed: {err}\n{}",
                String::from_utf8_lossy(&bytes),
                self.diagnostics()
            )
        })
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A request target for `rel` (relative to the test video) signed with [`TEST_SECRET`] and
/// valid for a day.
pub fn signed_target(rel: &str) -> String {
    signer().signed_url(&ContentTree::uri(rel), future_expires(), "")
}

/// `<target>/<profile>/edge`, built by `cargo build --workspace` before the tests run.
pub fn edge_binary() -> PathBuf {
    let path = process::binaries_dir().join("edge");
    assert!(
        path.is_file(),
        "{} does not exist: build the workspace first (`cargo build --workspace && cargo test \
         --workspace`)",
        path.display()
    );
    path
}

/// `(listener, addr)` from a `listening` log line, in tracing's text or JSON format. Shared
/// with [`crate::origin`], which logs its listeners the same way.
pub(crate) fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("listening") {
        return None;
    }
    let listener = field(&line, "listener")?;
    let addr = field(&line, "addr")?.parse().ok()?;
    Some((listener, addr))
}

/// The value of `key` written as `key=value`, `key="value"` or `"key":"value"`.
fn field(line: &str, key: &str) -> Option<String> {
    let patterns = [format!("{key}="), format!("\"{key}\":")];
    patterns.iter().find_map(|pattern| {
        let start = line
            .match_indices(pattern.as_str())
            // Reject matches that are the tail of a longer name (`peer_addr=`).
            .find(|(index, _)| {
                line[..*index]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            })?
            .0
            + pattern.len();
        let rest = line[start..].trim_start();
        let value = match rest.strip_prefix('"') {
            Some(quoted) => &quoted[..quoted.find('"')?],
            None => rest
                .split(|c: char| c.is_whitespace() || c == ',' || c == '}')
                .next()?,
        };
        Some(value.to_owned())
    })
}

/// Removes ANSI colour sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip up to and including the final letter of the sequence.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_json_listening_lines() {
        let text =
            "2026-11-22T01:00:00Z  INFO edge: listening listener=\"public\" addr=127.0.0.1:4321";
        assert_eq!(
            parse_listening(text),
            Some(("public".to_owned(), "127.0.0.1:4321".parse().expect("addr")))
        );
        let json = r#"{"level":"INFO","fields":{"message":"listening","listener":"tls","addr":"127.0.0.1:99"}}"#;
        assert_eq!(
            parse_listening(json),
            Some(("tls".to_owned(), "127.0.0.1:99".parse().expect("addr")))
        );
        let coloured = "\u{1b}[32m INFO\u{1b}[0m listening \u{1b}[3mlistener\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"admin\" \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:7";
        assert_eq!(
            parse_listening(coloured),
            Some(("admin".to_owned(), "127.0.0.1:7".parse().expect("addr")))
        );
        assert_eq!(parse_listening("listening peer_addr=127.0.0.1:1"), None);
    }
}
