//! Key providers wrap and unwrap data keys with a key-encryption key (KEK) they hold.
//!
//! The keystore only ever stores wrapped data keys plus the name of the provider that wrapped
//! them, so a provider backed by AWS KMS or Vault Transit (which keep their KEK outside this
//! machine) implements this trait and plugs in without changes elsewhere. Calls are batched
//! because remote providers pay a round trip per call.

use async_trait::async_trait;
use custos_crypto::SecretBytes;
use custos_crypto::aead::{open, seal};

use crate::KeyError;

/// Wraps and unwraps data keys. `context` binds a wrapped key to its key name and version.
#[async_trait]
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// Name recorded with every wrapped key (`local`, later `aws-kms`, `vault`).
    fn name(&self) -> &str;
    /// Wraps each `(context, data key)`.
    async fn wrap(&self, keys: &[(&[u8], &SecretBytes)]) -> Result<Vec<Vec<u8>>, KeyError>;
    /// Unwraps each `(context, wrapped key)`.
    async fn unwrap(&self, wrapped: &[(&[u8], &[u8])]) -> Result<Vec<SecretBytes>, KeyError>;
}

/// The default provider: a 256-bit KEK kept inside the passphrase-encrypted keystore; data keys
/// are wrapped with AES-256-GCM using their context as associated data.
pub struct LocalProvider {
    kek: SecretBytes,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalProvider { kek: [redacted] }")
    }
}

impl LocalProvider {
    /// A provider using `kek` (32 bytes).
    pub fn new(kek: SecretBytes) -> Self {
        Self { kek }
    }
}

#[async_trait]
impl KeyProvider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    async fn wrap(&self, keys: &[(&[u8], &SecretBytes)]) -> Result<Vec<Vec<u8>>, KeyError> {
        keys.iter()
            .map(|(ctx, k)| Ok(seal(&self.kek, ctx, k.expose())?))
            .collect()
    }

    async fn unwrap(&self, wrapped: &[(&[u8], &[u8])]) -> Result<Vec<SecretBytes>, KeyError> {
        wrapped
            .iter()
            .map(|(ctx, w)| {
                open(&self.kek, ctx, w)
                    .map(SecretBytes::new)
                    .map_err(|_| KeyError::Provider {
                        provider: "local".into(),
                        reason: "a wrapped key failed authentication".into(),
                    })
            })
            .collect()
    }
}

/// The context a data key is wrapped under.
pub fn wrap_context(name: &str, version: u32) -> Vec<u8> {
    format!("custos-key\0{name}\0{version}").into_bytes()
}
