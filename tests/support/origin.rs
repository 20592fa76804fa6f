//! The `origin` binary under test, started on ephemeral ports, and what a client of its API
//! needs: user tokens (minted by `origin token`, or hand-built unsigned ones), uploads (raw and
//! multipart), JSON bodies, and generated clips to upload (re-exported from [`crate::clips`]).
//!
//! Like the edge, the origin binds `127.0.0.1:0` and logs one `listening` line per listener
//! (`listener="api"|"admin"`, `addr=127.0.0.1:PORT`); the addresses are read back from its
//! stderr, which keeps being drained so the pipe never blocks the server.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub use crate::clips::{generate_clip, truncated_clip};
use crate::http::{raw_request, raw_request_within, RawResponse, Request};
use crate::process::{self, LineLog, Signal};
use crate::sse::{self, SseStream};
use crate::TEST_SECRET;

/// How long the origin may take to report its listeners (it opens its job store first).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the origin may take to drain and exit on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The HS256 secret user tokens are signed with (`JWT_SECRET`, at least 16 bytes).
pub const JWT_SECRET: &str = "e2e-origin-jwt-secret-0123456789";

/// The edge's purge token (`EDGE_PURGE_TOKEN`) both services are given.
pub const PURGE_TOKEN: &str = "e2e-purge-token-0123456789";

/// What to start the origin with. Its admin listener is always on `127.0.0.1:0`, its API
/// listener too unless [`OriginOptions::listen`] names a port.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    /// Data directory (`--data`); `<data>/hls` is the edge's root.
    pub data: PathBuf,
    /// `--edge-base-url`: where signed segment URLs point.
    pub edge_base_url: String,
    /// `--edge-admin-url`: where deletes send purges; `None` disables purging.
    pub edge_admin_url: Option<String>,
    /// `JWT_SECRET`.
    pub jwt_secret: String,
    /// `HLS_SIGNING_SECRET`, shared with the edge. Defaults to the edge's [`TEST_SECRET`].
    pub signing_secret: String,
    /// `EDGE_PURGE_TOKEN`.
    pub purge_token: Option<String>,
    /// TOML written to a temp file and passed as `--config`.
    pub config: Option<String>,
    /// More environment variables (these win over the defaults set here).
    pub env: Vec<(String, String)>,
    /// `--listen` for the API (default `127.0.0.1:0`).
    pub listen: String,
    /// The binary to run, in its own directory as the working directory (default: the one
    /// cargo built, run from the test's directory).
    pub binary: Option<PathBuf>,
}

impl OriginOptions {
    /// Defaults: [`JWT_SECRET`], the edge's [`TEST_SECRET`], purges with [`PURGE_TOKEN`] when
    /// an admin URL is set, no config file.
    pub fn new(data: &Path, edge_base_url: &str) -> Self {
        Self {
            data: data.to_path_buf(),
            edge_base_url: edge_base_url.to_owned(),
            edge_admin_url: None,
            jwt_secret: JWT_SECRET.to_owned(),
            signing_secret: TEST_SECRET.to_owned(),
            purge_token: Some(PURGE_TOKEN.to_owned()),
            config: None,
            env: Vec::new(),
            listen: "127.0.0.1:0".to_owned(),
            binary: None,
        }
    }

    /// Runs `binary` (a copy of the origin installed elsewhere) from its own directory.
    pub fn binary(mut self, binary: &Path) -> Self {
        self.binary = Some(binary.to_path_buf());
        self
    }

    /// Listens for the API on `addr`, for a test that must know the origin's address before
    /// it starts (e.g. to allow it in the edge's CORS origins).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_owned();
        self
    }

    /// Sends purges to the edge admin listener at `url` (`http://host:port`).
    pub fn edge_admin_url(mut self, url: &str) -> Self {
        self.edge_admin_url = Some(url.to_owned());
        self
    }

    /// Passes `toml` as the configuration file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Sets an environment variable for the origin.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running origin; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Origin {
    child: Child,
    stderr: LineLog,
    /// The API listener.
    pub api_addr: SocketAddr,
    /// The metrics listener.
    pub admin_addr: SocketAddr,
    /// The data directory it was started on.
    pub data: PathBuf,
    // Holds the `--config` file for the lifetime of the process.
    _config_dir: Option<TempDir>,
    exited: bool,
}

