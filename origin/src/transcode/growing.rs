//! Publishing while the ladder encode runs (`transcode.publish_while_encoding`): a video can
//! be watched seconds after its upload, whatever its length, with standard HLS.
//!
//! ffmpeg writes each rung's segments whole (renamed into place) and an EVENT playlist listing
//! the segments it has closed. [`Growing::advance`] publishes what is new since its last call,
//! in an order that never shows anything incomplete:
//! 1. every rung's key, before its first segment (`<data>/keys`, never served by the edge);
//! 2. each new segment, encrypted (IV = its media sequence number) under a temporary name, then
//!    renamed into `<data>/hls/<video>/<rung>/`;
//! 3. the rung's playlist, EVENT with `#EXT-X-START:TIME-OFFSET=0`, written and renamed;
//! 4. once every rung has a segment, the master, with the rungs' configured rates as bandwidths
//!    (players pick a rung by them from the first request on).
//!
//! [`Growing::finish`] publishes the rest and replaces every playlist by its final VOD form and
//! the master by one with measured rates: exactly what the all-at-once path publishes.
//!
//! A resumed attempt (crash-resume) keeps what the dead attempt published, with its keys, and
//! continues from the next segment: no gap, nothing published twice.

use std::path::{Path, PathBuf};

use shared::media::{Layout, VideoId};

use super::encrypt::{self, ContentKey, Rates};
use super::ffmpeg::{MASTER, VARIANT};
use super::ladder::Rung;
use super::playlist::{self, Kind, Media, Segment};
use super::probe::{self, ProbeError};
use super::publish::RungCheck;
use super::renditions::Outputs;
use super::resume::{self, ResumePoint};

/// The published state of one rung.
struct RungState {
    rung: Rung,
    key: ContentKey,
    /// Published segments, in order.
    published: Vec<Segment>,
    /// Encrypted sizes of the segments published by this attempt (indexed like `published`;
    /// a resumed attempt reads the earlier ones from disk).
    sizes: Vec<Option<u64>>,
    codecs: Option<String>,
}

/// One job's publishing while it encodes.
pub struct Growing {
    layout: Layout,
    video: VideoId,
    ffprobe: PathBuf,
    segment_secs: u32,
    fps: f64,
    outputs: Outputs,
    /// Subtitle renditions published beside the media (complete from the start).
    subtitles: Vec<Media>,
    rungs: Vec<RungState>,
    master: bool,
    /// Whether this attempt continues what an earlier one published.
    continued: bool,
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum GrowingError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("probing a segment: {0}")]
    Probe(#[from] ProbeError),
    #[error("rung {rung}: {published} segments published, {verified} verified")]
    Mismatch {
        rung: String,
        published: usize,
        verified: usize,
    },
}

/// What an earlier attempt published that a new attempt continues ([`Growing::kept`]).
pub struct Kept(Vec<RungState>);

impl Growing {
    /// What an earlier attempt published, if an attempt starting at segment `resume_from`
    /// continues it: every rung has its key and at most `resume_from` published segments.
    /// `None`: the attempt starts over, and what was published must go.
    pub fn kept(
        layout: &Layout,
        video: &VideoId,
        outputs: &Outputs,
        resume_from: u32,
    ) -> Option<Kept> {
        if resume_from == 0 {
            return None;
        }
        let rungs = outputs.all();
        rungs
            .iter()
            .map(|rung| Self::published_rung(layout, video, rung, resume_from))
            .collect::<Option<Vec<_>>>()
            .map(Kept)
    }

    /// Prepares `video`'s published tree for an attempt: the `kept` publish is continued;
    /// without one the old tree is removed and every rung gets a fresh key.
    pub fn start(
        layout: &Layout,
        video: &VideoId,
        outputs: &Outputs,
        kept: Option<Kept>,
        ffprobe: &Path,
        segment_secs: u32,
        fps: f64,
    ) -> Result<Self, GrowingError> {
        let rungs = &outputs.all();
        let continued = kept.is_some();
        let states = match kept {
            Some(Kept(states)) => states,
            None => {
                remove_media(layout, video)?;
                let keys = layout.keys_dir(video);
                std::fs::create_dir_all(&keys)?;
                let mut states = Vec::with_capacity(rungs.len());
                for rung in rungs {
                    let key = ContentKey::generate();
                    write_atomically(&layout.key_file(video, &rung.name), &key.0)?;
                    states.push(RungState {
                        rung: rung.clone(),
                        key,
                        published: Vec::new(),
                        sizes: Vec::new(),
                        codecs: None,
                    });
                }
                states
            }
        };
        Ok(Self {
            master: layout.video_dir(video).join(MASTER).is_file(),
            layout: layout.clone(),
            video: video.clone(),
            ffprobe: ffprobe.to_owned(),
            segment_secs,
            fps,
            outputs: outputs.clone(),
            subtitles: Vec::new(),
            rungs: states,
            continued,
        })
    }

