//! Origin metrics for Prometheus. Labels are fixed sets (states, encoders), never video ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every series the origin exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub uploads: IntCounter,
    pub upload_bytes: IntCounter,
    pub jobs: IntGaugeVec,
    pub transcodes: IntCounterVec,
    pub transcode_seconds: Histogram,
    pub transcode_speed: Histogram,
    pub manifest_signing_seconds: Histogram,
    pub webhook_deliveries: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "origin_requests_total",
                "API requests by route group and status class",
            ),
            &["route", "status_class"],
        )?;
        let uploads = IntCounter::new("origin_uploads_total", "Uploads accepted")?;
        let upload_bytes = IntCounter::new("origin_upload_bytes_total", "Upload bytes received")?;
        let jobs = IntGaugeVec::new(
            Opts::new("origin_jobs", "Jobs by state (queue depth is state=queued)"),
            &["state"],
        )?;
        let transcodes = IntCounterVec::new(
            Opts::new(
                "origin_transcodes_total",
                "Finished transcodes by encoder and outcome",
            ),
            &["encoder", "outcome"],
        )?;
        let transcode_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "origin_transcode_duration_seconds",
                "Wall time of a transcode job",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
            ]),
        )?;
        let transcode_speed = Histogram::with_opts(
            HistogramOpts::new(
                "origin_transcode_speed_realtime",
                "Media seconds per wall second (x realtime)",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
        )?;
        let manifest_signing_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "origin_manifest_signing_seconds",
                "Time to sign one playlist",
            )
            .buckets(vec![0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01]),
        )?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "origin_webhook_deliveries_total",
                "Webhook events by event and outcome (delivered, failed after every attempt, \
                 dropped on a full queue, abandoned at shutdown)",
            ),
            &["event", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(uploads.clone()))?;
        registry.register(Box::new(upload_bytes.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(transcodes.clone()))?;
        registry.register(Box::new(transcode_seconds.clone()))?;
        registry.register(Box::new(transcode_speed.clone()))?;
        registry.register(Box::new(manifest_signing_seconds.clone()))?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        Ok(Self {
            registry,
            requests,
            uploads,
            upload_bytes,
            jobs,
            transcodes,
            transcode_seconds,
            transcode_speed,
            manifest_signing_seconds,
            webhook_deliveries,
        })
    }

    /// Counts an accepted upload.
    pub fn upload(&self, bytes: u64) {
        self.uploads.inc();
        self.upload_bytes.inc_by(bytes);
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "metrics encoding failed");
        }
        out
    }
}

/// Middleware: runs every API request in a `request` span (method and route template) and
/// counts it by route template and status class (never the concrete path, which names videos).
pub async fn observe_requests(
    axum::extract::State(metrics): axum::extract::State<std::sync::Arc<Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", http.method = %req.method(), http.route = %route);
    let response = tracing::Instrument::instrument(next.run(req), span).await;
    let class = match response.status().as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    };
    metrics.requests.with_label_values(&[&route, class]).inc();
    response
}

/// Refreshes the jobs-by-state gauges (queue depth) every few seconds until `stop` fires.
pub fn spawn_job_gauges<S>(
    store: std::sync::Arc<S>,
    metrics: std::sync::Arc<Metrics>,
    mut stop: shared::shutdown::Switch,
) where
    S: crate::jobs::store::JobStore + Send + Sync + 'static,
{
    use crate::jobs::model::JobState;
    tokio::spawn(async move {
        loop {
            if let Ok(counts) = store.counts().await {
                for state in [
                    JobState::Registered,
                    JobState::Queued,
                    JobState::Processing,
                    JobState::Ready,
                    JobState::Failed,
                ] {
                    let n = counts
                        .iter()
                        .find(|(k, _)| *k == state)
                        .map_or(0, |(_, n)| *n);
                    metrics
                        .jobs
                        .with_label_values(&[state.as_str()])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                () = stop.fired() => return,
            }
        }
    });
}
