//! Decisions: the project's Cedar policies, asked on behalf of a signed-in [`Principal`], with
//! every decision recorded durably before the caller acts on it.

use std::sync::{Arc, Mutex, RwLock};

use custos_policy::{Action, Decision, Identities, PolicyEngine, Resource, User};

use crate::audit::{AuditAction, AuditHandle, ErrorCode, Outcome, Record, now_ns};
use crate::auth::Principal;
use crate::error::{AppError, Result};

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

/// Asks the policies and records the answer. One per project.
pub struct Authorizer {
    policies: RwLock<std::result::Result<Arc<PolicyEngine>, String>>,
    ids: Arc<Mutex<Identities>>,
    audit: AuditHandle,
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
    ) -> Self {
        Self {
            policies: RwLock::new(policies.map(Arc::new)),
            ids,
            audit,
        }
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
            .active_grants(who.name(), now_s)
            .map_err(|e| AppError::internal("identity store", e))?;
        let decision = engine.decide(&who.user, action, resource, &grants, now_s);
        let outcome = if decision.allowed {
            Outcome::Allowed
        } else {
            Outcome::Denied
        };
        let mut record = Record::new(who.name(), AuditAction::Policy(action), &spec, outcome);
        record.policies = decision.policies.clone();
        if !decision.errors.is_empty() {
            record.error_code = Some(ErrorCode::PolicyError);
        }
        if let Some(a) = who.address {
            record.detail = Some(format!("address {a}"));
        }
        self.audit.record_durable(record).await?;
        if decision.allowed {
            return Ok(decision);
        }
        Err(AppError::Denied(denial_message(
            &who.user, action, &spec, &decision,
        )))
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
