//! Embeds hls.js (`web/node_modules/hls.js/dist`, installed by `npm ci --prefix web`) into the
//! origin, so an installed binary serves the whole web app with nothing beside it.
//!
//! The page's own files are `include_str!`ed by `src/api/web.rs`; hls.js is third-party code
//! that is never committed, so its absence is a build error that says how to install it rather
//! than a player that fails to load at run time.

use std::path::PathBuf;

/// The files embedded, as `(name, environment variable carrying their path to rustc)`.
const FILES: [(&str, &str); 2] = [
    ("hls.min.js", "ORIGIN_HLS_JS"),
    ("hls.min.js.map", "ORIGIN_HLS_JS_MAP"),
];

fn main() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let repo = manifest.as_deref().and_then(|m| m.parent());
    let Some(dist) = repo.map(|r| r.join("web/node_modules/hls.js/dist")) else {
        fail("CARGO_MANIFEST_DIR is not set: build the origin with cargo");
    };
    for (name, variable) in FILES {
        let path = dist.join(name);
        // Rebuilt when `npm ci` installs or replaces it (also while it is missing).
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.is_file() {
            fail(&format!(
                "{} is missing. The origin embeds hls.js for its web player: run \
                 `npm ci --prefix web` in the repository root (scripts/run.sh and \
                 scripts/test.sh do), then build again.",
                path.display()
            ));
        }
        println!("cargo:rustc-env={variable}={}", path.display());
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
