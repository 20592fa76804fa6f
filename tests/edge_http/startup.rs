//! Start-up: the listeners are reported with JSON logs too.

use e2e::{ContentTree, Edge, EdgeOptions, Request};

/// With JSON logs the listeners are still reported (and found by the harness).
#[test]
fn json_logs_report_the_listeners() {
    let tree = ContentTree::new();
    let edge = Edge::start(EdgeOptions::new(tree.root()).args(["--log-format", "json"]));
    assert_eq!(edge.public(Request::get("/healthz")).status, 200);
    let json_lines = edge
        .stderr_lines()
        .iter()
        .filter(|line| line.trim_start().starts_with('{'))
        .count();
    assert!(json_lines > 0, "stderr is JSON:\n{}", edge.diagnostics());
}
