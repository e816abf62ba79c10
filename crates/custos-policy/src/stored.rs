//! Policies and settings kept in the identity store, so that in server mode they change only
//! through the server's audited actions (and, on a sealed store, not by editing files).
//!
//! Policy text is validated before it is stored, so the latest version is always one
//! [`PolicyEngine::from_text`] accepts; a refused text leaves the previous version active.
//! Every version stays, with who set it, when and why.

use rusqlite::params;
use rusqlite::types::Value;
use sha2_11::{Digest, Sha256};

use crate::identity::db;
use crate::seal::{POLICY_SETS, SETTINGS};
use crate::{Identities, PolicyEngine, PolicyError};

/// The origin stored policies are named by in validation errors and decisions' source.
pub const STORED_POLICIES: &str = "stored policies";

/// One version of the stored policies, with its text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredPolicies {
    /// Version (increasing from 1).
    pub version: i64,
    /// The Cedar text.
    pub text: String,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    /// Who set it.
    pub set_by: String,
    /// Why.
    pub reason: String,
    /// When, ns since the epoch.
    pub set_ns: i64,
}

/// One version of the stored policies, without its text (for listings).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyVersion {
    /// Version (increasing from 1).
    pub version: i64,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    /// Who set it.
    pub set_by: String,
    /// Why.
    pub reason: String,
    /// When, ns since the epoch.
    pub set_ns: i64,
}

/// A named setting (such as audit retention).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    /// Name.
    pub name: String,
    /// Value, as text.
    pub value: String,
    /// Who set it.
    pub set_by: String,
    /// When, ns since the epoch.
    pub set_ns: i64,
}

/// Whether `name` is a valid setting name: 1-64 of `[a-z0-9._-]`.
fn valid_setting_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn policies_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredPolicies> {
    Ok(StoredPolicies {
        version: r.get(0)?,
        text: r.get(1)?,
        sha256: r.get(2)?,
        set_by: r.get(3)?,
        reason: r.get(4)?,
        set_ns: r.get(5)?,
    })
}

fn setting_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Setting> {
    Ok(Setting {
        name: r.get(0)?,
        value: r.get(1)?,
        set_by: r.get(2)?,
        set_ns: r.get(3)?,
    })
}

impl Identities {
    /// Validates Cedar policy `text` ([`PolicyEngine::from_text`]) and stores it as the new
    /// version, set by `by` for `reason`; returns the version. Invalid text is refused with
    /// the validation errors and the previous version stays active.
    pub fn set_policies(
        &self,
        text: &str,
        by: &str,
        reason: &str,
        now_ns: i64,
    ) -> Result<i64, PolicyError> {
        PolicyEngine::from_text(text, STORED_POLICIES)?;
        if reason.trim().is_empty() {
            return Err(PolicyError::Invalid(
                "a policy change needs a reason".into(),
            ));
        }
        let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
        self.write(|tx| {
            tx.execute(
                "INSERT INTO policy_sets (text, sha256, set_by, reason, set_ns) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![text, sha256, by, reason, now_ns],
            )
            .map_err(db)?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// The latest stored policies, if any were stored.
    pub fn policies(&self) -> Result<Option<StoredPolicies>, PolicyError> {
        self.read(|| {
            let latest = self
                .select(
                    &POLICY_SETS,
                    "ORDER BY version DESC LIMIT 1",
                    [],
                    policies_row,
                )?
                .into_iter()
                .next();
            // Deleting the latest version would silently reactivate the one before.
            if let Some(s) = &self.sealer {
                let recorded = s.recorded_max(&self.conn, &POLICY_SETS)?;
                let found = latest.as_ref().map(|p| p.version);
                if recorded != found {
                    let missing = recorded.unwrap_or_default();
                    return Err(PolicyError::Tampered(format!(
                        "policy_sets row {missing} was deleted"
                    )));
                }
            }
            Ok(latest)
        })
    }

    /// Every stored policy version, newest first, without the texts.
    pub fn policy_history(&self) -> Result<Vec<PolicyVersion>, PolicyError> {
        self.read(|| {
            let all = self.select(&POLICY_SETS, "ORDER BY version DESC", [], |r| {
                let p = policies_row(r)?;
                Ok(PolicyVersion {
                    version: p.version,
                    sha256: p.sha256,
                    set_by: p.set_by,
                    reason: p.reason,
                    set_ns: p.set_ns,
                })
            })?;
            if let Some(s) = &self.sealer {
                let recorded = s.recorded_count(&self.conn, &POLICY_SETS)?;
                if recorded != all.len() {
                    return Err(PolicyError::Tampered(format!(
                        "policy_sets: {} rows where the seal records {recorded}",
                        all.len()
                    )));
                }
            }
            Ok(all)
        })
    }

    /// Sets `name` to `value` on behalf of `by`. Names are 1-64 of `[a-z0-9._-]`.
    pub fn set_setting(
        &self,
        name: &str,
        value: &str,
        by: &str,
        now_ns: i64,
    ) -> Result<(), PolicyError> {
        if !valid_setting_name(name) {
            return Err(PolicyError::Invalid(format!(
                "invalid setting name \"{name}\": use 1-64 of a-z, 0-9, '.', '_' or '-'"
            )));
        }
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (name, value, set_by, set_ns) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, set_by = excluded.set_by, set_ns = excluded.set_ns",
                params![name, value, by, now_ns],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    /// One setting, if it was ever set.
    pub fn setting(&self, name: &str) -> Result<Option<Setting>, PolicyError> {
        self.read(|| {
            let found = self
                .select(&SETTINGS, "WHERE name = ?1", [name], setting_row)?
                .into_iter()
                .next();
            if found.is_none() {
                self.check_absent(&SETTINGS, Value::Text(name.into()))?;
            }
            Ok(found)
        })
    }
}
