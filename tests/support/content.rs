//! A temporary content root shaped like the platform's HLS output.
//!
//! Layout (all under `<root>/<VIDEO_ID>/`): rungs `720p/` and `360p/` with playlists and
//! segments, an fMP4 rendition, a master playlist, an AES key, subtitles, images (one with an
//! upper-case extension), a file without extension, a nested directory, an empty file, awkward file names (a space, a `%`), a symlink that stays inside the root, a
//! symlinked directory, and a symlink that leads OUTSIDE the root into a sibling temp dir.
//! Segment bytes are deterministic pseudo-random data, so two runs serve identical bodies.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use crate::PREFIX;

/// The video every test URL points into (the spec's example id).
pub const VIDEO_ID: &str = "53a9021a-c042-409b-ba4c-10853a45cbd9";

/// The spec's reference segment, relative to the video directory.
pub const SEGMENT: &str = "720p/segment_000.ts";

/// Size of [`SEGMENT`]: the spec's 1 355 480 bytes, just under the edge's default cache limit.
pub const SEGMENT_SIZE: usize = 1_355_480;

/// Modification time of every file of the standard tree (2023-11-14 22:13:20 UTC). Fixed so
/// ETags and `Last-Modified` read the same in every run.
pub const FIXED_MTIME_SECS: u64 = 1_700_000_000;

/// What an [`Entry`] is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory (its `rel` has no trailing slash).
    Directory,
    /// A path that goes through a symlink whose target is inside the root.
    SymlinkInside,
    /// A symlink whose target is outside the content root.
    SymlinkOutside,
}

/// One servable path of the tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the video directory, e.g. `720p/segment_000.ts`; `""` is the video
    /// directory itself.
    pub rel: &'static str,
    /// What it is on disk.
    pub kind: EntryKind,
}

impl Entry {
    /// The decoded request path (nginx's `$uri`) of this entry.
    pub fn uri(&self) -> String {
        ContentTree::uri(self.rel)
    }
}

/// Regular files of the standard tree: path relative to the video directory, and size for
/// binary files (`None` for generated text).
const FILES: &[(&str, Option<usize>)] = &[
    ("master.m3u8", None),
    ("enc.key", Some(16)),
    ("thumb.jpg", Some(20_000)),
    ("subs/en.vtt", None),
    ("720p/index.m3u8", None),
    (SEGMENT, Some(SEGMENT_SIZE)),
    ("720p/segment_001.ts", Some(1_200_004)),
    ("720p/segment_002.ts", Some(300_017)),
    ("720p/segment 003.ts", Some(4_096)),
    ("720p/100%.ts", Some(4_099)),
    ("360p/index.m3u8", None),
    ("360p/segment_000.ts", Some(400_000)),
    ("360p/segment_001.ts", Some(351_234)),
    ("extras/deep/nested/chapter.ts", Some(10_000)),
    ("empty.ts", Some(0)),
    // fMP4 rendition, audio, images and odd names: one of each type the edge maps.
    ("fmp4/init.mp4", Some(1_000)),
    ("fmp4/segment_000.m4s", Some(200_000)),
    ("audio/en.m4a", Some(50_000)),
    ("poster.PNG", Some(3_000)),
    ("thumbs/0001.webp", Some(2_000)),
    ("chapters.json", Some(300)),
    ("NOTICE", Some(100)),
];

const DIRECTORIES: &[&str] = &["", "720p", "extras/deep"];

/// Inside-root symlinks: link path and target, both relative to the video directory's layout.
const INSIDE_LINKS: &[(&str, &str)] = &[("720p/latest.ts", "segment_000.ts"), ("current", "720p")];

/// The outside-root symlink's path, relative to the video directory.
pub const LEAK: &str = "leak.ts";

/// A content root in a temp dir, removed on drop together with its outside sibling.
pub struct ContentTree {
    root: TempDir,
    // Holds the target of the escaping symlink; kept alive as long as the tree.
    outside: TempDir,
    entries: Vec<Entry>,
}

impl ContentTree {
    /// Builds the standard tree described in the module docs.
    pub fn new() -> Self {
        let root = world_readable_tempdir("e2e-content-");
        let outside = world_readable_tempdir("e2e-outside-");
        let mut tree = Self {
            root,
            outside,
            entries: Vec::new(),
        };
        tree.populate();
        tree
    }

