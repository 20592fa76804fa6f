//! The signature a receiver checks: `X-Webhook-Signature: sha256=<hex>` where `<hex>` is
//! HMAC-SHA256(`WEBHOOK_SECRET`, `"<X-Webhook-Timestamp>.<raw body>"`), the scheme Stripe
//! uses. Signing the timestamp with the body lets a receiver refuse replays: it recomputes the
//! HMAC over the raw bytes it received, compares in constant time, and rejects a timestamp
//! more than a few minutes from its clock. Each attempt is signed anew with its own time.

use ring::hmac;

/// Unix seconds of this attempt.
pub const TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
/// `sha256=<lowercase hex>`.
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// The event's id, the same on every attempt, so a receiver can drop duplicates.
pub const ID_HEADER: &str = "x-webhook-id";

/// The `X-Webhook-Signature` value for `body` sent at `timestamp`.
pub fn sign(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
    }

    #[test]
    fn matches_openssl() {
        // Computed independently with:
        // printf '%s' '1700000000.{"event":"video.ready","video_id":"abc"}' \
        //   | openssl dgst -sha256 -hmac 'test-webhook-secret-0123456789'
        const EXPECTED: &str =
            "sha256=928de6f2a9fadd96ba8203b148879eed910aa718617eaf91a2e968efa22842c8";
        let body = br#"{"event":"video.ready","video_id":"abc"}"#;
        assert_eq!(
            sign(&key("test-webhook-secret-0123456789"), 1_700_000_000, body),
            EXPECTED
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        let tag = hmac::sign(&key("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            hex(tag.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn timestamp_is_part_of_the_signature() {
        let k = key("test-webhook-secret-0123456789");
        assert_ne!(sign(&k, 1, b"{}"), sign(&k, 2, b"{}"));
    }
}
