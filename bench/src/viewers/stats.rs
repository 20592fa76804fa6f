//! What a run measured: latencies per request kind, statuses, errors, viewer experience; the
//! live counters behind the progress line; and the JSON summary.
//!
//! Every viewer records into its own [`Recorder`] (no lock on the request path) and the
//! recorders are merged at the end. Latencies are kept whole (one `u32` of microseconds per
//! request, bounded by the request budget), so percentiles are exact, not bucketed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Token,
    StreamInfo,
    Master,
    Variant,
    Key,
    Segment,
    /// A segment URL with a forged signature (the invalid-signature flood).
    Forged,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Token,
        Kind::StreamInfo,
        Kind::Master,
        Kind::Variant,
        Kind::Key,
        Kind::Segment,
        Kind::Forged,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::StreamInfo => "stream_info",
            Kind::Master => "master",
            Kind::Variant => "variant",
            Kind::Key => "key",
            Kind::Segment => "segment",
            Kind::Forged => "forged",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub struct Live {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
    pub segments: AtomicU64,
    pub errors: AtomicU64,
    pub expired: AtomicU64,
    pub forbidden: AtomicU64,
    pub stalls: AtomicU64,
    pub viewers: AtomicU64,
}

impl Live {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How a request ended: an HTTP status, or the label of a failure without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Status(u16),
    Failure(&'static str),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(status) => write!(f, "{status}"),
            Outcome::Failure(label) => f.write_str(label),
        }
    }
}

#[derive(Debug, Default)]
struct KindStats {
    latencies_us: Vec<u32>,
    bytes: u64,
    // Keyed by value, not text: recording a request allocates nothing.
    statuses: BTreeMap<Outcome, u64>,
}

/// One viewer's (then the whole run's) measurements.
#[derive(Debug, Default)]
pub struct Recorder {
    kinds: [KindStats; Kind::ALL.len()],
    /// Unexpected outcomes by `"<kind> <status or failure>"`.
    errors: BTreeMap<String, u64>,
    pub sessions: u64,
    pub aborted_sessions: u64,
    pub refreshes: u64,
    pub stalls: u64,
    pub stall_secs: f64,
}

impl Recorder {
    /// Records one request.
    pub fn record(&mut self, kind: Kind, outcome: Outcome, micros: u64, bytes: u64, error: bool) {
        let k = &mut self.kinds[kind.index()];
        k.latencies_us
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
        k.bytes += bytes;
        *k.statuses.entry(outcome).or_default() += 1;
        if error {
            *self
                .errors
                .entry(format!("{} {outcome}", kind.name()))
                .or_default() += 1;
        }
    }

    /// Records an unexpected outcome that is not a single response (e.g. a playlist that
    /// cannot be played).
    pub fn error(&mut self, what: String) {
        *self.errors.entry(what).or_default() += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds) {
            mine.latencies_us.extend(theirs.latencies_us);
            mine.bytes += theirs.bytes;
            for (status, n) in theirs.statuses {
                *mine.statuses.entry(status).or_default() += n;
            }
        }
        for (what, n) in other.errors {
            *self.errors.entry(what).or_default() += n;
        }
        self.sessions += other.sessions;
        self.aborted_sessions += other.aborted_sessions;
        self.refreshes += other.refreshes;
        self.stalls += other.stalls;
        self.stall_secs += other.stall_secs;
    }

    pub fn unexpected(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The JSON summary of the run (`elapsed` in seconds).
    pub fn summary(mut self, elapsed: f64, run: Value) -> Value {
        let mut kinds = serde_json::Map::new();
        let (mut requests, mut bytes) = (0u64, 0u64);
        for kind in Kind::ALL {
            let k = &mut self.kinds[kind.index()];
            if k.latencies_us.is_empty() {
                continue;
            }
            k.latencies_us.sort_unstable();
            let statuses: BTreeMap<String, u64> = k
                .statuses
                .iter()
                .map(|(o, n)| (o.to_string(), *n))
                .collect();
            let n = k.latencies_us.len() as u64;
            requests += n;
            bytes += k.bytes;
            kinds.insert(
                kind.name().to_owned(),
                json!({
                    "requests": n,
                    "per_sec": round(n as f64 / elapsed.max(1e-9)),
                    "bytes": k.bytes,
                    "p50_ms": percentile_ms(&k.latencies_us, 0.50),
                    "p99_ms": percentile_ms(&k.latencies_us, 0.99),
                    "p999_ms": percentile_ms(&k.latencies_us, 0.999),
                    "max_ms": percentile_ms(&k.latencies_us, 1.0),
                    "statuses": statuses,
                }),
            );
        }
        let unexpected = self.unexpected();
        json!({
            "run": run,
            "elapsed_secs": round(elapsed),
            "requests": requests,
            "requests_per_sec": round(requests as f64 / elapsed.max(1e-9)),
            "bytes": bytes,
            "megabits_per_sec": round(bytes as f64 * 8.0 / 1e6 / elapsed.max(1e-9)),
            "kinds": kinds,
            "viewers": {
                "sessions_completed": self.sessions,
                "sessions_aborted": self.aborted_sessions,
                "playlist_refreshes": self.refreshes,
                "stalls": self.stalls,
                "stall_secs": round(self.stall_secs),
            },
            "unexpected": unexpected,
            "errors": self.errors,
        })
    }
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted_us.len() as f64).ceil() as usize;
    let at = rank.clamp(1, sorted_us.len()) - 1;
    round(f64::from(sorted_us[at]) / 1000.0)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), 500.0);
        assert_eq!(percentile_ms(&v, 0.99), 990.0);
        assert_eq!(percentile_ms(&v, 0.999), 999.0);
        assert_eq!(percentile_ms(&v, 1.0), 1000.0);
        assert_eq!(percentile_ms(&[7000], 0.999), 7.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn merged_summary_counts_statuses_and_errors() {
        let mut a = Recorder::default();
        a.record(Kind::Segment, Outcome::Status(200), 1500, 100, false);
        a.record(Kind::Segment, Outcome::Status(410), 500, 0, false);
        let mut b = Recorder::default();
        b.record(Kind::Segment, Outcome::Status(200), 2500, 100, false);
        b.record(Kind::Forged, Outcome::Status(200), 900, 100, true);
        b.refreshes = 1;
        a.merge(b);
        let s = a.summary(2.0, json!({}));
        assert_eq!(s["requests"], 4);
        assert_eq!(s["bytes"], 300);
        assert_eq!(s["kinds"]["segment"]["statuses"]["200"], 2);
        assert_eq!(s["kinds"]["segment"]["statuses"]["410"], 1);
        assert_eq!(s["kinds"]["segment"]["p50_ms"], 1.5);
        assert_eq!(s["errors"]["forged 200"], 1);
        assert_eq!(s["unexpected"], 1);
        assert_eq!(s["viewers"]["playlist_refreshes"], 1);
        assert!(s["kinds"].get("key").is_none());
    }
}
