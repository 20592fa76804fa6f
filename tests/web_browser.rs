//! The web app (`web/`, served by the origin) end to end, in a real browser.
//!
//! `web_app_in_chromium`: the edge (CORS allowing the page's origin) and the origin in
//! development mode with short-lived links (`url_ttl_secs = 10`, 1 s buckets, 1 s segments),
//! then `tests/browser/web.e2e.mjs` under node, which drives Debian's Chromium through
//! playwright-core: sign in with a minted token, upload a generated 18 s clip through the file
//! input while both progress bars reach 100 %, the library, hls.js playback (quality switch,
//! seeks, shortcuts, storyboard hover), the browser's own HLS, both kept playing across the
//! links' expiry (410 -> fresh links), a clip whose processing fails (the failed state and
//! its retry), tampered links failing visibly without a retry loop, and a delete.
//! Screenshots go to `target/test-artifacts/{web,growing}/`.
//!
//! `web_routes_and_dev_token`: what the origin serves for the app, without a browser: the page
//! and its modules, hls.js (and the clear 404 when `ORIGIN_WEB_VENDOR_DIR` lacks it), and the
//! token endpoint that exists only in development mode and never mints an admin.
//!
//! The browser test needs node, `/usr/bin/chromium` and the npm packages of `web/` and
//! `tests/browser/`; `scripts/test.sh` installs them. Without them it fails and says so: a
//! browser is never downloaded.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::origin::{data_dir, generate_clip, json, truncated_clip};
use e2e::port::free_port;
use e2e::{process, Edge, EdgeOptions, Origin, OriginOptions, RawResponse, Request};

/// The uploaded clip: long enough that both players still need segments after the pause that
/// lets every link expire.
const CLIP_SECS: u32 = 18;

/// The origin's link lifetime in this test (seed 001 says 12 h; 10 s makes expiry reachable).
const URL_TTL_SECS: u32 = 10;

/// The scenario's own deadline, and the bound on the node process around it.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(150);
const NODE_TIMEOUT: Duration = Duration::from_secs(180);

const INSTALL_HINT: &str = "run ./scripts/test.sh, which installs them (apt: chromium, nodejs, \
                            npm; then `npm ci --prefix web` and `npm ci --prefix tests/browser`)";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("WEB_E2E_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// hls.js as `npm ci --prefix web` installs it.
fn hls_dist() -> PathBuf {
    repo().join("web/node_modules/hls.js/dist")
}

/// `target/test-artifacts/<scenario>`, emptied: one per scenario, since the tests of this
/// file run in parallel.
fn artifacts(scenario: &str) -> PathBuf {
    let target = process::binaries_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo().join("target"));
    let dir = target.join("test-artifacts").join(scenario);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the artifacts directory");
    dir
}

/// Fails with what is missing (and how to get it) unless the browser tooling is installed.
fn require_browser_tooling() {
    let mut missing = Vec::new();
    if !process::on_path("node") {
        missing.push("node".to_owned());
    }
    if !chromium().is_file() {
        missing.push(format!(
            "{} (Debian package chromium)",
            chromium().display()
        ));
    }
    if !process::on_path("ffmpeg") {
        missing.push("ffmpeg".to_owned());
    }
    if !repo()
        .join("tests/browser/node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push("tests/browser/node_modules (npm ci --prefix tests/browser)".to_owned());
    }
    if !hls_dist().join("hls.min.js").is_file() {
        missing.push("web/node_modules/hls.js (npm ci --prefix web)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser test cannot run, missing: {}; {INSTALL_HINT}",
        missing.join(", ")
    );
}

/// The page's pure functions (`tests/browser/units.test.mjs`) under Node's test runner.
#[test]
fn web_modules_in_node() {
    assert!(process::on_path("node"), "node is missing; {INSTALL_HINT}");
    // Bounded: a timer left running would keep node's event loop, and this test, alive.
    let out = std::process::Command::new("timeout")
        .args(["120", "node", "--test"])
        .arg(repo().join("tests/browser/units.test.mjs"))
        .output()
        .expect("run node --test");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(124),
        "node --test ran past 120 s (a timer left running?): {report}"
    );
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("# fail 0") && !report.contains("# pass 0"),
        "{report}"
    );
}

fn origin_config(dev: bool) -> String {
    format!(
        "[server]\ndev = {dev}\n\n\
         [playback]\nurl_ttl_secs = {URL_TTL_SECS}\nexpiry_bucket_secs = 1\n\n\
         [transcode]\nworkers = 1\nsegment_secs = 1\nx264_preset = \"ultrafast\"\nnvenc = \"off\"\n\
         max_attempts = 1\n"
    )
}

