//! What the edge tests share: signed, expired and tampered request targets, starting an edge
//! on a content tree, running a command with a deadline, and requiring a tool on `PATH`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::process::{self, LineLog};
use e2e::{future_expires, past_expires, signer, ContentTree, Edge, EdgeOptions, Signal};

/// A valid request target for `rel` (relative to the video directory).
pub fn signed(rel: &str) -> String {
    signer().signed_url(&ContentTree::uri(rel), future_expires(), "")
}

/// A target for `rel` whose hash is right but whose expiry has passed.
pub fn expired(rel: &str) -> String {
    signer().signed_url(&ContentTree::uri(rel), past_expires(), "")
}

/// A target for `rel` with a wrong hash.
pub fn tampered(rel: &str) -> String {
    format!(
        "{}?md5=AAAAAAAAAAAAAAAAAAAAAA&expires={}",
        ContentTree::uri(rel),
        future_expires()
    )
}

pub fn start_edge(tree: &ContentTree) -> Edge {
    Edge::start(EdgeOptions::new(tree.root()))
}

/// Runs a command to completion, bounded by `timeout`, and returns its output.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let stdout = LineLog::drain(child.stdout.take().expect("stdout is piped"));
    let stderr = LineLog::drain(child.stderr.take().expect("stderr is piped"));
    let status = process::wait_exit(&mut child, timeout).unwrap_or_else(|| {
        process::stop(&mut child, Signal::Kill, Duration::from_secs(1));
        panic!("{command:?} did not finish within {timeout:?}");
    });
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

pub fn require_tool(tool: &str) {
    assert!(
        process::on_path(tool),
        "`{tool}` is not installed; the README's test command installs it (apt-get install -y \
         {tool})"
    );
}
