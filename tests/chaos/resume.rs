//! No work lost and none done twice: each takeover resumed from the killed attempt's
//! checkpoint, published its bytes unchanged, and every video plays through the edge with the
//! seam on the segment grid.

use std::fs;
use std::time::Duration;

use e2e::metrics;
use e2e::origin::play_with_ffmpeg;

use crate::media::{decrypt, keyframe_times, playlist_segments, segment_name, Orphan};
use crate::platform::lease_losses;
use crate::{Chaos, CLIP_SECS, PLAY_TIMEOUT, RUNGS, SEAM_TOLERANCE, SEGMENT_SECS};

impl Chaos {
    /// No rung was encoded twice after its checkpoint, and the reused segments were published
    /// as the killed attempt wrote them.
    pub fn check_resumed_from_checkpoints(&self) {
        for o in &self.orphans {
            self.check_resumed(o);
            self.check_published_bytes(o);
        }
    }

    /// `o`'s job records `resumed:<k>` in Redis (the API does not show checkpoints), the
    /// survivor logged resuming it at segment `k`, every ladder ffmpeg for it after the kill was
    /// the survivor's and started at segment `k`, the old segments were hard-linked (not
    /// re-encoded) and the killed attempt's work directory is gone.
    fn check_resumed(&self, o: &Orphan) {
        let survivor = self.survivor_worker();
        let k = o.complete;
        let checkpoints = self
            .p
            .job_field(&o.video, "checkpoints")
            .unwrap_or_else(|| panic!("{}: no checkpoints field in Redis", o.video));
        let checkpoints: Vec<String> = serde_json::from_str(&checkpoints)
            .unwrap_or_else(|e| panic!("checkpoints {checkpoints:?}: {e}"));
        assert!(
            checkpoints.contains(&format!("resumed:{k}")),
            "{}: the killed attempt left {k} complete segments per rung, checkpoints are \
             {checkpoints:?}",
            o.video
        );
        assert!(
            survivor.wait_for_log(
                &[
                    "resuming the encode after an earlier attempt",
                    &o.video,
                    &format!("segment={k}")
                ],
                Duration::ZERO
            ),
            "the survivor did not log resuming {} at segment {k}\n{}",
            o.video,
            survivor.diagnostics()
        );
        assert!(
            !o.encodes.is_empty(),
            "{}: no ladder encode seen after the kill",
            o.video
        );
        let offset = format!("{:.3}", f64::from(k * SEGMENT_SECS));
        for e in o.encodes.values() {
            assert_eq!(
                e.parent,
                Some(self.survivor_pid),
                "{}: a ladder encode after the kill not run by the survivor: {e:?}",
                o.video
            );
            assert!(
                e.has("-ss", &offset) && e.has("-start_number", &k.to_string()),
                "{}: a ladder encode after the kill does not start at segment {k} ({offset} s): \
                 {:?}",
                o.video,
                e.args
            );
            assert_ne!(e.work, o.work, "a new attempt has its own work directory");
        }
        assert!(
            o.adopted,
            "{}: the killed attempt's segments were never seen hard-linked into the new attempt",
            o.video
        );
        assert!(
            !o.work.exists(),
            "{}: the killed attempt's work directory {} was left behind after publishing",
            o.video,
            o.work.display()
        );
    }

    /// The published first `k` segments of every rung are the killed attempt's bytes,
    /// encrypted.
    fn check_published_bytes(&self, o: &Orphan) {
        let data = &self.p.data;
        for rung in RUNGS {
            let key = fs::read(data.join("keys").join(&o.video).join(format!("{rung}.key")))
                .expect("the rung's key");
            for i in 0..o.complete {
                let published = data
                    .join("hls")
                    .join(&o.video)
                    .join(rung)
                    .join(segment_name(i));
                let bytes =
                    fs::read(&published).unwrap_or_else(|e| panic!("{}: {e}", published.display()));
                let plain = decrypt(&key, u64::from(i), &bytes)
                    .unwrap_or_else(|| panic!("{} does not decrypt", published.display()));
                assert!(
                    plain == o.segments[&(rung.to_owned(), i)],
                    "{}: published {rung}/{} differs from what the killed attempt wrote",
                    o.video,
                    segment_name(i)
                );
            }
        }
    }

