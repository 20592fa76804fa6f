//! Listing what a test left on disk ("nothing was left behind", "the work directory is gone").

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, sorted (empty when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The names directly inside `dir`, sorted (empty when `dir` does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_recursively_and_names_sorted() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("b/c")).expect("mkdir");
        std::fs::write(dir.path().join("b/c/x"), b"").expect("write");
        std::fs::write(dir.path().join("a"), b"").expect("write");
        assert_eq!(
            files_under(dir.path()),
            [dir.path().join("a"), dir.path().join("b/c/x")]
        );
        assert_eq!(entries(dir.path()), ["a", "b"]);
        assert!(files_under(&dir.path().join("missing")).is_empty());
    }
}
