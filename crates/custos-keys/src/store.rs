//! The local keystore file: the whole keyring, encrypted and authenticated as one unit under a
//! key derived with Argon2id from a passphrase.
//!
//! ```text
//! bytes 0..8    magic "CUSTOSKS"
//! bytes 8..10   format version (u16 BE) = 1
//! bytes 10..22  Argon2id memory (KiB), iterations, lanes (3 x u32 BE)
//! bytes 22..38  Argon2id salt
//! bytes 38..    AES-256-GCM: nonce (12) | ciphertext of the JSON keyring | tag (16),
//!               with bytes 0..38 as associated data
//! ```
//! Any change to any byte (header, parameters, salt, body, tag) or a truncation makes opening
//! fail. Writes go to a temporary file (mode 0600) that is synced and renamed over the old one.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use custos_crypto::SecretBytes;
use custos_crypto::aead::{open, seal};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::KeyError;
use crate::model::{KeyEntry, Purpose, VersionEntry, VersionState, valid_name};
use crate::provider::{KeyProvider, LocalProvider, wrap_context};

const MAGIC: &[u8; 8] = b"CUSTOSKS";
const FORMAT: u16 = 1;
const HEADER_LEN: usize = 38;

/// A passphrase, zeroized on drop and never printed.
pub struct Passphrase(Zeroizing<String>);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// Reads the passphrase by reference: `CUSTOS_KEYSTORE_PASSPHRASE`, or the file named by
    /// `CUSTOS_KEYSTORE_PASSPHRASE_FILE` (trailing newline removed). Returns a warning when the
    /// file is readable by group or others.
    pub fn from_env() -> Result<(Self, Option<String>), KeyError> {
        if let Ok(p) = std::env::var("CUSTOS_KEYSTORE_PASSPHRASE")
            && !p.is_empty()
        {
            return Ok((Self::new(p), None));
        }
        let Ok(path) = std::env::var("CUSTOS_KEYSTORE_PASSPHRASE_FILE") else {
            return Err(KeyError::NoPassphrase);
        };
        let mut warning = None;
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(&path)
                && m.permissions().mode() & 0o077 != 0
            {
                warning = Some(format!(
                    "passphrase file {path} is readable by group or others; chmod 600 it"
                ));
            }
        }
        let text =
            Zeroizing::new(
                std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                    context: format!("reading passphrase file {path}"),
                    source,
                })?,
            );
        let p = text.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            return Err(KeyError::NoPassphrase);
        }
        Ok((Self::new(p), warning))
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Lanes.
    pub lanes: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 iterations, 1 lane (OWASP's Argon2id guidance is at least 19 MiB / 2).
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            lanes: 1,
        }
    }
}

fn derive(pass: &Passphrase, salt: &[u8], p: KdfParams) -> Result<SecretBytes, KeyError> {
    let params =
        argon2::Params::new(p.memory_kib, p.iterations, p.lanes, Some(32)).map_err(|e| {
            KeyError::Format {
                path: String::new(),
                reason: format!("invalid Argon2id parameters: {e}"),
            }
        })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = vec![0u8; 32];
    argon
        .hash_password_into(pass.0.as_bytes(), salt, &mut out)
        .map_err(|e| KeyError::Format {
            path: String::new(),
            reason: format!("Argon2id failed: {e}"),
        })?;
    Ok(SecretBytes::new(out))
}

/// Serde form of key material inside the (encrypted) document.
struct B64Secret(SecretBytes);

impl Serialize for B64Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.expose()));
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for B64Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(|v| B64Secret(SecretBytes::new(v)))
            .map_err(|_| serde::de::Error::custom("invalid key encoding"))
    }
}

#[derive(Serialize, Deserialize)]
struct Doc {
    format: u32,
    created_at: String,
    local_kek: B64Secret,
    next_id: u32,
    keys: Vec<KeyEntry>,
}

