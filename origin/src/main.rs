//! `origin`: the control plane (uploads, transcoding jobs, signed manifests).
//!
//! Not built yet: this binary only reserves the name in the workspace so the deployment and
//! the test harness can refer to it.

fn main() {
    eprintln!("origin: not implemented yet; see the project's issues");
    std::process::exit(2);
}
