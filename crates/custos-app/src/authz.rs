//! Decisions: the project's Cedar policies, asked on behalf of a signed-in [`Principal`], with
//! every decision recorded durably before the caller acts on it.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use custos_policy::{Action, Decision, Identities, PolicyEngine, PolicyError, Resource, User};

use crate::audit::{AuditAction, AuditHandle, ErrorCode, Outcome, Record, now_ns};
use crate::auth::{FactorState, FailureTable, Principal, lock};
use crate::error::{AppError, Result};

/// Added to a `use_key` denial when the policies permit `use_key` to nobody: the policy files
/// of a project made before the action existed.
pub const USE_KEY_HINT: &str = " (these policies permit use_key to nobody, so every run that protects data is denied: policy files written before use_key existed need the permits \"data_engineer.use-keys\" and \"analysts.use-random-encryption\" of the default policies, see docs/access.md)";

/// Why `user` was denied `action` on `spec`, for the user: the failing evaluation, the
/// forbidding policies, or that nothing permits it.
pub fn denial_message(user: &User, action: Action, spec: &str, decision: &Decision) -> String {
    let why = if !decision.errors.is_empty() {
        format!(
            "policy evaluation failed, which denies (fail closed): {}",
            decision.errors.join("; ")
        )
    } else if decision.policies.is_empty() {
        "no policy permits it".to_string()
    } else {
        format!("forbidden by {}", decision.policies.join(", "))
    };
    format!(
        "access denied: user \"{}\" (role {}) may not {} on {spec}: {why}",
        user.name,
        user.role,
        action.name()
    )
}

/// The pipeline a run's own decisions are about: the resources of the columns it decrypts and
/// of the keys it protects data with. Shared by the server's runs and the CLI's local ones, so
/// both ask the policies the same questions.
#[derive(Debug, Clone)]
pub struct RunScope {
    /// The pipeline's name.
    pub pipeline: String,
    /// The tags the policies see.
    pub tags: Vec<String>,
}

impl RunScope {
    /// A column the run decrypts, treated as personal data (what else is encrypted).
    pub fn decrypted_column(&self, column: &str) -> Resource {
        Resource::Column {
            pipeline: self.pipeline.clone(),
            tags: self.tags.clone(),
            name: column.to_string(),
            pii: true,
            protection: "encrypt".into(),
        }
    }

    /// One use of `key` by `operation` in the run.
    pub fn key_use(&self, key: &str, operation: &str, deterministic: bool) -> Resource {
        Resource::KeyUse {
            key: key.to_string(),
            pipeline: self.pipeline.clone(),
            tags: self.tags.clone(),
            operation: operation.to_string(),
            deterministic,
        }
    }
}

/// Asks the policies and records the answer. One per project.
///
/// Where the project requires MFA, an allowed action that [`Action::needs_step_up`] also
/// needs the request's second factor: a TOTP code checked against the user's enrolment (each
/// code once), or an identity provider's assertion. Wrong codes count towards a lockout of
/// the user's second factor, with the same backoff as sign-in.
pub struct Authorizer {
    policies: RwLock<std::result::Result<Arc<PolicyEngine>, String>>,
    ids: Arc<Mutex<Identities>>,
    audit: AuditHandle,
    mfa_required: bool,
    mfa_failures: FailureTable,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorizer")
    }
}

impl Authorizer {
    /// An authorizer over loaded policies (or the reason they did not load: then every
    /// request is denied).
    pub fn new(
        policies: std::result::Result<PolicyEngine, String>,
        ids: Arc<Mutex<Identities>>,
        audit: AuditHandle,
        mfa_required: bool,
    ) -> Self {
        Self {
            policies: RwLock::new(policies.map(Arc::new)),
            ids,
            audit,
            mfa_required,
            mfa_failures: FailureTable::default(),
        }
    }

    /// Whether privileged actions need a second factor.
    pub fn mfa_required(&self) -> bool {
        self.mfa_required
    }

    /// Replaces the policies (after a validated change); later decisions use them.
    pub fn set_policies(&self, engine: PolicyEngine) {
        *self
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Ok(Arc::new(engine));
    }

