//! Single-flight fills, like nginx's `proxy_cache_lock` or pingora's `CacheLock`: the first
//! miss for an object starts one fill; every request for it meanwhile waits on that fill and
//! is streamed its bytes as they reach the disk, not after the whole object.
//!
//! A fill runs in a task of its own (a client that goes away does not abort it): one upstream
//! GET written to a temporary file under the fill directory, its length (and MD5, when the
//! ETag carries one) checked, then flushed to the disk, renamed into place and indexed. Readers `pread` the
//! temporary file up to what has been written; the object's last bytes are only handed out
//! once the fill has verified everything, so no response built from a fill that turns out
//! bad (short, too long, wrong MD5) ever completes, and nothing of it is ever cached.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::sync::watch;

use super::disk::Entry;
use super::source::{ByteStream, FetchError};
use super::Inner;
use crate::server::file_read;

/// Bytes read from the temporary file per chunk of a response.
const CHUNK: usize = 64 * 1024;

/// What a fill knows once the upstream answered.
#[derive(Debug, Clone)]
pub struct Head {
    pub size: u64,
    /// Seconds since the epoch: the upstream's Last-Modified, or when the fill began. The
    /// cached file gets it as its mtime, so the ETag a miss sends is the one later hits send.
    pub mtime: i64,
    file: Arc<File>,
}

/// How far a fill is.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub head: Option<Head>,
    pub written: u64,
    /// Set once: the fill is over.
    pub outcome: Option<Result<(), FetchError>>,
}

/// One object being filled.
#[derive(Debug)]
pub struct Fill {
    progress: watch::Sender<Progress>,
    /// Where it stands for a purge. A lock, not a flag: the rename into place happens under
    /// it, so a purge comes either before (nothing is named) or after (the purge finds the
    /// name, or the fill sees the mark and drops it).
    stage: Mutex<Stage>,
}

/// Where a fill stands for a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for its place: what it pulls will come after any purge made now.
    Waiting,
    /// Its upstream request is (about to be) sent.
    Fetching,
    /// A purge came for its object while it was pulled: it keeps nothing.
    Purged,
}

impl Default for Fill {
    fn default() -> Self {
        Self {
            progress: watch::Sender::new(Progress::default()),
            stage: Mutex::new(Stage::Waiting),
        }
    }
}

impl Fill {
    /// Follows this fill's progress.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Its object was purged: what it pulls may be the bytes the purge was for, once its
    /// request is sent. Whether it was marked: one still waiting for its place is not.
    pub fn purge(&self) -> bool {
        let mut stage = self.lock_stage();
        if *stage == Stage::Waiting {
            return false;
        }
        *stage = Stage::Purged;
        true
    }

    pub(super) fn purged(&self) -> bool {
        *self.lock_stage() == Stage::Purged
    }

    fn fetching(&self) {
        let mut stage = self.lock_stage();
        if *stage == Stage::Waiting {
            *stage = Stage::Fetching;
        }
    }

