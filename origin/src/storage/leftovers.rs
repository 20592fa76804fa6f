//! What a process killed in the middle of a write leaves behind, and its removal at the next
//! start.
//!
//! A process that dies without unwinding (SIGKILL, the OOM killer, a power cut) runs no
//! destructor: the upload it was receiving (`tmp/upload-<id>.<writer>`, up to the upload
//! limit) and the downloads it was making (`<path>.<writer>-<n>.part`) stay on disk, and
//! nothing else would ever remove them. Each such file is named by its writer: the process id
//! and that process's start time, so a process that reuses the id (pid 1 of a restarted
//! container) is not taken for the writer. At start, every role removes the files of writers
//! that are no longer running, and leaves those of live processes (another role sharing the
//! data directory) alone.
//!
//! Downloads land in `sources/`, `subtitles/` and the work directories under `tmp/`, which are
//! walked; the published tree is not (it can hold millions of files), and a `.part` there is
//! never served under a signed name nor pushed.

use std::path::Path;
use std::sync::OnceLock;

use shared::media::Layout;

/// This process as the writer of the files it names: `<pid>x<start time>`.
pub fn writer() -> &'static str {
    static WRITER: OnceLock<String> = OnceLock::new();
    WRITER.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}x{}", start_time(pid).unwrap_or(0))
    })
}

/// The process's start time, in clock ticks after boot (`/proc/<pid>/stat`, field 22), while
/// it runs: a killed process not yet reaped by its parent (a zombie) has none.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the writer named `tag` (`<pid>x<start time>`) is still running.
fn running(tag: &str) -> bool {
    let Some((pid, started)) = tag.split_once('x') else {
        return true;
    };
    match (pid.parse::<u32>(), started.parse::<u64>()) {
        (Ok(pid), Ok(started)) => start_time(pid) == Some(started),
        // Not a name of ours: not ours to remove.
        _ => true,
    }
}

/// The writer a leftover's file name names, if it is one: `upload-<id>.<writer>` or
/// `<name>.<writer>-<n>.part`.
fn writer_of(name: &str) -> Option<&str> {
    if let Some(rest) = name.strip_prefix("upload-") {
        return rest.rsplit_once('.').map(|(_, writer)| writer);
    }
    let stem = name.strip_suffix(".part")?;
    let (_, tail) = stem.rsplit_once('.')?;
    tail.rsplit_once('-').map(|(writer, _)| writer)
}

/// Removes the leftovers of writers that are no longer running; returns how many.
pub fn sweep(layout: &Layout) -> usize {
    let root = layout.root();
    ["tmp", "sources", "subtitles"]
        .iter()
        .map(|dir| sweep_dir(&root.join(dir), 3))
        .sum()
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
        let name = entry.file_name();
        let Some(writer) = name.to_str().and_then(writer_of) else {
            continue;
        };
        if running(writer) {
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
    fn this_process_is_running_and_one_that_reused_its_id_is_not() {
        assert!(running(writer()));
        let pid = std::process::id();
        assert!(!running(&format!("{pid}x1")), "another start time");
        assert!(!running("4194304x1"), "above the kernel's pid limit");
    }

    #[test]
    fn leftovers_of_stopped_writers_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("layout");
        let ours = writer();
        let gone = format!("{}x1", std::process::id());
        let files = [
            (format!("tmp/upload-v1.{gone}"), false),
            (format!("tmp/upload-v2.{ours}"), true),
            (format!("sources/v3.{gone}-0.part"), false),
            (format!("sources/v4.{ours}-7.part"), true),
            (
                format!("tmp/v5-a1/hls/360p/segment_000.ts.{gone}-2.part"),
                false,
            ),
            (format!("subtitles/v6/u1.vtt.{gone}-3.part"), false),
            ("sources/v7".to_owned(), true),
            ("tmp/v5-a1/hls/360p/segment_001.ts".to_owned(), true),
            ("tmp/upload-v8".to_owned(), true),
            ("sources/v9.notes.part".to_owned(), true),
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
    }
}
