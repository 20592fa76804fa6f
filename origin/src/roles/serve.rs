//! `origin serve`: the API with, unless `transcode.workers = 0`, workers in the same process.
//!
//! Built in [`build`] (state, store, pipeline, workers not yet started), run by [`serve`]
//! until shutdown: stop accepting, end event streams, drain requests within the grace period,
//! stop claiming jobs and wait for the running ones, then let webhooks drain.

use std::future::Future;
use std::sync::Arc;

use axum::middleware;
use shared::shutdown::{self, Terminate, Trigger};
use tokio::net::TcpListener;

use super::{bind, media_store, open_store, pipeline, spawn_admin, start_webhooks, StartupError};
use crate::api::{self, auth::Auth, user_slots::UserSlots, AppState, Store};
use crate::config::ServeSettings;
use crate::jobs::relay::{publish_pool_events, relay_redis_events};
use crate::jobs::worker::WorkerPool;
use crate::metrics::{self, Metrics};
use crate::migration::Migration;
use crate::webhooks::Dispatcher;

/// Everything `origin serve` runs, before it runs.
pub struct Origin {
    pub state: AppState,
    pub pool: Arc<WorkerPool<Store>>,
    drain: Trigger,
    webhooks: Option<Dispatcher>,
}

/// Binds the listeners, builds the origin and serves until SIGTERM.
pub async fn run(settings: ServeSettings) -> Result<(), StartupError> {
    // Before any listener is announced: SIGTERM from then on always means drain.
    let terminate = Terminate::install();
    let api = bind(settings.listen, "api").await?;
    let admin = match settings.worker.admin_listen {
        Some(addr) => Some(bind(addr, "admin").await?),
        None => None,
    };
    let origin = build(settings).await?;
    serve(origin, api, admin, terminate.wait()).await;
    Ok(())
}

/// Builds the state: data directory, store, pipeline, workers (not yet started).
pub async fn build(settings: ServeSettings) -> Result<Origin, StartupError> {
    let w = &settings.worker;
    let media = media_store(&w.media).await?;
    let layout = media.layout().clone();
    let store = Arc::new(open_store(&w.store, &layout).await?);
    super::sweep_unqueued_sources(&layout, &store);
    let metrics = Arc::new(Metrics::new()?);
    let pipeline = pipeline(&w.media, &media).await;
    let (notifier, dispatcher) = start_webhooks(w, &metrics)?;
    let pool = WorkerPool::with_reporting(
        store.clone(),
        pipeline.clone(),
        layout.clone(),
        super::pool_settings(&w.media, w.media.transcode.workers),
        Some(metrics.clone()),
        notifier,
    );
    let m = &settings.migration;
    let migration = Arc::new(
        Migration::new(&m.import_dir, &m.owner, m.process_now).with_prefix(&m.import_prefix),
    );
    let auth = Arc::new(Auth::new(&settings.auth)?);
    let events = match store.redis() {
        // Viewers on any instance see progress from any worker: workers publish to Redis and
        // every API process relays the channel (not also its own pool, or events would double).
        Some(redis) => {
            publish_pool_events(&pool, redis.clone());
            relay_redis_events(redis).await?
        }
        None => pool.events(),
    };
    let (drain, draining) = shutdown::channel();
    // Per-user caps count across API processes when they share Redis.
    let redis = store.redis().cloned();
    let state = AppState {
        settings: Arc::new(settings),
        auth,
        store,
        layout,
        media,
        pipeline,
        pool: Some(pool.clone()),
        events,
        migration,
        metrics,
        readiness: Arc::default(),
        upload_slots: UserSlots::shared("uploads in progress", "uploads", redis.clone()),
        event_streams: UserSlots::shared("event streams open", "events", redis),
        draining,
        detached: Default::default(),
    };
    Ok(Origin {
        state,
        pool,
        drain,
        webhooks: dispatcher,
    })
}

/// Serves until `shutdown`, then drains HTTP, stops workers from claiming and waits for the
/// jobs they run.
pub async fn serve(
    origin: Origin,
    api: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let Origin {
        state,
        pool,
        drain,
        webhooks,
    } = origin;
    let (stop, stopping) = shutdown::channel();
    let mut workers =
        (state.settings.worker.media.transcode.workers > 0).then(|| pool.start(stopping.clone()));
    metrics::spawn_job_gauges(state.store.clone(), state.metrics.clone(), stopping.clone());
    if state.migration.enabled() && state.migration.begin() {
        let s = state.clone();
        tokio::spawn(async move {
            s.migration
                .run(s.store.as_ref(), &s.layout, &s.pipeline)
                .await
        });
    }
    if let Some(admin) = admin {
        spawn_admin(admin, state.metrics.clone(), stopping);
    }
    let app = api::router(state.clone()).layer(middleware::from_fn_with_state(
        state.metrics.clone(),
        metrics::observe_requests,
    ));
    let shutdown = async move {
        shutdown.await;
        // Event streams never end by themselves; tell them to, or the drain would wait forever.
        drain.fire();
    };
    crate::net::serve(api, app, state.settings.http, shutdown).await;
    // Requests whose clients left are not connections: they get a grace period of their own.
    let grace = state.settings.http.shutdown_grace;
    if !state.detached.finished(grace).await {
        tracing::warn!(?grace, "grace period over with requests still running");
    }
    stop.fire();
    if let Some(w) = workers.as_mut() {
        while w.join_next().await.is_some() {}
    }
    // After the workers: the outcomes of the jobs they just finished are queued by now.
    if let Some(d) = webhooks {
        d.shutdown().await;
    }
    // Deliveries that ended are recorded so; the rest are delivered again by the next taker.
    if let Some(announcer) = pool.announcer() {
        announcer.settle().await;
    }
}
