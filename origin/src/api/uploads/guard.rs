//! What an upload must pass before its bytes are kept: a per-user cap on uploads in progress
//! and a free-space floor on the data filesystem.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::api::error::ApiError;

/// Uploads in progress per user.
#[derive(Debug, Default)]
pub struct UploadSlots {
    in_progress: Mutex<HashMap<String, usize>>,
}

/// One upload in progress; its slot is given back when it is dropped, however the upload ends.
pub struct Slot {
    slots: Arc<UploadSlots>,
    user: String,
}

impl UploadSlots {
    /// A slot for `user`, or 429 when `max` of theirs are in progress already.
    pub fn take(self: &Arc<Self>, user: &str, max: usize) -> Result<Slot, ApiError> {
        let mut map = self.in_progress.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(user.to_owned()).or_insert(0);
        if *n >= max {
            return Err(ApiError::TooManyRequests(format!(
                "{max} uploads of yours are in progress already; wait for one to finish"
            )));
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            user: user.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .slots
            .in_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// 507 when writing `more` bytes under `path` would leave less than `floor` free.
pub fn ensure_room(path: &Path, more: u64, floor: u64) -> Result<(), ApiError> {
    let free = free_bytes(path)?;
    if free.saturating_sub(more) < floor {
        return Err(ApiError::InsufficientStorage(
            "the server is low on disk space; try again later".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_user_and_given_back() {
        let slots = Arc::new(UploadSlots::default());
        let a1 = slots.take("alice", 2).expect("first");
        let _a2 = slots.take("alice", 2).expect("second");
        assert!(matches!(
            slots.take("alice", 2),
            Err(ApiError::TooManyRequests(_))
        ));
        let _b = slots.take("bob", 2).expect("others are not affected");
        drop(a1);
        let _a3 = slots.take("alice", 2).expect("a slot came back");
    }

    #[test]
    fn disk_floor() {
        let dir = std::env::temp_dir();
        assert!(free_bytes(&dir).expect("statvfs") > 0);
        assert!(ensure_room(&dir, 0, 0).is_ok());
        assert!(matches!(
            ensure_room(&dir, 0, u64::MAX),
            Err(ApiError::InsufficientStorage(_))
        ));
    }
}
