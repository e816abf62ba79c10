//! Administration as authorized, audited operations: users and their tokens, time-bound
//! grants, second-factor enrolment, and the stored policies and settings. Every change is
//! decided first (recorded durably) and its outcome recorded after; none of it is possible
//! except through these operations when a server owns the project.

use custos_policy::{
    Action, Grant, MfaEnrollment, MfaStatus, PolicyEngine, PolicyError, Resource, StoredPolicies,
    Token, User,
};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, ErrorCode, Outcome, Record, now_ns};
use crate::auth::Principal;
use crate::error::{AppError, Result};
use crate::project::{EnrollmentMode, Owner, Project};

/// The stored setting that overrides `[audit] retention` of `custos.toml`.
pub const RETENTION_SETTING: &str = "audit.retention";

/// Parses a grant's expiry: RFC 3339, or `+N` with unit m, h or d from `now_s`.
pub fn parse_until(s: &str, now_s: i64) -> Result<i64> {
    let bad = || {
        AppError::Invalid(format!(
            "until \"{s}\": expected an RFC 3339 time (2026-12-01T18:00:00Z) or +30m/+8h/+2d"
        ))
    };
    if let Some(rel) = s.strip_prefix('+') {
        let (n, unit) = rel.split_at(rel.char_indices().last().map_or(0, |(i, _)| i));
        let n: i64 = n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let secs = match unit {
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86_400),
            _ => None,
        }
        .ok_or_else(bad)?;
        return now_s.checked_add(secs).ok_or_else(bad);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp())
        .map_err(|_| bad())
}

/// A new user and the first token (shown once).
#[derive(Debug, Serialize)]
pub struct IssuedToken {
    /// The user.
    pub user: User,
    /// The token; the only copy.
    pub token: String,
}

impl IssuedToken {
    pub(crate) fn new(user: User, token: &Token) -> Self {
        Self {
            user,
            token: token.expose().to_string(),
        }
    }
}

/// A one-time second-factor enrolment ticket (shown once).
#[derive(Debug, Serialize)]
pub struct IssuedTicket {
    /// Whose.
    pub user: String,
    /// The ticket; the only copy. Hand it to the user out of band, not with their token.
    pub ticket: String,
    /// When it stops being accepted (RFC 3339).
    pub expires: String,
}

/// A request for an enrolment ticket.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    /// Hours the ticket is valid (1 to 720; default 24).
    #[serde(default)]
    #[schemars(range(min = 1, max = 720))]
    pub valid_hours: Option<u32>,
}

/// A request to add a user.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique name.
    #[schemars(extend("pattern" = "^[A-Za-z0-9._@-]{1,64}$"))]
    pub name: String,
    /// Role.
    #[schemars(extend("enum" = ["analyst", "data_engineer", "ml_engineer", "security_admin"]))]
    pub role: String,
}

/// A request to add a grant.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// Grantee: a user's name, or `oidc:NAME` for a user the identity provider signs in.
    #[schemars(extend("pattern" = "^(oidc:)?[A-Za-z0-9._@-]{1,64}$"))]
    pub user: String,
    /// Action name.
    #[schemars(extend("enum" = [
        "run_pipeline", "validate_pipeline", "register_pipeline", "read_dataset",
        "decrypt_column", "reidentify", "manage_keys", "rotate_key", "destroy_key",
        "set_key_min_version", "use_key", "manage_users", "manage_policies", "read_audit",
        "export_subject", "erase_subject", "rectify_subject"
    ]))]
    pub action: String,
    /// Resource pattern (`key:NAME`, `pipeline:NAME`, ...).
    pub resource: String,
    /// Expiry: RFC 3339 or `+8h`.
    #[schemars(extend("pattern" = "^(\\+[1-9][0-9]{0,6}[mhd]|[0-9]{4}-[0-9]{2}-[0-9]{2}T.+)$"))]
    pub until: String,
    /// Why.
    pub reason: String,
}

/// A request to replace the policies.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPolicies {
    /// The Cedar text (every policy with an `@id`).
    pub text: String,
    /// Why (recorded with the version).
    pub reason: String,
}

fn store_error(e: PolicyError) -> AppError {
    match e {
        PolicyError::Invalid(m) | PolicyError::Policies(m) => AppError::Invalid(m),
        PolicyError::MfaInvalid | PolicyError::MfaReplayed | PolicyError::MfaNotEnrolled => {
            AppError::Invalid(e.to_string())
        }
        other => AppError::internal("identity store", other),
    }
}