/// An open keystore.
pub struct Keystore {
    path: PathBuf,
    file_key: SecretBytes,
    header: [u8; HEADER_LEN],
    doc: Doc,
    provider: Box<dyn KeyProvider>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("path", &self.path)
            .field("keys", &self.doc.keys.len())
            .finish()
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> KeyError {
    move |source| KeyError::Io { context, source }
}

impl Keystore {
    /// Creates a new, empty keystore at `path` (refuses to overwrite one).
    pub fn init(path: &Path, pass: &Passphrase, params: KdfParams) -> Result<Self, KeyError> {
        if path.exists() {
            return Err(KeyError::Refused(format!(
                "keystore {} already exists",
                path.display()
            )));
        }
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..10].copy_from_slice(&FORMAT.to_be_bytes());
        header[10..14].copy_from_slice(&params.memory_kib.to_be_bytes());
        header[14..18].copy_from_slice(&params.iterations.to_be_bytes());
        header[18..22].copy_from_slice(&params.lanes.to_be_bytes());
        header[22..38].copy_from_slice(&salt);
        let file_key = derive(pass, &salt, params)?;
        let kek = SecretBytes::random(32);
        let ks = Self {
            path: path.to_path_buf(),
            file_key,
            header,
            provider: Box::new(LocalProvider::new(kek.clone())),
            doc: Doc {
                format: 1,
                created_at: now(),
                local_kek: B64Secret(kek),
                next_id: 1,
                keys: Vec::new(),
            },
        };
        ks.save()?;
        Ok(ks)
    }

