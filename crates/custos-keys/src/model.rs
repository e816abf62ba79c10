//! The keyring model as stored (inside the encrypted keystore).

use serde::{Deserialize, Serialize};

use crate::KeyError;

/// What a key is for; fixes its size and primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// AES-256-GCM cell encryption (32 bytes).
    Aead,
    /// AES-256-SIV deterministic encryption (64 bytes).
    Daead,
    /// FF1 format-preserving encryption (32 bytes).
    Fpe,
    /// HMAC-SHA256 tokens (32 bytes).
    Hmac,
    /// Ed25519 signing seed (32 bytes): the audit log's checkpoint key.
    Signing,
}

impl Purpose {
    /// Parses `aead`, `daead`, `fpe`, `hmac`, `signing`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "aead" => Self::Aead,
            "daead" => Self::Daead,
            "fpe" => Self::Fpe,
            "hmac" => Self::Hmac,
            "signing" => Self::Signing,
            _ => return None,
        })
    }

    /// Key size in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::Daead => 64,
            _ => 32,
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Aead => "aead",
            Self::Daead => "daead",
            Self::Fpe => "fpe",
            Self::Hmac => "hmac",
            Self::Signing => "signing",
        }
    }
}

/// State of one key version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// The primary: encrypts and decrypts.
    Active,
    /// Decrypts only (an earlier primary).
    DecryptOnly,
    /// Neither, until enabled again.
    Disabled,
    /// Material erased; nothing it encrypted can be decrypted again.
    Destroyed,
}

impl VersionState {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::DecryptOnly => "decrypt-only",
            Self::Disabled => "disabled",
            Self::Destroyed => "destroyed",
        }
    }
}

/// One version of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Version number, from 1.
    pub version: u32,
    /// State.
    pub state: VersionState,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Last state change (RFC 3339).
    pub updated_at: String,
    /// Provider that wrapped the material.
    pub provider: String,
    /// The data key wrapped by the provider (base64); `None` once destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped: Option<String>,
}

/// A named key with its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Numeric id written into ciphertext headers.
    pub id: u32,
    /// Name (`pii-main`).
    pub name: String,
    /// Purpose.
    pub purpose: Purpose,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Versions below this cannot decrypt.
    pub min_version: u32,
    /// Versions, oldest first.
    pub versions: Vec<VersionEntry>,
}

impl KeyEntry {
    /// The active (primary) version.
    pub fn primary(&self) -> Option<&VersionEntry> {
        self.versions
            .iter()
            .find(|v| v.state == VersionState::Active)
    }

    /// A version by number.
    pub fn version(&self, v: u32) -> Result<&VersionEntry, KeyError> {
        self.versions
            .iter()
            .find(|e| e.version == v)
            .ok_or_else(|| KeyError::UnknownVersion {
                name: self.name.clone(),
                version: v,
            })
    }

    /// Checks that version `v` may decrypt.
    pub fn check_decrypt(&self, v: u32) -> Result<&VersionEntry, KeyError> {
        let e = self.version(v)?;
        match e.state {
            VersionState::Destroyed => Err(KeyError::Destroyed {
                name: self.name.clone(),
                version: v,
            }),
            VersionState::Disabled => Err(KeyError::Disabled {
                name: self.name.clone(),
                version: v,
            }),
            _ if v < self.min_version => Err(KeyError::BelowMinimum {
                name: self.name.clone(),
                version: v,
                min: self.min_version,
            }),
            _ => Ok(e),
        }
    }
}

/// Valid key names: lowercase letters, digits, `-` and `_`, starting with a letter.
pub fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase())
        && n.len() <= 64
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
}
