//! `origin worker`: workers only, on a machine that shares the job store (Redis) and the
//! media store with the API. Needs no JWT secret, no API address and no edge URL.

use std::sync::Arc;

use shared::shutdown::{self, Terminate};

use super::{bind, media_store, open_store, pipeline, spawn_admin, start_webhooks, StartupError};
use crate::config::WorkerSettings;
use crate::jobs::relay::publish_pool_events;
use crate::jobs::worker::WorkerPool;
use crate::metrics::Metrics;

/// Runs `concurrency` workers until SIGTERM, then lets the running jobs finish.
pub async fn run(settings: WorkerSettings, concurrency: usize) -> Result<(), StartupError> {
    let terminate = Terminate::install();
    let admin = match settings.admin_listen {
        Some(addr) => Some(bind(addr, "admin").await?),
        None => None,
    };
    let media = media_store(&settings.media).await?;
    let layout = media.layout().clone();
    let store = Arc::new(open_store(&settings.store, &layout).await?);
    super::sweep_unqueued_sources(&layout, &store);
    let pipeline = pipeline(&settings.media, &media).await;
    let metrics = Arc::new(Metrics::new()?);
    let (notifier, webhooks) = start_webhooks(&settings, &metrics)?;
    let pool = WorkerPool::with_reporting(
        store.clone(),
        pipeline,
        layout,
        super::pool_settings(&settings.media, concurrency.max(1)),
        Some(metrics.clone()),
        notifier,
    );
    if let Some(redis) = store.redis() {
        publish_pool_events(&pool, redis.clone());
    }
    let (stop, stopping) = shutdown::channel();
    if let Some(listener) = admin {
        spawn_admin(listener, metrics, stopping.clone());
    }
    let mut workers = pool.start(stopping);
    terminate.wait().await;
    stop.fire();
    while workers.join_next().await.is_some() {}
    if let Some(d) = webhooks {
        d.shutdown().await;
    }
    // Deliveries that ended are recorded so; the rest are delivered again by the next taker.
    if let Some(announcer) = pool.announcer() {
        announcer.settle().await;
    }
    Ok(())
}