    fn lock_stage(&self) -> MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Waits until `rx`'s fill has a head (or failed).
pub async fn head(rx: &mut watch::Receiver<Progress>) -> Result<Head, FetchError> {
    let progress = rx
        .wait_for(|p| p.head.is_some() || p.outcome.is_some())
        .await
        .map_err(|_| FetchError::Bad("fill abandoned"))?;
    match (&progress.head, progress.outcome) {
        (Some(h), _) => Ok(h.clone()),
        (None, Some(Err(e))) => Err(e),
        (None, _) => Err(FetchError::Bad("fill ended without an answer")),
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs the fill of `rel` to its end and publishes the outcome (the task [`super::Upstream`]
/// spawns for the first miss).
pub async fn run(inner: Arc<Inner>, fill: Arc<Fill>, rel: String, args: Vec<u8>) {
    let started = Instant::now();
    // One wait for the place and the answer together: a fill that got its place late must not
    // keep the requests behind it for a second whole timeout.
    let deadline = tokio::time::Instant::now() + inner.timeout;
    let (result, place) = match take_place(&inner, deadline).await {
        Ok(place) => {
            let result = fill_once(&inner, &fill, (&rel, &args), deadline).await;
            (result, Some(place))
        }
        Err(e) => (Err(e), None),
    };
    match result {
        Ok(pulled) => {
            let m = &inner.metrics;
            m.upstream_bytes.inc_by(pulled.size);
            m.upstream_fill_seconds
                .observe(started.elapsed().as_secs_f64());
            // Every byte is verified: the readers get the last ones now, and the object is
            // kept meanwhile (flushed to the disk first, which takes a while), still in its
            // place. Until it is indexed, new requests join this fill.
            fill.progress.send_modify(|p| p.outcome = Some(Ok(())));
            keep(&inner, &rel, pulled, &fill).await;
            drop(place);
            inner.forget(rel.as_bytes(), &fill, false);
        }
        Err(error) => {
            drop(place);
            let missing = matches!(error, FetchError::NotFound);
            inner.forget(rel.as_bytes(), &fill, missing);
            fill.progress.send_modify(|p| p.outcome = Some(Err(error)));
        }
    }
}

/// A verified object in its temporary file.
struct Pulled {
    size: u64,
    mtime: i64,
    file: Arc<File>,
    temp: PathBuf,
}

/// Keeps a pulled object in the disk cache under its name and indexes it, unless its `fill` was
/// purged. One the disk cannot take is dropped: its readers have it open.
async fn keep(inner: &Inner, rel: &str, pulled: Pulled, fill: &Arc<Fill>) {
    let path = inner.disk.path(rel);
    let Pulled {
        size,
        mtime,
        file,
        temp,
    } = pulled;
    let (target, purgeable) = (path.clone(), fill.clone());
    let named = tokio::task::spawn_blocking(move || {
        let named = name(&file, &temp, &target, mtime, &purgeable);
        if !matches!(named, Ok(Some(_))) {
            let _ = std::fs::remove_file(&temp);
        }
        named
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(e)));
    match named {
        Ok(Some(ino)) => {
            let entry = Entry {
                size,
                ino,
                fetched: Some(Instant::now()),
            };
            inner.disk.insert(rel.as_bytes(), entry, &inner.metrics);
            if fill.purged() {
                // Purged once it had its name, maybe before the purge could find it indexed.
                inner.disk.remove(rel.as_bytes());
                tracing::info!("purged while it was being kept: dropped");
            }
        }
        // Maybe the very bytes the purge was for.
        Ok(None) => tracing::info!("purged while it was pulled: not kept"),
        Err(error) => {
            // The bytes are verified, and every reader has the file open: they are served
            // whole, only not kept (a name the filesystem refuses: too long, or a directory
            // of other objects). Failing the fill would make each request download it again.
            tracing::warn!(%error, path = %path.display(), "a pulled object cannot be kept on disk");
        }
    }
}

/// One of the [`FILLS_MAX`](super::FILLS_MAX) places, waited for until `deadline`, by which
/// the upstream must also have answered; counted in the fill gauges while waited for and held.
async fn take_place(
    inner: &Inner,
    deadline: tokio::time::Instant,
) -> Result<Place<'_>, FetchError> {
    let m = &inner.metrics;
    m.upstream_fills_waiting.inc();
    let taken = tokio::time::timeout_at(deadline, inner.fill_places.acquire()).await;
    m.upstream_fills_waiting.dec();
    match taken {
        Ok(Ok(permit)) => {
            m.upstream_fills_running.inc();
            Ok(Place {
                inner,
                _permit: permit,
            })
        }
        Ok(Err(_)) => Err(FetchError::Bad("the edge is shutting down")),
        Err(_) => Err(FetchError::Timeout),
    }
}

/// A fill's place; given back, and uncounted, when dropped.
struct Place<'a> {
    inner: &'a Inner,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.inner.metrics.upstream_fills_running.dec();
    }
}

/// Pulls `rel` into a temporary file of the disk cache and verifies it.
async fn fill_once(
    inner: &Inner,
    fill: &Fill,
    (rel, args): (&str, &[u8]),
    deadline: tokio::time::Instant,
) -> Result<Pulled, FetchError> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    fill.fetching();
    // Counted when the upstream answered (or failed to), before any client sees a byte.
    let fetched = inner.source.fetch(rel, args, left).await;
    inner
        .metrics
        .upstream_request(fetched.as_ref().map_or_else(|e| e.outcome(), |_| "ok"));
    let fetched = fetched?;
    let size = fetched.size;
    if !inner.disk.admits(size) {
        tracing::warn!(rel, size, "upstream object larger than the disk cache");
        return Err(FetchError::Bad(
            "upstream object larger than the disk cache",
        ));
    }
    let mtime = unix_secs(fetched.last_modified.unwrap_or_else(SystemTime::now));
    let expected_md5 = fetched.md5;
    let temp = inner.disk.fill_dir().join(format!(
        "{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| cache_error(e, &temp))?;
    let file = Arc::new(file);
    fill.progress.send_modify(|p| {
        p.head = Some(Head {
            size,
            mtime,
            file: file.clone(),
        })
    });
    let written = receive(inner, fill, fetched.body, &file, &temp, size, expected_md5).await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Pulled {
        size,
        mtime,
        file,
        temp,
    })
}

/// Gives the verified `temp` its final name at `path`, with the upstream's `mtime`, once it is
/// on the disk (after a power cut, the next start indexes every named file as a whole object,
/// and a rename can reach the disk before the bytes) and unless `fill` was purged meanwhile.
/// Returns its inode, or `None` if purged.
fn name(file: &File, temp: &Path, path: &Path, mtime: i64, fill: &Fill) -> io::Result<Option<u64>> {
    let modified = UNIX_EPOCH + Duration::from_secs(u64::try_from(mtime).unwrap_or(0));
    file.set_modified(modified)?;
    // The mtime too: it is half of the ETag.
    file.sync_all()?;
    let stage = fill.lock_stage();
    if *stage == Stage::Purged {
        return Ok(None);
    }
    // Read before the rename: once the file has its name, it must be indexed.
    let ino = file.metadata()?.ino();
    let dir = path.parent().unwrap_or(path);
    std::fs::create_dir_all(dir)?;
    match std::fs::rename(temp, path) {
        // An eviction removed the directory as it emptied, just now: make it again, once.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::rename(temp, path)?;
        }
        other => other?,
    }
    drop(stage);
    Ok(Some(ino))
}

