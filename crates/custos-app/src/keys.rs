//! Key management as authorized, audited operations on the server's keystore: list and show
//! (never material, not even wrapped), create, rotate, raise the minimum version, disable,
//! enable and destroy versions.
//!
//! Changes are serialized: each one reopens the keystore file with the server's passphrase,
//! applies the change (the keystore saves atomically), and swaps the reopened keystore in for
//! the runs that start afterwards; runs already going keep the keys they started with. The
//! keys that seal the identity store and sign audit checkpoints cannot be rotated, disabled or
//! destroyed (the store and earlier checkpoints would stop verifying).

use custos_keys::{KeyEntry, Keystore, Purpose, VersionState};
use custos_policy::{Action, Resource};
use serde::{Deserialize, Serialize};

use crate::audit::ErrorCode;
use crate::auth::Principal;
use crate::error::{AppError, Result};
use crate::jobs::JobStatus;
use crate::project::{AUDIT_KEY, IDENTITY_KEY, Owner, Project};

/// A key as listed: no material, not even wrapped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Name.
    pub name: String,
    /// Numeric id (carried in ciphertext headers).
    pub id: u32,
    /// `aead`, `daead`, `fpe`, `hmac` or `signing`.
    pub purpose: String,
    /// When it was created.
    pub created_at: String,
    /// The version that encrypts.
    pub primary: Option<u32>,
    /// Versions below it no longer decrypt.
    pub min_version: u32,
    /// Every version.
    pub versions: Vec<VersionInfo>,
}

/// One version of a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    /// Version number.
    pub version: u32,
    /// `active`, `decrypt-only`, `disabled` or `destroyed`.
    pub state: String,
    /// When it was created.
    pub created_at: String,
    /// When its state last changed.
    pub updated_at: String,
    /// Who wraps it (`local`, `aws-kms`, `vault`).
    pub provider: String,
}

impl From<&KeyEntry> for KeyInfo {
    fn from(k: &KeyEntry) -> Self {
        Self {
            name: k.name.clone(),
            id: k.id,
            purpose: k.purpose.name().to_string(),
            created_at: k.created_at.clone(),
            primary: k.primary().map(|v| v.version),
            min_version: k.min_version,
            versions: k
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    state: v.state.name().to_string(),
                    created_at: v.created_at.clone(),
                    updated_at: v.updated_at.clone(),
                    provider: v.provider.clone(),
                })
                .collect(),
        }
    }
}

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// Create it with version 1 active (`aead`, `daead`, `fpe` or `hmac`).
    Create(String),
    /// Add a new primary version.
    Rotate,
    /// Stop versions below this one from decrypting.
    SetMinVersion(u32),
    /// Disable a non-primary version.
    Disable(u32),
    /// Enable a disabled version (decrypt-only).
    Enable(u32),
    /// Erase a non-primary version's material for good.
    Destroy(u32),
}

/// How long a change that takes key material out of use waits for the runs that started
/// before it, before cancelling them.
pub const REVOCATION_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

impl KeyChange {
    /// Whether the change takes key material out of use (runs holding it must end first).
    pub fn revokes(&self) -> bool {
        matches!(
            self,
            KeyChange::Destroy(_) | KeyChange::Disable(_) | KeyChange::SetMinVersion(_)
        )
    }

    /// The action the change needs.
    pub fn action(&self) -> Action {
        match self {
            KeyChange::Create(_) | KeyChange::Disable(_) | KeyChange::Enable(_) => {
                Action::ManageKeys
            }
            KeyChange::Rotate => Action::RotateKey,
            KeyChange::SetMinVersion(_) => Action::SetKeyMinVersion,
            KeyChange::Destroy(_) => Action::DestroyKey,
        }
    }
}

fn key_error(e: custos_keys::KeyError) -> AppError {
    use custos_keys::KeyError as K;
    match e {
        K::Refused(_) | K::Exists(_) | K::UnknownVersion { .. } | K::Destroyed { .. } => {
            AppError::Invalid(e.to_string())
        }
        K::UnknownKey(_) => AppError::NotFound(e.to_string()),
        other => AppError::internal("the keystore", other),
    }
}

impl Project {
    fn current_keystore(&self) -> Result<std::sync::Arc<Keystore>> {
        self.keystore().ok_or_else(|| self.no_keystore())
    }

