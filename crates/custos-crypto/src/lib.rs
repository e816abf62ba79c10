//! custos cryptographic primitives over audited implementations: aws-lc-rs (AES-256-GCM,
//! HKDF, HMAC-SHA256, AES-CMAC, AES-CTR) and RustCrypto (`aes` for FF1, `fpe`, `subtle`).
//! Nothing here implements a block cipher or a MAC. Two modes are composed here from those
//! primitives, for speed, and checked against published vectors and an independent crate:
//! AES-SIV's `S2V` (over aws-lc CMAC/CTR, cross-checked with `aes-siv`) and FF1 on machine
//! integers (over RustCrypto AES, cross-checked with `fpe`).
//!
//! - [`aead`]: AES-256-GCM cell encryption with a self-describing header, per-run HKDF subkeys
//!   (so random 96-bit nonces stay far below NIST SP 800-38D's 2^32 limit per key) and the
//!   column bound as associated data.
//! - [`siv`]: AES-SIV (RFC 5297) deterministic encryption for joinable columns.
//! - [`fpe`]: FF1 (NIST SP 800-38G) format-preserving encryption with digit, alphanumeric,
//!   card (Luhn kept valid) and SSN (structure kept valid) modes.
//! - [`token`]: keyed HMAC-SHA256 tokens.
//!
//! Key material is held in [`SecretBytes`], which zeroizes on drop and never prints.

pub mod aead;
pub mod fpe;
mod header;
mod secret;
pub mod siv;
pub mod token;

pub use header::{Algorithm, HEADER_VERSION, Header};
pub use secret::{SecretBytes, ct_eq};

/// A cell cipher with a binary form and a text form (`cx1.` AES-GCM, `cs1.` AES-SIV): the
/// text form is the prefix plus unpadded base64url of the binary form.
pub trait CellEncryptor {
    /// Prefix of the text form.
    const TEXT_PREFIX: &'static str;

    /// Appends the binary ciphertext of `plaintext`, bound to `context`, to `out`.
    fn encrypt_into(
        &mut self,
        plaintext: &[u8],
        context: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError>;

    /// Appends the text form of the ciphertext of `plaintext` to `out`; `scratch` is reused
    /// between calls to avoid allocating per cell.
    fn encrypt_text_into(
        &mut self,
        plaintext: &str,
        context: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut String,
    ) -> Result<(), CryptoError> {
        scratch.clear();
        self.encrypt_into(plaintext.as_bytes(), context, scratch)?;
        header::encode_text(scratch, Self::TEXT_PREFIX, out);
        Ok(())
    }
}

/// Errors from the primitives. Messages never contain plaintext, ciphertext or key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext does not parse (wrong prefix, encoding, length or header).
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// Authentication failed: wrong key, wrong column binding, or modified data.
    #[error("ciphertext failed authentication (wrong key or column, or the data was modified)")]
    Authentication,
    /// Key material of the wrong size for the algorithm.
    #[error("key for {algorithm} must be {expected} bytes")]
    KeySize {
        /// Algorithm name.
        algorithm: &'static str,
        /// Expected length.
        expected: usize,
    },
    /// A value outside the domain of a format-preserving mode.
    #[error("{0}")]
    Domain(String),
}