impl Project {
    /// Runs `op` on the identity store after `action` on `resource` was allowed, and
    /// records the outcome as `what` on `target`.
    async fn administer<T>(
        &self,
        who: &Principal,
        action: Action,
        resource: &Resource,
        what: AuditAction,
        target: &str,
        op: impl FnOnce(&custos_policy::Identities) -> std::result::Result<T, PolicyError>,
    ) -> Result<T> {
        self.authorizer.authorize(who, action, resource).await?;
        self.change(who, what, target, op).await
    }

    /// Runs `op` and records its outcome as `what` on `target` (the caller authorized it).
    async fn change<T>(
        &self,
        who: &Principal,
        what: AuditAction,
        target: &str,
        op: impl FnOnce(&custos_policy::Identities) -> std::result::Result<T, PolicyError>,
    ) -> Result<T> {
        let result = {
            let ids = crate::auth::lock(&self.ids);
            op(&ids)
        };
        let (outcome, code) = match &result {
            Ok(_) => (Outcome::Succeeded, None),
            Err(PolicyError::Invalid(_) | PolicyError::Policies(_)) => {
                (Outcome::Failed, Some(ErrorCode::Invalid))
            }
            Err(PolicyError::MfaInvalid | PolicyError::MfaNotEnrolled) => {
                (Outcome::Failed, Some(ErrorCode::MfaInvalid))
            }
            Err(PolicyError::MfaReplayed) => (Outcome::Failed, Some(ErrorCode::MfaReplayed)),
            Err(_) => (Outcome::Failed, Some(ErrorCode::Error)),
        };
        let mut r = Record::new(who.name(), what, target, outcome);
        r.error_code = code;
        self.audit.record_durable(r).await?;
        result.map_err(store_error)
    }

    /// Every user (`manage_users`).
    pub async fn users(&self, who: &Principal) -> Result<Vec<User>> {
        self.authorizer
            .authorize(who, Action::ManageUsers, &Resource::Directory)
            .await?;
        crate::auth::lock(&self.ids).users().map_err(store_error)
    }

    /// Adds a user and returns the first token (`manage_users`).
    pub async fn add_user(&self, who: &Principal, new: &NewUser) -> Result<IssuedToken> {
        let target = format!("user:{}", new.name);
        let by = who.name().to_string();
        self.administer(
            who,
            Action::ManageUsers,
            &Resource::Directory,
            AuditAction::UserAdd,
            &target,
            |ids| {
                let token = ids.add_user(&new.name, &new.role, &by, now_ns())?;
                let user = ids
                    .user(&new.name)?
                    .ok_or_else(|| PolicyError::Store("the new user vanished".into()))?;
                Ok(IssuedToken::new(user, &token))
            },
        )
        .await
    }

    /// Enables or disables a user (`manage_users`); nobody disables themselves.
    pub async fn set_user_active(&self, who: &Principal, name: &str, active: bool) -> Result<User> {
        if !active && name == who.name() {
            return Err(AppError::Invalid("you cannot disable yourself".into()));
        }
        let what = if active {
            AuditAction::UserEnable
        } else {
            AuditAction::UserDisable
        };
        self.administer(
            who,
            Action::ManageUsers,
            &Resource::Directory,
            what,
            &format!("user:{name}"),
            |ids| {
                ids.set_active(name, active)?;
                ids.user(name)?
                    .ok_or_else(|| PolicyError::Invalid(format!("no user \"{name}\"")))
            },
        )
        .await
    }

    /// Removes a user and revokes their grants (`manage_users`); nobody removes themselves.
    pub async fn remove_user(&self, who: &Principal, name: &str) -> Result<()> {
        if name == who.name() {
            return Err(AppError::Invalid("you cannot remove yourself".into()));
        }
        let by = who.name().to_string();
        self.administer(
            who,
            Action::ManageUsers,
            &Resource::Directory,
            AuditAction::UserRemove,
            &format!("user:{name}"),
            |ids| ids.remove_user(name, &by, now_ns()),
        )
        .await
    }

    /// Issues a new token for `user` (default: the caller), replacing the old one. Rotating
    /// someone else's token needs `manage_users`; one's own needs only sign-in.
    pub async fn rotate_token(&self, who: &Principal, user: Option<&str>) -> Result<IssuedToken> {
        let whose = user.unwrap_or(who.name()).to_string();
        if whose != who.name() {
            self.authorizer
                .authorize(who, Action::ManageUsers, &Resource::Directory)
                .await?;
        }
        let by = who.name().to_string();
        let issued = self
            .change(
                who,
                AuditAction::TokenRotate,
                &format!("user:{whose}"),
                |ids| {
                    let token = ids.rotate_token(&whose, &by, now_ns())?;
                    let user = ids
                        .user(&whose)?
                        .ok_or_else(|| PolicyError::Invalid(format!("no user \"{whose}\"")))?;
                    Ok(IssuedToken::new(user, &token))
                },
            )
            .await?;
        // The verified-token cache notices the new issue time on the next request.
        Ok(issued)
    }