impl Origin {
    /// Starts `origin serve` and waits until it reported both listeners.
    pub fn start(options: OriginOptions) -> Self {
        let binary = options.binary.clone().unwrap_or_else(origin_binary);
        let mut command = Command::new(&binary);
        if let Some(dir) = options.binary.as_deref().and_then(Path::parent) {
            command.current_dir(dir);
        }
        let config_dir =
            process::config_file(&mut command, "origin.toml", options.config.as_deref());
        command
            .arg("--data")
            .arg(&options.data)
            .args(["serve", "--listen", &options.listen])
            .args(["--admin-listen", "127.0.0.1:0"])
            .arg("--edge-base-url")
            .arg(&options.edge_base_url);
        if let Some(url) = &options.edge_admin_url {
            command.arg("--edge-admin-url").arg(url);
        }
        // Nothing from the developer's shell may reconfigure the origin under test.
        for name in [
            "ORIGIN_LISTEN",
            "ORIGIN_ADMIN_LISTEN",
            "ORIGIN_DATA_DIR",
            "ORIGIN_DEV",
            "ORIGIN_EDGE_BASE_URL",
            "ORIGIN_EDGE_ADMIN_URL",
            "EDGE_PURGE_TOKEN",
            "ORIGIN_WEBHOOK_URL",
            "WEBHOOK_SECRET",
            "ORIGIN_WEB_VENDOR_DIR",
        ] {
            command.env_remove(name);
        }
        if let Some(token) = &options.purge_token {
            command.env("EDGE_PURGE_TOKEN", token);
        }
        command
            .env("JWT_SECRET", &options.jwt_secret)
            .env("HLS_SIGNING_SECRET", &options.signing_secret);
        let what = format!("the origin ({})", binary.display());
        let launched = process::launch(
            &mut command,
            &what,
            &options.env,
            &["api", "admin"],
            START_TIMEOUT,
        );
        Self {
            api_addr: launched.listeners["api"],
            admin_addr: launched.listeners["admin"],
            child: launched.child,
            stderr: launched.stderr,
            data: options.data,
            _config_dir: config_dir,
            exited: false,
        }
    }

    /// Kills the origin with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill9(&mut self) {
        process::send_signal(self.pid(), Signal::Kill);
        let _ = self.child.wait();
        self.exited = true;
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines()
    }

    /// Waits at most `timeout` for a stderr line containing every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> bool {
        self.stderr.wait_for(Instant::now() + timeout, |lines| {
            lines
                .iter()
                .any(|line| needles.iter().all(|needle| line.contains(needle)))
        })
    }

    /// The last stderr lines, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!("origin stderr (tail):\n{}", self.stderr.tail(60))
    }

    /// `http://127.0.0.1:PORT` of the API listener.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Sends `request` (built without Host) to the API listener.
    pub fn request(&self, request: Request) -> RawResponse {
        self.request_within(request, crate::http::IO_TIMEOUT)
    }

    /// [`Origin::request`] with a bound on the whole exchange (slow requests: uploads probed
    /// with ffprobe).
    pub fn request_within(&self, request: Request, timeout: Duration) -> RawResponse {
        let bytes = request.host(self.api_addr.to_string()).build();
        raw_request_within(self.api_addr, &bytes, timeout).unwrap_or_else(|err| {
            panic!(
                "request {:?} to the origin failed: {err}\n{}",
                head_of(&bytes),
                self.diagnostics()
            )
        })
    }

    /// `GET target` on the API listener, no credentials.
    pub fn get(&self, target: &str) -> RawResponse {
        self.request(Request::get(target))
    }

    /// `GET target` with `Authorization: Bearer <token>`.
    pub fn get_as(&self, token: &str, target: &str) -> RawResponse {
        self.request(Request::get(target).header("Authorization", format!("Bearer {token}")))
    }

    /// `DELETE target` with `Authorization: Bearer <token>`.
    pub fn delete_as(&self, token: &str, target: &str) -> RawResponse {
        self.request(
            Request::get(target)
                .method("DELETE")
                .header("Authorization", format!("Bearer {token}")),
        )
    }

    /// `POST /api/videos/{video}/subtitles?{query}` with a subtitle file.
    pub fn add_subtitle(&self, token: &str, video: &str, query: &str, file: &[u8]) -> RawResponse {
        self.request(
            Request::get(format!("/api/videos/{video}/subtitles?{query}"))
                .method("POST")
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", "text/vtt")
                .sized_body(file),
        )
    }

    /// `POST /api/videos` with `body` as the raw request body.
    pub fn upload(&self, token: &str, body: &[u8], content_type: &str) -> RawResponse {
        self.request_within(
            Request::get("/api/videos")
                .method("POST")
                .header("Authorization", format!("Bearer {token}"))
                .header("Content-Type", content_type)
                .sized_body(body),
            Duration::from_secs(60),
        )
    }

    /// `POST /api/videos` as `multipart/form-data` with `parts`.
    pub fn upload_multipart(&self, token: &str, parts: &[Part<'_>]) -> RawResponse {
        let boundary = "e2e-boundary-7MA4YWxkTrZu0gW";
        self.request_within(
            Request::get("/api/videos")
                .method("POST")
                .header("Authorization", format!("Bearer {token}"))
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .sized_body(&multipart_body(boundary, parts)),
            Duration::from_secs(60),
        )
    }

    /// Follows `GET /api/videos/{id}/events?token=..` until `done` holds for an event, the
    /// stream ends, or `timeout` passes.
    pub fn events(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        done: impl FnMut(&sse::SseEvent) -> bool,
    ) -> SseStream {
        let request = Request::get(format!("/api/videos/{id}/events?token={token}"))
            .header("Accept", "text/event-stream")
            .host(self.api_addr.to_string())
            .build();
        sse::read_events(self.api_addr, &request, timeout, done).unwrap_or_else(|err| {
            panic!(
                "reading events of {id} failed: {err}\n{}",
                self.diagnostics()
            )
        })
    }

    /// `GET path` on the admin listener.
    pub fn admin_get(&self, path: &str) -> RawResponse {
        let request = Request::get(path).host(self.admin_addr.to_string()).build();
        raw_request(self.admin_addr, &request)
            .unwrap_or_else(|err| panic!("GET {path} on admin: {err}\n{}", self.diagnostics()))
    }

    /// The current `/metrics` text of the admin listener.
    pub fn metrics(&self) -> String {
        let response = self.admin_get("/metrics");
        assert_eq!(response.status, 200, "GET /metrics\n{}", self.diagnostics());
        response.text()
    }

    /// Sends SIGTERM and waits at most `timeout` for the origin to exit; true if it did.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        process::send_signal(self.pid(), Signal::Term);
        process::wait_exit(&mut self.child, timeout).is_some()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        // SIGTERM first: the origin stops its workers, which end their ffmpeg children.
        process::stop(&mut self.child, Signal::Term, STOP_GRACE);
    }
}

