//! What an upload must pass before its bytes are kept, besides its user's slot
//! ([`crate::api::user_slots`]): a free-space floor on the data filesystem.

use std::path::Path;

use crate::api::error::ApiError;

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
