//! Prometheus metrics. Labels are route names and status classes, never paths or video ids,
//! and every labelled series is resolved once at start so the request path only touches
//! atomics.

use crate::server::ktls::{Fallback, Plan};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Which handler answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Under the content prefix.
    Content,
    /// `/healthz` on the public listener.
    Health,
    /// Anything else (404).
    Other,
}

impl Route {
    const ALL: [Route; 3] = [Route::Content, Route::Health, Route::Other];

    fn label(self) -> &'static str {
        match self {
            Route::Content => "content",
            Route::Health => "healthz",
            Route::Other => "other",
        }
    }
}

/// How body bytes left the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPath {
    /// From the hot cache (memory).
    Cache,
    /// `sendfile(2)` from the file.
    Sendfile,
    /// Read into a buffer and written (TLS, HTTP/2, error bodies).
    Buffered,
    /// Streamed while it is being pulled from the upstream.
    Upstream,
}

/// `edge_tls_connections_total` series: the kernel (kTLS), then userspace by reason, in the
/// order of [`Fallback`]'s labels.
/// The last series counts connections closed because the kernel refused their keys.
const TLS_PATHS: [(&str, &str); 6] = [
    ("ktls", "kernel"),
    ("userspace", "off"),
    ("userspace", "no_kernel_tls"),
    ("userspace", "kernel_refused"),
    ("closed", "handoff_failed"),
    ("userspace", "cipher"),
];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const REASONS: [&str; 4] = ["bad_hash", "expired", "missing", "malformed"];
const UPSTREAM_OUTCOMES: [&str; 4] = ["ok", "not_found", "error", "timeout"];

