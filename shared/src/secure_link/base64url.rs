//! base64url as nginx's `ngx_decode_base64url` reads it, and canonical encoding for signing.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Encodes without padding.
pub(super) fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    encode_into(bytes, &mut out);
    out
}

/// Appends the encoding of `bytes` to `out`, without padding.
pub(super) fn encode_into(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Decodes an md5 argument the way nginx does and returns it only if it is exactly 16 bytes.
///
/// nginx stops at the first `=` and never looks past it, rejects any other byte outside the
/// url-safe alphabet, rejects a length of 1 mod 4, and ignores the unused low bits of the last
/// character (so non-canonical encodings are accepted). 16 bytes means exactly 22 characters.
pub(super) fn decode_md5(text: &[u8]) -> Option<[u8; 16]> {
    let significant = text.iter().position(|&b| b == b'=').unwrap_or(text.len());
    let text = &text[..significant];
    let mut vals = [0u8; 22];
    if text.len() != vals.len() {
        // Every other length decodes to something other than 16 bytes, or fails.
        return None;
    }
    for (v, &c) in vals.iter_mut().zip(text) {
        *v = value(c)?;
    }
    let mut out = [0u8; 16];
    let mut o = 0;
    for q in vals[..20].chunks(4) {
        out[o] = (q[0] << 2) | (q[1] >> 4);
        out[o + 1] = (q[1] << 4) | (q[2] >> 2);
        out[o + 2] = (q[2] << 6) | q[3];
        o += 3;
    }
    out[15] = (vals[20] << 2) | (vals[21] >> 4);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_rfc4648_url_alphabet() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn decode_round_trips_16_bytes() {
        let bytes: [u8; 16] =
            core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(251));
        let text = encode(&bytes);
        assert_eq!(text.len(), 22);
        assert_eq!(decode_md5(text.as_bytes()), Some(bytes));
    }

    #[test]
    fn decode_follows_nginx_quirks() {
        let good = b"OUrIAfiq5U-vLm1r8UEHxA";
        let want = decode_md5(good).expect("valid");
        // Stops at '=', ignores what follows.
        assert_eq!(decode_md5(b"OUrIAfiq5U-vLm1r8UEHxA="), Some(want));
        assert_eq!(decode_md5(b"OUrIAfiq5U-vLm1r8UEHxA=X"), Some(want));
        // Unused low bits of the last character are ignored.
        assert_eq!(decode_md5(b"OUrIAfiq5U-vLm1r8UEHxP"), Some(want));
        // Standard alphabet, wrong lengths.
        assert_eq!(decode_md5(b"OUrIAfiq5U+vLm1r8UEHxA"), None);
        assert_eq!(decode_md5(b"OUrIAfiq5U-vLm1r8UEHx"), None);
        assert_eq!(decode_md5(b"OUrIAfiq5U-vLm1r8UEHxAA"), None);
        assert_eq!(decode_md5(b""), None);
    }
}