/// Writes the body to `file` as it arrives, publishing each step; checks length and MD5.
async fn receive(
    inner: &Inner,
    fill: &Fill,
    mut body: ByteStream,
    file: &File,
    temp: &Path,
    size: u64,
    expected_md5: Option<[u8; 16]>,
) -> Result<(), FetchError> {
    let mut md5 = expected_md5.map(|_| Md5::new());
    let mut written = 0u64;
    loop {
        let next = tokio::time::timeout(inner.timeout, body.next())
            .await
            .map_err(|_| FetchError::Timeout)?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|error| {
            tracing::warn!(%error, "upstream body broke off");
            FetchError::Bad("upstream connection broke")
        })?;
        if written + chunk.len() as u64 > size {
            return Err(FetchError::Bad("upstream sent more than its length"));
        }
        // Page-cache writes; segments are a few MB.
        file.write_all_at(&chunk, written)
            .map_err(|e| cache_error(e, temp))?;
        if let Some(h) = md5.as_mut() {
            h.update(&chunk);
        }
        written += chunk.len() as u64;
        fill.progress.send_modify(|p| p.written = written);
    }
    if written != size {
        tracing::warn!(written, size, "upstream body shorter than its length");
        return Err(FetchError::Bad("upstream sent less than its length"));
    }
    if let (Some(h), Some(expected)) = (md5, expected_md5) {
        if <[u8; 16]>::from(h.finalize()) != expected {
            tracing::warn!("upstream body does not match its ETag");
            return Err(FetchError::Bad("upstream bytes do not match their ETag"));
        }
    }
    Ok(())
}

fn cache_error(error: io::Error, path: &std::path::Path) -> FetchError {
    tracing::error!(%error, path = %path.display(), "disk cache write failed");
    FetchError::Bad("disk cache write failed")
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Bytes `start..end` of the object `rx`'s fill is receiving, as they arrive.
pub fn body(head: Head, rx: watch::Receiver<Progress>, start: u64, end: u64) -> ByteStream {
    struct State {
        rx: watch::Receiver<Progress>,
        head: Head,
        offset: u64,
        end: u64,
        done: bool,
    }
    let state = State {
        rx,
        head,
        offset: start,
        end,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.done || s.offset >= s.end {
            return None;
        }
        let chunk = next_chunk(&mut s.rx, &s.head, s.offset, s.end).await;
        match &chunk {
            Ok(bytes) => s.offset += bytes.len() as u64,
            Err(_) => s.done = true,
        }
        Some((chunk, s))
    })
    .boxed()
}