    /// Opens the keystore at `path`.
    pub fn open(path: &Path, pass: &Passphrase) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(io(format!("reading keystore {shown}")))?;
        let fmt_err = |reason: &str| KeyError::Format {
            path: shown.clone(),
            reason: reason.to_string(),
        };
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(fmt_err("not a custos keystore"));
        }
        if bytes.len() < HEADER_LEN + 28 {
            return Err(fmt_err("file is truncated"));
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version != FORMAT {
            return Err(fmt_err(&format!(
                "format version {version} is not supported (expected {FORMAT})"
            )));
        }
        let u = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let params = KdfParams {
            memory_kib: u(10),
            iterations: u(14),
            lanes: u(18),
        };
        // Refuse absurd costs from a modified header before spending memory on them.
        if !(8 * 1024..=4 * 1024 * 1024).contains(&params.memory_kib)
            || !(1..=64).contains(&params.iterations)
            || !(1..=16).contains(&params.lanes)
        {
            return Err(KeyError::Unlock { path: shown });
        }
        let file_key = derive(pass, &bytes[22..38], params)?;
        let header: [u8; HEADER_LEN] = bytes[..HEADER_LEN]
            .try_into()
            .map_err(|_| fmt_err("file is truncated"))?;
        let plain =
            Zeroizing::new(open(&file_key, &header, &bytes[HEADER_LEN..]).map_err(|_| {
                KeyError::Unlock {
                    path: shown.clone(),
                }
            })?);
        let doc: Doc =
            serde_json::from_slice(&plain).map_err(|_| fmt_err("keyring document is not valid"))?;
        let kek = doc.local_kek.0.clone();
        // Each unlock costs an Argon2id derivation; commands are meant to pay it once.
        tracing::debug!(keystore = %shown, "keystore unlocked");
        Ok(Self {
            path: path.to_path_buf(),
            file_key,
            header,
            doc,
            provider: Box::new(LocalProvider::new(kek)),
        })
    }

    /// Reads the keystore file again with the key this one was unlocked with, without a new
    /// Argon2id derivation: the keys as they are on disk now, to change on top of. Fails when
    /// the file was replaced by one under another passphrase or salt.
    pub fn reload(&self) -> Result<Self, KeyError> {
        let shown = self.path.display().to_string();
        let bytes = std::fs::read(&self.path).map_err(io(format!("reading keystore {shown}")))?;
        if bytes.len() < HEADER_LEN + 28 || bytes[..HEADER_LEN] != self.header {
            return Err(KeyError::Unlock { path: shown });
        }
        let plain = Zeroizing::new(
            open(&self.file_key, &self.header, &bytes[HEADER_LEN..]).map_err(|_| {
                KeyError::Unlock {
                    path: shown.clone(),
                }
            })?,
        );
        let doc: Doc = serde_json::from_slice(&plain).map_err(|_| KeyError::Format {
            path: shown.clone(),
            reason: "keyring document is not valid".into(),
        })?;
        let kek = doc.local_kek.0.clone();
        Ok(Self {
            path: self.path.clone(),
            file_key: self.file_key.clone(),
            header: self.header,
            doc,
            provider: Box::new(LocalProvider::new(kek)),
        })
    }

    /// Writes the keystore atomically (temporary file, fsync, rename, directory fsync).
    pub fn save(&self) -> Result<(), KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let json = Zeroizing::new(serde_json::to_vec(&self.doc).map_err(|e| KeyError::Format {
            path: self.path.display().to_string(),
            reason: format!("encoding keyring: {e}"),
        })?);
        let sealed = seal(&self.file_key, &self.header, &json)?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(format!("writing {}", tmp.display())))?;
        f.write_all(&self.header)
            .map_err(io(format!("writing {}", tmp.display())))?;
        f.write_all(&sealed)
            .map_err(io(format!("writing {}", tmp.display())))?;
        f.sync_all()
            .map_err(io(format!("syncing {}", tmp.display())))?;
        drop(f);
        std::fs::rename(&tmp, &self.path)
            .map_err(io(format!("replacing {}", self.path.display())))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The keystore's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every key, in creation order.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.doc.keys
    }

    /// A key by name.
    pub fn key(&self, name: &str) -> Result<&KeyEntry, KeyError> {
        self.doc
            .keys
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::UnknownKey(name.to_string()))
    }

    fn key_mut(&mut self, name: &str) -> Result<&mut KeyEntry, KeyError> {
        self.doc
            .keys
            .iter_mut()
            .find(|k| k.name == name)
            .ok_or_else(|| KeyError::UnknownKey(name.to_string()))
    }

    async fn new_version(
        &self,
        name: &str,
        version: u32,
        purpose: Purpose,
    ) -> Result<VersionEntry, KeyError> {
        let material = SecretBytes::random(purpose.key_len());
        let ctx = wrap_context(name, version);
        let wrapped = self.provider.wrap(&[(&ctx, &material)]).await?;
        let w = wrapped
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::Provider {
                provider: self.provider.name().into(),
                reason: "returned no wrapped key".into(),
            })?;
        let t = now();
        Ok(VersionEntry {
            version,
            state: VersionState::Active,
            created_at: t.clone(),
            updated_at: t,
            provider: self.provider.name().to_string(),
            wrapped: Some(base64::engine::general_purpose::STANDARD.encode(w)),
        })
    }

    /// Creates key `name` with version 1 active.
    pub async fn create(&mut self, name: &str, purpose: Purpose) -> Result<&KeyEntry, KeyError> {
        if !valid_name(name) {
            return Err(KeyError::Refused(format!(
                "invalid key name \"{name}\": use lowercase letters, digits, '-' and '_', starting with a letter"
            )));
        }
        if self.key(name).is_ok() {
            return Err(KeyError::Exists(name.to_string()));
        }
        let v = self.new_version(name, 1, purpose).await?;
        let id = self.doc.next_id;
        self.doc.next_id += 1;
        self.doc.keys.push(KeyEntry {
            id,
            name: name.to_string(),
            purpose,
            created_at: v.created_at.clone(),
            min_version: 1,
            versions: vec![v],
        });
        self.save()?;
        self.key(name)
    }

    /// Adds a new active version; the previous primary becomes decrypt-only.
    pub async fn rotate(&mut self, name: &str) -> Result<u32, KeyError> {
        let (purpose, next) = {
            let k = self.key(name)?;
            (
                k.purpose,
                k.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1,
            )
        };
        let v = self.new_version(name, next, purpose).await?;
        let k = self.key_mut(name)?;
        let t = now();
        for old in k
            .versions
            .iter_mut()
            .filter(|v| v.state == VersionState::Active)
        {
            old.state = VersionState::DecryptOnly;
            old.updated_at = t.clone();
        }
        k.versions.push(v);
        self.save()?;
        Ok(next)
    }

    /// Versions below `min` can no longer decrypt (the primary must not be below it).
    pub fn set_min_version(&mut self, name: &str, min: u32) -> Result<(), KeyError> {
        let k = self.key_mut(name)?;
        let primary = k.primary().map(|v| v.version).unwrap_or(0);
        if min > primary {
            return Err(KeyError::Refused(format!(
                "minimum version {min} is above the primary version {primary} of key \"{name}\"; rotate first"
            )));
        }
        if min < k.min_version {
            return Err(KeyError::Refused(format!(
                "key \"{name}\" already has minimum version {}; it can only go up",
                k.min_version
            )));
        }
        k.min_version = min;
        self.save()
    }

    fn set_state(&mut self, name: &str, version: u32, to: VersionState) -> Result<(), KeyError> {
        let k = self.key_mut(name)?;
        let e = k
            .versions
            .iter_mut()
            .find(|v| v.version == version)
            .ok_or_else(|| KeyError::UnknownVersion {
                name: name.to_string(),
                version,
            })?;
        match (e.state, to) {
            (VersionState::Destroyed, _) => {
                return Err(KeyError::Destroyed {
                    name: name.to_string(),
                    version,
                });
            }
            (VersionState::Active, VersionState::Disabled | VersionState::Destroyed) => {
                return Err(KeyError::Refused(format!(
                    "key \"{name}\" version {version} is the primary; rotate before disabling or destroying it"
                )));
            }
            (VersionState::Disabled, VersionState::DecryptOnly)
            | (VersionState::DecryptOnly, VersionState::Disabled) => {}
            (_, VersionState::Destroyed) => {}
            (from, to) => {
                return Err(KeyError::Refused(format!(
                    "key \"{name}\" version {version} is {}; cannot make it {}",
                    from.name(),
                    to.name()
                )));
            }
        }
        e.state = to;
        e.updated_at = now();
        if to == VersionState::Destroyed {
            e.wrapped = None; // the material is gone for good once saved
        }
        self.save()
    }

    /// Disables a non-primary version.
    pub fn disable(&mut self, name: &str, version: u32) -> Result<(), KeyError> {
        self.set_state(name, version, VersionState::Disabled)
    }

    /// Re-enables a disabled version (as decrypt-only).
    pub fn enable(&mut self, name: &str, version: u32) -> Result<(), KeyError> {
        self.set_state(name, version, VersionState::DecryptOnly)
    }

    /// Erases a non-primary version's material: what it encrypted can never be decrypted again.
    pub fn destroy(&mut self, name: &str, version: u32) -> Result<(), KeyError> {
        self.set_state(name, version, VersionState::Destroyed)
    }

    async fn unwrap(&self, k: &KeyEntry, v: &VersionEntry) -> Result<SecretBytes, KeyError> {
        let w = v.wrapped.as_ref().ok_or_else(|| KeyError::Destroyed {
            name: k.name.clone(),
            version: v.version,
        })?;
        let w = base64::engine::general_purpose::STANDARD
            .decode(w)
            .map_err(|_| KeyError::Format {
                path: self.path.display().to_string(),
                reason: format!(
                    "wrapped key \"{}\" version {} is not valid base64",
                    k.name, v.version
                ),
            })?;
        if v.provider != self.provider.name() {
            return Err(KeyError::Provider {
                provider: v.provider.clone(),
                reason: "provider not configured".into(),
            });
        }
        let ctx = wrap_context(&k.name, v.version);
        let mut out = self.provider.unwrap(&[(&ctx, &w)]).await?;
        out.pop().ok_or_else(|| KeyError::Provider {
            provider: v.provider.clone(),
            reason: "returned no key".into(),
        })
    }

    /// The primary version of `name` for encrypting: (key id, version, material).
    pub async fn encryption_key(
        &self,
        name: &str,
        purpose: Purpose,
    ) -> Result<(u32, u32, SecretBytes), KeyError> {
        let k = self.key(name)?;
        if k.purpose != purpose {
            return Err(KeyError::WrongPurpose {
                name: name.to_string(),
                actual: k.purpose.name().into(),
                expected: purpose.name().into(),
            });
        }
        let v = k
            .primary()
            .ok_or_else(|| KeyError::Refused(format!("key \"{name}\" has no active version")))?;
        Ok((k.id, v.version, self.unwrap(k, v).await?))
    }

    /// The material of key `id` version `version` for decrypting, checking its state.
    pub async fn decryption_key(&self, id: u32, version: u32) -> Result<SecretBytes, KeyError> {
        let k = self
            .doc
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(KeyError::UnknownKeyId(id))?;
        let v = k.check_decrypt(version)?;
        self.unwrap(k, v).await
    }
}

