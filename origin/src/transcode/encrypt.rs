//! AES-128 HLS encryption, done by the pipeline itself rather than by ffmpeg.
//!
//! ffmpeg 5.1 with `-hls_key_info_file` and `var_stream_map` encrypts every segment with IV 0
//! and declares `IV=0x0...` once, reusing one IV under one key. Here each rung gets its own
//! random key, and each segment is encrypted with AES-128-CBC (PKCS#7) under the IV the HLS
//! spec implies when `EXT-X-KEY` has no IV attribute: the segment's media sequence number as a
//! 128-bit big-endian integer (RFC 8216 §5.2). No (key, IV) pair is ever used twice.

use std::path::{Path, PathBuf};

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};

use super::playlist::{self, Segment};

type Enc = cbc::Encryptor<aes::Aes128>;
type Dec = cbc::Decryptor<aes::Aes128>;

/// A 16-byte content key.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey(pub [u8; 16]);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(<16 bytes>)")
    }
}

impl ContentKey {
    /// A fresh random key from the OS.
    pub fn generate() -> Self {
        let mut k = [0u8; 16];
        shared::media::fill_random(&mut k);
        Self(k)
    }
}

/// The IV of the segment with media sequence number `sequence`.
pub fn sequence_iv(sequence: u64) -> [u8; 16] {
    u128::from(sequence).to_be_bytes()
}

/// Encrypts `plain` for segment `sequence`.
pub fn encrypt_segment(key: &ContentKey, sequence: u64, plain: &[u8]) -> Vec<u8> {
    Enc::new(&key.0.into(), &sequence_iv(sequence).into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
}

/// Decrypts a segment (tests and verification).
pub fn decrypt_segment(key: &ContentKey, sequence: u64, data: &[u8]) -> Option<Vec<u8>> {
    Dec::new(&key.0.into(), &sequence_iv(sequence).into())
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .ok()
}

/// Encrypts the file at `path` in place (through a temporary file and a rename, so a crash
/// never leaves a half-encrypted segment under the final name).
pub fn encrypt_file(key: &ContentKey, sequence: u64, path: &Path) -> std::io::Result<()> {
    let plain = std::fs::read(path)?;
    let tmp = path.with_extension("enc.tmp");
    std::fs::write(&tmp, encrypt_segment(key, sequence, &plain))?;
    std::fs::rename(&tmp, path)
}

/// What one rung's encrypted segments weigh, for the master playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// The highest segment bit rate (bits/s): the master's `BANDWIDTH`.
    pub peak: u64,
    /// Bits over seconds of the whole rung: `AVERAGE-BANDWIDTH`.
    pub average: u64,
}

/// One rung of a work directory, encrypted in place: a fresh key written to `key_file`, every
/// segment of `playlist_path` encrypted under it (segment `i` with IV `i`, its media sequence
/// number in the published playlist, which starts at 0), and the playlist replaced by that
/// final form with the rung's key placeholder ([`playlist::variant`]).
pub async fn encrypt_rung(
    rung: &str,
    playlist_path: &Path,
    segments: &[Segment],
    key_file: &Path,
    segment_secs: u32,
) -> std::io::Result<Rates> {
    let key = ContentKey::generate();
    std::fs::write(key_file, key.0)?;
    let dir = playlist_path.parent().unwrap_or(Path::new("."));
    let files: Vec<(PathBuf, u64)> = (0..)
        .zip(segments)
        .map(|(sequence, seg)| (dir.join(&seg.uri), sequence))
        .collect();
    // CPU work on many files: off the async workers, so the job's lease heartbeat (the same
    // task) keeps beating meanwhile.
    let sizes = tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|(path, sequence)| {
                encrypt_file(&key, *sequence, path)?;
                Ok(std::fs::metadata(path)?.len())
            })
            .collect::<std::io::Result<Vec<u64>>>()
    })
    .await
    .map_err(std::io::Error::other)??;
    let text = playlist::variant(
        playlist::Kind::Vod,
        segment_secs,
        segments,
        &playlist::key_placeholder(rung),
    );
    std::fs::write(playlist_path, text)?;
    Ok(rates(segments, &sizes))
}

/// Peak and average bit rates of segments of these durations and sizes.
pub fn rates(segments: &[Segment], sizes: &[u64]) -> Rates {
    let (mut peak, mut bytes, mut secs) = (0u64, 0u64, 0f64);
    for (seg, &len) in segments.iter().zip(sizes) {
        bytes += len;
        secs += seg.duration;
        if seg.duration > 0.0 {
            peak = peak.max((len as f64 * 8.0 / seg.duration) as u64);
        }
    }
    let average = if secs > 0.0 {
        (bytes as f64 * 8.0 / secs) as u64
    } else {
        0
    };
    Rates {
        peak: peak.max(average),
        average,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_distinct_ivs() {
        let key = ContentKey([7u8; 16]);
        let data = vec![0x47u8; 16 * 120];
        let c0 = encrypt_segment(&key, 0, &data);
        let c1 = encrypt_segment(&key, 1, &data);
        assert_ne!(c0, c1, "same plaintext, different IV");
        assert_eq!(
            c0.len(),
            data.len() + 16,
            "PKCS#7 adds a full block to aligned input"
        );
        assert_eq!(decrypt_segment(&key, 0, &c0).as_deref(), Some(&data[..]));
        assert_ne!(decrypt_segment(&key, 1, &c0).as_deref(), Some(&data[..]));
        assert_eq!(sequence_iv(1)[15], 1);
        assert_eq!(sequence_iv(256)[14], 1);
    }

    #[test]
    fn rates_of_a_rung() {
        let seg = |d: f64| Segment {
            uri: String::new(),
            duration: d,
        };
        let r = rates(&[seg(2.0), seg(2.0), seg(1.0)], &[1000, 3000, 250]);
        assert_eq!(r.peak, 12000);
        assert_eq!(r.average, (4250 * 8) as u64 / 5);
    }

    #[test]
    fn keys_are_random() {
        let a = ContentKey::generate();
        let b = ContentKey::generate();
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "ContentKey(<16 bytes>)");
    }
}
