//! Operations of CLI local mode: the project opened by one command ([`Project::open_local`]),
//! its first admin, work the command does in its own process under a decision, and the
//! close that signs the command's checkpoint.

use std::future::Future;

use custos_policy::{Action, Resource};

use crate::admin::IssuedToken;
use crate::audit::{AuditAction, ErrorCode, Outcome, Record, now_ns};
use crate::auth::Principal;
use crate::error::{AppError, Result};
use crate::project::{Owner, Project};

/// The audit error code of an operation's failure.
pub(crate) fn failure(e: &AppError) -> (ErrorCode, String) {
    let code = match e {
        AppError::Invalid(_) | AppError::NotFound(_) => ErrorCode::Invalid,
        AppError::Denied(_) | AppError::Unauthenticated(_) => ErrorCode::Denied,
        AppError::RunFailed(_) => ErrorCode::RunFailed,
        AppError::Internal(_) => ErrorCode::Error,
    };
    (code, e.code().to_string())
}

impl Project {
    /// Whether any user exists.
    pub fn has_users(&self) -> Result<bool> {
        crate::auth::lock(&self.ids)
            .is_empty()
            .map(|empty| !empty)
            .map_err(|e| AppError::internal("identity store", e))
    }

    /// Creates the first user, `name` with role `security_admin`, in a project without
    /// users, and returns its token (shown once); `None` when users exist. Whoever creates
    /// the project is its first admin, so the record names them.
    pub async fn bootstrap_admin(&self, name: &str) -> Result<Option<IssuedToken>> {
        if self.owner == Owner::Server {
            return Err(AppError::Invalid(
                "the first admin is created with the project (custos init)".into(),
            ));
        }
        let issued = {
            let ids = crate::auth::lock(&self.ids);
            if !ids
                .is_empty()
                .map_err(|e| AppError::internal("identity store", e))?
            {
                return Ok(None);
            }
            let token = ids
                .add_user(name, "security_admin", name, now_ns())
                .map_err(|e| AppError::internal("adding the first admin", e))?;
            let user = ids
                .user(name)
                .map_err(|e| AppError::internal("identity store", e))?
                .ok_or_else(|| AppError::Internal("the first admin vanished".into()))?;
            IssuedToken::new(user, &token)
        };
        self.audit
            .record_durable(Record::new(
                name,
                AuditAction::UserAdd,
                format!("user:{name}"),
                Outcome::Succeeded,
            ))
            .await?;
        Ok(Some(issued))
    }

    /// Decides `action` on `resource` for `who`, then does `work` (in this process) and
    /// records its outcome: for commands whose work is not one of the project's operations
    /// (scanning a local file, scoring detectors on a labelled corpus).
    pub async fn authorized<T, F>(
        &self,
        who: &Principal,
        action: Action,
        resource: &Resource,
        work: F,
    ) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.authorizer.authorize(who, action, resource).await?;
        let result = work.await;
        self.authorizer
            .outcome(
                who.name(),
                action,
                &resource.spec(),
                result.as_ref().map(|_| ()).map_err(failure),
                None,
            )
            .await?;
        result
    }

    /// Ends a command: every record on disk, expired segments removed, a checkpoint signed
    /// (when the audit key is at hand).
    pub async fn close(&self) -> Result<()> {
        self.audit.close().await
    }
}