    /// Whether this attempt continues an earlier attempt's publish (same keys, its segments
    /// kept) rather than starting over.
    pub fn continued(&self) -> bool {
        self.continued
    }

    /// An earlier attempt's published rung, if it has a key and no more than `limit` segments.
    fn published_rung(
        layout: &Layout,
        video: &VideoId,
        rung: &Rung,
        limit: u32,
    ) -> Option<RungState> {
        let key = std::fs::read(layout.key_file(video, &rung.name)).ok()?;
        let key = ContentKey(key.try_into().ok()?);
        let text =
            std::fs::read_to_string(layout.video_dir(video).join(&rung.name).join(VARIANT)).ok();
        let published = text.map_or_else(Vec::new, |t| playlist::segments(&t));
        if published.len() > limit as usize || playlist_complete(layout, video, rung) {
            return None;
        }
        Some(RungState {
            rung: rung.clone(),
            key,
            sizes: vec![None; published.len()],
            published,
            codecs: None,
        })
    }

    /// The subtitle renditions the master names (published, complete, before it).
    pub fn set_subtitles(&mut self, subtitles: Vec<Media>) {
        self.subtitles = subtitles;
    }

    /// Whether the master is published (the video can be watched).
    pub fn playable(&self) -> bool {
        self.master
    }

    /// Publishes every segment ffmpeg completed since the last call, the playlists of the rungs
    /// that grew, and the master once every rung has a segment. Returns whether the video
    /// became playable by this call.
    ///
    /// `cap` bounds how many segments of each rung may be public: with a bucket, as many as a
    /// successor on another machine could resume from (the checkpoint's least complete rung),
    /// so a crash never leaves published segments it would have to encode and publish again.
    pub async fn advance(
        &mut self,
        work_hls: &Path,
        resume: Option<&ResumePoint>,
        cap: Option<u32>,
    ) -> Result<bool, GrowingError> {
        for i in 0..self.rungs.len() {
            let dir = work_hls.join(&self.rungs[i].rung.name);
            let Ok(text) = std::fs::read_to_string(dir.join(VARIANT)) else {
                continue;
            };
            let mut complete = work_segments(&text, resume, self.segment_secs);
            if let Some(cap) = cap {
                complete.truncate(cap as usize);
            }
            self.publish_segments(i, &dir, &complete).await?;
        }
        if self.master || self.rungs.iter().any(|r| r.published.is_empty()) {
            return Ok(false);
        }
        self.probe_codecs(work_hls).await?;
        let text = self.master_text(&self.outputs.configured_rates());
        self.write(MASTER.as_ref(), &text)?;
        self.master = true;
        Ok(true)
    }

    /// The master's `CODECS` of every rung, from its first segment's plaintext in the work
    /// directory (a resumed attempt hard-linked the reused ones there).
    async fn probe_codecs(&mut self, work_hls: &Path) -> Result<(), GrowingError> {
        for state in &mut self.rungs {
            if state.codecs.is_none() {
                let first = work_hls
                    .join(&state.rung.name)
                    .join(resume::segment_name(0));
                state.codecs = Some(probe::codecs(&self.ffprobe, &first).await?);
            }
        }
        Ok(())
    }

    /// After a verified encode: publishes what is left of `checks` (the verified segments of
    /// every rung), then every playlist in its final VOD form and the master with measured
    /// rates. Returns each rung's rates, in rung order.
    pub async fn finish(
        &mut self,
        work_hls: &Path,
        checks: &[RungCheck],
    ) -> Result<Vec<Rates>, GrowingError> {
        for (i, check) in checks.iter().enumerate() {
            let dir = work_hls.join(&check.name);
            self.publish_segments(i, &dir, &check.segments).await?;
        }
        self.probe_codecs(work_hls).await?;
        for (state, check) in self.rungs.iter().zip(checks) {
            if !same_uris(&state.published, &check.segments) {
                return Err(GrowingError::Mismatch {
                    rung: state.rung.name.clone(),
                    published: state.published.len(),
                    verified: check.segments.len(),
                });
            }
        }
        let dir = self.layout.video_dir(&self.video);
        let mut all = Vec::with_capacity(self.rungs.len());
        for state in &self.rungs {
            let text = playlist::variant(
                Kind::Vod,
                self.segment_secs,
                &state.published,
                &playlist::key_placeholder(&state.rung.name),
            );
            write_atomically(&dir.join(&state.rung.name).join(VARIANT), text.as_bytes())?;
            let rung_dir = dir.join(&state.rung.name);
            let sizes = state
                .published
                .iter()
                .zip(&state.sizes)
                .map(|(seg, size)| match size {
                    Some(n) => Ok(*n),
                    None => std::fs::metadata(rung_dir.join(&seg.uri)).map(|m| m.len()),
                })
                .collect::<std::io::Result<Vec<u64>>>()?;
            all.push(encrypt::rates(&state.published, &sizes));
        }
        let text = self.master_text(&all);
        self.write(MASTER.as_ref(), &text)?;
        self.master = true;
        Ok(all)
    }

