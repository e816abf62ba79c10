//! AES-256-GCM cell encryption.
//!
//! Binary layout: `header (10) | salt (16) | nonce (12) | ciphertext | tag (16)`; text layout:
//! `cx1.` + unpadded base64url of the binary form.
//!
//! **Nonces.** NIST SP 800-38D allows at most 2^32 encryptions with random 96-bit nonces under
//! one key. custos never encrypts cells under the data key itself: each [`AeadEncryptor`] draws a
//! random 128-bit salt and derives a subkey `HKDF-SHA256(data key, salt, "custos/aead/v1")`;
//! the salt travels in every ciphertext. An encryptor switches to a fresh salt after
//! [`MAX_CELLS_PER_SUBKEY`] (2^31) cells, so no subkey ever reaches the limit, whatever the
//! number of cells under one data key. Two encryptors pick the same salt with probability
//! 2^-128 per pair.
//!
//! **Binding.** The associated data is `header | salt | context`, where the caller's context
//! names the table and column. A ciphertext copied to another column, or with any bit of its
//! header, salt, nonce, body or tag changed, fails to decrypt.

use aes_gcm::aead::consts::U12;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use sha2_11::Sha256;
use zeroize::Zeroizing;

use crate::header::{HEADER_LEN, decode_text, encode_text};
use crate::{Algorithm, CryptoError, Header, SecretBytes};

/// Prefix of the text form.
pub const TEXT_PREFIX: &str = "cx1.";
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const PREFIX_LEN: usize = HEADER_LEN + SALT_LEN + NONCE_LEN;
/// Bytes added to every plaintext.
pub const OVERHEAD: usize = PREFIX_LEN + TAG_LEN;
/// Cells encrypted under one derived subkey before a new salt is drawn.
pub const MAX_CELLS_PER_SUBKEY: u64 = 1 << 31;
const HKDF_INFO: &[u8] = b"custos/aead/v1";

fn subkey(key: &SecretBytes, salt: &[u8]) -> Result<Aes256Gcm, CryptoError> {
    if key.len() != 32 {
        return Err(CryptoError::KeySize {
            algorithm: "AES-256-GCM",
            expected: 32,
        });
    }
    let hk = Hkdf::<Sha256>::new(Some(salt), key.expose());
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(HKDF_INFO, okm.as_mut())
        .map_err(|_| CryptoError::KeySize {
            algorithm: "HKDF-SHA256",
            expected: 32,
        })?;
    Aes256Gcm::new_from_slice(okm.as_ref()).map_err(|_| CryptoError::KeySize {
        algorithm: "AES-256-GCM",
        expected: 32,
    })
}

/// Encrypts cells under one key version. Create one per run (or batch) and reuse it: the key
/// schedule is computed once, not per cell.
pub struct AeadEncryptor {
    header: [u8; HEADER_LEN],
    key: SecretBytes,
    salt: [u8; SALT_LEN],
    cipher: Aes256Gcm,
    used: u64,
    rng: StdRng,
    aad: Vec<u8>,
}

impl std::fmt::Debug for AeadEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AeadEncryptor")
            .field("key", &"[redacted]")
            .field("used", &self.used)
            .finish()
    }
}

impl AeadEncryptor {
    /// An encryptor for `key` (32 bytes), recorded in headers as `key_id`/`version`.
    pub fn new(key_id: u32, version: u32, key: &SecretBytes) -> Result<Self, CryptoError> {
        let mut rng = StdRng::from_os_rng();
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let cipher = subkey(key, &salt)?;
        Ok(Self {
            header: Header {
                algorithm: Algorithm::Aes256GcmHkdf,
                key_id,
                version,
            }
            .encode(),
            key: key.clone(),
            salt,
            cipher,
            used: 0,
            rng,
            aad: Vec::with_capacity(64),
        })
    }

    fn resalt(&mut self) -> Result<(), CryptoError> {
        self.rng.fill_bytes(&mut self.salt);
        self.cipher = subkey(&self.key, &self.salt)?;
        self.used = 0;
        Ok(())
    }

    /// Appends the binary ciphertext of `plaintext`, bound to `context`, to `out`.
    pub fn encrypt_into(
        &mut self,
        plaintext: &[u8],
        context: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if self.used >= MAX_CELLS_PER_SUBKEY {
            self.resalt()?;
        }
        self.used += 1;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        let start = out.len();
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        self.aad.clear();
        self.aad
            .extend_from_slice(&out[start..start + HEADER_LEN + SALT_LEN]);
        self.aad.extend_from_slice(context);
        let body = &mut out[start + PREFIX_LEN..];
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::<U12>::from(nonce), &self.aad, body.into())
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        out.extend_from_slice(tag.as_slice());
        Ok(())
    }

    /// The binary ciphertext of `plaintext`.
    pub fn encrypt(&mut self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.encrypt_into(plaintext, context, &mut out)?;
        Ok(out)
    }

    /// Appends the text form (`cx1.` + base64url) of the ciphertext of `plaintext` to `out`;
    /// `scratch` is reused between calls to avoid allocating per cell.
    pub fn encrypt_text_into(
        &mut self,
        plaintext: &str,
        context: &[u8],
        scratch: &mut Vec<u8>,
        out: &mut String,
    ) -> Result<(), CryptoError> {
        scratch.clear();
        self.encrypt_into(plaintext.as_bytes(), context, scratch)?;
        encode_text(scratch, TEXT_PREFIX, out);
        Ok(())
    }
}

