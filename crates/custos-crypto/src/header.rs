//! The self-describing header in front of every custos ciphertext.
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      algorithm (1 = AES-256-GCM/HKDF-SHA256 subkey, 2 = AES-256-SIV)
//! bytes 2..6  key id (u32, big endian): which named key of the keyring
//! bytes 6..10 key version (u32, big endian)
//! ```
//! The header is authenticated: it is part of the associated data of both algorithms.

use crate::CryptoError;

/// Current header format version.
pub const HEADER_VERSION: u8 = 1;

/// Length of the common header.
pub const HEADER_LEN: usize = 10;

/// Algorithms a header can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// AES-256-GCM under a per-run HKDF-SHA256 subkey.
    Aes256GcmHkdf,
    /// AES-256-SIV (RFC 5297, 512-bit key).
    Aes256Siv,
}

impl Algorithm {
    fn code(self) -> u8 {
        match self {
            Self::Aes256GcmHkdf => 1,
            Self::Aes256Siv => 2,
        }
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Key id within the keyring.
    pub key_id: u32,
    /// Key version.
    pub version: u32,
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = HEADER_VERSION;
        h[1] = self.algorithm.code();
        h[2..6].copy_from_slice(&self.key_id.to_be_bytes());
        h[6..10].copy_from_slice(&self.version.to_be_bytes());
        h
    }

    /// Parses the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() < HEADER_LEN {
            return Err(CryptoError::Malformed("too short for a header"));
        }
        if b[0] != HEADER_VERSION {
            return Err(CryptoError::Malformed("unknown format version"));
        }
        let algorithm = match b[1] {
            1 => Algorithm::Aes256GcmHkdf,
            2 => Algorithm::Aes256Siv,
            _ => return Err(CryptoError::Malformed("unknown algorithm")),
        };
        let key_id = u32::from_be_bytes([b[2], b[3], b[4], b[5]]);
        let version = u32::from_be_bytes([b[6], b[7], b[8], b[9]]);
        Ok(Self {
            algorithm,
            key_id,
            version,
        })
    }
}

/// Decodes the text form `PREFIX` + unpadded base64url.
pub(crate) fn decode_text(s: &str, prefix: &str) -> Result<Vec<u8>, CryptoError> {
    let body = s
        .strip_prefix(prefix)
        .ok_or(CryptoError::Malformed("missing prefix"))?;
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(body)
        .map_err(|_| CryptoError::Malformed("invalid base64url"))
}

/// Appends the text form of `bytes` to `out`.
///
/// Cells are short (a 20-byte value is 74 bytes of ciphertext). `base64-simd` encodes them in
/// about half the time of a table loop and a quarter of the `base64` crate's general engine,
/// whose setup dominates at this size; the tests check it against the `base64` crate.
pub(crate) fn encode_text(bytes: &[u8], prefix: &str, out: &mut String) {
    out.push_str(prefix);
    let mut buf = [0u8; 256];
    for chunk in bytes.chunks(189) {
        let text = base64_simd::URL_SAFE_NO_PAD
            .encode_as_str(chunk, base64_simd::Out::from_slice(&mut buf[..]));
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn encoder_matches_the_base64_crate() {
        for len in 0..600 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 131 + len) as u8).collect();
            let mut ours = String::new();
            encode_text(&bytes, "p.", &mut ours);
            let theirs = format!(
                "p.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
            );
            assert_eq!(ours, theirs, "length {len}");
            assert_eq!(decode_text(&ours, "p.").unwrap(), bytes);
        }
    }
}
