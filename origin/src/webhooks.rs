//! Webhooks (seed 002): when a video is ready, or has failed for good, the origin POSTs a
//! signed JSON event to the configured receiver. Optional per deployment (`[webhooks] url`).
//!
//! # Layout
//! - [`settings`]: `[webhooks]`, `WEBHOOK_SECRET`, validation.
//! - [`event`]: the JSON body (`video.ready`, `video.failed`).
//! - [`signature`]: `X-Webhook-Signature`, and how a receiver verifies it.
//! - the POST itself goes through the origin's one client, [`crate::http_client`].
//! - [`delivery`]: one event's attempts with exponential backoff.
//! - here: the bounded queue and the dispatcher that keep deliveries off the workers, and
//!   the bounded drain at shutdown. Each event's sender hears how its delivery ended.
//!
//! What to send comes from the job store's outbox ([`crate::jobs::announcer`]): an outcome is
//! recorded with its announcement, which stays until a delivery ends (delivered, or given up
//! after every attempt), so a process that dies, or stops, before that loses nothing: another
//! one delivers it again, with the same event id.

pub mod delivery;
pub mod event;
pub mod settings;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::http_client::{Client, ClientError};
use crate::metrics::Metrics;
pub use delivery::Outcome;
use delivery::{until_abandoned, Deliverer};
use event::{Event, EventKind};
use settings::WebhookSettings;

/// Hands events to the dispatcher; cheap to clone, never waits.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<Queued>,
    metrics: Option<Arc<Metrics>>,
    window: Duration,
    concurrency: usize,
}

/// An event waiting for its delivery, and who hears when that starts and how it ended.
struct Queued {
    event: Event,
    started: oneshot::Sender<()>,
    ended: oneshot::Sender<Outcome>,
}

/// What the caller of [`Webhooks::notify`] hears of its event. Either answer is an error if
/// the event never got that far (the queue was full, or the process stopped first).
pub struct Delivery {
    /// Its first attempt is about to be made.
    pub started: oneshot::Receiver<()>,
    /// How its delivery ended.
    pub ended: oneshot::Receiver<Outcome>,
}

impl Webhooks {
    /// Queues `event` for delivery. A full queue (the receiver has been failing for a while)
    /// drops it rather than hold up the caller: both answers are then errors.
    pub fn notify(&self, event: Event) -> Delivery {
        let (started, start) = oneshot::channel();
        let (ended, end) = oneshot::channel();
        let delivery = Delivery {
            started: start,
            ended: end,
        };
        let queued = Queued {
            event,
            started,
            ended,
        };
        let (event, reason) = match self.tx.try_send(queued) {
            Ok(()) => return delivery,
            Err(TrySendError::Full(q)) => (q.event, "queue full"),
            Err(TrySendError::Closed(q)) => (q.event, "shutting down"),
        };
        tracing::warn!(
            webhook.id = %event.id,
            webhook.event = event.event.as_str(),
            video.id = %event.video_id,
            reason,
            "webhook dropped"
        );
        count(self.metrics.as_deref(), event.event, "dropped");
        delivery
    }

    /// Deliveries made at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Events the queue still takes.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// The longest one delivery can take once started: every attempt at its time limits and
    /// every wait between them.
    pub fn delivery_window(&self) -> Duration {
        self.window
    }
}

/// The background side: owns the queue; [`Dispatcher::shutdown`] drains it.
pub struct Dispatcher {
    close: oneshot::Sender<()>,
    abandon: watch::Sender<bool>,
    task: JoinHandle<()>,
    grace: Duration,
}

/// Starts delivering to the configured receiver.
pub fn start(
    settings: &WebhookSettings,
    metrics: Option<Arc<Metrics>>,
) -> Result<(Webhooks, Dispatcher), ClientError> {
    Ok(start_with(settings, client(settings)?, metrics))
}

/// The client for the configured receiver (Mozilla roots).
pub fn client(settings: &WebhookSettings) -> Result<Client, ClientError> {
    Client::new(&settings.target, settings.connect_timeout, settings.timeout)
}

