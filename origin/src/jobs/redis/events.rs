//! Job events across processes: the pub/sub subscription behind [`super::RedisStore`]'s event
//! stream, resubscribed after a lost connection.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;
use tokio::sync::mpsc;

use super::RedisStore;
use crate::jobs::worker::JobEvent;

/// Forwards messages of `pubsub` to `tx` until the receiver is dropped, resubscribing after a
/// lost connection.
pub(super) async fn forward_events(store: RedisStore, first: PubSub, tx: mpsc::Sender<JobEvent>) {
    let mut pubsub = Some(first);
    loop {
        if let Some(subscription) = pubsub.take() {
            let mut messages = subscription.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        match serde_json::from_slice::<JobEvent>(message.get_payload_bytes()) {
                            Ok(event) => {
                                match tx.try_send(event) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        tracing::debug!("slow job event reader, event skipped");
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                            Err(error) => tracing::warn!(%error, "undecodable job event skipped"),
                        }
                    }
                    () = tx.closed() => return,
                }
            }
            tracing::warn!("job event subscription lost, resubscribing");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            () = tx.closed() => return,
        }
        match store.open_subscription().await {
            Ok(p) => pubsub = Some(p),
            Err(error) => tracing::debug!(%error, "cannot resubscribe to job events yet"),
        }
    }
}