/// What to start `origin worker` with. Its admin (metrics) listener is always on
/// `127.0.0.1:0`, which is also how the test knows the worker is up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Data directory (`--data`), shared with `origin serve`.
    pub data: PathBuf,
    /// `--concurrency`: jobs at once.
    pub concurrency: usize,
    /// TOML written to a temp file and passed as `--config`.
    pub config: Option<String>,
    /// More environment variables (e.g. `REDIS_URL`).
    pub env: Vec<(String, String)>,
}

impl WorkerOptions {
    /// One job at a time, no config file.
    pub fn new(data: &Path) -> Self {
        Self {
            data: data.to_path_buf(),
            concurrency: 1,
            config: None,
            env: Vec::new(),
        }
    }

    /// Sets `--concurrency`.
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs;
        self
    }

    /// Passes `toml` as the configuration file.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    /// Sets an environment variable for the worker.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running `origin worker` (workers only, no API). On drop: SIGTERM, and after a grace
/// period SIGKILL for it and the ffmpeg children it had (which SIGKILL alone would orphan).
pub struct OriginWorker {
    child: Child,
    stderr: LineLog,
    exited: bool,
    /// The metrics listener.
    pub admin_addr: SocketAddr,
    _config_dir: Option<TempDir>,
}

impl OriginWorker {
    /// Starts `origin worker` and waits until it reported its admin listener (it has opened
    /// its job store by then).
    pub fn start(options: WorkerOptions) -> Self {
        let binary = origin_binary();
        let mut command = Command::new(&binary);
        let config_dir =
            process::config_file(&mut command, "origin.toml", options.config.as_deref());
        command
            .arg("--data")
            .arg(&options.data)
            .args(["worker", "--admin-listen", "127.0.0.1:0", "--concurrency"])
            .arg(options.concurrency.to_string());
        for name in [
            "ORIGIN_DATA_DIR",
            "ORIGIN_STORE",
            "REDIS_URL",
            "ORIGIN_WEBHOOK_URL",
            "WEBHOOK_SECRET",
        ] {
            command.env_remove(name);
        }
        let what = format!("origin worker ({})", binary.display());
        let launched =
            process::launch(&mut command, &what, &options.env, &["admin"], START_TIMEOUT);
        Self {
            admin_addr: launched.listeners["admin"],
            child: launched.child,
            stderr: launched.stderr,
            exited: false,
            _config_dir: config_dir,
        }
    }

