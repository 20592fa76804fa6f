//! The three ways to run the origin, each built from its own validated settings:
//!
//! - [`serve`]: the API (uploads, playback, events, the web app) with in-process workers.
//! - [`worker`]: workers only, on machines that share the job store.
//! - [`transcode`]: the pipeline once, on one file.
//!
//! What more than one role wires up (binding, the job store, the pipeline, webhooks, the
//! metrics listener) lives here, once.

pub mod serve;
pub mod transcode;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use shared::media::Layout;
use shared::shutdown::Switch;
use tokio::net::TcpListener;

use crate::config::storage::StorageSettings;
use crate::config::{MediaSettings, NvencMode, SourceRungMode, StoreSettings, WorkerSettings};
use crate::jobs::any::AnyStore;
use crate::jobs::embedded::EmbeddedStore;
use crate::jobs::redis::RedisStore;
use crate::jobs::store::StoreError;
use crate::metrics::Metrics;
use crate::storage::MediaStore;
use crate::transcode::encoder::{detect_nvenc, EncoderSelector};
use crate::transcode::ladder::SourceRung;
use crate::transcode::pipeline::{self, Pipeline};
use crate::webhooks::{self, Dispatcher, Webhooks};

/// Why a role could not start. (Requests fail with `api::error::ApiError`; this is only for
/// what happens before the first one.)
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("binding the {listener} listener on {addr}: {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("preparing the data directory {dir}: {source}")]
    DataDir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("opening the job store: {0}")]
    Store(#[from] StoreError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("starting webhooks: {0}")]
    Webhooks(#[from] crate::http_client::ClientError),
    #[error("loading the JWT verification key: {0}")]
    JwtKey(#[from] jsonwebtoken::errors::Error),
    #[error("{0}")]
    Pipeline(#[from] pipeline::PipelineError),
    #[error("the media store: {0}")]
    Storage(#[from] shared::objects::object_store::Error),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

/// Binds `addr` and announces it (`listening listener=.. addr=..`; tests and operators read the
/// real port of `:0` from it).
pub async fn bind(addr: SocketAddr, listener: &'static str) -> Result<TcpListener, StartupError> {
    let bound = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind {
            listener,
            addr,
            source,
        })?;
    let local = bound.local_addr().map_err(StartupError::Serve)?;
    tracing::info!(listener, addr = %local, "listening");
    Ok(bound)
}

/// The data directory's layout, created if missing, without what stopped processes left
/// half-written ([`crate::storage::leftovers`]).
pub fn layout(media: &MediaSettings) -> Result<Layout, StartupError> {
    let layout = Layout::new(&media.data_dir);
    layout.ensure().map_err(|source| StartupError::DataDir {
        dir: media.data_dir.clone(),
        source,
    })?;
    crate::storage::leftovers::sweep(&layout);
    Ok(layout)
}

/// The media store: the data directory (created if missing), and the bucket when `[storage]`
/// names one. An unreachable bucket is logged, not fatal: it may come up after this process
/// (`origin check` says exactly what fails).
pub async fn media_store(media: &MediaSettings) -> Result<MediaStore, StartupError> {
    let layout = layout(media)?;
    let StorageSettings::S3 {
        store: settings,
        source_access,
    } = &media.storage
    else {
        return Ok(MediaStore::local(layout));
    };
    let objects = settings.connect()?;
    match objects.check().await {
        Ok(()) => tracing::info!(bucket = objects.describe(), "media store: bucket"),
        Err(error) => {
            tracing::warn!(%error, bucket = objects.describe(), "media store: the bucket does not answer yet")
        }
    }
    Ok(MediaStore::bucket(layout, objects, *source_access))
}

/// The pipeline the settings describe (NVENC detected here, once).
pub async fn pipeline(media: &MediaSettings, store: &MediaStore) -> Pipeline {
    let layout = store.layout();
    let t = &media.transcode;
    let nvenc = t.nvenc == NvencMode::Auto && detect_nvenc(&t.ffmpeg).await;
    tracing::info!(nvenc, "encoder detection");
    let encoders = EncoderSelector::new(nvenc, t.nvenc_sessions, &t.x264_preset, &t.nvenc_preset);
    Pipeline::new(
        pipeline::Settings {
            ffmpeg: t.ffmpeg.clone(),
            ffprobe: t.ffprobe.clone(),
            ladder: t.ladder.clone(),
            segment_secs: t.segment_secs,
            stall_timeout: media.stall_timeout(),
            poster_width: 1280,
            storyboard_tiles: 100,
            limits: media.limits.clone(),
            publish_while_encoding: t.publish_while_encoding,
            audio_layout: t.audio_layout,
            source_rung: match t.source_rung {
                SourceRungMode::Auto => SourceRung::Auto {
                    margin: t.source_rung_margin,
                },
                SourceRungMode::Never => SourceRung::Never,
            },
        },
        layout.clone(),
        encoders,
    )
    .with_media(store.clone())
}

/// The configured job store.
pub async fn open_store(store: &StoreSettings, layout: &Layout) -> Result<AnyStore, StartupError> {
    Ok(match store {
        StoreSettings::Redis { url } => {
            tracing::info!("job store: redis");
            AnyStore::Redis(RedisStore::connect(url).await?)
        }
        StoreSettings::Embedded => AnyStore::Embedded(EmbeddedStore::open(&layout.store_dir())?),
    })
}

/// Removes, in the background, the uploads a killed process moved into `sources/` without
/// creating their jobs ([`crate::storage::leftovers::sweep_sources`]).
pub fn sweep_unqueued_sources(layout: &Layout, store: &Arc<AnyStore>) {
    let (layout, store) = (layout.clone(), store.clone());
    tokio::spawn(async move { crate::storage::leftovers::sweep_sources(&layout, &*store).await });
}

/// The webhook sender for the workers and its dispatcher, when webhooks are configured.
pub fn start_webhooks(
    worker: &WorkerSettings,
    metrics: &Arc<Metrics>,
) -> Result<(Option<Webhooks>, Option<Dispatcher>), StartupError> {
    let Some(w) = &worker.webhooks else {
        return Ok((None, None));
    };
    let (notifier, dispatcher) = webhooks::start(w, Some(metrics.clone()))?;
    Ok((Some(notifier), Some(dispatcher)))
}

/// The metrics listener (`/metrics`, `/healthz`) until `stop` fires.
pub fn spawn_admin(listener: TcpListener, metrics: Arc<Metrics>, mut stop: Switch) {
    let router = Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.fired().await })
            .await;
    });
}

