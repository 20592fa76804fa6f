//! Progress: ffmpeg's `-progress` key=value stream turned into one job-wide percentage, and
//! the throttle that decides which changes are announced and which are persisted (seed 003:
//! an event every 2 %, a write every 10 %, the thumbnail at once).

/// Job stages and their share of the whole job, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Queued,
    Probe,
    Thumbnail,
    Encode,
    Publish,
    Done,
}

impl Stage {
    /// `(start, end)` percentages of the job this stage covers.
    pub fn span(self) -> (f64, f64) {
        match self {
            Stage::Queued => (0.0, 0.0),
            Stage::Probe => (0.0, 2.0),
            Stage::Thumbnail => (2.0, 5.0),
            Stage::Encode => (5.0, 97.0),
            Stage::Publish => (97.0, 100.0),
            Stage::Done => (100.0, 100.0),
        }
    }

    /// Overall percent for `fraction` (0..=1) of this stage.
    pub fn overall(self, fraction: f64) -> f64 {
        let (a, b) = self.span();
        a + (b - a) * fraction.clamp(0.0, 1.0)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Probe => "probe",
            Stage::Thumbnail => "thumbnail",
            Stage::Encode => "encode",
            Stage::Publish => "publish",
            Stage::Done => "done",
        }
    }
}

/// Parses one line of `-progress` output; returns the encoded time in seconds when the line
/// carries it. ffmpeg writes `out_time_us` (and `out_time_ms`, which despite its name is also
/// microseconds) and `out_time=HH:MM:SS.micro`; before the first frame they may be `N/A`.
pub fn out_time_secs(line: &str) -> Option<f64> {
    let (key, value) = line.trim().split_once('=')?;
    match key {
        "out_time_us" | "out_time_ms" => value
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(|us| us as f64 / 1e6),
        "out_time" => {
            let mut parts = value.split(':');
            let h: f64 = parts.next()?.parse().ok()?;
            let m: f64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            (h >= 0.0).then_some(h * 3600.0 + m * 60.0 + s)
        }
        _ => None,
    }
}

/// Whether a `-progress` line marks the end of the run.
pub fn is_end(line: &str) -> bool {
    line.trim() == "progress=end"
}

/// What to do with a new progress value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttled {
    /// Send a live event (>= 2 points since the last one).
    pub announce: bool,
    /// Write it to the job store (>= 10 points since the last write).
    pub persist: bool,
}

/// Seed 003's throttle. Percentages only move forward.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    announced: f64,
    persisted: f64,
}

impl Throttle {
    pub const ANNOUNCE_STEP: f64 = 2.0;
    pub const PERSIST_STEP: f64 = 10.0;

    /// Classifies `percent`; 100 is always announced and persisted.
    pub fn update(&mut self, percent: f64) -> Throttled {
        let done = percent >= 100.0;
        let mut t = Throttled::default();
        if done || percent - self.announced >= Self::ANNOUNCE_STEP {
            self.announced = percent;
            t.announce = true;
        }
        if done || percent - self.persisted >= Self::PERSIST_STEP {
            self.persisted = percent;
            t.persist = true;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_progress_lines() {
        assert_eq!(out_time_secs("out_time_us=15000000"), Some(15.0));
        assert_eq!(out_time_secs("out_time_ms=1500000"), Some(1.5));
        assert_eq!(out_time_secs("out_time=00:01:02.500000"), Some(62.5));
        assert_eq!(out_time_secs("out_time=N/A"), None);
        assert_eq!(out_time_secs("out_time_us=N/A"), None);
        assert_eq!(out_time_secs("frame=10"), None);
        assert!(is_end("progress=end\n"));
        assert!(!is_end("progress=continue"));
    }

    #[test]
    fn stages_cover_the_job_in_order() {
        assert_eq!(Stage::Probe.overall(0.0), 0.0);
        assert_eq!(Stage::Encode.overall(0.5), 51.0);
        assert_eq!(Stage::Publish.overall(1.0), 100.0);
        assert_eq!(Stage::Encode.overall(7.0), 97.0, "clamped");
    }

    #[test]
    fn throttles_like_seed_003() {
        let mut t = Throttle::default();
        let steps: Vec<(f64, bool, bool)> =
            [1.0, 2.0, 3.5, 4.1, 9.9, 10.0, 12.0, 19.9, 20.0, 100.0]
                .into_iter()
                .map(|p| {
                    let r = t.update(p);
                    (p, r.announce, r.persist)
                })
                .collect();
        assert_eq!(
            steps,
            [
                (1.0, false, false),
                (2.0, true, false),
                (3.5, false, false),
                (4.1, true, false),
                (9.9, true, false),
                (10.0, false, true),
                (12.0, true, false),
                (19.9, true, false),
                (20.0, false, true),
                (100.0, true, true),
            ]
        );
    }
}
