//! Weak configuration is refused at start: short or placeholder secrets (unless an operator
//! keeps an existing nginx secret on purpose, loudly), a weak purge token, and environment
//! overrides that do not parse.

use std::process::{Command, Output};
use std::time::Duration;

use e2e::content::SEGMENT;
use e2e::edge::edge_binary;
use e2e::process::run_bounded;
use e2e::{future_expires, ContentTree, Edge, EdgeOptions, Request};
use shared::secure_link::{Secret, SecureLink};

/// 15 bytes: one short of the minimum.
const SHORT_SECRET: &str = "nginx-secret-15";

/// Runs `edge [args]` on `tree` with `env`, expecting it to stop on its own.
fn run_edge(tree: &ContentTree, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(edge_binary());
    command
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--root")
        .arg(tree.root())
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied());
    run_bounded(&mut command, Duration::from_secs(20))
}

fn assert_refused(output: &Output, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the edge must refuse to start: {}\n{stderr}",
        output.status
    );
    for name in names {
        assert!(stderr.contains(name), "the refusal names {name}:\n{stderr}");
    }
}

#[test]
fn a_signing_secret_shorter_than_16_bytes_is_refused_at_start() {
    assert_eq!(SHORT_SECRET.len(), 15);
    let tree = ContentTree::new();
    let output = run_edge(&tree, &[], &[("HLS_SIGNING_SECRET", SHORT_SECRET)]);
    assert_refused(&output, &["HLS_SIGNING_SECRET", "15 bytes"]);
}

#[test]
fn the_placeholder_secret_from_the_examples_is_refused_at_start() {
    let tree = ContentTree::new();
    let output = run_edge(
        &tree,
        &[],
        &[
            ("HLS_SIGNING_SECRET", "CHANGE-ME-AT-LEAST-16-BYTES"),
            ("EDGE_ALLOW_WEAK_SECRET", "true"),
        ],
    );
    assert_refused(&output, &["HLS_SIGNING_SECRET", "placeholder"]);
}

/// Every problem is listed at once: a weak purge token beside a short secret.
#[test]
fn a_weak_purge_token_is_refused_beside_every_other_problem() {
    let tree = ContentTree::new();
    let output = run_edge(
        &tree,
        &[],
        &[
            ("HLS_SIGNING_SECRET", SHORT_SECRET),
            ("EDGE_PURGE_TOKEN", "purge-secret"),
        ],
    );
    assert_refused(&output, &["HLS_SIGNING_SECRET", "EDGE_PURGE_TOKEN"]);
}

/// An operator migrating from nginx keeps a short secret with `allow_weak_secret`: the edge
/// starts, verifies links signed with it, and warns about it at every start.
#[test]
fn a_short_secret_is_kept_with_allow_weak_secret_and_warned_about() {
    let tree = ContentTree::new();
    let mut options = EdgeOptions::new(tree.root()).config("[signing]\nallow_weak_secret = true\n");
    options.secret = SHORT_SECRET.to_owned();
    let edge = Edge::start(options);
    let warned = edge.stderr_lines().iter().any(|line| {
        line.contains("WARN") && line.contains("HLS_SIGNING_SECRET") && line.contains("15 bytes")
    });
    assert!(
        warned,
        "a warning about the weak secret\n{}",
        edge.diagnostics()
    );

    let signer = SecureLink::new(vec![Secret::new(SHORT_SECRET)]).expect("signer");
    let target = signer.signed_url(&ContentTree::uri(SEGMENT), future_expires(), "");
    assert_eq!(edge.public(Request::get(target)).status, 200);
}

/// `EDGE_CACHE_MAX_BYTES=abc` used to be logged before logging existed and ignored, so `edge
/// check` called the configuration valid.
#[test]
fn edge_check_fails_on_an_environment_override_that_does_not_parse() {
    let tree = ContentTree::new();
    let secret = ("HLS_SIGNING_SECRET", e2e::TEST_SECRET);
    let output = run_edge(
        &tree,
        &["check"],
        &[secret, ("EDGE_CACHE_MAX_BYTES", "abc")],
    );
    assert_refused(&output, &["EDGE_CACHE_MAX_BYTES", "\"abc\""]);
    let output = run_edge(&tree, &["check"], &[secret]);
    assert!(
        output.status.success(),
        "the same configuration without the bad override is valid: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
