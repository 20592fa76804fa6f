//! TLS: HTTP/2 and HTTP/1.1 over HTTPS, and certificate reload on SIGHUP.

use std::fs;
use std::process::Command;
use std::time::Duration;

use e2e::content::{world_readable_tempdir, SEGMENT, SEGMENT_SIZE};
use e2e::tls::{self, CertFiles, TestCa};
use e2e::{metrics, process, wait_until, ContentTree, Edge, EdgeOptions, Request, Signal};

use crate::support::{require_tool, signed};

/// An edge with an HTTPS listener using a certificate from `ca`.
struct TlsEdge {
    edge: Edge,
    ca: TestCa,
    files: CertFiles,
    // Holds the certificate files (and the CA file for curl).
    dir: tempfile::TempDir,
}

impl TlsEdge {
    fn start(tree: &ContentTree) -> (Self, tls::ServerCert) {
        Self::start_with(tree, "")
    }

    fn start_with(tree: &ContentTree, config: &str) -> (Self, tls::ServerCert) {
        let ca = TestCa::new();
        let dir = world_readable_tempdir("e2e-tls-");
        let files = CertFiles::in_dir(dir.path());
        let first = ca.issue("edge-cert-1", 1);
        files.install(&first);
        fs::write(dir.path().join("ca.pem"), ca.cert_pem()).expect("write CA PEM");
        let options = EdgeOptions::new(tree.root()).config(config).tls(&files);
        let edge = Edge::start(options);
        (
            Self {
                edge,
                ca,
                files,
                dir,
            },
            first,
        )
    }

    fn url(&self, target: &str) -> String {
        let addr = self.edge.tls_addr.expect("the TLS listener was reported");
        format!("https://{addr}{target}")
    }

    fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `curl` with the test CA, printing the response head and the downloaded size.
    fn curl(&self, protocol_flag: &str, target: &str) -> (String, u64) {
        require_tool("curl");
        let output = process::run_bounded(
            Command::new("curl")
                .args([
                    protocol_flag,
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-D",
                    "-",
                    "-w",
                    "size=%{size_download}\n",
                ])
                .arg("--cacert")
                .arg(self.ca_file())
                .arg(self.url(target)),
            Duration::from_secs(30),
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "curl {protocol_flag} failed: {}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.edge.diagnostics()
        );
        let size = stdout
            .lines()
            .find_map(|line| line.strip_prefix("size="))
            .and_then(|size| size.trim().parse().ok())
            .expect("curl printed the size");
        (stdout, size)
    }
}

/// HTTPS negotiates HTTP/2 by ALPN and still speaks HTTP/1.1; both serve the segment whole.
#[test]
fn tls_serves_http2_and_http1() {
    let tree = ContentTree::new();
    let (server, _) = TlsEdge::start(&tree);
    let target = signed(SEGMENT);

    let (head, size) = server.curl("--http2", &target);
    assert!(
        head.starts_with("HTTP/2 200"),
        "curl --http2 response head:\n{head}"
    );
    assert_eq!(size, SEGMENT_SIZE as u64);

    let (head, size) = server.curl("--http1.1", &target);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "curl --http1.1 response head:\n{head}"
    );
    assert_eq!(size, SEGMENT_SIZE as u64);

    let addr = server.edge.tls_addr.expect("TLS listener");
    // Only the negotiated protocol is checked here; curl above exchanged the HTTP/2 frames.
    let mut h2_only = tls::connect(addr, server.ca.client_config(&[b"h2"])).expect("TLS handshake");
    assert_eq!(
        tls::alpn(h2_only.stream()).as_deref(),
        Some(&b"h2"[..]),
        "ALPN selects h2"
    );

    let mut http1 =
        tls::connect(addr, server.ca.client_config(&[b"http/1.1"])).expect("TLS handshake");
    assert_eq!(tls::alpn(http1.stream()).as_deref(), Some(&b"http/1.1"[..]));
    let request = Request::get(signed("master.m3u8"))
        .host(addr.to_string())
        .keep_alive()
        .build();
    let response = http1.exchange(&request).expect("HTTP/1.1 over TLS");
    assert_eq!(response.status, 200);

    // All four connections are counted by who encrypts their records: the kernel where it has
    // kTLS, rustls (saying why) where it has not.
    let text = server.edge.metrics();
    let connections = |wanted: &[(&str, &str)]| {
        metrics::value(&text, "edge_tls_connections_total", wanted).unwrap_or(0.0)
    };
    let (kernel, userspace) = match metrics::value(&text, "edge_ktls_available", &[]) {
        Some(1.0) => (4.0, 0.0),
        _ => (0.0, 4.0),
    };
    assert_eq!(connections(&[("path", "ktls")]), kernel, "{text}");
    assert_eq!(
        connections(&[("path", "userspace"), ("reason", "no_kernel_tls")]),
        userspace,
        "{text}"
    );
}

/// The access log names the client and the protocol of every request it samples, HTTP/2
/// streams included (a stream that waits runs in a task of its own).
#[test]
fn access_log_lines_name_the_client_over_http2() {
    let tree = ContentTree::new();
    let (server, _) = TlsEdge::start_with(&tree, "[log]\naccess_log_every = 1\n");
    let (head, _) = server.curl("--http2", &signed(SEGMENT));
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    let logged = wait_until(Duration::from_secs(5), || {
        server.edge.stderr_lines().iter().any(|l| {
            l.contains("access") && l.contains("client.addr=127.0.0.1") && l.contains("H2")
        })
    });
    assert!(logged, "{}", server.edge.diagnostics());
}

/// SIGHUP re-reads the certificate: new connections get the new one, while a connection
/// opened before keeps working.
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let tree = ContentTree::new();
    let (server, first) = TlsEdge::start(&tree);
    let addr = server.edge.tls_addr.expect("TLS listener");
    let config = server.ca.client_config(&[b"http/1.1"]);
    let host = addr.to_string();
    let request = Request::get(signed("master.m3u8"))
        .host(&host)
        .keep_alive()
        .build();

    let mut old = tls::connect(addr, config.clone()).expect("TLS handshake");
    assert_eq!(tls::peer_leaf(old.stream()), Some(first.der.clone()));
    assert_eq!(old.exchange(&request).expect("first request").status, 200);

    let second = server.ca.issue("edge-cert-2", 2);
    server.files.install(&second);
    server.edge.signal(Signal::Hup);
    let reloaded = wait_until(Duration::from_secs(10), || {
        tls::connect(addr, config.clone())
            .ok()
            .and_then(|mut fresh| tls::peer_leaf(fresh.stream()))
            == Some(second.der.clone())
    });
    assert!(
        reloaded,
        "new connections present the new certificate\n{}",
        server.edge.diagnostics()
    );

    let response = old.exchange(&request).unwrap_or_else(|err| {
        panic!(
            "the connection opened before SIGHUP broke: {err}\n{}",
            server.edge.diagnostics()
        )
    });
    assert_eq!(response.status, 200);

    let mut fresh = tls::connect(addr, config).expect("TLS handshake after reload");
    assert_eq!(
        fresh
            .exchange(&request)
            .expect("request after reload")
            .status,
        200
    );
}
