//! Keyed tokens: HMAC-SHA256 of the value, truncated, as hex or unpadded base64url.
//!
//! Tokens are deterministic per key (equal values give equal tokens, so they join) and cannot
//! be reversed; they are not bound to a column so that one token key links a subject across
//! tables. Truncation below 16 bytes raises the collision risk: at 8 bytes, 2^32 distinct
//! values give a collision with probability about 1/2.

use hmac::{Hmac, KeyInit, Mac};
use sha2_11::Sha256;

use crate::{CryptoError, SecretBytes};

/// Token text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase hex.
    Hex,
    /// Unpadded base64url.
    Base64Url,
}

/// A keyed tokenizer; the HMAC key schedule is computed once and cloned per value.
#[derive(Clone)]
pub struct Tokenizer {
    mac: Hmac<Sha256>,
    bytes: usize,
    encoding: Encoding,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("key", &"[redacted]")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Tokenizer {
    /// A tokenizer with `key` (at least 32 bytes), keeping `bytes` (8..=32) of the MAC.
    pub fn new(key: &SecretBytes, bytes: usize, encoding: Encoding) -> Result<Self, CryptoError> {
        if key.len() < 32 {
            return Err(CryptoError::KeySize {
                algorithm: "HMAC-SHA256 token",
                expected: 32,
            });
        }
        if !(8..=32).contains(&bytes) {
            return Err(CryptoError::Domain(
                "token length must be 8 to 32 bytes".into(),
            ));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()).map_err(|_| {
            CryptoError::KeySize {
                algorithm: "HMAC-SHA256",
                expected: 32,
            }
        })?;
        Ok(Self {
            mac,
            bytes,
            encoding,
        })
    }

    /// Appends the token of `value` to `out`.
    pub fn token_into(&self, value: &[u8], out: &mut String) {
        let mut m = self.mac.clone();
        m.update(value);
        let full = m.finalize().into_bytes();
        let t = &full[..self.bytes];
        match self.encoding {
            Encoding::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for b in t {
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 15) as usize] as char);
                }
            }
            Encoding::Base64Url => {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(t, out);
            }
        }
    }

    /// The token of `value`.
    pub fn token(&self, value: &[u8]) -> String {
        let mut s = String::with_capacity(self.bytes * 2);
        self.token_into(value, &mut s);
        s
    }

    /// Whether `token` is the token of `value` (constant-time comparison).
    pub fn verify(&self, value: &[u8], token: &str) -> bool {
        crate::ct_eq(self.token(value).as_bytes(), token.as_bytes())
    }
}

/// Full HMAC-SHA256, for published test vectors.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(), // HMAC accepts keys of any length
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}
