//! Wiring: build the state from validated settings, serve the API and the metrics listener,
//! run the in-process workers, drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use shared::media::Layout;
use tokio::net::TcpListener;

use crate::api::{self, auth::Auth, AppState, Store};
use crate::config::{NvencMode, Settings};
use crate::jobs::any::AnyStore;
use crate::jobs::embedded::EmbeddedStore;
use crate::jobs::redis::RedisStore;
use crate::jobs::store::JobStore;
use crate::jobs::worker::{JobEvent, WorkerPool, WorkerSettings};
use crate::metrics::Metrics;
use crate::migration::Migration;
use crate::transcode::encoder::{detect_nvenc, EncoderSelector};
use crate::transcode::pipeline::{self, Pipeline};
use crate::webhooks::{self, Dispatcher, Webhooks};

/// The pipeline described by the settings (NVENC detected here, once).
pub async fn pipeline(settings: &Settings, layout: &Layout) -> Pipeline {
    let t = &settings.transcode;
    let nvenc = t.nvenc == NvencMode::Auto && detect_nvenc(&t.ffmpeg).await;
    tracing::info!(nvenc, "encoder detection");
    let encoders = EncoderSelector::new(nvenc, t.nvenc_sessions, &t.x264_preset, &t.nvenc_preset);
    Pipeline::new(
        pipeline::Settings {
            ffmpeg: t.ffmpeg.clone(),
            ffprobe: t.ffprobe.clone(),
            ladder: t.ladder.clone(),
            segment_secs: t.segment_secs,
            stall_timeout: settings.stall_timeout(),
            poster_width: 1280,
            storyboard_tiles: 100,
            limits: settings.limits.clone(),
        },
        layout.clone(),
        encoders,
    )
}

/// Everything `origin serve` runs.
pub struct Origin {
    pub state: AppState,
    pub pool: Arc<WorkerPool<Store>>,
    drain: tokio::sync::watch::Sender<bool>,
    webhooks: Option<Dispatcher>,
}

/// Builds the state: data directory, store, pipeline, workers (not yet started).
pub async fn build(settings: Settings) -> anyhow::Result<Origin> {
    let layout = Layout::new(&settings.data_dir);
    layout.ensure()?;
    let store = Arc::new(open_store(&settings, &layout).await?);
    let metrics = Arc::new(Metrics::new()?);
    let pipeline = pipeline(&settings, &layout).await;
    let (notifier, dispatcher) = start_webhooks(&settings, &metrics)?;
    let t = &settings.transcode;
    let pool = WorkerPool::with_reporting(
        store.clone(),
        pipeline.clone(),
        layout.clone(),
        WorkerSettings {
            concurrency: t.workers,
            lease_secs: t.lease_secs,
            poll_interval: Duration::from_millis(500),
            max_attempts: t.max_attempts,
            name: format!("{}-{}", hostname(), std::process::id()),
        },
        Some(metrics.clone()),
        notifier,
    );
    let m = &settings.migration;
    let migration = Arc::new(Migration::new(&m.import_dir, &m.owner, m.process_now));
    let auth = Arc::new(Auth::new(&settings).map_err(|e| anyhow::anyhow!("{e}"))?);
    let events = match store.redis() {
        // Viewers on any instance see progress from any worker: workers publish to Redis and
        // every API process relays the channel (not also its own pool, or events would double).
        Some(redis) => {
            publish_pool_events(&pool, redis.clone());
            relay_redis_events(redis).await?
        }
        None => pool.events(),
    };
    let (drain, draining) = tokio::sync::watch::channel(false);
    let state = AppState {
        settings: Arc::new(settings),
        auth,
        store,
        layout,
        pipeline,
        pool: Some(pool.clone()),
        events,
        migration,
        metrics,
        upload_slots: Arc::default(),
        readiness: Arc::default(),
        draining,
    };
    Ok(Origin {
        state,
        pool,
        drain,
        webhooks: dispatcher,
    })
}