    /// Checks the request's second factor for `who`: `Ok` when verified (now or earlier in
    /// the request), else the error code and the message for the user.
    fn step_up(&self, who: &Principal) -> std::result::Result<(), (ErrorCode, String)> {
        let mut state = who.second_factor.state();
        let code = match &*state {
            FactorState::Verified => return Ok(()),
            FactorState::Refused(c, m) => return Err((*c, m.clone())),
            FactorState::Absent => {
                return Err((
                    ErrorCode::MfaRequired,
                    "this action needs a second factor: send the current code of your authenticator app (X-Custos-OTP, or CUSTOS_OTP for the CLI)".into(),
                ));
            }
            FactorState::Code(c) => c.clone(),
        };
        let now = Instant::now();
        let key = [format!("mfa:{}", who.name())];
        if let Some(wait) = self.mfa_failures.locked(&key, now) {
            let m = format!(
                "second factor locked after repeated wrong codes; try again in {} s",
                wait.as_secs().max(1)
            );
            *state = FactorState::Refused(ErrorCode::LockedOut, m.clone());
            return Err((ErrorCode::LockedOut, m));
        }
        let checked = lock(&self.ids).mfa_verify(who.name(), &code, now_ns() / 1_000_000_000);
        let refused = match checked {
            Ok(()) => {
                self.mfa_failures.clear(&key[0]);
                *state = FactorState::Verified;
                return Ok(());
            }
            Err(PolicyError::MfaReplayed) => (
                ErrorCode::MfaReplayed,
                "the one-time code was already used: wait for the next one".to_string(),
            ),
            Err(PolicyError::MfaNotEnrolled) => (
                ErrorCode::MfaInvalid,
                "no confirmed second factor: enrol one first (custos mfa enroll)".to_string(),
            ),
            Err(PolicyError::MfaInvalid) => (
                ErrorCode::MfaInvalid,
                "the one-time code is wrong or stale".to_string(),
            ),
            Err(e) => (ErrorCode::Error, format!("checking the second factor: {e}")),
        };
        if refused.0 != ErrorCode::Error {
            self.mfa_failures.fail(&key, now);
        }
        *state = FactorState::Refused(refused.0, refused.1.clone());
        Err(refused)
    }

    /// The audit handle decisions are recorded through.
    pub fn audit(&self) -> &AuditHandle {
        &self.audit
    }

    fn engine(&self) -> std::result::Result<Arc<PolicyEngine>, String> {
        self.policies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Decides whether `who` may do `action` on `resource` now, records the decision (and
    /// waits until the record is on disk), and returns the decision, or [`AppError::Denied`]
    /// with the reason.
    pub async fn authorize(
        &self,
        who: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<Decision> {
        let spec = resource.spec();
        let now_s = now_ns() / 1_000_000_000;
        let engine = match self.engine() {
            Ok(e) => e,
            Err(e) => {
                self.audit
                    .record_durable(
                        Record::new(
                            who.name(),
                            AuditAction::Policy(action),
                            &spec,
                            Outcome::Denied,
                        )
                        .code(ErrorCode::InvalidPolicies),
                    )
                    .await?;
                return Err(AppError::Denied(format!(
                    "access denied: the policies do not load, so everything is denied (fail closed):\n{e}"
                )));
            }
        };
        let grants = self
            .ids
            .lock()
            .map_err(|_| AppError::Internal("the identity store lock was poisoned".into()))?
            .active_grants(&who.grant_subject(), now_s)
            .map_err(|e| AppError::internal("identity store", e))?;
        let decision = engine.decide(&who.user, action, resource, &grants, now_s);
        // Only an allowed privileged action checks (and so uses up) the second factor.
        let step_up = if decision.allowed && self.mfa_required && action.needs_step_up() {
            self.step_up(who).err()
        } else {
            None
        };
        let outcome = if decision.allowed && step_up.is_none() {
            Outcome::Allowed
        } else {
            Outcome::Denied
        };
        let mut record = Record::new(who.name(), AuditAction::Policy(action), &spec, outcome);
        record.policies = decision.policies.clone();
        if !decision.errors.is_empty() {
            record.error_code = Some(ErrorCode::PolicyError);
        }
        if let Some((code, _)) = &step_up {
            record.error_code = Some(*code);
        }
        if let Some(a) = who.address {
            record.detail = Some(format!("address {a}"));
        }
        self.audit.record_durable(record).await?;
        if let Some((_, m)) = step_up {
            return Err(AppError::Denied(format!(
                "access denied: user \"{}\" may {} on {spec} only with a second factor: {m}",
                who.name(),
                action.name()
            )));
        }
        if decision.allowed {
            return Ok(decision);
        }
        let mut message = denial_message(&who.user, action, &spec, &decision);
        if action == Action::UseKey && !engine.may_permit(Action::UseKey) {
            message.push_str(USE_KEY_HINT);
        }
        Err(AppError::Denied(message))
    }

    /// Records the outcome of an operation authorized for `action` on `resource`, and waits
    /// until it is on disk.
    pub async fn outcome(
        &self,
        who: &str,
        action: Action,
        resource: &str,
        result: std::result::Result<(), (ErrorCode, String)>,
        run: Option<(&str, u64)>,
    ) -> Result<()> {
        let (outcome, code, detail) = match result {
            Ok(()) => (Outcome::Succeeded, None, None),
            Err((c, d)) => (Outcome::Failed, Some(c), Some(d)),
        };
        let mut r = Record::new(who, AuditAction::Policy(action), resource, outcome);
        r.error_code = code;
        r.detail = detail;
        if let Some((id, rows)) = run {
            r.run_id = Some(id.to_string());
            r.rows = Some(rows);
        }
        self.audit.record_durable(r).await
    }
}
