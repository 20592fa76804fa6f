//! Graceful shutdown: SIGTERM drains downloads in progress; with a delay, `/readyz` reports
//! draining while requests are still served.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::content::{pseudo_random_bytes, world_readable_tempdir};
use e2e::process::{self, LineLog};
use e2e::{wait_until, ContentTree, Edge, EdgeOptions, Request, Signal};

use crate::support::{require_tool, signed, start_edge};

/// SIGTERM lets a slow download in progress finish completely, then the edge exits 0.
#[test]
fn sigterm_drains_a_slow_download_and_exits_zero() {
    require_tool("curl");
    let tree = ContentTree::new();
    let rel = "big/movie.ts";
    // Large enough that the kernel's socket buffers cannot absorb it: the edge is still
    // sending when the signal arrives.
    let size = 16 * 1024 * 1024;
    let bytes = pseudo_random_bytes(7, size);
    tree.write(rel, &bytes);
    let mut edge = start_edge(&tree);

    let out_dir = world_readable_tempdir("e2e-download-");
    let out = out_dir.path().join("movie.ts");
    let url = format!("http://{}{}", edge.public_addr, signed(rel));
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            "--limit-rate",
            "4M",
            "-w",
            "%{http_code} %{size_download}",
            "-o",
        ])
        .arg(&out)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start curl");
    let curl_stdout = LineLog::drain(curl.stdout.take().expect("stdout is piped"));
    let curl_stderr = LineLog::drain(curl.stderr.take().expect("stderr is piped"));

    let started = wait_until(Duration::from_secs(20), || {
        fs::metadata(&out).is_ok_and(|meta| meta.len() > 1024 * 1024)
    });
    assert!(started, "the download started\n{}", edge.diagnostics());
    edge.signal(Signal::Term);

    let curl_status = process::wait_exit(&mut curl, Duration::from_secs(60));
    let downloaded = fs::read(&out).expect("read the download");
    let edge_status = edge.wait_exit(Duration::from_secs(40));
    curl_stdout.wait_closed(Instant::now() + Duration::from_secs(5));
    assert!(
        curl_status.is_some_and(|status| status.success()),
        "curl finished cleanly: {curl_status:?} {}\n{}",
        curl_stderr.tail(5),
        edge.diagnostics()
    );
    assert_eq!(curl_stdout.lines().join(""), format!("200 {size}"));
    assert_eq!(downloaded.len(), size, "the whole file arrived");
    assert!(downloaded == bytes, "the download is the file");
    assert!(
        edge_status.is_some_and(|status| status.success()),
        "the edge exits 0 after draining: {edge_status:?}\n{}",
        edge.diagnostics()
    );
}

/// With `shutdown_delay_secs`, SIGTERM first turns `/readyz` to 503 "draining" while content
/// is still served (new connections too), then the edge closes and exits 0.
#[test]
fn sigterm_with_a_delay_reports_draining_and_keeps_serving() {
    let tree = ContentTree::new();
    let rel = "v/720p/segment_000.ts";
    tree.write(rel, &pseudo_random_bytes(9, 20_000));
    let mut edge =
        Edge::start(EdgeOptions::new(tree.root()).config("[server]\nshutdown_delay_secs = 5\n"));
    assert_eq!(
        edge.admin_get("/readyz").status,
        200,
        "ready before the signal"
    );

    let signalled = Instant::now();
    edge.signal(Signal::Term);
    let draining = wait_until(Duration::from_secs(2), || {
        edge.admin_get("/readyz").status == 503
    });
    assert!(
        draining,
        "/readyz turns 503 after SIGTERM\n{}",
        edge.diagnostics()
    );
    assert!(edge.admin_get("/readyz").text().contains("draining"));
    // A fresh connection to the public listener, after the signal: still served.
    let response = edge.public(Request::get(signed(rel)));
    assert_eq!(
        response.status,
        200,
        "served while draining\n{}",
        edge.diagnostics()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "the checks ran inside the delay; the machine is too slow to tell"
    );

    let status = edge.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the edge exits 0 after the delay: {status:?}\n{}",
        edge.diagnostics()
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(5),
        "the edge waited out the delay before closing"
    );
}