/// Every key version usable for decryption, unwrapped once (for pipeline steps, whose batch
/// kernels are synchronous), with the primary version of each key and the reason each other
/// version is unusable.
pub struct KeySet {
    /// Material per (key id, version).
    pub material: std::collections::HashMap<(u32, u32), SecretBytes>,
    /// Primary version and purpose per key id.
    pub primary: std::collections::HashMap<u32, (u32, Purpose)>,
    /// Why a (key id, version) cannot decrypt.
    pub unusable: std::collections::HashMap<(u32, u32), String>,
    /// Key id per key name.
    pub names: std::collections::HashMap<String, u32>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("versions", &self.material.len())
            .finish()
    }
}

impl KeySet {
    /// The id, primary version, purpose and material of the key named `name`, for writing.
    pub fn primary(&self, name: &str) -> Result<(u32, u32, Purpose, &SecretBytes), String> {
        let id = self.id(name)?;
        let (version, purpose) = *self
            .primary
            .get(&id)
            .ok_or_else(|| format!("key \"{name}\" has no active version"))?;
        let material = self
            .material
            .get(&(id, version))
            .ok_or_else(|| self.why(id, version))?;
        Ok((id, version, purpose, material))
    }

    /// The material of version `version` of the key named `name`.
    pub fn version(&self, name: &str, version: u32) -> Result<(u32, &SecretBytes), String> {
        let id = self.id(name)?;
        self.material
            .get(&(id, version))
            .map(|m| (id, m))
            .ok_or_else(|| self.why(id, version))
    }

