//! AES-256-GCM cell encryption.
//!
//! Binary layout: `header (10) | salt (16) | nonce (12) | ciphertext | tag (16)`; text layout:
//! `cx1.` + unpadded base64url of the binary form.
//!
//! **Nonces.** NIST SP 800-38D allows at most 2^32 encryptions with random 96-bit nonces under
//! one key. custos never encrypts cells under the data key itself: each [`AeadEncryptor`] draws a
//! random 128-bit salt and derives a subkey `HKDF-SHA256(data key, salt, "custos/aead/v1")`;
//! the salt travels in every ciphertext. Under its subkey an encryptor counts nonces up from a
//! random 96-bit start, so they never repeat within a subkey (SP 800-38D's deterministic
//! construction), and it switches to a fresh salt after [`MAX_CELLS_PER_SUBKEY`] (2^31) cells,
//! whatever the number of cells under one data key. Two encryptors share a subkey only if they
//! draw the same salt: probability 2^-128 per pair.
//!
//! **Binding.** The associated data is `header | salt | context`, where the caller's context
//! names the table and column. A ciphertext copied to another column, or with any bit of its
//! header, salt, nonce, body or tag changed, fails to decrypt.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::header::{HEADER_LEN, decode_text};
use crate::{Algorithm, CellEncryptor, CryptoError, Header, SecretBytes};

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

fn key_size() -> CryptoError {
    CryptoError::KeySize {
        algorithm: "AES-256-GCM",
        expected: 32,
    }
}

fn gcm_key(key: &[u8]) -> Result<LessSafeKey, CryptoError> {
    Ok(LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| key_size())?,
    ))
}

/// `HKDF-SHA256(key, salt, HKDF_INFO)` as an AES-256-GCM key; the derived bytes never leave
/// aws-lc.
fn subkey(key: &SecretBytes, salt: &[u8]) -> Result<LessSafeKey, CryptoError> {
    if key.len() != 32 {
        return Err(key_size());
    }
    let prk = Salt::new(HKDF_SHA256, salt).extract(key.expose());
    let okm = prk
        .expand(&[HKDF_INFO], &AES_256_GCM)
        .map_err(|_| key_size())?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Encrypts cells under one key version. Create one per run (or batch) and reuse it: the key
/// schedule is computed once, not per cell.
pub struct AeadEncryptor {
    header: [u8; HEADER_LEN],
    key: SecretBytes,
    salt: [u8; SALT_LEN],
    cipher: LessSafeKey,
    used: u64,
    /// The next nonce, a 96-bit big-endian counter from a random start.
    nonce: u128,
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
        let nonce = u128::from(rng.next_u64()) << 32 | u128::from(rng.next_u32());
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
            nonce,
            rng,
            aad: Vec::with_capacity(64),
        })
    }

    fn resalt(&mut self) -> Result<(), CryptoError> {
        self.rng.fill_bytes(&mut self.salt);
        self.nonce = u128::from(self.rng.next_u64()) << 32 | u128::from(self.rng.next_u32());
        self.cipher = subkey(&self.key, &self.salt)?;
        self.used = 0;
        Ok(())
    }

    /// The binary ciphertext of `plaintext`.
    pub fn encrypt(&mut self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.encrypt_into(plaintext, context, &mut out)?;
        Ok(out)
    }
}

impl CellEncryptor for AeadEncryptor {
    const TEXT_PREFIX: &'static str = TEXT_PREFIX;

    fn encrypt_into(
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
        nonce.copy_from_slice(&self.nonce.to_be_bytes()[16 - NONCE_LEN..]);
        self.nonce = (self.nonce + 1) & ((1 << 96) - 1);
        let start = out.len();
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        // The associated data only changes with the salt or the context: rebuild it then.
        if self.aad.len() < HEADER_LEN + SALT_LEN
            || self.aad[HEADER_LEN..HEADER_LEN + SALT_LEN] != self.salt
            || &self.aad[HEADER_LEN + SALT_LEN..] != context
        {
            self.aad.clear();
            self.aad
                .extend_from_slice(&out[start..start + HEADER_LEN + SALT_LEN]);
            self.aad.extend_from_slice(context);
        }
        let body = &mut out[start + PREFIX_LEN..];
        let tag = self
            .cipher
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.aad),
                body,
            )
            .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
        out.extend_from_slice(tag.as_ref());
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
    cache: Option<([u8; HEADER_LEN + SALT_LEN], LessSafeKey)>,
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
        let mut body = ciphertext[PREFIX_LEN..].to_vec();
        self.aad.clear();
        self.aad.extend_from_slice(&id);
        self.aad.extend_from_slice(context);
        let len = cipher
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.aad),
                &mut body,
            )
            .map_err(|_| CryptoError::Authentication)?
            .len();
        body.truncate(len);
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
    let cipher = gcm_key(key)?;
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce must be 12 bytes"))?;
    let mut body = plaintext.to_vec();
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    Ok((body, tag.as_ref().to_vec()))
}

/// Seals `plaintext` under `key` (32 bytes) with a random nonce and `aad`: `nonce | ct | tag`.
/// Used to wrap data keys and to encrypt the keystore, never for cells (which need headers).
pub fn seal(key: &SecretBytes, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = gcm_key(key.expose())?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce[..]);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Malformed("plaintext too long"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens what [`seal`] produced with the same key and `aad`.
pub fn open(key: &SecretBytes, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = gcm_key(key.expose())?;
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("too short"));
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN]
        .try_into()
        .map_err(|_| CryptoError::Malformed("too short"))?;
    let mut body = sealed[NONCE_LEN..].to_vec();
    let len = cipher
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| CryptoError::Authentication)?
        .len();
    body.truncate(len);
    Ok(body)
}
