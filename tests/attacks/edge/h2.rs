//! A minimal HTTP/2 client for attacks: the connection preface, SETTINGS, PINGs, and GET
//! requests as HEADERS frames with HPACK literals (no Huffman, no table), written and never
//! read.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2).
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
/// SETTINGS_ENABLE_PUSH.
pub const ENABLE_PUSH: u16 = 0x2;

/// One frame: 24-bit length, type, flags, 31-bit stream id, payload (RFC 9113 §4.1).
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame payload fits");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A PING frame (not an acknowledgement) carrying `data`.
pub fn ping(data: [u8; 8]) -> Vec<u8> {
    frame(PING, 0, 0, &data)
}

/// A SETTINGS frame with these values.
pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in values {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// A complete GET request on `stream` (odd) as one HEADERS frame.
pub fn get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ] {
        literal(&mut block, name, value);
    }
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

/// A literal header field without indexing, new name (RFC 7541 §6.2.2), no Huffman coding.
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    for text in [name, value] {
        integer(out, 7, text.len());
        out.extend_from_slice(text.as_bytes());
    }
}

/// An HPACK integer with an `n`-bit prefix whose flag bits are zero (RFC 7541 §5.1).
fn integer(out: &mut Vec<u8>, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

#[test]
fn hpack_integers_and_frames() {
    let mut out = Vec::new();
    integer(&mut out, 5, 1337);
    assert_eq!(out, [31, 154, 10], "RFC 7541 C.1.2");
    let f = frame(SETTINGS, 0, 0, &[]);
    assert_eq!(f, [0, 0, 0, 4, 0, 0, 0, 0, 0]);
}