/// The webhook sender for the pool and its dispatcher, when webhooks are configured.
pub fn start_webhooks(
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Option<Webhooks>, Option<Dispatcher>)> {
    let Some(w) = &settings.webhooks else {
        return Ok((None, None));
    };
    let (notifier, dispatcher) = webhooks::start(w, Some(metrics.clone()))
        .map_err(|e| anyhow::anyhow!("starting webhooks: {e}"))?;
    Ok((Some(notifier), Some(dispatcher)))
}

/// The metrics listener (`/metrics`, `/healthz`), until `stop` fires.
pub fn spawn_admin(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let router = Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|&v| v).await;
            })
            .await;
    });
}

/// The configured job store.
pub async fn open_store(settings: &Settings, layout: &Layout) -> anyhow::Result<AnyStore> {
    Ok(match &settings.redis_url {
        Some(url) => {
            tracing::info!("job store: redis");
            AnyStore::Redis(RedisStore::connect(url).await?)
        }
        None => AnyStore::Embedded(EmbeddedStore::open(&layout.store_dir())?),
    })
}

/// Forwards a pool's events to Redis pub/sub.
pub fn publish_pool_events<S: JobStore>(pool: &WorkerPool<S>, redis: RedisStore) {
    let mut rx = pool.subscribe();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if let Err(error) = redis.publish_event(&event).await {
                        tracing::debug!(%error, "event not published");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// A local channel fed from Redis pub/sub, for the SSE endpoint.
async fn relay_redis_events(
    redis: &RedisStore,
) -> anyhow::Result<tokio::sync::broadcast::Sender<JobEvent>> {
    use futures_util::StreamExt;
    let (tx, _) = tokio::sync::broadcast::channel(1024);
    let mut stream = redis.subscribe_events().await?;
    let sender = tx.clone();
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let _ = sender.send(event);
        }
    });
    Ok(tx)
}

/// Serves until `shutdown`, then stops workers from claiming, drains HTTP, and waits for
/// running jobs to end.
pub async fn serve(
    origin: Origin,
    api: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Origin {
        state,
        pool,
        drain,
        webhooks,
    } = origin;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut workers = if state.settings.transcode.workers > 0 {
        Some(pool.start(stop.clone()))
    } else {
        None
    };
    spawn_job_gauges(state.clone(), stop.clone());
    if state.migration.enabled() && state.migration.begin() {
        let s = state.clone();
        tokio::spawn(async move {
            s.migration
                .run(s.store.as_ref(), &s.layout, &s.pipeline)
                .await
        });
    }
    if let Some(admin) = admin {
        spawn_admin(admin, state.metrics.clone(), stop.clone());
    }
    let app = api::router(state.clone()).layer(middleware::from_fn_with_state(
        state.clone(),
        count_requests,
    ));
    let shutdown = async move {
        shutdown.await;
        // Event streams never end by themselves; tell them to, or the drain would wait forever.
        let _ = drain.send(true);
    };
    crate::net::serve(api, app, state.settings.http, shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(w) = workers.as_mut() {
        while w.join_next().await.is_some() {}
    }
    // After the workers: the outcomes of the jobs they just finished are queued by now.
    if let Some(d) = webhooks {
        d.shutdown().await;
    }
    Ok(())
}

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let class = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .requests
        .with_label_values(&[&route, &class])
        .inc();
    response
}

/// Refreshes the jobs-by-state gauges (queue depth) every few seconds.
fn spawn_job_gauges(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            if let Ok(counts) = state.store.counts().await {
                for s in ["registered", "queued", "processing", "ready", "failed"] {
                    let n = counts
                        .iter()
                        .find(|(k, _)| {
                            serde_json::to_value(k)
                                .ok()
                                .and_then(|v| v.as_str().map(|x| x == s))
                                .unwrap_or(false)
                        })
                        .map_or(0, |(_, n)| *n);
                    state.metrics.jobs.with_label_values(&[s]).set(n as i64);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.wait_for(|&v| v) => return,
            }
        }
    });
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into())
}
