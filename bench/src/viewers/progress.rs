//! The live progress line: once per interval, what the last interval did and the totals so far.
//! On a terminal it rewrites one line; into a file or pipe it appends one line per interval.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::Live;
use super::Shared;

/// Prints progress until aborted (the run aborts it when every viewer is done).
pub async fn report(shared: Arc<Shared>, every: Duration) {
    let live = &shared.live;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let (mut last_requests, mut last_bytes) = (0u64, 0u64);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let requests = Live::get(&live.requests);
        let bytes = Live::get(&live.bytes);
        let secs = every.as_secs_f64();
        let line = format!(
            "[{:>5.1}s] viewers {:>4}  {:>7.0} req/s  {:>7.1} Mbit/s  requests {}  segments {}  \
             410 {}  403 {}  stalls {}  errors {}",
            started.elapsed().as_secs_f64(),
            Live::get(&live.viewers),
            (requests - last_requests) as f64 / secs,
            (bytes - last_bytes) as f64 * 8.0 / 1e6 / secs,
            requests,
            Live::get(&live.segments),
            Live::get(&live.expired),
            Live::get(&live.forbidden),
            Live::get(&live.stalls),
            Live::get(&live.errors),
        );
        (last_requests, last_bytes) = (requests, bytes);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the run.
        let _ = if terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}