    /// Why there is no keystore to use.
    pub(crate) fn no_keystore(&self) -> AppError {
        if let Some(e) = &self.keystore_error {
            return e.clone();
        }
        match self.owner {
            Owner::Server => AppError::Invalid("the server runs without a keystore".into()),
            Owner::Command if self.passphrase.is_none() => {
                AppError::Invalid(custos_keys::KeyError::NoPassphrase.to_string())
            }
            Owner::Command => AppError::Invalid(format!(
                "no keystore at {}: create one with `custos keys init`",
                self.keystore_file.display()
            )),
        }
    }

    /// Creates an empty keystore at the project's keystore file with the command's passphrase
    /// (`manage_keys` on `key:*`; CLI local mode), with the audit checkpoint key in it, which
    /// signs this command's checkpoint already.
    pub async fn init_keystore(
        &self,
        who: &Principal,
        params: custos_keys::KdfParams,
    ) -> Result<()> {
        let resource = Resource::Key { name: "*".into() };
        self.authorized(who, Action::ManageKeys, &resource, async {
            if self.owner == Owner::Server {
                return Err(AppError::Invalid(
                    "a server's keystore is created before it starts (custos keys init)".into(),
                ));
            }
            let pass = self.passphrase.as_ref().ok_or_else(|| self.no_keystore())?;
            let ks = Keystore::init(&self.keystore_file, pass, params).map_err(|e| match e {
                custos_keys::KeyError::Io { .. } => AppError::internal("creating the keystore", e),
                other => AppError::Invalid(other.to_string()),
            })?;
            self.adopt_keystore(ks).await
        })
        .await
    }

    /// Reopens the keystore file after this command created or changed it outside the
    /// project's operations (the example keys of `custos init`; CLI local mode).
    pub async fn reload_keystore(&self) -> Result<()> {
        let pass = self.passphrase.as_ref().ok_or_else(|| self.no_keystore())?;
        let reopened = match self.keystore() {
            Some(ks) => ks.reload(),
            None => Keystore::open(&self.keystore_file, pass),
        };
        let ks = reopened.map_err(|e| {
            AppError::Internal(format!(
                "the keystore {} does not open: {e}",
                self.keystore_file.display()
            ))
        })?;
        self.adopt_keystore(ks).await
    }

    /// Puts a keystore this command created or changed in place; in local mode the audit
    /// checkpoint key is created in it when missing and handed to the audit writer.
    pub(crate) async fn adopt_keystore(&self, mut ks: Keystore) -> Result<()> {
        if self.owner == Owner::Command && ks.key(AUDIT_KEY).is_err() {
            ks.create(AUDIT_KEY, Purpose::Signing)
                .await
                .map_err(|e| AppError::internal(&format!("creating the key \"{AUDIT_KEY}\""), e))?;
        }
        if self.audit.verifying_key().is_none()
            && let Some(key) = crate::project::audit_signing_key(&ks).await?
        {
            self.audit.set_key(key)?;
        }
        self.replace_keystore(ks);
        Ok(())
    }

    /// Every key (`manage_keys` on `key:*`).
    pub async fn keys(&self, who: &Principal) -> Result<Vec<KeyInfo>> {
        self.authorizer
            .authorize(who, Action::ManageKeys, &Resource::Key { name: "*".into() })
            .await?;
        let ks = self.current_keystore()?;
        Ok(ks.keys().iter().map(KeyInfo::from).collect())
    }

    /// One key (`manage_keys`).
    pub async fn key(&self, who: &Principal, name: &str) -> Result<KeyInfo> {
        self.authorizer
            .authorize(
                who,
                Action::ManageKeys,
                &Resource::Key {
                    name: name.to_string(),
                },
            )
            .await?;
        let ks = self.current_keystore()?;
        ks.key(name).map(KeyInfo::from).map_err(key_error)
    }

