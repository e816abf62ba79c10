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
    use base64::Engine as _;
    let body = s
        .strip_prefix(prefix)
        .ok_or(CryptoError::Malformed("missing prefix"))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| CryptoError::Malformed("invalid base64url"))
}

/// Appends the text form of `bytes` to `out`.
///
/// Cells are short (a 20-byte value is 66 bytes of ciphertext), where the `base64` crate's
/// general engine spends more time on setup than on encoding; this table loop writes the same
/// unpadded base64url (checked against the crate in the tests) into a stack buffer.
pub(crate) fn encode_text(bytes: &[u8], prefix: &str, out: &mut String) {
    out.push_str(prefix);
    let mut buf = [0u8; 256];
    for chunk in bytes.chunks(189) {
        let mut groups = chunk.chunks_exact(3);
        for (g, o) in groups.by_ref().zip(buf.chunks_exact_mut(4)) {
            let v = usize::from(g[0]) << 16 | usize::from(g[1]) << 8 | usize::from(g[2]);
            let (hi, lo) = (PAIRS[v >> 12], PAIRS[v & 0xfff]);
            o[0] = hi[0];
            o[1] = hi[1];
            o[2] = lo[0];
            o[3] = lo[1];
        }
        let mut n = chunk.len() / 3 * 4;
        match *groups.remainder() {
            [a] => {
                buf[n] = B64[usize::from(a >> 2)];
                buf[n + 1] = B64[usize::from((a & 3) << 4)];
                n += 2;
            }
            [a, b] => {
                let v = usize::from(a) << 8 | usize::from(b);
                buf[n] = B64[(v >> 10) & 63];
                buf[n + 1] = B64[(v >> 4) & 63];
                buf[n + 2] = B64[(v << 2) & 63];
                n += 3;
            }
            _ => {}
        }
        // Only table bytes (ASCII) were written.
        out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The two base64url characters of every 12-bit value: half the lookups per byte.
static PAIRS: [[u8; 2]; 4096] = {
    let mut t = [[0u8; 2]; 4096];
    let mut i = 0;
    while i < 4096 {
        t[i] = [B64[i >> 6], B64[i & 63]];
        i += 1;
    }
    t
};

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