    /// The id of the key named `name`.
    pub fn id(&self, name: &str) -> Result<u32, String> {
        self.names.get(name).copied().ok_or_else(|| {
            let mut m = format!("no key named \"{name}\" in the keystore");
            if let Some(d) = custos_core::did_you_mean(name, self.names.keys().map(String::as_str))
            {
                m.push_str(&format!("; did you mean \"{d}\"?"));
            }
            m
        })
    }

    /// The name of the key with id `id`.
    pub fn name_of(&self, id: u32) -> Option<&str> {
        self.names
            .iter()
            .find(|(_, v)| **v == id)
            .map(|(k, _)| k.as_str())
    }

    /// The reason (key id, version) cannot decrypt, for keys not in the set.
    pub fn why(&self, id: u32, version: u32) -> String {
        self.unusable
            .get(&(id, version))
            .cloned()
            .unwrap_or_else(|| KeyError::UnknownKeyId(id).to_string())
    }
}

impl Keystore {
    /// Unwraps every usable version of every key.
    pub async fn key_set(&self) -> Result<KeySet, KeyError> {
        let mut set = KeySet {
            material: Default::default(),
            primary: Default::default(),
            unusable: Default::default(),
            names: Default::default(),
        };
        for k in &self.doc.keys {
            set.names.insert(k.name.clone(), k.id);
            if let Some(p) = k.primary() {
                set.primary.insert(k.id, (p.version, k.purpose));
            }
            for v in &k.versions {
                match k.check_decrypt(v.version) {
                    Ok(_) => {
                        set.material
                            .insert((k.id, v.version), self.unwrap(k, v).await?);
                    }
                    Err(e) => {
                        set.unusable.insert((k.id, v.version), e.to_string());
                    }
                }
            }
            let max = k.versions.iter().map(|v| v.version).max().unwrap_or(0);
            for missing in (1..=max + 8).filter(|n| k.versions.iter().all(|v| v.version != *n)) {
                set.unusable.insert(
                    (k.id, missing),
                    KeyError::UnknownVersion {
                        name: k.name.clone(),
                        version: missing,
                    }
                    .to_string(),
                );
            }
        }
        Ok(set)
    }
}