#[test]
fn web_app_in_chromium() {
    require_browser_tooling();
    let (dir, data) = data_dir("e2e-web-");
    let clip = dir.path().join("clip.mp4");
    generate_clip(&clip, CLIP_SECS, 640, 360);
    let broken = dir.path().join("broken.mp4");
    truncated_clip(&clip, &broken);

    // The edge's CORS origins must name the origin's address before the origin starts.
    let port = free_port();
    let page_origin = format!("http://127.0.0.1:{port}");
    let edge = Edge::start(EdgeOptions::new(&data.join("hls")).config(&format!(
        "[http]\ncors_allowed_origins = [\"{page_origin}\"]\n"
    )));
    let origin = Origin::start(
        OriginOptions::new(&data, &format!("http://{}", edge.public_addr))
            .listen(&format!("127.0.0.1:{port}"))
            .config(&origin_config(true))
            .env("ORIGIN_WEB_VENDOR_DIR", &hls_dist().display().to_string()),
    );
    assert_eq!(origin.base_url(), page_origin, "the origin took its port");

    let artifacts = artifacts("web");
    let started = Instant::now();
    let output = process::run_bounded(
        Command::new("node")
            .arg(repo().join("tests/browser/web.e2e.mjs"))
            .current_dir(repo())
            .env("WEB_E2E_BASE_URL", &page_origin)
            .env("WEB_E2E_EDGE_URL", format!("http://{}", edge.public_addr))
            .env("WEB_E2E_CLIP", &clip)
            .env("WEB_E2E_CLIP_SECS", CLIP_SECS.to_string())
            .env("WEB_E2E_BROKEN_CLIP", &broken)
            .env("WEB_E2E_URL_TTL_SECS", URL_TTL_SECS.to_string())
            .env("WEB_E2E_CHROMIUM", chromium())
            .env("WEB_E2E_ARTIFACTS", &artifacts)
            .env(
                "WEB_E2E_DEADLINE_MS",
                SCENARIO_DEADLINE.as_millis().to_string(),
            ),
        NODE_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "browser scenario ({:.1} s, screenshots in {}):\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    assert!(
        output.status.success() && stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "the browser scenario failed ({}; screenshots in {}):\n{stdout}\n{stderr}\n{}\n{}",
        output.status,
        artifacts.display(),
        origin.diagnostics(),
        edge.diagnostics()
    );
}

/// Watching while it transcodes: the clip is uploaded through the API and the page is opened
/// as soon as the video is playable, while the slow encode still runs
/// (`tests/browser/growing.e2e.mjs`).
#[test]
fn watch_while_it_transcodes_in_chromium() {
    require_browser_tooling();
    const SECS: u32 = 24;
    let (dir, data) = data_dir("e2e-web-growing-");
    let clip = dir.path().join("clip.mp4");
    generate_clip(&clip, SECS, 640, 360);
    let port = free_port();
    let page_origin = format!("http://127.0.0.1:{port}");
    let edge = Edge::start(EdgeOptions::new(&data.join("hls")).config(&format!(
        "[http]\ncors_allowed_origins = [\"{page_origin}\"]\n"
    )));
    let origin = Origin::start(
        OriginOptions::new(&data, &format!("http://{}", edge.public_addr))
            .listen(&format!("127.0.0.1:{port}"))
            .config(
                "[transcode]\nworkers = 1\nsegment_secs = 2\nx264_preset = \"slow\"\n\
                 nvenc = \"off\"\n",
            ),
    );
    let token = e2e::origin::mint_token(e2e::origin::JWT_SECRET, "viewer", false, "1h");
    let uploaded = origin.upload(&token, &fs::read(&clip).expect("clip"), "video/mp4");
    assert_status(&uploaded, 202, "upload");
    let id = json(&uploaded)["id"].as_str().expect("id").to_owned();
    let events = origin.events(&token, &id, Duration::from_secs(120), |e| {
        matches!(e.event.as_str(), "playable" | "ready" | "failed")
    });
    assert_eq!(
        events.events.last().map(|e| e.event.as_str()),
        Some("playable"),
        "not playable while it encodes: {}\n{}",
        events.transcript(),
        origin.diagnostics()
    );
    let artifacts = artifacts("growing");
    let output = process::run_bounded(
        Command::new("node")
            .arg(repo().join("tests/browser/growing.e2e.mjs"))
            .current_dir(repo())
            .env("WEB_E2E_BASE_URL", &page_origin)
            .env("WEB_E2E_TOKEN", &token)
            .env("WEB_E2E_VIDEO", &id)
            .env("WEB_E2E_CLIP_SECS", SECS.to_string())
            .env("WEB_E2E_CHROMIUM", chromium())
            .env("WEB_E2E_ARTIFACTS", &artifacts),
        NODE_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("growing scenario:\n{stdout}\n{stderr}");
    assert!(
        output.status.success() && stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "the growing scenario failed ({}):\n{stdout}\n{stderr}\n{}",
        output.status,
        origin.diagnostics()
    );
}

fn assert_status(response: &RawResponse, status: u16, what: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: {}",
        response.text().chars().take(300).collect::<String>()
    );
}

