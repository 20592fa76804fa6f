//! What the edge tests share: signed, expired and tampered request targets, starting an edge
//! on a content tree, and requiring a tool on `PATH`.

use e2e::process;
use e2e::{future_expires, past_expires, signer, ContentTree, Edge, EdgeOptions};

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

pub fn require_tool(tool: &str) {
    assert!(
        process::on_path(tool),
        "`{tool}` is not installed; the README's test command installs it (apt-get install -y \
         {tool})"
    );
}