    /// Encrypts and publishes `complete[published..]` of rung `i`, then its EVENT playlist.
    async fn publish_segments(
        &mut self,
        i: usize,
        work_dir: &Path,
        complete: &[Segment],
    ) -> Result<(), GrowingError> {
        let state = &self.rungs[i];
        if complete.len() <= state.published.len() {
            return Ok(());
        }
        if !same_uris(&complete[..state.published.len()], &state.published) {
            // ffmpeg's list disagrees with what is public: never publish over it.
            return Err(GrowingError::Mismatch {
                rung: state.rung.name.clone(),
                published: state.published.len(),
                verified: complete.len(),
            });
        }
        let out_dir = self.layout.video_dir(&self.video).join(&state.rung.name);
        std::fs::create_dir_all(&out_dir)?;
        let first = state.published.len();
        let batch: Vec<(PathBuf, PathBuf, u64)> = complete[first..]
            .iter()
            .zip(first as u64..)
            .map(|(seg, sequence)| (work_dir.join(&seg.uri), out_dir.join(&seg.uri), sequence))
            .collect();
        let key = state.key.clone();
        // CPU work: off the async workers, so the heartbeat and ffmpeg's progress keep going.
        let sizes = tokio::task::spawn_blocking(move || {
            batch
                .iter()
                .map(|(from, to, sequence)| {
                    let sealed = encrypt::encrypt_segment(&key, *sequence, &std::fs::read(from)?);
                    write_atomically(to, &sealed)?;
                    Ok(sealed.len() as u64)
                })
                .collect::<std::io::Result<Vec<u64>>>()
        })
        .await
        .map_err(std::io::Error::other)??;
        let state = &mut self.rungs[i];
        state.published.extend_from_slice(&complete[first..]);
        state.sizes.extend(sizes.into_iter().map(Some));
        let text = playlist::variant(
            Kind::Event,
            self.segment_secs,
            &state.published,
            &playlist::key_placeholder(&state.rung.name),
        );
        write_atomically(&out_dir.join(VARIANT), text.as_bytes())?;
        Ok(())
    }

    /// The master for `rates` (one per output, in [`Outputs::all`]'s order).
    fn master_text(&self, rates: &[Rates]) -> String {
        let codecs: Vec<String> = self
            .rungs
            .iter()
            .map(|r| r.codecs.clone().unwrap_or_default())
            .collect();
        self.outputs
            .master(rates, &codecs, self.fps, &self.subtitles)
    }

    fn write(&self, name: &Path, text: &str) -> std::io::Result<()> {
        write_atomically(
            &self.layout.video_dir(&self.video).join(name),
            text.as_bytes(),
        )
    }
}

/// The complete segments of a rung, from ffmpeg's playlist: a resumed run's playlist starts at
/// the resume point, so the reused segments come first.
fn work_segments(text: &str, resume: Option<&ResumePoint>, segment_secs: u32) -> Vec<Segment> {
    match resume {
        Some(point) => playlist::segments(&resume::stitch(point, segment_secs, text)),
        None => playlist::segments(text),
    }
}

/// The same segments, in the same order. (Durations of segments a dead attempt published are
/// ffmpeg's; a resumed run only knows them as the segment length.)
fn same_uris(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.uri == y.uri)
}

fn playlist_complete(layout: &Layout, video: &VideoId, rung: &Rung) -> bool {
    std::fs::read_to_string(layout.video_dir(video).join(&rung.name).join(VARIANT))
        .is_ok_and(|t| playlist::is_complete(&t))
}

/// Writes `bytes` to a temporary name beside `path`, then renames it: readers see the old file
/// or the whole new one, never a part. The temporary name is this write's own, so two writers
/// of one path never write into each other's file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}-{n}.part", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Removes `video`'s published media and keys (not its poster, which is published at once).
pub fn remove_media(layout: &Layout, video: &VideoId) -> std::io::Result<()> {
    for dir in [layout.video_dir(video), layout.keys_dir(video)] {
        crate::storage::remove_dir(&dir)?;
    }
    Ok(())
}
