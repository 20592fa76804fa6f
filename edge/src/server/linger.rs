//! nginx's lingering close: after refusing a request whose rest (a body) may still be on its
//! way, stop sending and read and discard what the client sends for a while before closing.
//!
//! Closing a socket with unread bytes makes the kernel send a reset, and a reset that reaches
//! a client still writing its body destroys the refusal before the client reads it: a client
//! that writes a whole upload before reading would see "connection reset" instead of the 400.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

/// Longest a connection lingers in all (nginx `lingering_time`, shorter: a refused client
/// should not hold a connection slot for long).
const LINGER_TIME: Duration = Duration::from_secs(5);
/// Longest wait for the next bytes (nginx `lingering_timeout`).
const LINGER_IDLE: Duration = Duration::from_secs(1);
/// Most bytes read and discarded.
const LINGER_BYTES: usize = 8 << 20;

/// Half-closes `stream` (a FIN; over TLS a close_notify first) within `close_time`, then
/// discards what arrives until `expected` bytes (the rest of a body of known length) came, the
/// client closes or goes quiet, or a bound is reached.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    close_time: Duration,
    expected: Option<u64>,
) {
    if !matches!(timeout(close_time, stream.shutdown()).await, Ok(Ok(()))) {
        return;
    }
    let end = Instant::now() + LINGER_TIME;
    let mut scratch = vec![0u8; 16 * 1024];
    let most = expected.map_or(LINGER_BYTES, |n| {
        usize::try_from(n).unwrap_or(usize::MAX).min(LINGER_BYTES)
    });
    let mut discarded = 0;
    while discarded < most {
        let until = end.min(Instant::now() + LINGER_IDLE);
        match timeout_at(until, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn discards_until_the_client_closes() {
        let (mut server, mut client) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            client
                .write_all(&vec![7u8; 200_000])
                .await
                .expect("the body is taken");
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.expect("then EOF");
            rest.len()
        });
        linger(&mut server, Duration::from_secs(1), None).await;
        drop(server);
        assert_eq!(writer.await.expect("writer"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_once_a_body_of_known_length_is_in() {
        let (mut server, mut client) = tokio::io::duplex(64 * 1024);
        client.write_all(b"12345").await.expect("a 5-byte body");
        let started = Instant::now();
        linger(&mut server, Duration::from_secs(1), Some(5)).await;
        assert!(
            started.elapsed() < LINGER_IDLE,
            "no wait for bytes that are not coming"
        );
    }
}