    /// Every video plays end to end through the edge (ffmpeg as the client, without a
    /// complaint unless a lease was lost), its playlists list every segment in order, and each
    /// resumed one has its keyframes on one grid across the seam.
    pub fn check_playback(&mut self) {
        let edge_ok = |text: &str| {
            metrics::value(text, "edge_requests_total", &[("status_class", "2xx")]).unwrap_or(0.0)
        };
        let edge_before = edge_ok(&self.p.edge.metrics());
        let mut segments_total = 0;
        for id in &self.ids {
            segments_total += self.check_playlists(id);
            let url = self.p.master_url(&self.alice, id);
            let played = play_with_ffmpeg(&url, PLAY_TIMEOUT);
            let complaints = String::from_utf8_lossy(&played.stderr).trim().to_owned();
            assert!(
                played.status.success(),
                "ffmpeg could not play {id}: {}\n{complaints}\n{}",
                played.status,
                self.p.diagnostics()
            );
            let lost_lease = || lease_losses(self.survivor_worker(), id) > 0;
            let Some(i) = self.orphans.iter().position(|o| &o.video == id) else {
                // Never interrupted: the reference for what a clean playback prints.
                assert!(
                    complaints.is_empty() || lost_lease(),
                    "{id} (never interrupted) played with complaints:\n{complaints}"
                );
                continue;
            };
            let k = self.orphans[i].complete;
            assert!(
                complaints.is_empty() || lost_lease(),
                "{id} (resumed at segment {k}) played with complaints:\n{complaints}"
            );
            let seam_shift = check_seam(id, &url, k as usize);
            let o = &mut self.orphans[i];
            o.playback_complaints = complaints.lines().count();
            o.seam_shift = seam_shift;
        }
        let served = edge_ok(&self.p.edge.metrics()) - edge_before;
        assert!(
            served >= segments_total as f64,
            "ffmpeg fetched every segment ({segments_total}) from the edge, which served {served}"
        );
    }

    /// Every rung's published playlist of `id` lists its segments from 0 in order and covers
    /// the clip; returns how many segments they list in all.
    fn check_playlists(&self, id: &str) -> usize {
        let mut segments = 0;
        for rung in RUNGS {
            let text = fs::read_to_string(
                self.p
                    .data
                    .join("hls")
                    .join(id)
                    .join(rung)
                    .join("index.m3u8"),
            )
            .expect("published variant playlist");
            let (uris, covered) = playlist_segments(&text);
            let expected: Vec<String> = (0..uris.len() as u32).map(segment_name).collect();
            assert_eq!(uris, expected, "{id}/{rung}: segments in order\n{text}");
            assert!(
                text.contains("#EXT-X-MEDIA-SEQUENCE:0"),
                "{id}/{rung}\n{text}"
            );
            assert!(
                (covered - f64::from(CLIP_SECS)).abs() < 0.5,
                "{id}/{rung} covers {covered} s of {CLIP_SECS} s\n{text}"
            );
            segments += uris.len();
        }
        segments
    }
}

/// The seam of `id`, resumed at segment `k`: the keyframes of the first video stream, one per
/// segment, sit on one grid on each side, and the resumed part's grid is the reused part's
/// (within [`SEAM_TOLERANCE`]). Returns the resumed part's shift, seconds.
fn check_seam(id: &str, url: &str, k: usize) -> f64 {
    let keyframes = keyframe_times(url);
    assert_eq!(
        keyframes.len(),
        CLIP_SECS as usize,
        "{id}: one keyframe per segment: {keyframes:?}"
    );
    let drift = |i: usize| keyframes[i] - keyframes[0] - (i as f64) * f64::from(SEGMENT_SECS);
    for i in 0..keyframes.len() {
        let (reference, side) = if i < k {
            (0.0, "reused")
        } else {
            (drift(k), "resumed")
        };
        assert!(
            (drift(i) - reference).abs() < 0.001,
            "{id}: keyframe {i} ({side} part) off its grid: {keyframes:?}"
        );
    }
    let seam_shift = drift(k);
    assert!(
        seam_shift.abs() <= SEAM_TOLERANCE,
        "{id}: the resumed part is shifted by {:.1} ms at segment {k}: {keyframes:?}",
        seam_shift * 1000.0
    );
    seam_shift
}
