//! The signal both servers drain on.

use tokio::signal::unix::{signal, Signal, SignalKind};

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
