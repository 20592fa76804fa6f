//! Purging the edges' hot caches when a video is deleted: `POST <edge admin>/purge?prefix=..`
//! with the edge's bearer token, through the origin's one HTTP client. Best effort: an edge
//! serving a content root checks each hot-cache entry against its file, and a pull-through edge
//! fetches playlists again after their TTL, but keeps segments until they are evicted. After a
//! missed purge, those stay reachable through links signed before the delete, until the links
//! expire: the origin signs no new one for a deleted video.

use std::time::Duration;

use bytes::Bytes;

use crate::config::PurgeSettings;
use crate::http_client::{Client, Target};

/// Connect timeout and whole-attempt timeout of a purge.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Sends the purge to every configured edge at once; failures are logged, not returned.
pub async fn purge_edge(settings: &PurgeSettings, prefix: &str) {
    let Some(token) = &settings.token else {
        return;
    };
    let all = settings
        .edges
        .iter()
        .map(|url| purge_one(url, token.expose(), prefix));
    futures_util::future::join_all(all).await;
}

async fn purge_one(edge: &Target, token: &str, prefix: &str) {
    let url = &edge.authority;
    let client = match Client::new(edge, CONNECT_TIMEOUT, TIMEOUT) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(edge = %url, %error, "edge purge not sent");
            return;
        }
    };
    let path = format!("{}/purge?prefix={prefix}", edge.path.trim_end_matches('/'));
    let headers = [("authorization", format!("Bearer {token}"))];
    match client.post(&path, &headers, Bytes::new()).await {
        Ok(status) if status.is_success() => {
            tracing::info!(prefix, edge = %url, "edge cache purged")
        }
        Ok(status) => tracing::warn!(prefix, edge = %url, %status, "edge purge refused"),
        Err(error) => tracing::warn!(prefix, edge = %url, %error, "edge purge failed"),
    }
}
