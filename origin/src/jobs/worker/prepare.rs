//! What a job needs on this machine before its encode: with a bucket, the upload (downloaded,
//! or a presigned URL) and the subtitle files uploaded for the video.

use std::sync::Arc;

use shared::media::{Layout, VideoId};
use shared::shutdown::Switch;

use crate::jobs::store::JobStore;
use crate::jobs::subtitle_files::pull_files;
use crate::storage::{Fetched, MediaStore, StorageError};
use crate::transcode::pipeline::PipelineError;

/// Fetches what the encode reads. The encode watches `cancel` itself; until it starts, a cancel
/// (a delete) ends the download or the wait for the subtitle files' lease here, not minutes
/// later.
pub(super) async fn prepare<S: JobStore>(
    store: &Arc<S>,
    media: &MediaStore,
    layout: &Layout,
    video: &VideoId,
    cancel: &mut Switch,
) -> Result<Fetched, PipelineError> {
    let fetch = async {
        let fetched = match media.fetch_source(video).await? {
            Some(fetched) => fetched,
            None => Fetched::File(layout.source_file(video)),
        };
        pull_files(store, media, video).await?;
        Ok::<_, StorageError>(fetched)
    };
    let prepared = tokio::select! {
        prepared = fetch => prepared.map_err(PipelineError::from),
        () = cancel.fired() => Err(PipelineError::Cancelled),
    };
    if prepared.is_err() {
        // A copy downloaded before the failure or the cancel must not stay behind: the next
        // attempt may run on another machine.
        media.release_source(video);
    }
    prepared
}