    /// Grants, active ones only unless `all` (`manage_users`).
    pub async fn grants(&self, who: &Principal, all: bool) -> Result<Vec<Grant>> {
        self.authorizer
            .authorize(who, Action::ManageUsers, &Resource::Directory)
            .await?;
        let now_s = now_ns() / 1_000_000_000;
        crate::auth::lock(&self.ids)
            .grants((!all).then_some(now_s))
            .map_err(store_error)
    }

    /// Adds a time-bound grant (`manage_users`; the approver rules of the identity store
    /// apply: not the grantee, not who created the grantee or issued their token).
    pub async fn add_grant(&self, who: &Principal, g: &NewGrant) -> Result<Grant> {
        let now = now_ns();
        let until_s = parse_until(&g.until, now / 1_000_000_000)?;
        // Under the approver's grant subject, so an identity-provider user cannot approve a
        // grant to their own `oidc:` name.
        let by = who.grant_subject();
        self.administer(
            who,
            Action::ManageUsers,
            &Resource::Directory,
            AuditAction::GrantAdd,
            &format!("user:{}", g.user),
            |ids| {
                let id = ids.add_grant(
                    &g.user,
                    &g.action,
                    &g.resource,
                    until_s,
                    &g.reason,
                    &by,
                    now,
                )?;
                ids.grants(None)?
                    .into_iter()
                    .find(|x| x.id == id)
                    .ok_or_else(|| PolicyError::Store("the new grant vanished".into()))
            },
        )
        .await
    }

    /// Revokes a grant (`manage_users`).
    pub async fn revoke_grant(&self, who: &Principal, id: i64) -> Result<Grant> {
        let by = who.name().to_string();
        self.administer(
            who,
            Action::ManageUsers,
            &Resource::Directory,
            AuditAction::GrantRevoke,
            &format!("grant:{id}"),
            |ids| ids.revoke_grant(id, &by, now_ns()),
        )
        .await
    }

    /// Starts the caller's own second-factor enrolment: a new TOTP secret (shown once) to add
    /// to an authenticator app, then [`Project::mfa_confirm`] with a first code. A confirmed
    /// enrolment is replaced only after an admin resets it. With
    /// [`EnrollmentMode::Ticket`] the caller's enrolment ticket is required (and used up).
    pub async fn mfa_enroll(&self, who: &Principal, ticket: Option<&str>) -> Result<MfaEnrollment> {
        let name = who.name().to_string();
        let needs_ticket = self.mfa_enrollment == EnrollmentMode::Ticket;
        self.change(
            who,
            AuditAction::MfaEnroll,
            &format!("user:{name}"),
            |ids| match ticket {
                None if needs_ticket => Err(PolicyError::Invalid(
                    "enrolment needs a one-time ticket from an admin (`custos mfa ticket NAME`), given to `custos mfa enroll --ticket-stdin`".into(),
                )),
                _ => ids.mfa_enroll(&name, now_ns(), ticket),
            },
        )
        .await
    }

