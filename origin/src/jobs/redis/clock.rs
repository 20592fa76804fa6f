//! Redis' clock for the times the scripts compare. Workers on several machines judge each
//! other's leases by their expiry times, so they must agree on what time it is: a worker whose
//! clock ran 40 s ahead would take over leases that are still live, and two attempts would
//! publish one video at once. Each store reads Redis' `TIME` once a minute and moves its
//! callers' times (taken from this machine's clock) by the difference.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a measured difference is trusted: clocks are stepped by NTP now and then.
const REMEASURE: Duration = Duration::from_secs(60);
/// A difference larger than this is worth a warning: the machine's clock is not kept.
const WARN_OVER_SECS: i64 = 2;

pub(super) struct Clock {
    /// Redis' time minus this machine's, in whole seconds, and when it was measured (`None`
    /// before the first time: 0 until then).
    measured: Mutex<(i64, Option<Instant>)>,
    /// This machine's unix time in seconds (tests move it).
    local: fn() -> f64,
}

impl Clock {
    pub(super) fn new(local: fn() -> f64) -> Self {
        Self {
            measured: Mutex::new((0, None)),
            local,
        }
    }

    pub(super) fn local(&self) -> f64 {
        (self.local)()
    }

    fn measured(&self) -> (i64, Option<Instant>) {
        *self.measured.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The measured difference, unless it is due to be measured again.
    pub(super) fn offset(&self) -> Option<i64> {
        let (offset, at) = self.measured();
        at.filter(|at| at.elapsed() < REMEASURE).map(|_| offset)
    }

    /// The last measured difference, however old (0 before the first).
    pub(super) fn last(&self) -> i64 {
        self.measured().0
    }

    /// Records Redis' time `redis` (seconds) read between this machine's `before` and `after`.
    pub(super) fn record(&self, redis: f64, before: f64, after: f64) -> i64 {
        let offset = offset_secs(redis, before, after);
        let previous = std::mem::replace(
            &mut *self.measured.lock().unwrap_or_else(|p| p.into_inner()),
            (offset, Some(Instant::now())),
        );
        if offset.abs() > WARN_OVER_SECS && offset != previous.0 {
            tracing::warn!(
                offset_secs = offset,
                "this machine's clock differs from Redis'; job times follow Redis'"
            );
        }
        offset
    }
}

/// Redis' time minus this machine's at the middle of the round trip, to the nearest second.
fn offset_secs(redis: f64, before: f64, after: f64) -> i64 {
    (redis - (before + after) / 2.0).round() as i64
}

/// This machine's unix time in seconds.
pub(super) fn system_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        assert_eq!(offset_secs(1_000.3, 1_000.0, 1_000.2), 0);
        assert_eq!(offset_secs(1_040.1, 1_000.0, 1_000.2), 40);
        assert_eq!(offset_secs(960.0, 1_000.0, 1_000.2), -40);
        let clock = Clock::new(|| 0.0);
        assert_eq!(clock.offset(), None, "not measured yet");
        clock.record(1_040.1, 1_000.0, 1_000.2);
        assert_eq!(clock.offset(), Some(40));
    }
}
