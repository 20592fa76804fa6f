//! Bounded polling: tests wait for a condition, never for a fixed amount of time.

use std::future::Future;
use std::thread;
use std::time::{Duration, Instant};

/// How often a condition is re-checked. Short enough not to slow tests down, long enough not to
/// spin a core that the servers under test need.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Re-evaluates `condition` until it holds or `timeout` elapses; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// [`wait_until`] inside a Tokio runtime: awaits `condition` until it holds or `timeout`
/// elapses, sleeping on the runtime's timer in between (a blocking sleep would stall the tasks
/// the condition waits for). Returns whether it held.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_at_the_deadline() {
        let mut calls = 0;
        assert!(!wait_until(Duration::from_millis(50), || {
            calls += 1;
            false
        }));
        assert!(calls >= 2, "re-checked until the deadline ({calls})");
        assert!(wait_until(Duration::ZERO, || true));
    }

    #[tokio::test(start_paused = true)]
    async fn async_waits_on_the_runtime_timer() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let held = wait_until_async(Duration::from_secs(60), || {
            calls += 1;
            std::future::ready(calls == 5)
        })
        .await;
        assert!(held);
        assert_eq!(
            started.elapsed(),
            POLL_INTERVAL * 4,
            "four sleeps, paused time"
        );
        assert!(!wait_until_async(Duration::from_secs(1), || std::future::ready(false)).await);
    }
}
