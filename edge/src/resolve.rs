//! Content-root path resolution that can never leave the root.
//!
//! Like nginx's `alias`, the path after the prefix is looked up under the root. Unlike nginx
//! (which follows any symlink by default), the lookup goes through `openat2(RESOLVE_BENEATH)`,
//! so `..`, absolute symlinks and symlinks leading out of the root are refused by the kernel.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

/// Identity and validators of a file: if any of these change, cached bytes are stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl FileMeta {
    fn of(m: &Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }

    /// nginx's ETag: `"<mtime hex>-<size hex>"`.
    pub fn etag(&self) -> String {
        format!("\"{:x}-{:x}\"", self.mtime, self.size)
    }

    /// Last-Modified in IMF-fixdate.
    pub fn last_modified(&self) -> String {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.mtime.max(0) as u64);
        httpdate::fmt_http_date(t)
    }
}

/// What a path names.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file, opened.
    File(File, FileMeta),
    /// A directory (nginx: 403 with a trailing slash, 301 without).
    Directory,
}

/// Why a path could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Missing, not a regular file, or leading out of the root: 404.
    #[error("not found")]
    NotFound,
    /// Permission denied: 403.
    #[error("forbidden")]
    Forbidden,
    /// Anything else: 500, logged.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// The content root.
#[derive(Debug)]
pub struct Root {
    dir: File,
    path: PathBuf,
    canonical: PathBuf,
    /// Cleared on the first `ENOSYS` from `openat2`, after which the slower portable check runs.
    openat2: AtomicBool,
}

impl Root {
    /// Opens the root directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let dir = File::open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "content root is not a directory",
            ));
        }
        Ok(Self {
            dir,
            path: path.to_owned(),
            canonical: path.canonicalize()?,
            openat2: AtomicBool::new(true),
        })
    }

    /// Opens `rel` (the path after the prefix, no leading `/`).
    pub fn open_path(&self, rel: &[u8]) -> Result<Resolved, ResolveError> {
        if rel.contains(&0) || rel.split(|&b| b == b'/').any(|s| s == b".." || s == b".") {
            return Err(ResolveError::NotFound);
        }
        let rel = if rel.is_empty() { &b"."[..] } else { rel };
        let file = self.open_beneath(rel).map_err(classify)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            Ok(Resolved::Directory)
        } else if meta.is_file() {
            Ok(Resolved::File(file, FileMeta::of(&meta)))
        } else {
            Err(ResolveError::NotFound)
        }
    }

    /// Current identity of `rel`, for revalidating a cached copy with one `stat`.
    pub fn stat(&self, rel: &[u8]) -> Option<FileMeta> {
        let st = sys::stat_at(&self.dir, rel).ok()?;
        Some(FileMeta {
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        })
    }

    fn open_beneath(&self, rel: &[u8]) -> io::Result<File> {
        if self.openat2.load(Ordering::Relaxed) {
            match sys::open_beneath(&self.dir, rel) {
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    tracing::warn!("openat2 unavailable, falling back to canonicalize checks");
                    self.openat2.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        let full = self.path.join(OsStr::from_bytes(rel)).canonicalize()?;
        if !full.starts_with(&self.canonical) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        File::open(full)
    }
}

fn classify(e: io::Error) -> ResolveError {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::EXDEV | libc::ELOOP | libc::ENAMETOOLONG) => {
            ResolveError::NotFound
        }
        Some(libc::EACCES | libc::EPERM) => ResolveError::Forbidden,
        _ => ResolveError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::fd::AsRawFd;

    /// root/{a.ts, sub/b.ts, in -> sub, up -> .., abs -> /etc, out.ts -> ../secret.ts}
    fn tree() -> (PathBuf, Root) {
        static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        let root = BUILT.get_or_init(|| {
            let base = std::env::temp_dir().join(format!("edge-resolve-{}", std::process::id()));
            let root = base.join("root");
            std::fs::create_dir_all(root.join("sub")).expect("mkdir");
            std::fs::write(root.join("a.ts"), b"a").expect("write");
            std::fs::write(root.join("sub/b.ts"), b"b").expect("write");
            std::fs::write(base.join("secret.ts"), b"secret").expect("write");
            let link = |target: &str, name: &str| {
                std::os::unix::fs::symlink(target, root.join(name)).expect("symlink")
            };
            link("sub", "in");
            link("..", "up");
            link("/etc", "abs");
            link("../secret.ts", "out.ts");
            root
        });
        let r = Root::open(root).expect("open root");
        (root.canonicalize().expect("canonical"), r)
    }

    fn path_of(file: &File) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("fd path")
    }

    #[test]
    fn serves_inside_refuses_outside() {
        let (_, root) = tree();
        assert!(matches!(root.open_path(b"a.ts"), Ok(Resolved::File(..))));
        assert!(matches!(root.open_path(b"in/b.ts"), Ok(Resolved::File(..))));
        assert!(matches!(root.open_path(b"sub"), Ok(Resolved::Directory)));
        assert!(matches!(root.open_path(b""), Ok(Resolved::Directory)));
        for bad in [
            &b"out.ts"[..],
            b"up/secret.ts",
            b"abs/passwd",
            b"../secret.ts",
            b"a.ts/",
            b"nope",
        ] {
            assert!(
                matches!(root.open_path(bad), Err(ResolveError::NotFound)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stat_matches_the_opened_file_and_follows_the_tree() {
        let (_, root) = tree();
        let Ok(Resolved::File(_, opened)) = root.open_path(b"in/b.ts") else {
            panic!("in/b.ts is a file");
        };
        assert_eq!(root.stat(b"in/b.ts"), Some(opened));
        assert_eq!(
            root.stat(b"sub/b.ts"),
            Some(opened),
            "same file through the link"
        );
        assert_eq!(root.stat(b"nope"), None);
        assert_eq!(root.stat(b"a\0.ts"), None, "a NUL is no path");
        // Past the stack buffer: the same answers through the heap path.
        let long = format!("{}in/b.ts", "./".repeat(300));
        assert_eq!(root.stat(long.as_bytes()), Some(opened), "a 600-byte path");
        let mut long_nul = "x".repeat(600).into_bytes();
        long_nul[300] = 0;
        assert_eq!(root.stat(&long_nul), None);
    }

    proptest! {
        #[test]
        fn nothing_outside_the_root_is_ever_opened(
            segs in proptest::collection::vec(
                prop_oneof!["a.ts", "sub", "b.ts", "in", "up", "abs", "out.ts", "\\.\\.", "\\.", "", "passwd", "secret.ts"],
                0..6,
            )
        ) {
            let (canonical, root) = tree();
            let rel = segs.join("/");
            if let Ok(Resolved::File(file, _)) = root.open_path(rel.as_bytes()) {
                let p = path_of(&file);
                prop_assert!(p.starts_with(&canonical), "{rel:?} opened {p:?}");
            }
        }
    }
}
