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
use std::process::Output;

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
}