    /// Applies `change` to key `name` (the change's action on `key:NAME`; destroying and
    /// raising the minimum version are permitted only by grants in the default policies).
    pub async fn change_key(
        &self,
        who: &Principal,
        name: &str,
        change: &KeyChange,
    ) -> Result<KeyInfo> {
        let action = change.action();
        let spec = format!("key:{name}");
        self.authorizer
            .authorize(
                who,
                action,
                &Resource::Key {
                    name: name.to_string(),
                },
            )
            .await?;
        let result = self.apply_key_change(name, change).await;
        if result.is_ok() && change.revokes() {
            self.drain_runs_holding_old_keys(name).await;
        }
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err((
                match e {
                    AppError::Invalid(_) | AppError::NotFound(_) => ErrorCode::Invalid,
                    _ => ErrorCode::Error,
                },
                e.to_string(),
            )),
        };
        self.authorizer
            .outcome(who.name(), action, &spec, outcome, None)
            .await?;
        result
    }

    /// After a change that takes key material out of use (destroy, disable, a higher minimum
    /// version), runs that started before it still hold the keystore as it was: waits for
    /// them to end, for [`REVOCATION_GRACE`], then cancels the rest (they roll back), so that
    /// when the change is reported done, nothing uses the old material any more. Runs that
    /// start later take the changed keystore.
    async fn drain_runs_holding_old_keys(&self, name: &str) {
        let running: Vec<_> = self
            .jobs
            .all()
            .into_iter()
            .filter(|j| j.status() == JobStatus::Running)
            .collect();
        if running.is_empty() {
            return;
        }
        tracing::info!(
            key = name,
            runs = running.len(),
            "waiting for runs that started before the key change"
        );
        let all = crate::project::futures_wait(&running);
        if tokio::time::timeout(REVOCATION_GRACE, all).await.is_err() {
            tracing::warn!(
                key = name,
                "runs still going after the revocation grace period are cancelled"
            );
            for j in &running {
                j.cancel.cancel();
            }
            crate::project::futures_wait(&running).await;
        }
    }

    async fn apply_key_change(&self, name: &str, change: &KeyChange) -> Result<KeyInfo> {
        if [AUDIT_KEY, IDENTITY_KEY].contains(&name) && !matches!(change, KeyChange::Create(_)) {
            return Err(AppError::Invalid(format!(
                "key \"{name}\" belongs to the server (audit checkpoints, the identity store's seal); it cannot be rotated, disabled or destroyed"
            )));
        }
        let pass = self.passphrase.as_ref().ok_or_else(|| self.no_keystore())?;
        let _one_at_a_time = self.key_changes.lock().await;
        if !self.keystore_file.is_file() {
            return Err(self.no_keystore());
        }
        // The open keystore rereads the file with the key it holds (one Argon2id
        // derivation per process, not per change); without one, the passphrase opens it.
        let reopened = match self.keystore() {
            Some(ks) => ks.reload(),
            None => Keystore::open(&self.keystore_file, pass),
        };
        let mut ks = reopened.map_err(|e| {
            AppError::Internal(format!(
                "the keystore {} does not open: {e}",
                self.keystore_file.display()
            ))
        })?;
        match change {
            KeyChange::Create(purpose) => {
                let p = Purpose::parse(purpose)
                    .filter(|p| *p != Purpose::Signing)
                    .ok_or_else(|| {
                        AppError::Invalid(format!(
                            "purpose \"{purpose}\": use aead, daead, fpe or hmac"
                        ))
                    })?;
                ks.create(name, p).await.map_err(key_error)?;
            }
            KeyChange::Rotate => {
                ks.rotate(name).await.map_err(key_error)?;
            }
            KeyChange::SetMinVersion(v) => ks.set_min_version(name, *v).map_err(key_error)?,
            KeyChange::Disable(v) => ks.disable(name, *v).map_err(key_error)?,
            KeyChange::Enable(v) => ks.enable(name, *v).map_err(key_error)?,
            KeyChange::Destroy(v) => {
                let state = ks
                    .key(name)
                    .map_err(key_error)?
                    .version(*v)
                    .map_err(key_error)?
                    .state;
                if state == VersionState::Active {
                    return Err(AppError::Invalid(format!(
                        "key \"{name}\" version {v} is the primary; rotate before destroying it"
                    )));
                }
                ks.destroy(name, *v).map_err(key_error)?;
            }
        }
        let info = ks.key(name).map(KeyInfo::from).map_err(key_error)?;
        self.adopt_keystore(ks).await?;
        Ok(info)
    }
}
