//! Stopping things, one primitive for both services.
//!
//! - [`Terminate`]: SIGTERM/SIGINT, the start of a drain.
//! - [`channel`]: a one-way switch ([`Trigger`] fires it, any number of [`Switch`]es wait on it)
//!   used for every "stop now" inside the services: stop accepting, end long-lived responses,
//!   stop claiming jobs, cancel an encode.
//! - [`drain`]: serve a connection until the switch fires, then let it finish gracefully.

use std::future::Future;
use std::pin::Pin;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// SIGTERM and SIGINT handlers, installed when this is created: from then on those signals no
/// longer end the process at once but resolve [`Terminate::wait`].
///
/// Install it before announcing the listeners: a supervisor (or a test) that sends SIGTERM as
/// soon as it sees them must get a drain, not the default action's immediate death.
pub struct Terminate {
    term: Option<Signal>,
    int: Option<Signal>,
}

impl Terminate {
    /// Installs the handlers (inside a Tokio runtime). If one cannot be installed the error is
    /// logged and that signal is never waited for: a server that cannot hear SIGTERM still
    /// serves, and SIGKILL still stops it.
    pub fn install() -> Self {
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::error!(%error, signal = name, "cannot install signal handler");
                None
            }
        };
        Self {
            term: install(SignalKind::terminate(), "SIGTERM"),
            int: install(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn wait(mut self) {
        async fn recv(s: Option<&mut Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(self.term.as_mut()) => tracing::info!("SIGTERM received, draining"),
            _ = recv(self.int.as_mut()) => tracing::info!("SIGINT received, draining"),
        }
    }
}

/// Fires a [`Switch`]. Once fired it stays fired. Clones fire the same switches.
#[derive(Debug, Clone)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for its [`Trigger`]. Cheap to clone. If the trigger is dropped without firing, the
/// switch never fires: a task whose canceller went away keeps running rather than stopping.
#[derive(Debug, Clone)]
pub struct Switch(watch::Receiver<bool>);

/// A new switch, not fired.
pub fn channel() -> (Trigger, Switch) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Switch(rx))
}

impl Trigger {
    /// Fires every switch of this trigger (idempotent).
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Another switch of this trigger.
    pub fn switch(&self) -> Switch {
        Switch(self.0.subscribe())
    }
}

impl Switch {
    /// A switch that never fires.
    pub fn never() -> Self {
        channel().1
    }

    /// Resolves once fired (never, if the trigger went away unfired).
    pub async fn fired(&mut self) {
        if self.0.wait_for(|&v| v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// Runs `connection` until it ends or `switch` fires; then calls `begin` (which asks it to
/// finish gracefully: no new requests, in-flight ones complete) and waits for it to end.
pub async fn drain<C: Future>(
    mut connection: Pin<&mut C>,
    mut switch: Switch,
    begin: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    tokio::select! {
        out = connection.as_mut() => return out,
        () = switch.fired() => {}
    }
    begin(connection.as_mut());
    connection.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn switches_fire_once_and_dropped_triggers_never_fire() {
        let (trigger, mut switch) = channel();
        let other = trigger.switch();
        assert!(!switch.is_fired());
        trigger.fire();
        trigger.fire();
        switch.fired().await;
        assert!(other.is_fired());
        let (dropped, mut orphan) = channel();
        drop(dropped);
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), orphan.fired()).await;
        assert!(waited.is_err(), "an unfired, dropped trigger never fires");
    }

    #[tokio::test]
    async fn drain_lets_the_connection_finish() {
        let (trigger, switch) = channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u8>();
        let conn = async move { done_rx.await.unwrap_or(0) };
        let conn = std::pin::pin!(conn);
        trigger.fire();
        let mut begun = false;
        let out = drain(conn, switch, |_| {
            begun = true;
            let _ = done_tx.send(7);
        })
        .await;
        assert_eq!(out, 7);
        assert!(begun);
    }
}
