//! The only module with `unsafe`: thin wrappers over the Linux syscalls std does not expose.
//!
//! - `sendfile(2)` with an explicit offset, so one open file can serve any range to many
//!   connections at once (the `sendfile` crate sends whole files from offset 0 only).
//! - `openat2(2)` with `RESOLVE_BENEATH`, so the kernel itself refuses any path (`..`, an
//!   absolute or escaping symlink) that leads out of the content root.
//! - `preadv2(2)` with `RWF_NOWAIT`, so TLS bodies are read on the runtime thread only when
//!   the page cache already holds them; reads land in a buffer's spare capacity, so buffers
//!   are never zeroed first.
//! - kernel TLS ([`ktls`]): the `tls` upper-layer protocol, traffic keys, alerts.
#![allow(unsafe_code)]

pub mod ktls;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// Sends up to `count` bytes of `file` starting at `*offset` to the socket `out`, advancing
/// `*offset` by the number of bytes sent. Returns that number; 0 means end of file.
pub fn sendfile(out: RawFd, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
    let mut off = libc::off_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
    // SAFETY: `out` and `file` are open descriptors owned by the caller for the duration of the
    // call, and `off` is a valid, exclusively borrowed off_t.
    let n = unsafe { libc::sendfile(out, file.as_raw_fd(), &mut off, count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *offset = off as u64;
    Ok(n as usize)
}

/// `preadv2(2)` of up to `want` bytes of `file` at `offset`, appended to `buf` in its spare
/// capacity (reserved as needed), so the buffer is never zeroed first. Returns the number of
/// bytes appended. With `nowait` (`RWF_NOWAIT`) it reads only what the page cache already holds,
/// never waiting for the disk (`WouldBlock` when none of it is cached): a runtime thread copies
/// a hot segment itself and hands only cold reads to the blocking pool.
pub fn pread_append(
    file: &File,
    buf: &mut Vec<u8>,
    want: usize,
    offset: u64,
    nowait: bool,
) -> io::Result<usize> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
    buf.reserve(want);
    let spare = &mut buf.spare_capacity_mut()[..want];
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // SAFETY: `iov` describes `want` bytes of `buf`'s spare capacity, valid for writes for the
    // whole call; the descriptor is open for as long as `file` is borrowed. Plain pread when
    // waiting is fine: it works on kernels and filesystems without preadv2 flags.
    let n = unsafe {
        if nowait {
            libc::preadv2(file.as_raw_fd(), &iov, 1, off, libc::RWF_NOWAIT)
        } else {
            libc::pread(file.as_raw_fd(), iov.iov_base, iov.iov_len, off)
        }
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the kernel initialised the first `n <= want` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `send(2)` with `MSG_MORE`: the response head waits in the kernel for the file bytes that
/// follow, so head and body leave in full segments (nginx's `tcp_nopush`).
pub fn send_more(out: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid slice for its length; `out` is an open socket of the caller.
    let n = unsafe {
        libc::send(
            out,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_MORE | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Opens `path` (relative) read-only beneath the directory `root`, never leaving it.
///
/// Symlinks that stay inside the root are followed; `..` above it, absolute symlinks and
/// symlinks leading out fail with `EXDEV`. Returns `Unsupported` when the kernel has no
/// `openat2` (before 5.6, or filtered by a seccomp profile), so the caller can fall back.
pub fn open_beneath(root: &File, path: &[u8]) -> io::Result<File> {
    with_c_path(path, |path| open_beneath_c(root, path))
}

fn open_beneath_c(root: &File, path: &CStr) -> io::Result<File> {
    // SAFETY: open_how is a plain C struct for which all-zero bytes are a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: every pointer is valid for the call; the size matches the struct passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENOSYS) => io::Error::new(io::ErrorKind::Unsupported, "openat2 unavailable"),
            _ => err,
        });
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

/// `fstatat(root, path)`: the status of `path` relative to the directory `root`, following
/// symlinks like `stat(2)`. It runs on every cache hit, so it is cheaper than `stat` on the
/// joined path: no allocation for usual path lengths, no walk from `/`, and it sees the same
/// tree as [`open_beneath`].
pub fn stat_at(root: &File, path: &[u8]) -> io::Result<libc::stat> {
    with_c_path(path, |path| {
        // SAFETY: `stat` is a plain C struct for which all-zero bytes are a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open, the path is NUL-terminated, `st` is valid for writes.
        let rc = unsafe { libc::fstatat(root.as_raw_fd(), path.as_ptr(), &mut st, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st)
    })
}

/// Calls `f` with `path` NUL-terminated: on the stack when it is short (request paths are),
/// in a heap `CString` otherwise. A NUL inside `path` is an error, as for `CString`.
fn with_c_path<T>(path: &[u8], f: impl FnOnce(&CStr) -> io::Result<T>) -> io::Result<T> {
    let nul = || io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
    let mut buf = [0u8; 512];
    if path.len() < buf.len() {
        buf[..path.len()].copy_from_slice(path);
        let c = CStr::from_bytes_until_nul(&buf).map_err(|_| nul())?;
        if c.to_bytes().len() != path.len() {
            return Err(nul());
        }
        return f(c);
    }
    f(&CString::new(path).map_err(|_| nul())?)
}

/// Makes glibc return large buffers to the kernel when they are freed.
///
/// Cache fills allocate one buffer per file (hundreds of KiB). glibc serves those with mmap
/// but, after the first free, raises its mmap threshold dynamically and keeps later ones in
/// per-thread arenas, so evicted cache entries stay resident and RSS grows far past the cache
/// budget. A fixed threshold (which also disables the adjustment) and a small number of
/// arenas keep RSS close to what is live.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once at start-up.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Raises the soft open-files limit to the hard limit (each connection holds a descriptor).
/// Returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    // SAFETY: rlimit is a plain C struct; getrlimit/setrlimit only read/write it.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn open_beneath_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("edge-sys-{}", std::process::id()));
        let inside = dir.join("root");
        std::fs::create_dir_all(inside.join("sub")).expect("mkdir");
        std::fs::write(inside.join("sub/a.txt"), b"a").expect("write");
        std::fs::write(dir.join("secret.txt"), b"s").expect("write");
        std::os::unix::fs::symlink("../secret.txt", inside.join("out")).expect("symlink");
        std::os::unix::fs::symlink("sub/a.txt", inside.join("in")).expect("symlink");
        let root = File::open(&inside).expect("open root");
        let mut s = String::new();
        open_beneath(&root, b"in")
            .expect("inside link")
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "a");
        for bad in [
            &b"out"[..],
            b"../secret.txt",
            b"/etc/passwd",
            b"sub/../../secret.txt",
        ] {
            let err = open_beneath(&root, bad).expect_err("must not escape");
            assert_eq!(
                err.raw_os_error(),
                Some(libc::EXDEV),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn sendfile_sends_a_range() {
        let (mut a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let path = std::env::temp_dir().join(format!("edge-sf-{}", std::process::id()));
        std::fs::File::create(&path)
            .expect("create")
            .write_all(b"0123456789")
            .expect("write");
        let file = File::open(&path).expect("open");
        let mut off = 3;
        let n = sendfile(b.as_raw_fd(), &file, &mut off, 4).expect("sendfile");
        assert_eq!((n, off), (4, 7));
        drop(b);
        let mut got = String::new();
        a.read_to_string(&mut got).expect("read");
        assert_eq!(got, "3456");
        std::fs::remove_file(&path).ok();
    }
}
