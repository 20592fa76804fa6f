//! Child-process plumbing: draining a pipe into memory, sending signals, bounded waits.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Signals the tests send. The workspace forbids `unsafe`, so they go through `kill(1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Graceful shutdown.
    Term,
    /// Reload (the edge re-reads its TLS certificate and key).
    Hup,
    /// Interrupt; strace detaches and flushes on it.
    Int,
    /// Immediate termination.
    Kill,
    /// Freeze: the process keeps its sockets open but runs no more (a hung server).
    Stop,
    /// Thaw a [`Signal::Stop`]ped process.
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Hup => "HUP",
            Self::Int => "INT",
            Self::Kill => "KILL",
            Self::Stop => "STOP",
            Self::Cont => "CONT",
        }
    }
}

/// Sends `signal` to `pid`. Panics if `kill` itself fails, because a test that believes it
/// signalled a process and did not would report a misleading result.
pub fn send_signal(pid: u32, signal: Signal) {
    let status = Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(
        status.success(),
        "kill -s {} {pid} failed: {status}",
        signal.name()
    );
}

/// Waits at most `timeout` for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Asks `child` to stop with `signal`, escalating to SIGKILL after `grace`. Always reaps it.
pub fn stop(child: &mut Child, signal: Signal, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // The process may exit between the check and the signal, so `kill` may fail: ignore it.
    let _ = Command::new("kill")
        .args(["-s", signal.name(), &child.id().to_string()])
        .status();
    if wait_exit(child, grace).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs `command` to completion (stdin closed, stdout and stderr collected) and returns its
/// output. Panics, after killing it, if it has not finished within `timeout`.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let stdout = LineLog::drain(child.stdout.take().expect("stdout is piped"));
    let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
    let Some(status) = wait_exit(&mut child, timeout) else {
        stop(&mut child, Signal::Kill, Duration::from_secs(1));
        panic!(
            "{command:?} did not finish within {timeout:?}; stderr:\n{}",
            stderr.tail(20)
        );
    };
    // The pipes close when the process exits; wait so the last lines are collected.
    let deadline = Instant::now() + Duration::from_secs(5);
    stdout.wait_closed(deadline);
    stderr.wait_closed(deadline);
    Output {
        status,
        stdout: stdout.lines().join("\n").into_bytes(),
        stderr: stderr.lines().join("\n").into_bytes(),
    }
}

/// The lines a child wrote to one of its pipes, collected by a background thread so the pipe
/// never fills up and blocks the child.
#[derive(Clone, Default)]
pub struct LineLog {
    inner: Arc<(Mutex<LogState>, Condvar)>,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    closed: bool,
}

impl LineLog {
    /// Starts draining `pipe` in a background thread.
    pub fn drain(pipe: impl Read + Send + 'static) -> Self {
        let log = Self::default();
        let writer = log.clone();
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            // Lines are read as bytes: a child may log invalid UTF-8 and we still want the rest.
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                writer.push(text);
                line.clear();
            }
            writer.close();
        });
        log
    }

    fn push(&self, line: String) {
        let (state, changed) = &*self.inner;
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lines
            .push(line);
        changed.notify_all();
    }

    fn close(&self) {
        let (state, changed) = &*self.inner;
        state.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        changed.notify_all();
    }

    /// Everything collected so far.
    pub fn lines(&self) -> Vec<String> {
        let (state, _) = &*self.inner;
        state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .lines
            .clone()
    }

    /// Blocks until `done` holds for the lines collected so far, the pipe closes, or `deadline`
    /// passes. Returns whether `done` held.
    pub fn wait_for(&self, deadline: Instant, mut done: impl FnMut(&[String]) -> bool) -> bool {
        let (state, changed) = &*self.inner;
        let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if done(&guard.lines) {
                return true;
            }
            let now = Instant::now();
            if guard.closed || now >= deadline {
                return false;
            }
            guard = changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Blocks until the pipe is closed (the writer exited) or `deadline` passes; returns
    /// whether it closed.
    pub fn wait_closed(&self, deadline: Instant) -> bool {
        let (state, changed) = &*self.inner;
        let mut guard = state.lock().unwrap_or_else(PoisonError::into_inner);
        while !guard.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    /// The last `n` lines joined for a panic message.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }
}

/// The directory holding the workspace's binaries for the current profile.
///
/// Test executables live in `<target>/<profile>/deps/`, so the binaries are one level up. This
/// follows `CARGO_TARGET_DIR` and `--profile` without having to know them.
pub fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test executable");
    let deps = exe
        .parent()
        .expect("the test executable has a parent directory");
    deps.parent()
        .expect("the deps directory has a parent directory")
        .to_path_buf()
}

/// `<target>/tmp`, for files kept across runs and test binaries (cargo's `CARGO_TARGET_TMPDIR`
/// for integration tests; found from the running executable, so unit tests and this library
/// get it too).
pub fn target_tmp_dir() -> PathBuf {
    let dir = binaries_dir()
        .parent()
        .expect("the profile directory has a parent: the target directory")
        .join("tmp");
    std::fs::create_dir_all(&dir).expect("create <target>/tmp");
    dir
}