    /// Issues `user` a one-time enrolment ticket valid for `valid_hours` (default 24;
    /// `manage_users`). An admin cannot issue one to themselves through a server: that
    /// would prove nothing beyond their token.
    pub async fn mfa_ticket(
        &self,
        who: &Principal,
        user: &str,
        req: &NewTicket,
    ) -> Result<IssuedTicket> {
        let by = who.name().to_string();
        let hours = req.valid_hours.unwrap_or(24);
        // Locally the keystore holder is the trust root (one trust domain).
        let allow_self = self.owner == Owner::Command;
        let ticket = self
            .administer(
                who,
                Action::ManageUsers,
                &Resource::Directory,
                AuditAction::MfaTicket,
                &format!("user:{user}"),
                |ids| ids.mfa_ticket_issue(user, &by, hours, now_ns(), allow_self),
            )
            .await?;
        let expires = chrono::DateTime::from_timestamp(ticket.expires_s, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        Ok(IssuedTicket {
            user: user.to_string(),
            ticket: ticket.expose().to_string(),
            expires,
        })
    }

    /// Confirms the caller's enrolment with a first code.
    pub async fn mfa_confirm(&self, who: &Principal, code: &str) -> Result<MfaStatus> {
        let name = who.name().to_string();
        self.change(
            who,
            AuditAction::MfaConfirm,
            &format!("user:{name}"),
            |ids| {
                ids.mfa_confirm(&name, code, now_ns() / 1_000_000_000)?;
                ids.mfa_status(&name)
            },
        )
        .await
    }

    /// The caller's enrolment.
    pub fn mfa_status(&self, who: &Principal) -> Result<MfaStatus> {
        crate::auth::lock(&self.ids)
            .mfa_status(who.name())
            .map_err(store_error)
    }

    /// Removes `user`'s second factor (`manage_users`), e.g. after a lost phone.
    pub async fn mfa_reset(&self, who: &Principal, user: &str) -> Result<()> {
        let by = who.name().to_string();
        self.administer(
            who,
            Action::ManageUsers,
            &Resource::Directory,
            AuditAction::MfaReset,
            &format!("user:{user}"),
            |ids| ids.mfa_reset(user, &by, now_ns()),
        )
        .await
    }

    /// The policies in force: the stored version, or `None` when the project still uses its
    /// policy files or the built-in defaults (`manage_policies`).
    pub async fn policies(&self, who: &Principal) -> Result<Option<StoredPolicies>> {
        self.authorizer
            .authorize(who, Action::ManagePolicies, &Resource::PolicyStore)
            .await?;
        crate::auth::lock(&self.ids).policies().map_err(store_error)
    }

    /// Validates and stores new policies and makes them the ones decisions use
    /// (`manage_policies`). Invalid text changes nothing.
    pub async fn set_policies(&self, who: &Principal, p: &NewPolicies) -> Result<StoredPolicies> {
        self.authorizer
            .authorize(who, Action::ManagePolicies, &Resource::PolicyStore)
            .await?;
        if p.reason.trim().is_empty() {
            return Err(AppError::Invalid("a reason is required".into()));
        }
        let by = who.name().to_string();
        let subject = who.grant_subject();
        let (stored, engine) = self
            .change(who, AuditAction::PoliciesSet, "policies", |ids| {
                let engine = PolicyEngine::from_text(&p.text, "submitted policies")?;
                // A policy set that takes `manage_policies` away from whoever installs it could
                // leave nobody able to change it again (or to manage users): refused.
                let now_s = now_ns() / 1_000_000_000;
                let grants = ids.active_grants(&subject, now_s)?;
                let keeps = |a: Action, r: &Resource| {
                    engine.decide(&who.user, a, r, &grants, now_s).allowed
                };
                if !keeps(Action::ManagePolicies, &Resource::PolicyStore)
                    || !keeps(Action::ManageUsers, &Resource::Directory)
                {
                    return Err(PolicyError::Invalid(format!(
                        "these policies would take manage_policies or manage_users away from \"{by}\", who installs them: nobody might be able to undo them; keep a permit for your role"
                    )));
                }
                ids.set_policies(&p.text, &by, &p.reason, now_ns())?;
                let stored = ids
                    .policies()?
                    .ok_or_else(|| PolicyError::Store("the stored policies vanished".into()))?;
                Ok((stored, engine))
            })
            .await?;
        self.authorizer.set_policies(engine);
        Ok(stored)
    }

    /// Sets how long audit records are kept (`90d`, `1y`, ...; `manage_policies`). It applies
    /// from the next time the log is closed, and overrides `custos.toml`.
    pub async fn set_audit_retention(&self, who: &Principal, retention: &str) -> Result<()> {
        self.authorizer
            .authorize(who, Action::ManagePolicies, &Resource::PolicyStore)
            .await?;
        let ns = crate::settings::parse_retention(retention).ok_or_else(|| {
            AppError::Invalid(format!(
                "retention \"{retention}\": expected a period such as 90d, 12w, 6m or 7y"
            ))
        })?;
        let by = who.name().to_string();
        self.change(
            who,
            AuditAction::SettingSet,
            &format!("setting:{RETENTION_SETTING}"),
            |ids| ids.set_setting(RETENTION_SETTING, retention, &by, now_ns()),
        )
        .await?;
        self.audit.set_retention(Some(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_parses_relative_and_absolute_times() {
        assert_eq!(parse_until("+30m", 1000).unwrap(), 1000 + 1800);
        assert_eq!(parse_until("+2d", 0).unwrap(), 172_800);
        assert_eq!(
            parse_until("2026-12-01T18:00:00Z", 0).unwrap(),
            1_796_148_000
        );
        for bad in [
            "+0h",
            "+5",
            "+5y",
            "tomorrow",
            "+99999999999999999d",
            "+\u{80}",
            "+1\u{e9}",
        ] {
            assert!(parse_until(bad, 0).is_err(), "{bad}");
        }
    }
}