    /// The process id; its worker names (job leases) are `<hostname>-<pid>-<n>`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether a lease's worker name belongs to this process.
    pub fn owns_lease(&self, worker_name: &str) -> bool {
        worker_name
            .rsplit_once('-')
            .and_then(|(rest, _slot)| rest.rsplit_once('-'))
            .is_some_and(|(_host, pid)| pid == self.pid().to_string())
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lines()
    }

    /// Waits at most `timeout` for a stderr line containing every one of `needles`.
    pub fn wait_for_log(&self, needles: &[&str], timeout: Duration) -> bool {
        self.stderr.wait_for(Instant::now() + timeout, |lines| {
            lines
                .iter()
                .any(|line| needles.iter().all(|needle| line.contains(needle)))
        })
    }

    /// The last stderr lines, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "worker {} stderr (tail):\n{}",
            self.pid(),
            self.stderr.tail(40)
        )
    }

    /// Kills the worker with SIGKILL, as a crash would: no lease is released, no job
    /// recorded as failed, its ffmpeg children are not told. Waits until it is gone.
    pub fn kill9(&mut self) {
        process::send_signal(self.pid(), Signal::Kill);
        let _ = self.child.wait();
        self.exited = true;
    }

    /// The current `/metrics` text of the admin listener.
    pub fn metrics(&self) -> String {
        let request = Request::get("/metrics")
            .host(self.admin_addr.to_string())
            .build();
        let response = raw_request(self.admin_addr, &request)
            .unwrap_or_else(|err| panic!("GET /metrics: {err}\n{}", self.diagnostics()));
        assert_eq!(response.status, 200, "GET /metrics\n{}", self.diagnostics());
        response.text()
    }
}

impl Drop for OriginWorker {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        // Its ffmpeg children are re-parented once it dies: note them while it lives.
        let children = process::children_of(self.pid());
        process::try_signal(self.pid(), Signal::Term);
        if process::wait_exit(&mut self.child, STOP_GRACE).is_none() {
            for pid in children {
                process::try_signal(pid, Signal::Kill);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A temp dir holding a platform's data directory (`<dir>/data`) with `<data>/hls` created:
/// the edge checks its root at start, and the origin would create it only later. The dir is
/// removed when the returned guard drops, so keep it until the processes are gone.
pub fn data_dir(prefix: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("hls")).expect("create <data>/hls");
    (dir, data)
}

/// Plays `url` (a playlist, usually the signed master) to the end with ffmpeg as the client,
/// decoding every stream of every variant, within `timeout`.
pub fn play_with_ffmpeg(url: &str, timeout: Duration) -> std::process::Output {
    process::run_bounded(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-i", url])
            .args(["-map", "0", "-f", "null", "-"]),
        timeout,
    )
}

/// The seconds of audio ffmpeg decodes from `url`'s stream `map`.
pub fn ffmpeg_audio_seconds(url: &str, map: &str, scratch: &Path) -> f64 {
    let raw = scratch.join(format!("{}.pcm", map.replace(':', "_")));
    let out = process::run_bounded(
        Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-i",
                url,
                "-map",
                map,
            ])
            .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-y"])
            .arg(&raw),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "ffmpeg {map}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::metadata(&raw).expect("decoded").len() as f64 / 2.0 / 48_000.0
}

/// `<target>/<profile>/origin`, built by `cargo build --workspace` before the tests run.
pub fn origin_binary() -> PathBuf {
    let path = process::binaries_dir().join("origin");
    assert!(
        path.is_file(),
        "{} does not exist: build the workspace first (`cargo build --workspace && cargo test \
         --workspace`)",
        path.display()
    );
    path
}

/// `origin token --user USER [--admin] --ttl TTL`, signed with `jwt_secret`.
pub fn mint_token(jwt_secret: &str, user: &str, admin: bool, ttl: &str) -> String {
    let mut command = Command::new(origin_binary());
    command
        .args(["token", "--user", user, "--ttl", ttl])
        .env("JWT_SECRET", jwt_secret)
        .env("NO_COLOR", "1");
    if admin {
        command.arg("--admin");
    }
    let output = process::run_bounded(&mut command, Duration::from_secs(20));
    assert!(
        output.status.success(),
        "origin token --user {user} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "origin token printed {token:?}, not a JWT"
    );
    token
}

/// An unsigned JWT: header `{"alg":"none","typ":"JWT"}`, `claims` as given, empty signature.
pub fn unsigned_token(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(claims.to_string().as_bytes())
    )
}

