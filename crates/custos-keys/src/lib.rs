//! custos keys: named keyrings of versioned keys, stored wrapped (envelope encryption) by a
//! key-encryption key from a [`provider::KeyProvider`], inside a keystore file encrypted and
//! authenticated as a whole ([`store::Keystore`]).
//!
//! A key has a purpose (which fixes its size and the primitive it feeds) and versions. Exactly
//! one version is *active* (the primary, used to encrypt); older ones are *decrypt-only*; a
//! version can be *disabled* (temporarily unusable) or *destroyed* (material erased for good:
//! crypto-shredding). A minimum decryption version retires everything below it.

mod error;
pub mod model;
pub mod provider;
pub mod store;

pub use error::KeyError;
pub use model::{KeyEntry, Purpose, VersionEntry, VersionState};
pub use provider::{KeyProvider, LocalProvider};
pub use store::{KdfParams, KeySet, Keystore, Passphrase};

/// Where the keystore lives when no path is configured: `$CUSTOS_KEYSTORE`, else
/// `keystore.ck` in the state directory.
pub fn keystore_path(state_dir: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("CUSTOS_KEYSTORE") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => state_dir.join("keystore.ck"),
    }
}
