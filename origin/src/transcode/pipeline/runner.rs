//! Running ffmpeg for the pipeline: progress from `-progress pipe:1`, stall detection,
//! cancellation, and the last lines of stderr when it fails.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::error::overran;
use super::{Cancel, Events, Pipeline, PipelineError};
use crate::transcode::child;
use crate::transcode::progress::{self, Stage};

impl Pipeline {
    /// [`Self::run_ffmpeg`] for a run that starts `offset` seconds into the source.
    pub(super) async fn run_ffmpeg_from(
        &self,
        args: Vec<std::ffi::OsString>,
        offset: f64,
        duration: f64,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        self.run_span(args, Span { duration, offset }, events, cancel)
            .await
            .map_err(|e| e.later_by(offset))
    }

    /// Runs ffmpeg, turning `-progress` output into job progress over `duration` (0: none),
    /// killing it when it stalls, when the job is cancelled, or when it runs well past
    /// `duration`: the limits were checked against the duration the source declares, and a
    /// file whose header lies must not buy more encoding than they allow.
    pub(super) async fn run_ffmpeg(
        &self,
        args: Vec<std::ffi::OsString>,
        duration: f64,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        let span = Span {
            duration,
            offset: 0.0,
        };
        self.run_span(args, span, events, cancel).await
    }

    /// Runs ffmpeg over `span` of the source: progress and the overrun check are both in the
    /// source's time.
    async fn run_span(
        &self,
        args: Vec<std::ffi::OsString>,
        span: Span,
        events: &dyn Events,
        cancel: &mut Cancel,
    ) -> Result<(), PipelineError> {
        let mut command = tokio::process::Command::new(&self.settings.ffmpeg);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = child::spawn(&mut command)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr"))?;
        let stderr_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf).await;
            buf
        });
        let mut lines = BufReader::new(stdout).lines();
        let stall = self.settings.stall_timeout;
        // Each `-progress` block states the time three ways (out_time_us, out_time_ms,
        // out_time); it is reported once, when the block ends with its `progress=` line.
        let mut out_time = None;
        // Where the encode was when it failed, for the uploader ("could not be decoded at 12.4 s").
        let mut reached = None;
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout(stall, lines.next_line()) => r,
                () = cancel.fired() => {
                    let _ = child.kill().await;
                    return Err(PipelineError::Cancelled);
                }
            };
            match next {
                Err(_) => {
                    let _ = child.kill().await;
                    return Err(PipelineError::Stalled {
                        after: stall,
                        at: reached,
                    });
                }
                Ok(Ok(Some(line))) => {
                    if let Some(t) = progress::out_time_secs(&line) {
                        if span.overran(t) {
                            let _ = child.kill().await;
                            // In this run's time: `later_by` puts a resumed run's in the source's.
                            return Err(PipelineError::Overrun {
                                declared: span.duration - span.offset,
                                reached: t,
                            });
                        }
                        out_time = Some(t);
                        reached = Some(t);
                    } else if line.trim_start().starts_with("progress=") {
                        if let Some(fraction) = out_time.take().and_then(|t| span.fraction(t)) {
                            events.progress(Stage::Encode.overall(fraction));
                        }
                    }
                }
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        let status = tokio::time::timeout(stall, child.wait())
            .await
            .map_err(|_| PipelineError::Stalled {
                after: stall,
                at: reached,
            })??;
        let stderr = stderr_task.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        Err(PipelineError::Ffmpeg {
            status: status.to_string(),
            stderr: crate::transcode::input::redact_queries(
                &tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            ),
            at: reached,
        })
    }
}

/// Where a run's output time falls in the source: a resumed run's clock starts at `offset`.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// The whole source's declared duration (0: no progress, not checked).
    duration: f64,
    offset: f64,
}

impl Span {
    /// How far into the whole source output time `t` of this run is, as a fraction.
    fn fraction(self, t: f64) -> Option<f64> {
        (self.duration > 0.0).then(|| (self.offset + t) / self.duration)
    }

    /// Whether output time `t` of this run is past the source's declared end: judged on the
    /// whole source, so a resumed run gets the same allowance a fresh one would.
    fn overran(self, t: f64) -> bool {
        overran(self.duration, self.offset + t)
    }
}

/// For runs whose progress nobody follows (the poster).
pub(super) struct NoEvents;

impl Events for NoEvents {
    fn stage(&self, _: Stage) {}
    fn progress(&self, _: f64) {}
    fn thumbnail_ready(&self) {}
}

#[cfg(test)]
mod tests {
    use super::Span;

    #[test]
    fn a_resumed_run_is_judged_on_the_whole_source() {
        let fresh = Span {
            duration: 3600.0,
            offset: 0.0,
        };
        let resumed = Span {
            duration: 3600.0,
            offset: 3000.0,
        };
        // 4% longer than declared: within the allowance, fresh or resumed.
        assert!(!fresh.overran(3744.0));
        assert!(!resumed.overran(744.0));
        assert!(resumed.overran(800.0));
        // Resumed past the declared end (within the allowance): still only the allowance.
        let late = Span {
            duration: 3600.0,
            offset: 3650.0,
        };
        assert!(!late.overran(10.0));
        assert!(
            !Span {
                duration: 0.0,
                offset: 0.0
            }
            .overran(1e9),
            "not checked"
        );
    }

    #[test]
    fn a_resumed_runs_progress_is_over_the_whole_source() {
        let resumed = Span {
            duration: 100.0,
            offset: 60.0,
        };
        assert_eq!(resumed.fraction(20.0), Some(0.8));
        let unknown = Span {
            duration: 0.0,
            offset: 0.0,
        };
        assert_eq!(
            unknown.fraction(5.0),
            None,
            "no progress without a duration"
        );
    }
}