/// Whether `program` can be found on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The command line of process `pid` (`/proc/PID/cmdline`), one string per argument; `None`
/// once it is gone (or for a zombie, whose command line is empty).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|&b| b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// The parent of process `pid` (field 4 of `/proc/PID/stat`), `None` once it is gone.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process id visible in `/proc`.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The live children of `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&child| parent_pid(child) == Some(pid))
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// Processes (`pid: command line`) whose command line mentions `needle`: what a test started
/// and should have ended (an encoder named by its work directory).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            // A process may exit between listing and reading; that is not an error here.
            let cmdline = cmdline(pid)?.join(" ");
            cmdline
                .contains(needle)
                .then(|| format!("{pid}: {cmdline}"))
        })
        .collect()
}

/// Sends `signal` to `pid` if it still exists; false if `kill` failed (it was gone).
pub fn try_signal(pid: u32, signal: Signal) -> bool {
    Command::new("kill")
        .args(["-s", signal.name(), &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Sends `signal` to every process of the group `pgid` (a child spawned with
/// `process_group(0)` leads its own); false if none was left.
pub fn try_signal_group(pgid: u32, signal: Signal) -> bool {
    Command::new("kill")
        .args(["-s", signal.name(), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A service binary started by [`launch`]: the process, its drained stderr, and the listeners
/// it announced (`listener name -> address`).
pub struct Launched {
    pub child: Child,
    pub stderr: LineLog,
    pub listeners: std::collections::HashMap<String, std::net::SocketAddr>,
}

/// Writes `toml`, when given, to `file_name` in a private temp dir and passes it as
/// `--config`. The dir must live as long as the process.
pub fn config_file(
    command: &mut Command,
    file_name: &str,
    toml: Option<&str>,
) -> Option<tempfile::TempDir> {
    let toml = toml?;
    let dir = tempfile::Builder::new()
        .prefix("e2e-config-")
        .tempdir()
        .expect("create config dir");
    let path = dir.path().join(file_name);
    std::fs::write(&path, toml).expect("write config file");
    command.arg("--config").arg(&path);
    Some(dir)
}

/// Spawns a service (stdin and stdout to null, stderr piped and drained; `RUST_LOG=info` and
/// `NO_COLOR` so its `listening` lines are there and parse, then `env`, which wins) and waits
/// until it announced every listener in `wanted`. Panics with its status and stderr otherwise.
pub fn launch(
    command: &mut Command,
    what: &str,
    env: &[(String, String)],
    wanted: &[&str],
    timeout: Duration,
) -> Launched {
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
    let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
    let mut listeners = std::collections::HashMap::new();
    let complete = stderr.wait_for(Instant::now() + timeout, |lines| {
        listeners = lines
            .iter()
            .filter_map(|line| crate::edge::parse_listening(line))
            .collect();
        wanted.iter().all(|name| listeners.contains_key(*name))
    });
    if !complete {
        let status = child.try_wait().ok().flatten();
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{what} did not report listeners {wanted:?} within {timeout:?} (process status: \
             {status:?}); expected stderr lines containing `listening`, `listener=\"NAME\"` and \
             `addr=127.0.0.1:PORT`. stderr:\n{}",
            stderr.tail(60)
        );
    }
    Launched {
        child,
        stderr,
        listeners,
    }
}

/// `strace` attached to a running process, recording some system calls of all its threads.
pub struct Strace {
    child: Child,
    log: LineLog,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Strace {
    /// Attaches to `pid`, tracing `calls` (strace's `trace=` list, e.g. `sendfile` or
    /// `fdatasync,rename`), and returns once tracing is live. Panics if strace is missing or
    /// cannot attach.
    pub fn attach(pid: u32, calls: &str) -> Self {
        assert!(
            on_path("strace"),
            "`strace` is not installed; the README's test command installs it"
        );
        let dir = crate::content::world_readable_tempdir("e2e-strace-");
        let file = dir.path().join("trace.txt");
        let mut child = Command::new("strace")
            .args(["-f", "-e", &format!("trace={calls}"), "-o"])
            .arg(&file)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strace");
        let log = LineLog::drain(child.stderr.take().expect("stderr is piped"));
        // strace attaches to every thread of the process before it reports
        // "Process N attached with M threads"; tracing is live from then on.
        let attached = log.wait_for(Instant::now() + Duration::from_secs(20), |lines| {
            lines.iter().any(|line| line.contains("attached"))
        });
        assert!(attached, "strace did not attach:\n{}", log.tail(20));
        Self {
            child,
            log,
            file,
            _dir: dir,
        }
    }

    /// Detaches and returns the trace: one line per call.
    pub fn finish(mut self) -> String {
        stop(&mut self.child, Signal::Int, Duration::from_secs(10));
        std::fs::read_to_string(&self.file).unwrap_or_else(|e| {
            panic!("read the strace output: {e}\nstrace: {}", self.log.tail(20))
        })
    }
}
