//! The kernel's names for a negotiated TLS version and AEAD, and rustls' traffic secrets laid
//! out as the `struct tls12_crypto_info_*` that `setsockopt(SOL_TLS, TLS_TX/TLS_RX)` takes.

use rustls::{CipherSuite, ConnectionTrafficSecrets, ProtocolVersion};

// include/uapi/linux/tls.h
const TLS_1_2_VERSION: u16 = 0x0303;
const TLS_1_3_VERSION: u16 = 0x0304;
const TLS_CIPHER_AES_GCM_128: u16 = 51;
const TLS_CIPHER_AES_GCM_256: u16 = 52;
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;

/// The AEADs the kernel implements for TLS records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

/// A negotiated version and AEAD the kernel can take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelSuite {
    tls13: bool,
    cipher: Cipher,
}

impl KernelSuite {
    /// Every version and AEAD the kernel may implement (which ones it does, it says when a
    /// key is set: see `super::Ktls::start`).
    pub const ALL: [Self; 6] = [
        Self::new(true, Cipher::Aes128Gcm),
        Self::new(true, Cipher::Aes256Gcm),
        Self::new(true, Cipher::Chacha20Poly1305),
        Self::new(false, Cipher::Aes128Gcm),
        Self::new(false, Cipher::Aes256Gcm),
        Self::new(false, Cipher::Chacha20Poly1305),
    ];

    const fn new(tls13: bool, cipher: Cipher) -> Self {
        Self { tls13, cipher }
    }

    /// Bytes of this AEAD's key.
    pub fn key_len(&self) -> usize {
        match self.cipher {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::Chacha20Poly1305 => 32,
        }
    }

    /// The kernel's name for what rustls negotiated; `None` when the kernel cannot do it.
    pub fn of(version: ProtocolVersion, suite: CipherSuite) -> Option<Self> {
        use CipherSuite as S;
        let tls13 = match version {
            ProtocolVersion::TLSv1_3 => true,
            ProtocolVersion::TLSv1_2 => false,
            _ => return None,
        };
        let cipher = match suite {
            S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Cipher::Aes128Gcm,
            S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Cipher::Aes256Gcm,
            S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Cipher::Chacha20Poly1305,
            _ => return None,
        };
        // A TLS 1.3 suite only makes sense under TLS 1.3 and the others only under 1.2.
        let suite_is_13 = matches!(
            suite,
            S::TLS13_AES_128_GCM_SHA256
                | S::TLS13_AES_256_GCM_SHA384
                | S::TLS13_CHACHA20_POLY1305_SHA256
        );
        (suite_is_13 == tls13).then_some(Self { tls13, cipher })
    }
}

/// Why traffic secrets cannot be laid out for the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("rustls extracted secrets for another cipher than the one negotiated")]
    CipherMismatch,
    #[error("key or IV of unexpected length")]
    Length,
}

/// One direction's `struct tls12_crypto_info_*` (the kernel uses the same structs for TLS
/// 1.2 and 1.3): the bytes `setsockopt(SOL_TLS, TLS_TX or TLS_RX)` takes. They hold a traffic
/// key, so they are zeroed when dropped.
pub struct CryptoInfo(Vec<u8>);

impl CryptoInfo {
    /// Lays out `key` and rustls' 12-byte `iv` with the next record sequence number `seq`.
    ///
    /// AES-GCM: `{version, cipher_type, iv[8], key[16|32], salt[4], rec_seq[8]}` where the
    /// salt is the first 4 bytes of the IV and `iv` its last 8 (RFC 8446 nonces).
    /// ChaCha20-Poly1305: `{version, cipher_type, iv[12], key[32], rec_seq[8]}` (RFC 7905).
    /// The header fields are native-endian `__u16`s; the sequence number is big-endian, as it
    /// enters the nonce.
    ///
    /// TLS 1.2 with AES-GCM is the exception (RFC 5288): the kernel sends `iv` itself as the
    /// record's explicit nonce and adds one per record, where rustls sent the IV's last 8 bytes
    /// XOR the sequence number. Starting the kernel at that value would repeat the nonce of the
    /// server's Finished (sequence 0), a GCM key and nonce used twice. Every nonce rustls sent
    /// (`base ^ k`, `k < seq`) lies within `k` of `base`, so the kernel starts at
    /// `base + seq` and counts up from there without meeting one.
    pub fn new(suite: KernelSuite, key: &[u8], iv: &[u8], seq: u64) -> Result<Self, LayoutError> {
        let cipher_type = match suite.cipher {
            Cipher::Aes128Gcm => TLS_CIPHER_AES_GCM_128,
            Cipher::Aes256Gcm => TLS_CIPHER_AES_GCM_256,
            Cipher::Chacha20Poly1305 => TLS_CIPHER_CHACHA20_POLY1305,
        };
        if key.len() != suite.key_len() || iv.len() != 12 {
            return Err(LayoutError::Length);
        }
        let version = if suite.tls13 {
            TLS_1_3_VERSION
        } else {
            TLS_1_2_VERSION
        };
        let mut out = Vec::with_capacity(56);
        out.extend_from_slice(&version.to_ne_bytes());
        out.extend_from_slice(&cipher_type.to_ne_bytes());
        match suite.cipher {
            Cipher::Chacha20Poly1305 => {
                out.extend_from_slice(iv);
                out.extend_from_slice(key);
            }
            Cipher::Aes128Gcm | Cipher::Aes256Gcm => {
                let mut explicit = [0u8; 8];
                explicit.copy_from_slice(&iv[4..]);
                if !suite.tls13 {
                    explicit = u64::from_be_bytes(explicit).wrapping_add(seq).to_be_bytes();
                }
                out.extend_from_slice(&explicit);
                out.extend_from_slice(key);
                out.extend_from_slice(&iv[..4]);
            }
        }
        out.extend_from_slice(&seq.to_be_bytes());
        Ok(Self(out))
    }

    /// Lays out one direction of what `dangerous_extract_secrets` returned.
    pub fn from_secrets(
        suite: KernelSuite,
        (seq, secrets): &(u64, ConnectionTrafficSecrets),
    ) -> Result<Self, LayoutError> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => return Err(LayoutError::CipherMismatch),
        };
        if cipher != suite.cipher {
            return Err(LayoutError::CipherMismatch);
        }
        Self::new(suite, key.as_ref(), iv.as_ref(), *seq)
    }

    /// The struct's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for CryptoInfo {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

#[cfg(test)]
#[path = "layout/tests.rs"]
mod tests;
