//! Purging the edge's hot cache when a video is deleted: `POST <edge admin>/purge?prefix=..`
//! with the edge's bearer token. Best effort: the edge also revalidates every cached file
//! against the disk, so a missed purge cannot serve a deleted file for long.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Settings;

/// Sends the purge to every configured edge at once; failures are logged, not returned.
pub async fn purge_edge(settings: &Settings, prefix: &str) {
    let Some(token) = &settings.edge_purge_token else {
        return;
    };
    let all = settings
        .edge_admin_urls
        .iter()
        .map(|url| purge_one(url, token.expose(), prefix));
    futures_util::future::join_all(all).await;
}

async fn purge_one(url: &str, token: &str, prefix: &str) {
    match tokio::time::timeout(Duration::from_secs(5), send(url, token, prefix)).await {
        Ok(Ok(200)) => tracing::info!(prefix, edge = url, "edge cache purged"),
        Ok(Ok(status)) => tracing::warn!(prefix, edge = url, status, "edge purge refused"),
        Ok(Err(error)) => tracing::warn!(prefix, edge = url, %error, "edge purge failed"),
        Err(_) => tracing::warn!(prefix, edge = url, "edge purge timed out"),
    }
}

/// A minimal HTTP/1.1 POST over plain TCP (the admin listener is internal and plain).
async fn send(url: &str, token: &str, prefix: &str) -> std::io::Result<u16> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("edge admin_url must be http://host:port"))?;
    let authority = authority.split('/').next().unwrap_or(authority);
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "POST /purge?prefix={prefix} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response).await?;
    let status = std::str::from_utf8(&response)
        .ok()
        .and_then(|r| r.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed response from the edge"))?;
    Ok(status)
}
