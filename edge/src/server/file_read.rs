//! Reading file bodies for TLS, which cannot use sendfile: from the page cache on the runtime
//! thread when the bytes are already there (segments usually are), else on the blocking pool
//! so a cold disk read never stalls other connections. Reads append to the caller's buffer
//! without zeroing it first: on a multi-megabyte body the memset would cost as much as a
//! tenth of the copy out of the page cache.

use std::fs::File;
use std::io;
use std::sync::Arc;

use crate::sys;

/// Appends up to `want` bytes of `file` at `offset` to `buf`, returning the buffer and how many
/// bytes were read (0 only at the end of the file). The buffer travels to the blocking pool
/// and back when the read has to wait for the disk.
pub async fn read_at(
    file: &Arc<File>,
    mut buf: Vec<u8>,
    want: usize,
    offset: u64,
) -> (Vec<u8>, io::Result<usize>) {
    // Any error here (not cached, a filesystem or kernel without RWF_NOWAIT) leaves the answer
    // to the ordinary read below.
    if let Ok(n) = sys::pread_append(file, &mut buf, want, offset, true) {
        if n > 0 || want == 0 {
            return (buf, Ok(n));
        }
    }
    let file = file.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        let result = sys::pread_append(&file, &mut buf, want, offset, false);
        (buf, result)
    });
    match blocking.await {
        Ok(done) => done,
        Err(join) => (Vec::new(), Err(io::Error::other(join))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn appends_ranges_and_reports_the_end() {
        let path = std::env::temp_dir().join(format!("edge-read-{}", std::process::id()));
        File::create(&path)
            .and_then(|mut f| f.write_all(b"0123456789"))
            .expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let (buf, n) = read_at(&file, b"xx".to_vec(), 4, 3).await;
        assert_eq!((n.expect("read"), &buf[..]), (4, &b"xx3456"[..]));
        let (buf, n) = read_at(&file, buf, 8, 8).await;
        assert_eq!((n.expect("short read"), &buf[..]), (2, &b"xx345689"[..]));
        let (_, n) = read_at(&file, buf, 6, 10).await;
        assert_eq!(n.expect("read at the end"), 0);
        std::fs::remove_file(&path).ok();
    }
}
