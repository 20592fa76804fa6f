//! The web app from an installed origin: the binary alone, copied into an empty directory away
//! from the checkout (as the container image installs it), serves the page, its modules and
//! hls.js byte for byte as they are in `web/`.
//!
//! Needs `web/node_modules` (`npm ci --prefix web`, which the origin's build needs too): the
//! files served are compared with the ones there.

use std::fs;
use std::path::{Path, PathBuf};

use e2e::origin::{data_dir, origin_binary};
use e2e::{Origin, OriginOptions};

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .join("web")
}

#[test]
fn an_installed_binary_serves_the_page_and_hls_js() {
    let install = tempfile::Builder::new()
        .prefix("e2e-installed-")
        .tempdir()
        .expect("create the install directory");
    assert!(
        !install.path().starts_with(web().parent().expect("repo")),
        "the install directory is outside the checkout"
    );
    let binary = install.path().join("origin");
    fs::copy(origin_binary(), &binary).expect("copy the origin binary");
    assert_eq!(
        fs::read_dir(install.path()).expect("list").count(),
        1,
        "nothing but the binary"
    );
    let (_dir, data) = data_dir("e2e-installed-data-");
    let origin = Origin::start(OriginOptions::new(&data, "http://127.0.0.1:9").binary(&binary));

    for (path, file, content_type) in [
        ("/", "index.html", "text/html"),
        ("/app.js", "app.js", "text/javascript"),
        (
            "/vendor/hls.min.js",
            "node_modules/hls.js/dist/hls.min.js",
            "text/javascript",
        ),
    ] {
        let expected = fs::read(web().join(file))
            .unwrap_or_else(|e| panic!("web/{file}: {e} (run `npm ci --prefix web`)"));
        let response = origin.get(path);
        assert_eq!(response.status, 200, "GET {path}\n{}", origin.diagnostics());
        assert!(
            response
                .header("content-type")
                .is_some_and(|t| t.starts_with(content_type)),
            "GET {path}: {:?}",
            response.header("content-type")
        );
        assert!(
            response.body == expected,
            "GET {path}: {} bytes, web/{file} has {}",
            response.body.len(),
            expected.len()
        );
    }
}
