//! What a process killed in the middle of a write leaves behind, and its removal at the next
//! start.
//!
//! A process that dies without unwinding (SIGKILL, the OOM killer, a power cut) runs no
//! destructor: the upload it was receiving (`tmp/upload-<id>.<writer>`, up to the upload
//! limit) and the downloads it was making (`<path>.<writer>-<n>.part`) would stay on disk for
//! good. Each such file is held, for as long as it is written, under an exclusive lock
//! (`flock`) that the kernel drops with its process however the process dies. At start, every
//! role removes the files of those kinds that nobody holds, and leaves held ones alone: another
//! role's on the same machine, another container's on a shared volume, or another host's on a
//! filesystem that passes locks on (NFS v4, CephFS; where locks fail, nothing is removed).
//! Process ids would not do: containers sharing a volume each have their own, and a restarted
//! container's process has the dead one's.
//!
//! An upload moved into `sources/` stays held until its job exists; one that nobody holds and
//! no job names was left by a process killed in between, and goes too ([`sweep_sources`]).
//!
//! A file takes its name only once it is locked ([`create_held`]), so a sweep never sees one
//! unheld while its writer lives. Downloads land in `sources/`, `subtitles/` and the work
//! directories under `tmp/`, which are walked; the published tree is not (it can hold millions
//! of files), and a `.part` there is never served under a signed name nor pushed.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use shared::media::{fill_random, Layout, VideoId};

use crate::jobs::store::JobStore;

/// Characters of a writer tag: 16 lowercase hex digits.
const WRITER_LEN: usize = 16;
/// The suffix of a file not yet locked, which no sweep touches.
const UNHELD: &str = ".new";

/// This process as the writer of the files it names: random, so that names stay unique across
/// containers whose process ids repeat.
pub fn writer() -> &'static str {
    static WRITER: OnceLock<String> = OnceLock::new();
    WRITER.get_or_init(|| {
        let mut bytes = [0u8; WRITER_LEN / 2];
        fill_random(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// A file being written, locked until this is dropped (or its process dies).
#[derive(Debug)]
pub struct Held {
    _lock: File,
}

/// Creates `path`, which must not exist, locked before it takes its name. Returns the file to
/// write (sharing the lock) and the lock to keep for as long as the file is being written.
pub fn create_held(path: &Path) -> io::Result<(File, Held)> {
    // Names are unique (a writer tag, a video id or a counter): one that exists is a bug, and
    // the rename below would replace it.
    if path.exists() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    let mut unheld = path.as_os_str().to_owned();
    unheld.push(UNHELD);
    let unheld = PathBuf::from(unheld);
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&unheld)?;
    let named = file
        .try_lock()
        .map_err(io::Error::from)
        .and_then(|()| std::fs::rename(&unheld, path));
    if let Err(e) = named {
        let _ = std::fs::remove_file(&unheld);
        return Err(e);
    }
    let writable = file.try_clone()?;
    Ok((writable, Held { _lock: file }))
}

/// Locks the existing file at `path`, to keep it for as long as the lock is (an upload in
/// `sources/` until its job exists). Fails if another holds it.
pub fn hold(path: &Path) -> io::Result<Held> {
    let file = File::open(path)?;
    file.try_lock().map_err(io::Error::from)?;
    Ok(Held { _lock: file })
}

/// Whether `name` is a leftover's: `upload-<id>.<writer>` or `<name>.<writer>-<n>.part`.
fn is_leftover(name: &str) -> bool {
    let writer = if let Some(rest) = name.strip_prefix("upload-") {
        rest.rsplit_once('.').map(|(_, writer)| writer)
    } else {
        name.strip_suffix(".part")
            .and_then(|stem| stem.rsplit_once('.'))
            .and_then(|(_, tail)| tail.rsplit_once('-'))
            .map(|(writer, _)| writer)
    };
    writer.is_some_and(|w| w.len() == WRITER_LEN && w.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes the leftovers nobody holds; returns how many.
pub fn sweep(layout: &Layout) -> usize {
    let root = layout.root();
    ["tmp", "sources", "subtitles"]
        .iter()
        .map(|dir| sweep_dir(&root.join(dir), 3))
        .sum()
}

/// Removes the uploads in `sources/` that nobody holds and no job names: their process was
/// killed between moving them there and creating the job. Returns how many; stops at the
/// first store error (removing nothing it could not check).
pub async fn sweep_sources<S: JobStore>(layout: &Layout, store: &S) -> usize {
    let dir = layout.root().join("sources");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(video) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<VideoId>().ok())
        else {
            continue;
        };
        let path = entry.path();
        // Held while the store is asked and the file removed: an admit in flight holds it.
        let Ok(_held) = hold(&path) else {
            continue;
        };
        match store.get(&video).await {
            Ok(Some(_)) => {}
            Ok(None) => match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(%video, "removed an upload whose job was never created");
                    removed += 1;
                }
                Err(error) => tracing::warn!(%error, %video, "cannot remove an upload"),
            },
            Err(error) => {
                tracing::warn!(%error, "uploads without a job are kept: the job store fails");
                break;
            }
        }
    }
    removed
}