/// Base64url without padding (RFC 7515 §2).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=group.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub name: &'a str,
    /// Present for file parts.
    pub filename: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> Part<'a> {
    /// A plain text field.
    pub fn text(name: &'a str, value: &'a str) -> Self {
        Self {
            name,
            filename: None,
            content_type: None,
            body: value.as_bytes(),
        }
    }

    /// A file field.
    pub fn file(name: &'a str, filename: &'a str, content_type: &'a str, body: &'a [u8]) -> Self {
        Self {
            name,
            filename: Some(filename),
            content_type: Some(content_type),
            body,
        }
    }
}

/// A `multipart/form-data` body with `boundary`.
pub fn multipart_body(boundary: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name);
        if let Some(filename) = part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        out.extend_from_slice(disposition.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part.body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// The body of `response` as JSON; panics with the body when it is not.
pub fn json(response: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|err| {
        let text: String = response.text().chars().take(500).collect();
        panic!(
            "expected a JSON body ({err}), got {} {text:?} ({} bytes)",
            response.status,
            response.body.len()
        )
    })
}

/// The request line of `bytes`, for messages (bodies may be large and binary).
fn head_of(bytes: &[u8]) -> String {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(bytes.len().min(200));
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Adds one subtitle file (`file`) per language of `languages`, all at once, the `n`th through
/// `apis[n % apis.len()]`; each must answer 201, and no two take one number. The numbers
/// (`subs_uN`), in `languages`' order.
pub fn add_subtitles_at_once(
    apis: &[&Origin],
    token: &str,
    video: &str,
    languages: &[&str],
    file: &[u8],
) -> Vec<String> {
    let numbers: Vec<String> = std::thread::scope(|scope| {
        let adds: Vec<_> = (languages.iter().enumerate())
            .map(|(n, lang)| {
                let api = apis[n % apis.len()];
                scope.spawn(move || api.add_subtitle(token, video, &format!("lang={lang}"), file))
            })
            .collect();
        adds.into_iter()
            .map(|add| {
                let added = add.join().expect("an add thread");
                assert_eq!(added.status, 201, "{}", added.text());
                json(&added)["id"].as_str().expect("id").to_owned()
            })
            .collect()
    });
    let distinct: std::collections::HashSet<&String> = numbers.iter().collect();
    assert_eq!(
        distinct.len(),
        numbers.len(),
        "numbers taken twice: {numbers:?}"
    );
    numbers
}

/// Deletes the uploaded subtitle files `numbers` all at once, the `n`th through
/// `apis[n % apis.len()]`; each must answer 204.
pub fn delete_subtitles_at_once(apis: &[&Origin], token: &str, video: &str, numbers: &[String]) {
    std::thread::scope(|scope| {
        for (n, number) in numbers.iter().enumerate() {
            let api = apis[n % apis.len()];
            scope.spawn(move || {
                let deleted =
                    api.delete_as(token, &format!("/api/videos/{video}/subtitles/{number}"));
                assert_eq!(deleted.status, 204, "{}", deleted.text());
            });
        }
    });
}

/// Whether `master` names a subtitle rendition in `language`.
pub fn names_subtitles(master: &str, language: &str) -> bool {
    master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=SUBTITLES"))
        .any(|l| l.contains(&format!("LANGUAGE=\"{language}\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (&[0xfb, 0xff], "-_8"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64url(input), expected, "{input:?}");
        }
    }

    #[test]
    fn unsigned_token_has_an_empty_signature() {
        let token = unsigned_token(&serde_json::json!({"sub": "a"}));
        assert_eq!(
            token,
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIn0."
        );
    }

    #[test]
    fn multipart_layout() {
        let body = multipart_body(
            "B",
            &[
                Part::text("title", "t"),
                Part::file("file", "a.mp4", "video/mp4", b"xy"),
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&body),
            "--B\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nt\r\n\
             --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\
             Content-Type: video/mp4\r\n\r\nxy\r\n--B--\r\n"
        );
    }
}
