//! The README's first command, `scripts/run.sh`, as a newcomer runs it, except that it uses the
//! binaries this suite built (`BIN_DIR`: no release build, no web vendoring) and ports chosen
//! now: it starts the origin and the edge and prints a token and a signed URL that work as it
//! says, and Ctrl-C stops both services. (Its packages, curl, openssl and ffmpeg, are installed
//! by `scripts/test.sh` before any test runs.)

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::edge::edge_binary;
use e2e::origin::origin_binary;
use e2e::port::free_port;
use e2e::process::{send_signal, try_signal_group, wait_exit, LineLog};
use e2e::{raw_request, wait_until, Request, Signal};

/// npm ci and the example clip come first; generous for a cold CI machine.
const STARTED: Duration = Duration::from_secs(300);

/// The running script, leading a process group of its own: when a failed assertion ends the
/// test early, everything it started is stopped, even what a step in progress (ffmpeg) would
/// have started after a Ctrl-C to the script alone.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        let group = self.0.id();
        if try_signal_group(group, Signal::Int) && wait_exit(&mut self.0, GRACE).is_none() {
            try_signal_group(group, Signal::Kill);
        }
        let _ = self.0.wait();
    }
}

/// How long the script and its services get to stop.
const GRACE: Duration = Duration::from_secs(20);

fn get(addr: SocketAddr, target: &str, token: Option<&str>) -> Option<u16> {
    let mut request = Request::get(target).host(addr.to_string());
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    raw_request(addr, &request.build()).ok().map(|r| r.status)
}

/// The line after the one containing `label`, trimmed.
fn after(lines: &[String], label: &str) -> String {
    let at = lines.iter().position(|l| l.contains(label));
    let next = at.and_then(|i| lines.get(i + 1));
    next.unwrap_or_else(|| panic!("no line after {label:?} in\n{}", lines.join("\n")))
        .trim()
        .to_owned()
}

#[test]
fn the_quick_start_serves_what_it_prints_and_stops_on_ctrl_c() {
    let data = tempfile::tempdir().expect("tempdir");
    let [edge, origin, edge_admin, origin_admin]: [SocketAddr; 4] = [(); 4].map(|()| {
        let addr = format!("127.0.0.1:{}", free_port());
        addr.parse().expect("an address")
    });
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository");
    let origin_bin = origin_binary();
    let bin_dir = edge_binary().parent().map(Path::to_path_buf);
    let bin_dir = bin_dir.expect("the binaries' directory");
    assert_eq!(origin_bin.parent(), Some(bin_dir.as_path()));
    // Ctrl-C works at a terminal because SIGINT is at its default there. A test runner started
    // in the background (as CI may start it) has SIGINT ignored, and bash cannot trap a signal
    // ignored when it starts: reset it, as the terminal's shell would have it.
    let script = Command::new("env")
        .args(["--default-signal=INT", "bash"])
        .arg(repo.join("scripts/run.sh"))
        .current_dir(repo)
        .process_group(0)
        .env("BIN_DIR", &bin_dir)
        .env("DATA_DIR", data.path())
        .env("EDGE_LISTEN", edge.to_string())
        .env("ORIGIN_LISTEN", origin.to_string())
        .env("EDGE_ADMIN_LISTEN", edge_admin.to_string())
        .env("ORIGIN_ADMIN_LISTEN", origin_admin.to_string())
        // The script makes fresh secrets unless the operator has some.
        .env_remove("HLS_SIGNING_SECRET")
        .env_remove("JWT_SECRET")
        .env_remove("EDGE_PURGE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/run.sh");
    let mut script = Script(script);
    let out = LineLog::drain(script.0.stdout.take().expect("stdout"));
    let err = LineLog::drain(script.0.stderr.take().expect("stderr"));
    let printed = out.wait_for(Instant::now() + STARTED, |lines| {
        lines.iter().any(|l| l.contains("Ctrl-C stops both"))
    });
    assert!(
        printed,
        "run.sh printed no summary; stderr:\n{}",
        err.tail(40)
    );
    let lines = out.lines();
    let token = after(&lines, "dev token");
    let curl = after(&lines, "signed example segment");
    let url = curl
        .split('\'')
        .find(|part| part.starts_with("http://"))
        .unwrap_or_else(|| panic!("no quoted URL in {curl:?}"));
    let target = url
        .strip_prefix(&format!("http://{edge}"))
        .unwrap_or_else(|| panic!("{url} is not on the edge at {edge}"));

    // The services may still be binding while the summary prints.
    let served = wait_until(Duration::from_secs(30), || {
        get(edge, target, None) == Some(200) && get(origin, "/", None) == Some(200)
    });
    assert!(
        served,
        "the edge and the web app answer; stderr:\n{}",
        err.tail(40)
    );
    let tampered = target.replacen("md5=", "md5=A", 1);
    assert_eq!(get(edge, &tampered, None), Some(403), "a tampered link");
    assert_eq!(get(origin, "/api/videos", Some(&token)), Some(200));
    assert_eq!(get(origin, "/api/videos", None), Some(401), "no token");
    assert_eq!(get(edge_admin, "/metrics", None), Some(200));
    assert_eq!(get(origin_admin, "/metrics", None), Some(200));

    // Ctrl-C, as the script's own SIGINT: its trap stops both services, and it exits.
    send_signal(script.0.id(), Signal::Int);
    let exited = wait_exit(&mut script.0, GRACE);
    assert!(exited.is_some(), "run.sh stopped on Ctrl-C");
    for addr in [edge, origin] {
        assert_eq!(get(addr, "/", None), None, "{addr} no longer answers");
    }
}