async fn next_chunk(
    rx: &mut watch::Receiver<Progress>,
    head: &Head,
    offset: u64,
    end: u64,
) -> io::Result<Bytes> {
    let failed = |e: FetchError| io::Error::other(e.to_string());
    let written = {
        let p = rx
            .wait_for(|p| p.written > offset || p.outcome.is_some())
            .await
            .map_err(|_| io::Error::other("fill abandoned"))?;
        if let Some(Err(e)) = p.outcome {
            return Err(failed(e));
        }
        p.written
    };
    if written <= offset {
        return Err(io::Error::other("fill ended short"));
    }
    let n = usize::try_from(written.min(end) - offset)
        .unwrap_or(CHUNK)
        .min(CHUNK);
    if offset + n as u64 == end {
        // The response's last bytes (the object's, or a range's): only once the fill verified
        // the whole object, so no response completes from a fill that turns out bad.
        let p = rx
            .wait_for(|p| p.outcome.is_some())
            .await
            .map_err(|_| io::Error::other("fill abandoned"))?;
        if let Some(Err(e)) = p.outcome {
            return Err(failed(e));
        }
    }
    let (buf, read) = file_read::read_at(&head.file, Vec::with_capacity(n), n, offset).await;
    if read? == 0 {
        return Err(io::Error::other("fill file shorter than written"));
    }
    Ok(Bytes::from(buf))
}

/// Bytes `start..end` of an upstream answer streamed straight through (a request that gave up
/// waiting for someone else's fill). It ends with the range's last byte, not the object's: an
/// HTTP/1.1 connection serves its next request only once this body has ended.
pub fn slice(body: ByteStream, start: u64, end: u64) -> ByteStream {
    futures_util::stream::unfold((body, 0u64), move |(mut body, mut pos)| async move {
        while pos < end {
            match body.next().await? {
                // Nothing follows an error.
                Err(e) => return Some((Err(e), (body, end))),
                Ok(bytes) => {
                    let (from, to) = (pos, pos + bytes.len() as u64);
                    pos = to;
                    let (a, b) = (from.max(start), to.min(end));
                    if a < b {
                        let part = bytes.slice((a - from) as usize..(b - from) as usize);
                        return Some((Ok(part), (body, pos)));
                    }
                }
            }
        }
        None
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_marks_only_a_fill_whose_request_is_out() {
        let fill = Fill::default();
        assert!(
            !fill.purge(),
            "waiting for its place: it will pull what follows the purge"
        );
        assert!(!fill.purged());
        fill.fetching();
        assert!(fill.purge());
        assert!(fill.purged());
    }

    /// An upstream body that sends three chunks, then nothing for ever.
    fn stalled_after(chunks: &[&'static [u8]]) -> ByteStream {
        let sent: Vec<io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        futures_util::stream::iter(sent)
            .chain(futures_util::stream::pending())
            .boxed()
    }

    #[tokio::test]
    async fn a_slice_ends_with_its_range_not_with_the_object() {
        let chunks: &[&'static [u8]] = &[b"abcd", b"efgh", b"ijkl"];
        for (start, end, want) in [
            (0, 2, "ab"),
            (3, 6, "def"),
            (4, 8, "efgh"),
            (0, 12, "abcdefghijkl"),
        ] {
            let got = tokio::time::timeout(
                Duration::from_secs(5),
                slice(stalled_after(chunks), start, end).collect::<Vec<_>>(),
            )
            .await
            .unwrap_or_else(|_| panic!("{start}..{end} waited for the rest of the object"));
            let bytes: Vec<u8> = got
                .into_iter()
                .flat_map(|c| c.expect("chunk").to_vec())
                .collect();
            assert_eq!(String::from_utf8_lossy(&bytes), want, "{start}..{end}");
        }
    }
}
