//! Bounded polling: tests wait for a condition, never for a fixed amount of time.

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
