//! AES-SIV (RFC 5297) deterministic encryption, for columns that must stay joinable: equal
//! plaintexts under the same key and context give equal ciphertexts, and nothing else leaks.
//!
//! Binary layout: `header (10) | SIV (16) | ciphertext`; text: `cs1.` + unpadded base64url.
//! The header and the context (table and column) are the two associated-data components.

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;

use crate::header::{HEADER_LEN, decode_text, encode_text};
use crate::{Algorithm, CryptoError, Header, SecretBytes};

/// Prefix of the text form.
pub const TEXT_PREFIX: &str = "cs1.";
/// Key size: AES-256-SIV uses two 256-bit keys.
pub const KEY_LEN: usize = 64;

/// Deterministic encryption under one key version.
pub struct SivCipher {
    header: [u8; HEADER_LEN],
    siv: Aes256Siv,
}

impl std::fmt::Debug for SivCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SivCipher([redacted])")
    }
}

impl SivCipher {
    /// A cipher for `key` (64 bytes), recorded in headers as `key_id`/`version`.
    pub fn new(key_id: u32, version: u32, key: &SecretBytes) -> Result<Self, CryptoError> {
        let siv = Aes256Siv::new_from_slice(key.expose()).map_err(|_| CryptoError::KeySize {
            algorithm: "AES-256-SIV",
            expected: KEY_LEN,
        })?;
        Ok(Self {
            header: Header {
                algorithm: Algorithm::Aes256Siv,
                key_id,
                version,
            }
            .encode(),
            siv,
        })
    }

    /// The binary ciphertext of `plaintext` bound to `context`.
    pub fn encrypt(&mut self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let ct = self
            .siv
            .encrypt([&self.header[..], context], plaintext)
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Appends the text form of the ciphertext of `plaintext` to `out`.
    pub fn encrypt_text_into(
        &mut self,
        plaintext: &str,
        context: &[u8],
        out: &mut String,
    ) -> Result<(), CryptoError> {
        let bin = self.encrypt(plaintext.as_bytes(), context)?;
        encode_text(&bin, TEXT_PREFIX, out);
        Ok(())
    }

    /// Decrypts a binary ciphertext made with this key version.
    pub fn decrypt(&mut self, ciphertext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let h = header_of(ciphertext)?;
        if ciphertext[..HEADER_LEN] != self.header {
            let _ = h;
            return Err(CryptoError::Malformed(
                "ciphertext names another key version",
            ));
        }
        self.siv
            .decrypt(
                [&ciphertext[..HEADER_LEN], context],
                &ciphertext[HEADER_LEN..],
            )
            .map_err(|_| CryptoError::Authentication)
    }

    /// Decrypts the text form; the plaintext must be UTF-8.
    pub fn decrypt_text(&mut self, text: &str, context: &[u8]) -> Result<String, CryptoError> {
        let bin = decode(text)?;
        String::from_utf8(self.decrypt(&bin, context)?)
            .map_err(|_| CryptoError::Malformed("plaintext is not UTF-8"))
    }
}

/// The header of a binary SIV ciphertext.
pub fn header_of(ciphertext: &[u8]) -> Result<Header, CryptoError> {
    let h = Header::parse(ciphertext)?;
    if h.algorithm != Algorithm::Aes256Siv {
        return Err(CryptoError::Malformed("not an AES-SIV ciphertext"));
    }
    if ciphertext.len() < HEADER_LEN + 16 {
        return Err(CryptoError::Malformed("too short"));
    }
    Ok(h)
}

/// Decodes the text form into binary.
pub fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    decode_text(text, TEXT_PREFIX)
}

/// Raw AES-SIV over `ad` components (RFC 5297 `S2V` inputs), for published test vectors;
/// `key` is 32 (AES-128-SIV) or 64 (AES-256-SIV) bytes.
pub fn raw_encrypt(key: &[u8], ad: &[&[u8]], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let err = |_| CryptoError::KeySize {
        algorithm: "AES-SIV",
        expected: KEY_LEN,
    };
    match key.len() {
        32 => aes_siv::siv::Aes128Siv::new_from_slice(key)
            .map_err(err)?
            .encrypt(ad, plaintext)
            .map_err(|_| CryptoError::Malformed("too many associated-data components")),
        _ => Aes256Siv::new_from_slice(key)
            .map_err(err)?
            .encrypt(ad, plaintext)
            .map_err(|_| CryptoError::Malformed("too many associated-data components")),
    }
}
