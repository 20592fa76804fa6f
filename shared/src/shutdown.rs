//! The signal both servers drain on.

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
///
/// If a handler cannot be installed the future never resolves for that signal, and the error is
/// logged: a server that cannot hear SIGTERM still serves, and SIGKILL still stops it.
pub async fn terminate_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::error!(%error, "cannot install SIGTERM handler");
            None
        }
    };
    let term = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received, draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, draining"),
    }
}
