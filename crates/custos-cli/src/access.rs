//! Local mode: one command opens the project through `custos_app` (the same sign-in,
//! decisions, audit writer and operations a server uses), signs the caller in with the API
//! token in `CUSTOS_TOKEN` (or the file named by `CUSTOS_TOKEN_FILE`), and closes the project
//! at the end, which syncs the audit log, applies retention and signs a checkpoint.
//!
//! Local mode is one trust domain: whoever runs a command holds the keystore passphrase and
//! the state directory. The decisions and the audit trail keep honest users honest; a server
//! (`custos serve`, `CUSTOS_SERVER`) is the boundary against the others.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use custos_app::{AppError, Credential, LocalOptions, Principal, Project};

/// The project's policy directory (`$CUSTOS_POLICY_DIR` in local mode).
pub(crate) fn policy_dir(state_dir: &Path) -> PathBuf {
    custos_app::settings::policy_dir(state_dir, true)
}

/// The token given by the environment, if any.
pub(crate) fn token_from_env() -> Result<Option<String>> {
    if let Ok(t) = std::env::var("CUSTOS_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(f) = std::env::var_os("CUSTOS_TOKEN_FILE")
        && !f.is_empty()
    {
        let path = PathBuf::from(f);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the token file {}", path.display()))?;
        return Ok(Some(text.trim().to_string()));
    }
    Ok(None)
}

/// The keystore passphrase from the environment, when one is given (a warning about how it
/// was given is printed).
pub(crate) fn passphrase() -> Option<custos_keys::Passphrase> {
    match custos_keys::Passphrase::from_env() {
        Ok((p, warning)) => {
            if let Some(w) = warning {
                eprintln!("custos: warning: {w}");
            }
            Some(p)
        }
        Err(_) => None,
    }
}

/// Opens the project of `state_dir` for this command (the keystore at `keystore_file`, or
/// the default one).
pub(crate) async fn open(state_dir: &Path, keystore_file: Option<PathBuf>) -> Result<Arc<Project>> {
    Ok(Project::open_local(
        state_dir,
        LocalOptions {
            passphrase: passphrase(),
            keystore_file,
        },
    )
    .await?)
}

/// Signs the caller in with the token from the environment (every failure is recorded).
pub(crate) async fn sign_in(project: &Project) -> Result<Principal> {
    let token = match token_from_env() {
        Ok(Some(t)) => t,
        Ok(None) => {
            let hint = if project.has_users()? {
                "set CUSTOS_TOKEN (or CUSTOS_TOKEN_FILE) to your API token; ask an admin for one (`custos users add`)"
            } else {
                "set CUSTOS_TOKEN (or CUSTOS_TOKEN_FILE) to your API token; no users exist yet: `custos init` creates the first admin and prints its token"
            };
            return Err(project.authenticator().missing(None, hint).into());
        }
        Err(e) => {
            let _ = project
                .authenticator()
                .missing(None, "the token file does not read");
            return Err(e);
        }
    };
    Ok(project
        .authenticator()
        .authenticate(Credential::api_token(&token), None)
        .await?)
}

/// Opens the project, signs the caller in, runs `f`, and closes the project whatever the
/// outcome (the audit log is synced and a checkpoint signed).
pub(crate) fn with_project<F, Fut>(
    state_dir: &Path,
    keystore_file: Option<PathBuf>,
    f: F,
) -> Result<u8>
where
    F: FnOnce(Arc<Project>, Principal) -> Fut,
    Fut: Future<Output = Result<u8>>,
{
    crate::runtime()?.block_on(async {
        let project = open(state_dir, keystore_file).await?;
        let result = match sign_in(&project).await {
            Ok(who) => f(project.clone(), who).await,
            Err(e) => Err(e),
        };
        close(&project, result).await
    })
}

/// Closes the project after a command with `result`: a failure to close is the command's
/// error only when the command itself succeeded.
pub(crate) async fn close(project: &Project, result: Result<u8>) -> Result<u8> {
    if let Err(e) = project.close().await {
        if result.is_ok() {
            return Err(e.into());
        }
        tracing::error!("recording the command in the audit log: {e}");
    }
    result
}

/// The exit code and message of an error from the application layer, if it is one.
pub(crate) fn app_error(e: &anyhow::Error) -> Option<&AppError> {
    e.downcast_ref::<AppError>()
}
