//! A throw-away `redis-server` on a free loopback port, in a temp directory, with an fsynced
//! append-only file (`--appendonly yes --appendfsync always`) or no persistence at all, and a
//! tiny RESP client to look at what the origin stored. The one Redis harness of the workspace:
//! the end-to-end tests and the origin's Redis store tests both use it.
//!
//! [`RedisServer::crash`] kills it like a power cut (SIGKILL, nothing flushed on the way out);
//! [`RedisServer::restart`] then starts it again on the same port and directory, so clients
//! configured with its URL reconnect to the same data. [`RedisServer::pause`] freezes it with
//! its connections open (SIGSTOP), as a hung server would.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::port::free_port;
use crate::process::{self, Signal};

/// How long redis-server may take to answer `PING` (it replays the AOF first).
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Fresh ports tried at the first start: a port free when picked may be taken before redis
/// binds it.
const START_ATTEMPTS: usize = 5;

/// Bound on one [`RedisServer::command`] exchange.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What survives a [`RedisServer::restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// An append-only file fsynced on every write: everything acknowledged.
    Aof,
    /// Nothing (`--appendonly no`, no snapshots): faster, for tests that never restart it.
    None,
}

/// A running redis-server; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    persistence: Persistence,
}

impl RedisServer {
    /// Starts redis-server with an fsynced AOF and waits until it answers `PING`.
    ///
    /// Panics with instructions when redis-server is not installed: the tests that need it are
    /// meaningless without a real server, so they fail rather than skip.
    pub fn start() -> Self {
        Self::start_with(Persistence::Aof)
    }

    /// [`RedisServer::start`] with the given persistence.
    pub fn start_with(persistence: Persistence) -> Self {
        assert!(
            process::on_path("redis-server"),
            "redis-server is not installed: run scripts/test.sh, which installs it (or \
             `apt-get install -y redis-server`); the shared job store tests need a real Redis"
        );
        let dir = tempfile::Builder::new()
            .prefix("e2e-redis-")
            .tempdir()
            .expect("create the redis directory");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            match spawn(&dir, port, persistence) {
                Ok(child) => {
                    return Self {
                        child: Some(child),
                        port,
                        dir,
                        persistence,
                    }
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "redis-server did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it like a crash: SIGKILL, nothing is flushed on the way out.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, Signal::Kill, Duration::from_secs(5));
        }
    }

    /// [`Self::crash`], then starts it again on the same port and directory (replaying the
    /// AOF) and waits until it answers `PING`. Returns how long it was down.
    pub fn restart(&mut self) -> Duration {
        let down = Instant::now();
        self.crash();
        let deadline = down + START_TIMEOUT;
        loop {
            match spawn(&self.dir, self.port, self.persistence) {
                Ok(child) => {
                    self.child = Some(child);
                    return down.elapsed();
                }
                Err(why) if Instant::now() > deadline => {
                    panic!(
                        "redis-server did not come back on port {}: {why}",
                        self.port
                    )
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Freezes it (SIGSTOP): connections stay open and nothing answers, as a hung server.
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            process::send_signal(pid, Signal::Stop);
        }
    }

    /// Thaws a [`Self::pause`]d server.
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            process::send_signal(pid, Signal::Cont);
        }
    }

    /// Sends one command and reads its reply.
    pub fn command(&self, args: &[&str]) -> io::Result<Resp> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(&encode_command(args))?;
        read_reply(&mut BufReader::new(stream))
    }

    /// `HGET key field` as text; `None` when the key or field does not exist. Panics when
    /// Redis cannot be asked.
    pub fn hget(&self, key: &str, field: &str) -> Option<String> {
        match self.command(&["HGET", key, field]) {
            Ok(Resp::Bulk(value)) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            other => panic!("HGET {key} {field}: {other:?}\n{}", self.diagnostics()),
        }
    }

    /// The tail of redis-server's log, for failure messages.
    pub fn diagnostics(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!("redis-server log (tail):\n{}", lines[start..].join("\n"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused server too.
        self.crash();
    }
}

/// Starts redis-server on `port` in `dir` and waits until it answers `PING`.
fn spawn(dir: &TempDir, port: u16, persistence: Persistence) -> Result<Child, String> {
    let log = dir.path().join("redis.log");
    let mut command = Command::new("redis-server");
    command.arg("--port").arg(port.to_string()).args([
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "no",
        "--save",
        "",
    ]);
    match persistence {
        Persistence::Aof => command.args(["--appendonly", "yes", "--appendfsync", "always"]),
        Persistence::None => command.args(["--appendonly", "no"]),
    };
    let mut child = command
        .arg("--dir")
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot run redis-server: {err}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("redis-server exited ({status}):\n{log}"));
        }
        if ping(addr) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            process::stop(&mut child, Signal::Kill, Duration::from_secs(5));
            return Err(format!(
                "redis-server did not answer PING on {addr} within {START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the server at `addr` answers `PING` with `PONG` (not `-LOADING`).
fn ping(addr: SocketAddr) -> bool {
    let exchange = || -> io::Result<Resp> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(&encode_command(&["PING"]))?;
        read_reply(&mut BufReader::new(stream))
    };
    matches!(exchange(), Ok(Resp::Simple(s)) if s == "PONG")
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array.
    Array(Option<Vec<Resp>>),
}

/// A command as a RESP array of bulk strings.
fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_reply(reader: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "truncated RESP line",
        ));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || {
        text.parse::<i64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad RESP number {text:?}"),
            )
        })
    };
    match line[0] {
        b'+' => Ok(Resp::Simple(text)),
        b'-' => Ok(Resp::Error(text)),
        b':' => Ok(Resp::Integer(number()?)),
        b'$' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Bulk(None));
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body)?;
            body.truncate(len);
            Ok(Resp::Bulk(Some(body)))
        }
        b'*' => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Array(None));
            };
            let items = (0..len)
                .map(|_| read_reply(reader))
                .collect::<io::Result<Vec<_>>>()?;
            Ok(Resp::Array(Some(items)))
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown RESP type byte {other:#04x}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_and_parses_replies() {
        assert_eq!(
            encode_command(&["HGET", "k", ""]),
            b"*3\r\n$4\r\nHGET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
        let mut input: &[u8] = b"*4\r\n+OK\r\n:-3\r\n$5\r\na\r\nbc\r\n$-1\r\n-ERR no\r\n*-1\r\n";
        assert_eq!(
            read_reply(&mut input).expect("array"),
            Resp::Array(Some(vec![
                Resp::Simple("OK".into()),
                Resp::Integer(-3),
                Resp::Bulk(Some(b"a\r\nbc".to_vec())),
                Resp::Bulk(None),
            ]))
        );
        assert_eq!(
            read_reply(&mut input).expect("error"),
            Resp::Error("ERR no".into())
        );
        assert_eq!(read_reply(&mut input).expect("null"), Resp::Array(None));
        assert!(read_reply(&mut input).is_err(), "nothing left");
    }
}