fn sweep_dir(dir: &Path, depth: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth > 0 {
                removed += sweep_dir(&path, depth - 1);
            }
            continue;
        }
        if !entry.file_name().to_str().is_some_and(is_leftover) {
            continue;
        }
        // Held while it is removed: its writer cannot be taking it meanwhile.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "removed what a stopped process left");
                removed += 1;
            }
            Err(error) => {
                tracing::warn!(%error, file = %path.display(), "cannot remove a leftover")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_nobody_holds_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("layout");
        let w = writer();
        let other = "0123456789abcdef";
        let held = [
            format!("tmp/upload-v2.{w}"),
            format!("sources/v4.{w}-7.part"),
        ];
        let mut holds = Vec::new();
        for name in &held {
            holds.push(create_held(&dir.path().join(name)).expect("held"));
        }
        let files = [
            (format!("tmp/upload-v1.{other}"), false),
            (format!("sources/v3.{other}-0.part"), false),
            (
                format!("tmp/v5-a1/hls/360p/segment_000.ts.{other}-2.part"),
                false,
            ),
            (format!("subtitles/v6/u1.vtt.{other}-3.part"), false),
            (format!("tmp/upload-v7.{other}{UNHELD}"), true),
            ("sources/v7".to_owned(), true),
            ("tmp/v5-a1/hls/360p/segment_001.ts".to_owned(), true),
            ("tmp/upload-v8".to_owned(), true),
            ("sources/v9.notes.part".to_owned(), true),
            ("sources/v9.1234-0.part".to_owned(), true),
        ];
        for (name, _) in &files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"x").expect("write");
        }
        assert_eq!(sweep(&layout), 4);
        for (name, kept) in &files {
            assert_eq!(dir.path().join(name).exists(), *kept, "{name}");
        }
        for name in &held {
            assert!(dir.path().join(name).exists(), "{name} is held");
        }
        drop(holds);
        assert_eq!(sweep(&layout), 2, "given up, they are leftovers too");
    }

    #[tokio::test]
    async fn uploads_no_job_names_go_unless_held() {
        use crate::jobs::embedded::EmbeddedStore;
        use crate::jobs::model::Job;
        use crate::transcode::pipeline::Profile;
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("layout");
        let store = EmbeddedStore::open(&layout.store_dir()).expect("store");
        let id = |s: &str| s.parse::<VideoId>().expect("id");
        let job = Job::new(id("queued"), "u1", None, Profile::Ladder, 0);
        store.create(job).await.expect("job");
        for name in ["queued", "orphan", "admitting"] {
            std::fs::write(layout.source_file(&id(name)), b"x").expect("write");
        }
        std::fs::write(dir.path().join("sources/notes.txt"), b"x").expect("write");
        let admitting = hold(&layout.source_file(&id("admitting"))).expect("held");
        assert_eq!(sweep_sources(&layout, &store).await, 1);
        assert!(!layout.source_file(&id("orphan")).exists());
        assert!(layout.source_file(&id("queued")).exists(), "its job exists");
        assert!(layout.source_file(&id("admitting")).exists(), "held");
        assert!(
            dir.path().join("sources/notes.txt").exists(),
            "not an upload"
        );
        drop(admitting);
        assert_eq!(sweep_sources(&layout, &store).await, 1, "given up, it goes");
    }

    #[test]
    fn a_held_file_is_created_once_and_leaves_nothing_when_it_cannot_be() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(format!("upload-v1.{}", writer()));
        let (mut file, _held) = create_held(&path).expect("created");
        io::Write::write_all(&mut file, b"bytes").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"bytes");
        assert!(create_held(&path).is_err(), "it exists");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