/// Every metric the edge exports.
pub struct Metrics {
    registry: Registry,
    requests: [[IntCounter; 5]; 3],
    durations: [Histogram; 3],
    bytes: [IntCounter; 4],
    signature_failures: [IntCounter; 4],
    upstream_requests: [IntCounter; 4],
    tls_connections: [IntCounter; 6],
    /// 1 when the kernel offered kTLS at start (see `server::ktls`), else 0.
    pub ktls_available: IntGauge,
    /// Body bytes received from the upstream by completed fills.
    pub upstream_bytes: IntCounter,
    /// Time from a miss to its fill being verified and in the disk cache.
    pub upstream_fill_seconds: Histogram,
    /// Requests that joined a fill already in flight instead of going upstream.
    pub upstream_coalesced: IntCounter,
    /// Waiters that gave up on a fill (`lock_timeout_secs`) and went upstream uncached.
    pub upstream_lock_timeouts: IntCounter,
    /// Stale copies (playlists past their TTL) served because the upstream failed or was slow.
    pub upstream_stale_served: IntCounter,
    /// Requests answered 404 because the upstream had just said it has no such object.
    pub upstream_missing_remembered: IntCounter,
    /// Fills fetching from the upstream now (at most `upstream::FILLS_MAX`).
    pub upstream_fills_running: IntGauge,
    /// Fills waiting for one of those places.
    pub upstream_fills_waiting: IntGauge,
    pub disk_cache_hits: IntCounter,
    pub disk_cache_misses: IntCounter,
    pub disk_cache_evictions: IntCounter,
    pub disk_cache_bytes: IntGauge,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub cache_evictions: IntCounter,
    pub open_file_hits: IntCounter,
    pub cache_bytes: IntGauge,
    pub open_connections: IntGauge,
    pub admin_connections: IntGauge,
    pub purged: IntCounter,
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "edge_requests_total",
                "Requests answered, by route and status class",
            ),
            &["route", "status_class"],
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "edge_request_duration_seconds",
                "Time from parsed request to response head written, by route",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["route"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "edge_bytes_sent_total",
                "Response body bytes sent, by send path",
            ),
            &["path"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "edge_signature_failures_total",
                "Refused signed URLs, by reason",
            ),
            &["reason"],
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let cache_hits = counter("edge_cache_hits_total", "Hot cache hits")?;
        let cache_misses = counter(
            "edge_cache_misses_total",
            "Hot cache misses for cacheable files",
        )?;
        let cache_evictions = counter("edge_cache_evictions_total", "Entries evicted for space")?;
        let open_file_hits = counter(
            "edge_open_file_hits_total",
            "Responses sent from an already open descriptor (sendfile, or read and encrypted for TLS)",
        )?;
        let purged = counter(
            "edge_cache_purged_total",
            "Entries dropped by purge requests",
        )?;
        let cache_bytes = IntGauge::new("edge_cache_bytes", "Body bytes held in the hot cache")?;
        let open_connections = IntGauge::new("edge_open_connections", "Open client connections")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        for c in [
            &cache_hits,
            &cache_misses,
            &cache_evictions,
            &open_file_hits,
            &purged,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(cache_bytes.clone()))?;
        let admin_connections = IntGauge::new(
            "edge_admin_open_connections",
            "Open admin-listener connections",
        )?;
        registry.register(Box::new(open_connections.clone()))?;
        registry.register(Box::new(admin_connections.clone()))?;
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "edge_upstream_requests_total",
                "Requests sent to the upstream, by outcome (ok, not_found, error, timeout)",
            ),
            &["outcome"],
        )?;
        let upstream_bytes = counter(
            "edge_upstream_bytes_total",
            "Body bytes received from the upstream by completed fills",
        )?;
        let upstream_fill_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "edge_upstream_fill_seconds",
                "Time from a miss to its object verified and in the disk cache",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let upstream_coalesced = counter(
            "edge_upstream_coalesced_total",
            "Requests that waited on a fill in flight instead of going upstream",
        )?;
        let upstream_lock_timeouts = counter(
            "edge_upstream_lock_timeouts_total",
            "Requests that gave up waiting on a fill and went upstream uncached",
        )?;
        let upstream_stale_served = counter(
            "edge_upstream_stale_served_total",
            "Stale copies served because the upstream failed or had not answered in time",
        )?;
        let upstream_missing_remembered = counter(
            "edge_upstream_missing_remembered_total",
            "Requests answered 404 from memory: the upstream had just said it has no such object",
        )?;
        let upstream_fills_running = IntGauge::new(
            "edge_upstream_fills_running",
            "Objects being pulled from the upstream now",
        )?;
        let upstream_fills_waiting = IntGauge::new(
            "edge_upstream_fills_waiting",
            "Objects waiting to be pulled: as many as the edge pulls at once are in flight",
        )?;
        let disk_cache_hits = counter("edge_disk_cache_hits_total", "Disk cache hits")?;
        let disk_cache_misses = counter(
            "edge_disk_cache_misses_total",
            "Disk cache misses (pulled from the upstream)",
        )?;
        let disk_cache_evictions = counter(
            "edge_disk_cache_evictions_total",
            "Files evicted from the disk cache for space",
        )?;
        let disk_cache_bytes =
            IntGauge::new("edge_disk_cache_bytes", "Bytes held in the disk cache")?;
        registry.register(Box::new(upstream_requests.clone()))?;
        registry.register(Box::new(upstream_fill_seconds.clone()))?;
        for c in [
            &upstream_bytes,
            &upstream_coalesced,
            &upstream_lock_timeouts,
            &upstream_stale_served,
            &upstream_missing_remembered,
            &disk_cache_hits,
            &disk_cache_misses,
            &disk_cache_evictions,
        ] {
            registry.register(Box::new(c.clone()))?;
        }
        for g in [
            &disk_cache_bytes,
            &upstream_fills_running,
            &upstream_fills_waiting,
        ] {
            registry.register(Box::new(g.clone()))?;
        }

        let tls_connections = IntCounterVec::new(
            Opts::new(
                "edge_tls_connections_total",
                "TLS connections after the handshake, by who encrypts their records (ktls: the \
                 kernel, userspace: rustls) and why not the kernel; closed: the kernel refused \
                 the keys",
            ),
            &["path", "reason"],
        )?;
        let ktls_available = IntGauge::new(
            "edge_ktls_available",
            "1 when the kernel offered kTLS (TCP_ULP tls) at start",
        )?;
        registry.register(Box::new(tls_connections.clone()))?;
        registry.register(Box::new(ktls_available.clone()))?;
        let tls_connections = TLS_PATHS.map(|(p, r)| tls_connections.with_label_values(&[p, r]));

        let requests =
            Route::ALL.map(|r| STATUS_CLASSES.map(|c| requests.with_label_values(&[r.label(), c])));
        let durations = Route::ALL.map(|r| durations.with_label_values(&[r.label()]));
        let bytes =
            ["cache", "sendfile", "buffered", "upstream"].map(|p| bytes.with_label_values(&[p]));
        let upstream_requests =
            UPSTREAM_OUTCOMES.map(|o| upstream_requests.with_label_values(&[o]));
        let signature_failures = REASONS.map(|r| failures.with_label_values(&[r]));
        Ok(Self {
            registry,
            requests,
            durations,
            bytes,
            signature_failures,
            upstream_requests,
            tls_connections,
            ktls_available,
            upstream_bytes,
            upstream_fill_seconds,
            upstream_coalesced,
            upstream_lock_timeouts,
            upstream_stale_served,
            upstream_missing_remembered,
            upstream_fills_running,
            upstream_fills_waiting,
            disk_cache_hits,
            disk_cache_misses,
            disk_cache_evictions,
            disk_cache_bytes,
            cache_hits,
            cache_misses,
            cache_evictions,
            open_file_hits,
            cache_bytes,
            open_connections,
            admin_connections,
            purged,
        })
    }

    /// Counts one answered request.
    pub fn request(&self, route: Route, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[route as usize][class].inc();
        self.durations[route as usize].observe(seconds);
    }

    /// Counts body bytes sent.
    pub fn sent(&self, path: SendPath, n: u64) {
        self.bytes[path as usize].inc_by(n);
    }

    /// Counts a TLS connection by who encrypts its records after the handshake.
    pub fn tls_connection(&self, plan: Plan) {
        let i = match plan {
            Plan::Kernel => 0,
            Plan::Userspace(Fallback::Off) => 1,
            Plan::Userspace(Fallback::NoKernel) => 2,
            Plan::Userspace(Fallback::Refused) => 3,
            Plan::Userspace(Fallback::Cipher) => 5,
        };
        self.tls_connections[i].inc();
    }

    /// Counts a TLS connection closed after its handshake: the kernel refused its keys.
    pub fn tls_handoff_failed(&self) {
        self.tls_connections[4].inc();
    }

    /// Counts a refused signature by its reason label.
    pub fn signature_failure(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.signature_failures[i].inc();
        }
    }

    /// Counts one request sent upstream by its outcome label.
    pub fn upstream_request(&self, outcome: &str) {
        if let Some(i) = UPSTREAM_OUTCOMES.iter().position(|o| *o == outcome) {
            self.upstream_requests[i].inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let m = Metrics::new().expect("register");
        m.request(Route::Content, 206, 0.001);
        m.sent(SendPath::Sendfile, 10);
        m.signature_failure("expired");
        let text = String::from_utf8(m.render()).expect("utf8");
        assert!(text.contains(r#"edge_requests_total{route="content",status_class="2xx"} 1"#));
        assert!(text.contains(r#"edge_bytes_sent_total{path="sendfile"} 10"#));
        assert!(text.contains(r#"edge_signature_failures_total{reason="expired"} 1"#));
        assert!(text.contains("edge_open_connections 0"));
        m.tls_connection(Plan::Userspace(Fallback::NoKernel));
        let text = String::from_utf8(m.render()).expect("utf8");
        assert!(text
            .contains(r#"edge_tls_connections_total{path="userspace",reason="no_kernel_tls"} 1"#));
        assert!(text.contains(r#"edge_tls_connections_total{path="ktls",reason="kernel"} 0"#));
    }
}