fn error_of(response: &RawResponse) -> String {
    json(response)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn web_routes_and_dev_token() {
    let dir = tempfile::Builder::new()
        .prefix("e2e-web-routes-")
        .tempdir()
        .expect("create temp dir");
    let no_vendor = dir.path().join("no-vendor");
    let vendor = dir.path().join("vendor");
    fs::create_dir_all(&no_vendor).expect("mkdir");
    fs::create_dir_all(&vendor).expect("mkdir");
    fs::write(vendor.join("hls.min.js"), "/* hls.js stand-in */\n").expect("write");
    let edge_url = "http://127.0.0.1:9";

    // Production: the page, its modules, no token minting, a clear 404 without hls.js.
    let prod = Origin::start(
        OriginOptions::new(&dir.path().join("prod"), edge_url)
            .config(&origin_config(false))
            .env("ORIGIN_WEB_VENDOR_DIR", &no_vendor.display().to_string()),
    );
    let page = prod.get("/");
    assert_status(&page, 200, "GET /");
    assert!(page
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(
        page.text().contains("data-dev=\"false\""),
        "{}",
        page.text()
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains(&format!("connect-src 'self' {edge_url};"))
            && csp.contains("script-src 'self';"),
        "{csp}"
    );
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/js/player.js", "text/javascript"),
        ("/js/refresh.js", "text/javascript"),
    ] {
        let r = prod.get(path);
        assert_status(&r, 200, path);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}: {:?}",
            r.header("content-type")
        );
    }
    assert_status(&prod.get("/js/nope.js"), 404, "an unknown module");
    let token = prod.get("/api/dev/token?user=alice");
    assert_status(&token, 404, "the dev token endpoint outside dev mode");
    assert!(!token.text().contains("token\""), "{}", token.text());
    let hls = prod.get("/vendor/hls.min.js");
    assert_status(&hls, 404, "hls.js not installed");
    assert!(
        error_of(&hls).contains("npm ci --prefix web"),
        "{}",
        hls.text()
    );
    assert_status(&prod.get("/vendor/other.js"), 404, "only hls.js is served");
    drop(prod);

    // Development: the page offers the button; tokens are for ordinary users only.
    let dev = Origin::start(
        OriginOptions::new(&dir.path().join("dev"), edge_url)
            .config(&origin_config(true))
            .env("ORIGIN_WEB_VENDOR_DIR", &vendor.display().to_string()),
    );
    assert!(dev.get("/").text().contains("data-dev=\"true\""));
    let hls = dev.get("/vendor/hls.min.js");
    assert_status(&hls, 200, "hls.js from the vendor directory");
    assert_eq!(hls.text(), "/* hls.js stand-in */\n");
    let minted = dev.get("/api/dev/token?user=alice");
    assert_status(&minted, 200, "dev token");
    // A remote page whose name rebinds to 127.0.0.1 reaches the listener with its own name.
    for (host, status) in [("rebind.example:8000", 403), ("localhost:8000", 200)] {
        let bytes = Request::get("/api/dev/token?user=alice").host(host).build();
        let r = e2e::http::raw_request(dev.api_addr, &bytes).expect("dev token");
        assert_status(&r, status, host);
    }
    // Nor does a request that names no host at all.
    for version in ["1.0", "1.1"] {
        let request = "GET /api/dev/token?user=alice HTTP";
        let bytes = format!("{request}/{version}\r\nConnection: close\r\n\r\n");
        let r = e2e::http::raw_request(dev.api_addr, bytes.as_bytes()).expect("dev token");
        assert_status(&r, 403, &format!("HTTP/{version} without Host"));
    }
    assert_eq!(
        minted.header("cache-control"),
        Some("no-store"),
        "a token is never cached"
    );
    let token = json(&minted)["token"].as_str().expect("a token").to_owned();
    let videos = dev.get_as(&token, "/api/videos");
    assert_status(&videos, 200, "the minted token signs in");
    let admin = dev.get_as(&token, "/api/admin/migration");
    assert_status(&admin, 403, "a minted token is never an admin");
    for bad in [
        "/api/dev/token",
        "/api/dev/token?user=a%20b",
        "/api/dev/token?user=",
    ] {
        assert_status(&dev.get(bad), 400, bad);
    }
}