/// [`start`] with a given client (tests trust their own CA).
pub fn start_with(
    settings: &WebhookSettings,
    client: Client,
    metrics: Option<Arc<Metrics>>,
) -> (Webhooks, Dispatcher) {
    let (tx, rx) = mpsc::channel(settings.queue);
    let window = settings.delivery_window();
    let (close, closed) = oneshot::channel();
    let (abandon, abandoned) = watch::channel(false);
    let deliverer = Arc::new(Deliverer {
        client,
        key: settings.key.clone(),
        backoff: settings.backoff,
    });
    let task = tokio::spawn(dispatch(
        rx,
        closed,
        abandoned,
        deliverer,
        settings.concurrency,
        metrics.clone(),
    ));
    let t = &settings.target;
    tracing::info!(host = %t.host, port = t.port, https = t.https, "webhooks enabled");
    (
        Webhooks {
            tx,
            metrics,
            window,
            concurrency: settings.concurrency,
        },
        Dispatcher {
            close,
            abandon,
            task,
            grace: settings.shutdown_grace,
        },
    )
}

impl Dispatcher {
    /// Takes no new events, gives the queued and in-flight ones `shutdown_grace_secs` (their
    /// retries included), then abandons what is left (logged and counted).
    pub async fn shutdown(self) {
        let Dispatcher {
            close,
            abandon,
            mut task,
            grace,
        } = self;
        let _ = close.send(());
        if tokio::time::timeout(grace, &mut task).await.is_ok() {
            return;
        }
        let _ = abandon.send(true);
        // Abandoned deliveries stop at their next await point; this bound only guards against
        // a task that never yields.
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// Takes events off the queue and runs each delivery in its own task, at most `concurrency`
/// at once, so one slow receiver response never delays the next event's first attempt
/// beyond the free slots.
async fn dispatch(
    mut rx: mpsc::Receiver<Queued>,
    mut close: oneshot::Receiver<()>,
    abandon: watch::Receiver<bool>,
    deliverer: Arc<Deliverer>,
    concurrency: usize,
    metrics: Option<Arc<Metrics>>,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut watch_abandon = abandon.clone();
    let mut closing = false;
    loop {
        let next = tokio::select! {
            event = rx.recv() => event,
            // A dropped Dispatcher closes too.
            _ = &mut close, if !closing => {
                // Nothing new from now on; what is already queued is still delivered.
                rx.close();
                closing = true;
                continue;
            }
        };
        let Some(Queued {
            event,
            started,
            ended,
        }) = next
        else {
            break;
        };
        let slot = tokio::select! {
            // Once abandoned, nothing more starts, even if a slot is free as well.
            biased;
            () = until_abandoned(&mut watch_abandon) => {
                give_up_queued(&event, metrics.as_deref());
                let _ = ended.send(Outcome::Abandoned);
                break;
            }
            slot = slots.clone().acquire_owned() => slot,
        };
        // The semaphore is never closed; an error would only mean no slot to run in.
        let Ok(slot) = slot else { break };
        let _ = started.send(());
        let (deliverer, metrics, abandon) = (deliverer.clone(), metrics.clone(), abandon.clone());
        tokio::spawn(async move {
            let outcome = deliverer.deliver(&event, abandon).await;
            count(metrics.as_deref(), event.event, outcome.as_str());
            let _ = ended.send(outcome);
            drop(slot);
        });
    }
    while let Ok(Queued { event, ended, .. }) = rx.try_recv() {
        give_up_queued(&event, metrics.as_deref());
        let _ = ended.send(Outcome::Abandoned);
    }
    // Every slot back means every delivery has ended.
    let _ = slots.acquire_many(concurrency as u32).await;
}

fn give_up_queued(event: &Event, metrics: Option<&Metrics>) {
    tracing::warn!(
        webhook.id = %event.id,
        webhook.event = event.event.as_str(),
        video.id = %event.video_id,
        "webhook abandoned at shutdown before its first attempt"
    );
    count(metrics, event.event, Outcome::Abandoned.as_str());
}

fn count(metrics: Option<&Metrics>, event: EventKind, outcome: &str) {
    if let Some(m) = metrics {
        m.webhook_deliveries
            .with_label_values(&[event.as_str(), outcome])
            .inc();
    }
}

#[cfg(test)]
mod tests;