/// The header of a binary ciphertext (to find the key version that decrypts it).
pub fn header_of(ciphertext: &[u8]) -> Result<Header, CryptoError> {
    let h = Header::parse(ciphertext)?;
    if h.algorithm != Algorithm::Aes256GcmHkdf {
        return Err(CryptoError::Malformed("not an AES-256-GCM ciphertext"));
    }
    if ciphertext.len() < OVERHEAD {
        return Err(CryptoError::Malformed("too short"));
    }
    Ok(h)
}

/// Decodes the text form into binary.
pub fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    decode_text(text, TEXT_PREFIX)
}

/// Decrypts cells, caching the subkey of the last salt seen (cells of one run share it).
#[derive(Default)]
pub struct AeadDecryptor {
    cache: Option<([u8; HEADER_LEN + SALT_LEN], Aes256Gcm)>,
    aad: Vec<u8>,
}

impl std::fmt::Debug for AeadDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadDecryptor")
    }
}

impl AeadDecryptor {
    /// A decryptor with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decrypts a binary ciphertext with `key` (the version its header names).
    pub fn decrypt(
        &mut self,
        ciphertext: &[u8],
        key: &SecretBytes,
        context: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        header_of(ciphertext)?;
        let id: [u8; HEADER_LEN + SALT_LEN] = ciphertext[..HEADER_LEN + SALT_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed("too short"))?;
        let cipher = match &self.cache {
            Some((cached, c)) if *cached == id => c,
            _ => {
                let c = subkey(key, &id[HEADER_LEN..])?;
                &self.cache.insert((id, c)).1
            }
        };
        let nonce: [u8; NONCE_LEN] = ciphertext[HEADER_LEN + SALT_LEN..PREFIX_LEN]
            .try_into()
            .map_err(|_| CryptoError::Malformed("too short"))?;
        let body_end = ciphertext.len() - TAG_LEN;
        let tag_bytes: [u8; TAG_LEN] = ciphertext[body_end..]
            .try_into()
            .map_err(|_| CryptoError::Malformed("too short"))?;
        let mut body = ciphertext[PREFIX_LEN..body_end].to_vec();
        self.aad.clear();
        self.aad.extend_from_slice(&id);
        self.aad.extend_from_slice(context);
        cipher
            .decrypt_inout_detached(
                &Nonce::<U12>::from(nonce),
                &self.aad,
                body.as_mut_slice().into(),
                &Tag::from(tag_bytes),
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(body)
    }

    /// Decrypts the text form; the plaintext must be UTF-8.
    pub fn decrypt_text(
        &mut self,
        text: &str,
        key: &SecretBytes,
        context: &[u8],
    ) -> Result<String, CryptoError> {
        let bin = decode(text)?;
        let pt = self.decrypt(&bin, key, context)?;
        String::from_utf8(pt).map_err(|_| CryptoError::Malformed("plaintext is not UTF-8"))
    }
}

/// Raw AES-256-GCM (no header, no subkey), for checking published test vectors.
pub fn raw_encrypt(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::KeySize {
        algorithm: "AES-256-GCM",
        expected: 32,
    })?;
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce must be 12 bytes"))?;
    let mut body = plaintext.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&Nonce::<U12>::from(nonce), aad, body.as_mut_slice().into())
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    Ok((body, tag.to_vec()))
}

/// Seals `plaintext` under `key` (32 bytes) with a random nonce and `aad`: `nonce | ct | tag`.
/// Used to wrap data keys and to encrypt the keystore, never for cells (which need headers).
pub fn seal(key: &SecretBytes, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| CryptoError::KeySize {
        algorithm: "AES-256-GCM",
        expected: 32,
    })?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce[..]);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::<U12>::from(nonce),
            aad,
            (&mut out[NONCE_LEN..]).into(),
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    out.extend_from_slice(tag.as_slice());
    Ok(out)
}

/// Opens what [`seal`] produced with the same key and `aad`.
pub fn open(key: &SecretBytes, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key.expose()).map_err(|_| CryptoError::KeySize {
        algorithm: "AES-256-GCM",
        expected: 32,
    })?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN]
        .try_into()
        .map_err(|_| CryptoError::Malformed("too short"))?;
    let body_end = sealed.len() - TAG_LEN;
    let tag: [u8; TAG_LEN] = sealed[body_end..]
        .try_into()
        .map_err(|_| CryptoError::Malformed("too short"))?;
    let mut body = sealed[NONCE_LEN..body_end].to_vec();
    cipher
        .decrypt_inout_detached(
            &Nonce::<U12>::from(nonce),
            aad,
            body.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .map_err(|_| CryptoError::Authentication)?;
    Ok(body)
}