    fn populate(&mut self) {
        for (index, &(rel, size)) in FILES.iter().enumerate() {
            let bytes = match size {
                Some(len) => pseudo_random_bytes(index as u64 + 1, len),
                None => text_file(rel).into_bytes(),
            };
            let path = self.write(rel, &bytes);
            set_fixed_mtime(&path);
            self.entries.push(Entry {
                rel,
                kind: EntryKind::File,
            });
        }
        self.entries.extend(DIRECTORIES.iter().map(|&rel| Entry {
            rel,
            kind: EntryKind::Directory,
        }));

        for &(link, target) in INSIDE_LINKS {
            symlink(target, self.path(link)).expect("create inside symlink");
        }
        self.entries.push(Entry {
            rel: "720p/latest.ts",
            kind: EntryKind::SymlinkInside,
        });
        self.entries.push(Entry {
            rel: "current/segment_001.ts",
            kind: EntryKind::SymlinkInside,
        });

        let private = self.outside.path().join("private.ts");
        fs::write(&private, b"bytes that live outside the content root\n")
            .expect("write the outside file");
        make_world_readable(&private, false);
        symlink(&private, self.path(LEAK)).expect("create outside symlink");
        self.entries.push(Entry {
            rel: LEAK,
            kind: EntryKind::SymlinkOutside,
        });
    }

    /// The content root (what `alias` / `--root` point at).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Every servable path of the standard tree.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The decoded request path for `rel` (relative to the video directory).
    pub fn uri(rel: &str) -> String {
        if rel.is_empty() {
            format!("{PREFIX}{VIDEO_ID}")
        } else {
            format!("{PREFIX}{VIDEO_ID}/{rel}")
        }
    }

    /// The file system path for `rel` (relative to the video directory).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(VIDEO_ID).join(rel)
    }

    /// Writes `bytes` to `rel`, creating parent directories; everything world-readable because
    /// nginx workers may run as another user.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(rel);
        self.create_parents(&path);
        fs::write(&path, bytes).expect("write content file");
        make_world_readable(&path, false);
        path
    }

    /// Replaces `rel` the way a packager publishes: write a sibling temp file, then rename it
    /// over the old one (a new inode; readers never see a half-written file).
    pub fn replace_atomically(&self, rel: &str, bytes: &[u8]) {
        let path = self.path(rel);
        let file_name = path
            .file_name()
            .expect("a content path names a file")
            .to_string_lossy();
        let staging = path.with_file_name(format!(".{file_name}.tmp"));
        fs::write(&staging, bytes).expect("write staging file");
        make_world_readable(&staging, false);
        fs::rename(&staging, &path).expect("rename staging file over the old one");
    }

    /// Deletes the file `rel`.
    pub fn remove(&self, rel: &str) {
        fs::remove_file(self.path(rel)).expect("remove content file");
    }

    fn create_parents(&self, path: &Path) {
        let parent = path.parent().expect("content paths have a parent");
        fs::create_dir_all(parent).expect("create content directories");
        // Every directory between the root and the file must be traversable by others.
        for dir in parent
            .ancestors()
            .take_while(|dir| dir.starts_with(self.root()))
        {
            make_world_readable(dir, true);
        }
    }
}

impl Default for ContentTree {
    fn default() -> Self {
        Self::new()
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64*), different for each `seed`.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    // Any non-zero state works for xorshift; mixing the seed avoids similar streams.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A temp dir others can traverse (tempfile creates them 0700).
pub fn world_readable_tempdir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    make_world_readable(dir.path(), true);
    dir
}

fn make_world_readable(path: &Path, is_dir: bool) {
    let mode = if is_dir { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod content path");
}

fn set_fixed_mtime(path: &Path) {
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_MTIME_SECS);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(mtime))
        .expect("set fixed mtime");
}

/// Plausible text for the playlists and subtitles, so their sizes and types look real.
fn text_file(rel: &str) -> String {
    if rel == "master.m3u8" {
        return "#EXTM3U\n#EXT-X-VERSION:3\n\
                #EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\n720p/index.m3u8\n\
                #EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n360p/index.m3u8\n"
            .to_owned();
    }
    if rel.ends_with(".vtt") {
        return "WEBVTT\n\n00:00.000 --> 00:04.000\nHello.\n".to_owned();
    }
    let mut playlist = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-KEY:METHOD=AES-128,URI=\"../enc.key\"\n",
    );
    for n in 0..3 {
        playlist.push_str(&format!("#EXTINF:6.000,\nsegment_{n:03}.ts\n"));
    }
    playlist.push_str("#EXT-X-ENDLIST\n");
    playlist
}
