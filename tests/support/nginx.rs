//! A throw-away nginx with the production `secure_link` location, as the reference behaviour.
//!
//! The configuration reproduces the one in `docs/nginx-secure-link.md` (the probed
//! spec) plus what Debian's `nginx.conf` contributes (`mime.types`, `default_type`). Every
//! path nginx writes to lives in a temp prefix, so several instances can run side by side.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::content::world_readable_tempdir;
use crate::port::free_port;
use crate::process::{self, LineLog, Signal};
use crate::PREFIX;

/// How long nginx may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts with fresh ports: the port is free when picked but another process may take it
/// before nginx binds it.
const START_ATTEMPTS: usize = 5;

/// Where Debian's packages install the type map the production config includes.
const MIME_TYPES: &str = "/etc/nginx/mime.types";

/// A running nginx master (with one worker); stopped on drop.
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    prefix: TempDir,
    stderr: LineLog,
}

impl Nginx {
    /// Starts nginx serving `root` under `/hls/` with `secret` in `secure_link_md5`.
    ///
    /// Panics with instructions when nginx is not installed: the compatibility suite is
    /// meaningless without it, so it must fail rather than skip.
    pub fn start(root: &Path, secret: &str) -> Self {
        assert!(
            process::on_path("nginx") || Path::new("/usr/sbin/nginx").exists(),
            "nginx is not installed: the compatibility tests need the real nginx 1.22. Install \
             it with `apt-get install -y nginx-light` (the README's test command does this) and \
             run the tests again."
        );
        assert!(
            !secret.contains(['$', '"', ';', '\\']),
            "the secret must be pasteable into nginx.conf verbatim"
        );
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(root, secret) {
                Ok(nginx) => return nginx,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "nginx did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(root: &Path, secret: &str) -> Result<Self, String> {
        let prefix = world_readable_tempdir("e2e-nginx-");
        let port = free_port();
        let conf = prefix.path().join("nginx.conf");
        fs::write(&conf, config(prefix.path(), root, secret, port)).expect("write nginx.conf");
        let mut child = Command::new(nginx_binary())
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(prefix.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| format!("cannot run nginx: {err}"))?;
        let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut nginx = Self {
            child,
            addr,
            prefix,
            stderr,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(nginx);
            }
            if let Ok(Some(status)) = nginx.child.try_wait() {
                return Err(format!(
                    "nginx exited with {status}:\n{}",
                    nginx.diagnostics()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nginx did not accept on {addr} within {START_TIMEOUT:?}:\n{}",
                    nginx.diagnostics()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// nginx's own output and the tail of its error log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let error_log =
            fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default();
        let start = error_log.len().saturating_sub(4000);
        format!(
            "nginx stderr:\n{}\nnginx error.log (tail):\n{}",
            self.stderr.tail(40),
            error_log.get(start..).unwrap_or(&error_log)
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its worker; SIGKILL on the master would orphan it.
        process::stop(&mut self.child, Signal::Term, Duration::from_secs(5));
    }
}

fn nginx_binary() -> &'static str {
    if process::on_path("nginx") {
        "nginx"
    } else {
        "/usr/sbin/nginx"
    }
}

/// The nginx.conf: the spec's location verbatim, everything writable inside `prefix`.
fn config(prefix: &Path, root: &Path, secret: &str, port: u16) -> String {
    let prefix = prefix.display();
    let root = root.display();
    // nginx refuses `user` when not started as root; as root it would default to `nobody`.
    let user = if is_root() { "user root;\n" } else { "" };
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
{user}pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;

events {{
    worker_connections 512;
}}

http {{
    include {MIME_TYPES};
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;

        location {PREFIX} {{
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires${{uri}}{secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 410; }}
            alias {root}/;
            sendfile on; tcp_nopush on;
            open_file_cache max=10000 inactive=60s;
        }}
        location / {{ return 404; }}
    }}
}}
"#
    )
}

fn is_root() -> bool {
    // `id -u` rather than libc::geteuid: the workspace forbids unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}
