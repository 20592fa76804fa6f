//! Reading file bodies for TLS, which cannot use sendfile: from the page cache on the runtime
//! thread when the bytes are already there (segments usually are), else on the blocking pool
//! so a cold disk read never stalls other connections.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::sys;

/// Reads `file` at `offset` into `buf[into]`, returning the buffer and how many bytes were
/// read (0 only at the end of the file). The buffer travels to the blocking pool and back
/// when the read has to wait for the disk.
pub async fn read_at(
    file: &Arc<File>,
    mut buf: Vec<u8>,
    into: Range<usize>,
    offset: u64,
) -> (Vec<u8>, io::Result<usize>) {
    // Any error here (not cached, a filesystem or kernel without RWF_NOWAIT) leaves the answer
    // to the ordinary read below.
    if let Ok(n) = sys::pread_nowait(file, &mut buf[into.clone()], offset) {
        if n > 0 || into.is_empty() {
            return (buf, Ok(n));
        }
    }
    let file = file.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        let result = file.read_at(&mut buf[into], offset);
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
    async fn reads_ranges_and_reports_the_end() {
        let path = std::env::temp_dir().join(format!("edge-read-{}", std::process::id()));
        File::create(&path)
            .and_then(|mut f| f.write_all(b"0123456789"))
            .expect("write");
        let file = Arc::new(File::open(&path).expect("open"));
        let (buf, n) = read_at(&file, vec![b'x'; 6], 2..6, 3).await;
        assert_eq!((n.expect("read"), &buf[..]), (4, &b"xx3456"[..]));
        let (_, n) = read_at(&file, buf, 0..6, 10).await;
        assert_eq!(n.expect("read at the end"), 0);
        std::fs::remove_file(&path).ok();
    }
}