/// What `origin check` found: one line per thing tried.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub ok: bool,
    pub lines: Vec<String>,
}

/// `origin check`: the data directory, the job store and (with `[storage] backend = "s3"`)
/// the bucket, each tried once; a failure says exactly what failed (unreachable, bad
/// credentials, no such bucket, access denied).
pub async fn check(settings: &WorkerSettings) -> CheckReport {
    let mut report = CheckReport {
        ok: true,
        lines: Vec::new(),
    };
    let mut line = |ok: bool, text: String| {
        report.ok &= ok;
        report
            .lines
            .push(format!("{} {text}", if ok { "ok  " } else { "FAIL" }));
    };
    let dir = settings.media.data_dir.display();
    let layout = match layout(&settings.media) {
        Ok(layout) => {
            line(true, format!("data directory {dir}"));
            Some(layout)
        }
        Err(e) => {
            line(false, e.to_string());
            None
        }
    };
    if let Some(layout) = &layout {
        match open_store(&settings.store, layout).await {
            Ok(_) => line(true, "job store".into()),
            Err(e) => line(false, e.to_string()),
        }
    }
    if let StorageSettings::S3 { store: s3, .. } = &settings.media.storage {
        let what = s3.describe();
        match s3.connect() {
            Ok(objects) => match objects.check().await {
                Ok(()) => line(true, format!("media bucket {what}")),
                // The error names the bucket and endpoint itself.
                Err(e) => line(false, format!("media bucket {e}")),
            },
            Err(e) => line(false, format!("media bucket {what}: {e}")),
        }
    }
    report
}

/// The worker pool's settings for `concurrency` jobs at once.
pub fn pool_settings(
    media: &MediaSettings,
    concurrency: usize,
) -> crate::jobs::worker::WorkerSettings {
    let t = &media.transcode;
    crate::jobs::worker::WorkerSettings {
        concurrency,
        lease_secs: t.lease_secs,
        poll_interval: std::time::Duration::from_millis(500),
        max_attempts: t.max_attempts,
        name: worker_name(),
    }
}

/// This process's name as a worker: host, pid and a random tag, unique across a deployment.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    // The writer tag is random per process: containers sharing a host name (host networking)
    // can share a process id too, and two workers of one name would pass for each other's
    // lease.
    format!(
        "{host}-{}-{}",
        crate::storage::leftovers::writer(),
        std::process::id()
    )
}
