//! Progress events across processes: workers publish their pool's events to Redis, and every
//! API process relays the channel to its own event streams (SSE), so a viewer on any instance
//! follows a job run by any worker.

use tokio::sync::broadcast;

use super::redis::RedisStore;
use super::store::JobStore;
use super::worker::{JobEvent, WorkerPool};

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
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// A local channel fed from Redis pub/sub, for the SSE endpoint.
pub async fn relay_redis_events(
    redis: &RedisStore,
) -> Result<broadcast::Sender<JobEvent>, super::store::StoreError> {
    use futures_util::StreamExt;
    let (tx, _) = broadcast::channel(1024);
    let mut stream = redis.subscribe_events().await?;
    let sender = tx.clone();
    tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let _ = sender.send(event);
        }
    });
    Ok(tx)
}
