//! Starting ffmpeg and ffprobe so that they die with the origin process, however it dies.
//!
//! A worker killed with `kill -9` or by the OOM killer runs no destructor, so `kill_on_drop`
//! alone leaves its encoder running: it keeps burning CPU and writing into the work directory
//! of an attempt that another worker has already taken over. `PR_SET_PDEATHSIG` has the kernel
//! send SIGKILL to the child when its parent goes away.
//!
//! The kernel ties the signal to the *thread* that forked the child. Children are spawned from
//! the async runtime's worker threads, which live as long as the process; a child must never
//! be spawned from a short-lived thread (e.g. `spawn_blocking`), or it would be killed when
//! that thread retires.
#![allow(unsafe_code)]

use std::io;
use std::process::{Output, Stdio};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

/// Makes `command`'s process receive SIGKILL when this process dies, and kills it when its
/// handle is dropped.
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec; it calls only prctl, getppid
    // and _exit, which are async-signal-safe, and touches no memory shared with the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: no signal would come then.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command.kill_on_drop(true)
}

/// Spawns `command` bound to this process's lifetime.
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    die_with_parent(command).spawn()
}

/// Runs `command` to completion, bound to this process's lifetime.
pub async fn output(command: &mut Command) -> io::Result<Output> {
    die_with_parent(command).output().await
}

/// Runs `command` to completion like [`output`], keeping at most `limit` bytes of each of its
/// outputs. A child that writes more is killed and the run fails with `InvalidData`: what a
/// hostile file makes ffprobe print (a title tag of a gigabyte) never fills this process's
/// memory.
pub async fn output_within(command: &mut Command, limit: usize) -> io::Result<Output> {
    let mut child = die_with_parent(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    match tokio::try_join!(read_within(stdout, limit), read_within(stderr, limit)) {
        Ok((stdout, stderr)) => Ok(Output {
            status: child.wait().await?,
            stdout,
            stderr,
        }),
        Err(e) => {
            let _ = child.kill().await;
            Err(e)
        }
    }
}

/// All of `pipe`, or `InvalidData` once it holds more than `limit` bytes.
async fn read_within<R: AsyncRead + Unpin>(pipe: Option<R>, limit: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
    }
    match bytes.len() > limit {
        true => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the output is larger than {limit} bytes"),
        )),
        false => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_run_normally() {
        // That they die with the worker is proven end to end (tests/attacks: kill -9).
        let out = output(Command::new("sh").args(["-c", "echo ok"]))
            .await
            .expect("sh runs");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    }

    #[tokio::test]
    async fn a_child_that_writes_too_much_is_stopped() {
        let started = std::time::Instant::now();
        for script in [
            "head -c 50000000 /dev/zero; sleep 30",
            "head -c 50000000 /dev/zero >&2; sleep 30",
        ] {
            let refused = output_within(Command::new("sh").args(["-c", script]), 1 << 20).await;
            let error = refused.expect_err("more than the limit");
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidData,
                "{script}: {error}"
            );
        }
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        let out = output_within(Command::new("sh").args(["-c", "echo ok; echo no >&2"]), 3)
            .await
            .expect("within the limit");
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"ok\n"[..], &b"no\n"[..])
        );
    }
}
