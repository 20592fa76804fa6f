//! One event's delivery: sign, POST, and on a non-2xx answer or a transport error wait with
//! exponential backoff and try again, up to the attempt limit. Every attempt carries the same
//! event id and body but its own timestamp and signature.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use ring::hmac;
use tokio::sync::watch;

use super::event::Event;
use super::signature::{sign, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::http_client::{Client, ClientError};
use crate::jobs::model::unix_now;

/// Retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failed attempt.
    pub initial: Duration,
    /// Upper bound of any wait.
    pub max: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
}

impl Backoff {
    /// The wait after failed attempt `attempt` (1-based): initial, 2x, 4x, ... capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// How a delivery ended (also the `outcome` metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Every attempt failed.
    Failed,
    /// The process stopped before the delivery could finish.
    Abandoned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// What a delivery needs besides the event.
pub struct Deliverer {
    pub client: Client,
    pub key: hmac::Key,
    pub backoff: Backoff,
}

impl Deliverer {
    /// Delivers `event`, retrying as configured, unless `abandon` turns true first. Logs the
    /// final outcome; the caller counts it.
    pub async fn deliver(&self, event: &Event, mut abandon: watch::Receiver<bool>) -> Outcome {
        let body = match serde_json::to_vec(event) {
            Ok(b) => Bytes::from(b),
            Err(error) => {
                // Plain strings and numbers always serialize; kept as a failure, not a panic.
                tracing::error!(%error, "webhook event could not be serialized");
                return Outcome::Failed;
            }
        };
        let max = self.backoff.max_attempts.max(1);
        let mut last_error = None;
        for attempt in 1..=max {
            let Some(result) = unless(&mut abandon, self.attempt(&event.id, body.clone())).await
            else {
                return abandoned(event, attempt);
            };
            match result {
                Ok(()) => {
                    tracing::info!(
                        webhook.id = %event.id,
                        webhook.event = event.event.as_str(),
                        video.id = %event.video_id,
                        attempt,
                        "webhook delivered"
                    );
                    return Outcome::Delivered;
                }
                Err(error) if attempt < max => {
                    let wait = self.backoff.delay(attempt);
                    tracing::info!(
                        webhook.id = %event.id,
                        webhook.event = event.event.as_str(),
                        video.id = %event.video_id,
                        attempt,
                        %error,
                        retry_in_ms = wait.as_millis() as u64,
                        "webhook attempt failed"
                    );
                    if unless(&mut abandon, tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return abandoned(event, attempt);
                    }
                }
                Err(error) => last_error = Some(error),
            }
        }
        tracing::warn!(
            webhook.id = %event.id,
            webhook.event = event.event.as_str(),
            video.id = %event.video_id,
            attempts = max,
            error = %last_error.map_or_else(String::new, |e| e.to_string()),
            "webhook not delivered, giving up"
        );
        Outcome::Failed
    }

    async fn attempt(&self, id: &str, body: Bytes) -> Result<(), ClientError> {
        let timestamp = unix_now();
        let headers = [
            ("content-type", "application/json".to_owned()),
            (ID_HEADER, id.to_owned()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, sign(&self.key, timestamp, &body)),
        ];
        let path = self.client.target().path.clone();
        let status = self.client.post(&path, &headers, body).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(ClientError::Status(status))
        }
    }
}

fn abandoned(event: &Event, attempt: u32) -> Outcome {
    tracing::warn!(
        webhook.id = %event.id,
        webhook.event = event.event.as_str(),
        video.id = %event.video_id,
        attempt,
        "webhook abandoned at shutdown"
    );
    Outcome::Abandoned
}

/// `work`'s output, or `None` as soon as `abandon` is (or becomes) true.
async fn unless<F: Future>(abandon: &mut watch::Receiver<bool>, work: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        () = until_abandoned(abandon) => None,
        out = work => Some(out),
    }
}

/// Resolves once `abandon` is true; never if its sender is gone without saying so (nobody
/// can abandon any more, so work goes on).
pub(super) async fn until_abandoned(abandon: &mut watch::Receiver<bool>) {
    if abandon.wait_for(|&a| a).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_millis(1000),
            max: Duration::from_secs(60),
            max_attempts: 10,
        };
        let schedule: Vec<u64> = (1..=9).map(|a| b.delay(a).as_millis() as u64).collect();
        assert_eq!(
            schedule,
            [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60), "no overflow");
    }
}
