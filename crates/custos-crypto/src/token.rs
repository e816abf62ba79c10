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

/// A keyed tokenizer; the HMAC key (inner and outer pads) is prepared once, not per value.
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
        let full = self.sign(value);
        let t = &full[..self.bytes];
        match self.encoding {
            Encoding::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut buf = [0u8; 64];
                for (pair, b) in buf.chunks_exact_mut(2).zip(t) {
                    pair[0] = HEX[(b >> 4) as usize];
                    pair[1] = HEX[(b & 15) as usize];
                }
                // Only ASCII hex digits were written.
                out.push_str(std::str::from_utf8(&buf[..t.len() * 2]).unwrap_or_default());
            }
            Encoding::Base64Url => {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(t, out);
            }
        }
    }

    /// The full MAC of `value`: the prepared key state is cloned, so per value this costs
    /// the two compressions of a short message and no key schedule.
    fn sign(&self, value: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(value);
        m.finalize().into_bytes().into()
    }

    /// A tokenizer under the subkey `HMAC(key, "custos/derive/" + purpose)`: values derived
    /// for another purpose (date-shift offsets) cannot be computed from published tokens.
    pub fn derived(&self, purpose: &str) -> Self {
        let mut label = b"custos/derive/".to_vec();
        label.extend_from_slice(purpose.as_bytes());
        let sub = self.sign(&label);
        Self {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(&sub)
                .unwrap_or_else(|_| self.mac.clone()),
            bytes: self.bytes,
            encoding: self.encoding,
        }
    }

    /// The first 8 bytes of the MAC of `value` as an integer.
    pub fn mac_u64(&self, value: &[u8]) -> u64 {
        let tag = self.sign(value);
        let mut b = [0u8; 8];
        b.copy_from_slice(&tag[..8]);
        u64::from_be_bytes(b)
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
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(), // HMAC accepts keys of any length
    }
}
