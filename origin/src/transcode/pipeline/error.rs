//! Why a job failed: the full detail for the log, a short public reason for the owner.

use std::time::Duration;

use crate::transcode::probe::ProbeError;
use crate::transcode::publish;

/// Why a job failed. `Display` is the full detail, for the log; what the video's owner is
/// shown is [`PipelineError::public_message`].
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The source is not a usable video; retrying cannot help.
    #[error("{0}")]
    Invalid(#[from] ProbeError),
    /// The source passed its probe at upload but not this one: ffprobe could not run, timed
    /// out, or could not read it (a bucket's presigned URL failing, a machine out of
    /// processes). Most likely the machine or the bucket, not the file: another attempt may
    /// succeed.
    #[error("probing again: {0}")]
    Unprobed(ProbeError),
    /// `at`: how far into the source the encode had come (seconds), when known.
    #[error("ffmpeg failed ({status}) at {at:?} s: {stderr}")]
    Ffmpeg {
        status: String,
        stderr: String,
        at: Option<f64>,
    },
    #[error("ffmpeg made no progress for {after:?} (at {at:?} s) and was killed")]
    Stalled { after: Duration, at: Option<f64> },
    /// The source ran on past the duration it declares, the one the limits were checked
    /// against; the encode was stopped there. Retrying cannot help.
    #[error("the source declares {declared:.1} s but the encode reached {reached:.1} s")]
    Overrun { declared: f64, reached: f64 },
    #[error("cancelled")]
    Cancelled,
    #[error("output failed verification: {0}")]
    Verify(#[from] publish::VerifyError),
    #[error("publishing while encoding: {0}")]
    Growing(#[from] crate::transcode::growing::GrowingError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The media store (a bucket) failed; another attempt may find it back.
    #[error("media store: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

impl PipelineError {
    /// A job's probe of its source, which was accepted at upload: a failure to run or read
    /// it may pass, a limit or a format does not.
    pub fn job_probe(e: ProbeError) -> Self {
        match e {
            ProbeError::Spawn(_) | ProbeError::Unreadable(_) => Self::Unprobed(e),
            other => Self::Invalid(other),
        }
    }

    /// The same failure, for a run whose clock started `offset` seconds into the source.
    pub fn later_by(self, offset: f64) -> Self {
        let shift = |at: Option<f64>| at.map(|t| t + offset);
        match self {
            PipelineError::Ffmpeg { status, stderr, at } => PipelineError::Ffmpeg {
                status,
                stderr,
                at: shift(at),
            },
            PipelineError::Stalled { after, at } => PipelineError::Stalled {
                after,
                at: shift(at),
            },
            PipelineError::Overrun { declared, reached } => PipelineError::Overrun {
                declared: declared + offset,
                reached: reached + offset,
            },
            other => other,
        }
    }

    /// What the video's owner is told: a short reason without server paths or ffmpeg's own
    /// output (those go to the log with the video id).
    pub fn public_message(&self) -> String {
        let at = |at: &Option<f64>| at.map_or(String::new(), |t| format!(" at {t:.1} s"));
        match self {
            PipelineError::Invalid(e) | PipelineError::Unprobed(e) => e.to_string(),
            PipelineError::Ffmpeg { stderr, at: t, .. } if decode_failure(stderr) => {
                format!("the video stream could not be decoded{}", at(t))
            }
            PipelineError::Ffmpeg { at: t, .. } => format!("encoding failed{}", at(t)),
            PipelineError::Stalled { at: t, .. } => {
                format!(
                    "processing stopped making progress{} and was stopped",
                    at(t)
                )
            }
            PipelineError::Overrun { declared, .. } => format!(
                "the video runs longer than the {declared:.0} s it declares, and was stopped"
            ),
            PipelineError::Cancelled => "cancelled".into(),
            PipelineError::Verify(e) => format!("the encoded output is incomplete: {e}"),
            PipelineError::Io(_) | PipelineError::Growing(_) => {
                "an internal error stopped processing".into()
            }
            PipelineError::Storage(_) => "the media store could not be written".into(),
        }
    }

    /// Whether another attempt may succeed. A source that probes but encodes short (a
    /// truncated file with its index first) fails verification the same way every time.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            PipelineError::Invalid(_)
                | PipelineError::Cancelled
                | PipelineError::Verify(_)
                | PipelineError::Overrun { .. }
        )
    }
}

/// Whether an encode at `reached` seconds has gone past a source that declares `declared`
/// seconds: by more than containers' usual disagreement between their header and their
/// streams' ends.
pub fn overran(declared: f64, reached: f64) -> bool {
    declared > 0.0 && reached > declared * 1.05 + 2.0
}

/// Whether ffmpeg's error output says the source itself could not be read.
fn decode_failure(stderr: &str) -> bool {
    [
        "Invalid data",
        "Error while decoding",
        "corrupt",
        "partial file",
        "End of file",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At job time the source has passed a probe once: a probe that cannot run or read it is
    /// tried again, one that finds the file outside a limit or the allow-list is not.
    #[test]
    fn a_failed_probe_at_job_time_is_retried_unless_the_file_is_at_fault() {
        let again = [
            ProbeError::Spawn("Resource temporarily unavailable".into()),
            ProbeError::Unreadable("timed out after 60 s".into()),
        ];
        for e in again {
            let e = PipelineError::job_probe(e);
            assert!(e.retryable(), "{e}");
        }
        let final_ = [
            ProbeError::Limit("longer than 4 hours".into()),
            ProbeError::Format("image2".into()),
            ProbeError::NoVideo,
        ];
        for e in final_ {
            let e = PipelineError::job_probe(e);
            assert!(!e.retryable(), "{e}");
        }
    }

    #[test]
    fn an_overrun_allows_for_containers_that_disagree_a_little() {
        assert!(!overran(0.0, 100.0), "no declared duration, no check");
        assert!(!overran(10.0, 12.4));
        assert!(overran(10.0, 12.6));
        assert!(!overran(3600.0, 3600.0 * 1.05 + 1.0));
        assert!(overran(1.0, 3.1));
    }
}
