//! Who is running a command, whether they may, and the audit record of it.
//!
//! Every command that touches data, keys, users or the audit log opens a [`Session`]: it signs
//! the caller in with the API token in `CUSTOS_TOKEN` (or the file named by
//! `CUSTOS_TOKEN_FILE`), asks the Cedar policies about each action, and appends an audit event
//! for every sign-in failure, every decision and the command's outcome. When the command ends
//! the log is synced (one fsync for all its events), a checkpoint is signed with the audit key
//! from the keystore, and whole segments past the retention period are removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use custos_audit::{AuditLog, Event};
use custos_policy::{Action, Identities, PolicyEngine, PolicyError, Resource, User};
use ed25519_dalek::SigningKey;

/// Name of the audit checkpoint key in the keystore.
pub(crate) const AUDIT_KEY: &str = custos_app::project::AUDIT_KEY;

/// A refusal: sign-in failed or a policy denied. The CLI exits with [`crate::EXIT_DENIED`].
#[derive(Debug)]
pub(crate) struct Denied(pub String);

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Denied {}

/// The project's policy directory (`$CUSTOS_POLICY_DIR` in local mode).
pub(crate) fn policy_dir(state_dir: &Path) -> PathBuf {
    custos_app::settings::policy_dir(state_dir, true)
}

fn load_project(state_dir: &Path) -> Result<custos_app::settings::ProjectConfig> {
    Ok(custos_app::settings::load_project(state_dir)?)
}

pub(crate) fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The project's keystore, unlocked once for a whole command (the engine's data keys and the
/// audit checkpoint key). `None` when there is no keystore or no passphrase, or when it does
/// not open (whoever needs it then opens it and reports why).
pub(crate) fn open_keystore(state_dir: &Path) -> Option<Arc<custos_keys::Keystore>> {
    let path = custos_keys::keystore_path(state_dir);
    if !path.is_file() {
        return None;
    }
    let (pass, _) = custos_keys::Passphrase::from_env().ok()?;
    custos_keys::Keystore::open(&path, &pass).ok().map(Arc::new)
}

/// The audit checkpoint key from an open keystore, when it has one.
fn audit_key_in(ks: &custos_keys::Keystore) -> Result<Option<SigningKey>> {
    if ks.key(AUDIT_KEY).is_err() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (_, _, seed) = rt.block_on(ks.encryption_key(AUDIT_KEY, custos_keys::Purpose::Signing))?;
    let seed: [u8; 32] = seed
        .expose()
        .try_into()
        .map_err(|_| anyhow::anyhow!("audit key \"{AUDIT_KEY}\" has the wrong size"))?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

/// The audit checkpoint key from the keystore, created there if missing. `None` when there is
/// no keystore or no passphrase: events are still chained, but not covered by a checkpoint.
pub(crate) fn audit_key(state_dir: &Path, create: bool) -> Result<Option<SigningKey>> {
    let path = custos_keys::keystore_path(state_dir);
    if !path.is_file() {
        return Ok(None);
    }
    let Ok((pass, _)) = custos_keys::Passphrase::from_env() else {
        return Ok(None);
    };
    let mut ks = custos_keys::Keystore::open(&path, &pass)?;
    if create && ks.key(AUDIT_KEY).is_err() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(ks.create(AUDIT_KEY, custos_keys::Purpose::Signing))?;
    }
    audit_key_in(&ks)
}

/// The identity store: unsealed, or (once a server has sealed it) under the keystore's
/// identity key, which needs the keystore passphrase.
fn open_identities(state_dir: &Path) -> Result<Identities> {
    match Identities::open(state_dir) {
        Err(custos_policy::PolicyError::Sealed) => {
            let Some(ks) = open_keystore(state_dir) else {
                anyhow::bail!(
                    "the identity store was sealed by a custos server: set CUSTOS_KEYSTORE_PASSPHRASE (or CUSTOS_KEYSTORE_PASSPHRASE_FILE) to open it locally, or use the server (CUSTOS_SERVER)"
                );
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(rt.block_on(custos_app::project::open_identities(
                state_dir,
                Some(&ks),
                false,
            ))?)
        }
        other => Ok(other?),
    }
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

/// One command's identity, policies and audit trail.
pub(crate) struct Session {
    state_dir: PathBuf,
    pub(crate) ids: Identities,
    policies: std::result::Result<PolicyEngine, String>,
    audit: AuditLog,
    retention_ns: Option<i64>,
    user: Option<User>,
    /// The last authorized action and resource: the command's outcome is recorded on them.
    subject: Option<(String, String)>,
    host: String,
    /// The keystore passphrase works and the audit key may be created by this command.
    create_audit_key: bool,
    /// The keystore as already unlocked by this command, reused for the checkpoint key.
    keystore: Option<Arc<custos_keys::Keystore>>,
    /// Shared hold on the state directory: no server takes it over mid-command.
    _owner_lock: std::fs::File,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user.as_ref().map(|u| &u.name))
            .finish()
    }
}

impl Session {
    /// Opens the identity store, policies and audit log of the project whose state directory
    /// is `state_dir`.
    pub(crate) fn open(state_dir: &Path) -> Result<Self> {
        custos_engine::create_private_dir(state_dir)?;
        // A project served by `custos serve` belongs to the server: its keys, users and audit
        // log are changed only through it.
        let owner_lock = custos_app::project::lock_state_dir(state_dir, false)?;
        let project = load_project(state_dir)?;
        let ids = open_identities(state_dir)?;
        let policies = PolicyEngine::load(&policy_dir(state_dir)).map_err(|e| e.to_string());
        let audit_dir = state_dir.join("audit");
        let audit = AuditLog::open(&audit_dir, project.audit.segment_mib.max(1) << 20)
            .with_context(|| format!("opening the audit log in {}", audit_dir.display()))?;
        let mut s = Self {
            state_dir: state_dir.to_path_buf(),
            ids,
            policies,
            audit,
            retention_ns: project.audit.retention_ns(),
            user: None,
            subject: None,
            host: custos_engine::host_name(),
            create_audit_key: false,
            keystore: None,
            _owner_lock: owner_lock,
        };
        if let Some(r) = s.audit.recovered().cloned() {
            tracing::warn!(
                position = r.position,
                bytes = r.bytes,
                saved_to = %r.saved_to.display(),
                "the audit log ended in a torn record (a crash during a write); it was cut off and saved aside"
            );
            s.event(
                "audit_recover",
                "audit",
                "succeeded",
                Some("torn_record"),
                None,
                None,
            )?;
        }
        Ok(s)
    }

    /// Lets this command create the audit key in the keystore (commands that set keys up).
    pub(crate) fn allow_audit_key_creation(&mut self) {
        self.create_audit_key = true;
    }

    fn principal(&self) -> String {
        self.user
            .as_ref()
            .map_or_else(|| "anonymous".to_string(), |u| u.name.clone())
    }

    /// Appends one event.
    pub(crate) fn event(
        &mut self,
        action: &str,
        resource: &str,
        outcome: &str,
        error_code: Option<&str>,
        run_id: Option<&str>,
        rows: Option<u64>,
    ) -> Result<()> {
        self.event_with(
            action,
            resource,
            outcome,
            error_code,
            Vec::new(),
            run_id,
            rows,
        )
    }

    /// Appends an event with a value-free detail text.
    pub(crate) fn event_detail(
        &mut self,
        action: &str,
        resource: &str,
        outcome: &str,
        detail: String,
    ) -> Result<()> {
        self.append(Event {
            detail: Some(detail),
            ..self.base_event(action, resource, outcome)
        })
    }

    /// An event by the current principal on this host, now.
    fn base_event(&self, action: &str, resource: &str, outcome: &str) -> Event {
        Event {
            time_ns: now_ns(),
            principal: self.principal(),
            action: action.into(),
            resource: resource.into(),
            outcome: outcome.into(),
            error_code: None,
            host: self.host.clone(),
            pid: std::process::id(),
            policies: Vec::new(),
            run_id: None,
            rows: None,
            detail: None,
        }
    }

    fn append(&mut self, event: Event) -> Result<()> {
        self.audit
            .append(&event)
            .context("appending to the audit log")?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn event_with(
        &mut self,
        action: &str,
        resource: &str,
        outcome: &str,
        error_code: Option<&str>,
        policies: Vec<String>,
        run_id: Option<&str>,
        rows: Option<u64>,
    ) -> Result<()> {
        self.append(Event {
            error_code: error_code.map(Into::into),
            policies,
            run_id: run_id.map(Into::into),
            rows,
            ..self.base_event(action, resource, outcome)
        })
    }

    /// Whether any user exists.
    pub(crate) fn has_users(&self) -> Result<bool> {
        Ok(!self.ids.is_empty()?)
    }

    /// Signs the caller in with the token from the environment.
    pub(crate) fn authenticate(&mut self) -> Result<User> {
        if let Some(u) = &self.user {
            return Ok(u.clone());
        }
        let token = match token_from_env() {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.event("authenticate", "-", "denied", Some("no_token"), None, None)?;
                let hint = if self.ids.is_empty()? {
                    "no users exist yet: `custos init` creates the first admin and prints its token"
                } else {
                    "ask an admin for a token (`custos users add`)"
                };
                return Err(Denied(format!(
                    "not signed in: set CUSTOS_TOKEN (or CUSTOS_TOKEN_FILE) to your API token; {hint}"
                ))
                .into());
            }
            Err(e) => {
                self.event(
                    "authenticate",
                    "-",
                    "denied",
                    Some("token_file"),
                    None,
                    None,
                )?;
                return Err(e);
            }
        };
        match self.ids.authenticate(&token) {
            Ok(u) => {
                self.user = Some(u.clone());
                Ok(u)
            }
            Err(PolicyError::Authentication) => {
                self.event(
                    "authenticate",
                    "-",
                    "denied",
                    Some("invalid_token"),
                    None,
                    None,
                )?;
                Err(Denied(PolicyError::Authentication.to_string()).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Signs in (if not yet) and asks the policies whether the caller may do `action` on
    /// `resource`; records the decision. A denial is a [`Denied`] error.
    pub(crate) fn authorize(&mut self, action: Action, resource: &Resource) -> Result<User> {
        let user = self.authenticate()?;
        let spec = resource.spec();
        let now_s = now_ns() / 1_000_000_000;
        let decision = match &self.policies {
            Err(e) => {
                let e = e.clone();
                self.event_with(
                    action.name(),
                    &spec,
                    "denied",
                    Some("invalid_policies"),
                    Vec::new(),
                    None,
                    None,
                )?;
                return Err(Denied(format!(
                    "access denied: the policies do not load, so everything is denied (fail closed):\n{e}"
                ))
                .into());
            }
            Ok(p) => {
                let grants = self.ids.active_grants(&user.name, now_s)?;
                p.decide(&user, action, resource, &grants, now_s)
            }
        };
        let outcome = if decision.allowed {
            "allowed"
        } else {
            "denied"
        };
        let code = if decision.errors.is_empty() {
            None
        } else {
            Some("policy_error")
        };
        self.event_with(
            action.name(),
            &spec,
            outcome,
            code,
            decision.policies.clone(),
            None,
            None,
        )?;
        if !decision.allowed {
            return Err(Denied(custos_app::authz::denial_message(
                &user, action, &spec, &decision,
            ))
            .into());
        }
        self.subject = Some((action.name().to_string(), spec));
        Ok(user)
    }

    /// [`Session::authorize`] for a decision inside a command (a run's decrypted columns and
    /// key uses): recorded like any other, but the command's outcome stays recorded on the
    /// command's own action.
    pub(crate) fn authorize_within(&mut self, action: Action, resource: &Resource) -> Result<User> {
        let subject = self.subject.take();
        let r = self.authorize(action, resource);
        self.subject = subject;
        r
    }

    /// Records the command's outcome on its last authorized action, syncs the log, signs a
    /// checkpoint and applies retention. Call once, at the end.
    pub(crate) fn finish(mut self, result: &Result<u8>) -> Result<()> {
        self.finish_run(result, None, None)
    }

    /// [`Session::finish`] for a pipeline run, with its id and rows written.
    pub(crate) fn finish_run(
        &mut self,
        result: &Result<u8>,
        run_id: Option<&str>,
        rows: Option<u64>,
    ) -> Result<()> {
        if let Some((action, resource)) = self.subject.take() {
            let (outcome, code) = match result {
                Ok(0) => ("succeeded", None),
                Ok(1) => ("failed", Some("run_failed")),
                Ok(_) => ("failed", Some("invalid")),
                Err(e) if e.downcast_ref::<Denied>().is_some() => ("failed", Some("denied")),
                Err(_) => ("failed", Some("error")),
            };
            self.event(&action, &resource, outcome, code, run_id, rows)?;
        }
        self.close()
    }

    /// Flushes and fsyncs the events so far.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.audit.sync().context("syncing the audit log")
    }

    /// Signs a checkpoint of the log as it is now.
    pub(crate) fn checkpoint(&mut self, key: &SigningKey) -> Result<custos_audit::Checkpoint> {
        self.audit
            .checkpoint(key, now_ns())
            .context("signing an audit checkpoint")
    }

    /// Checks that the log `old` describes is a prefix of the current log: returns the two
    /// sizes, or why not.
    pub(crate) fn prove(
        &mut self,
        old: &custos_audit::Checkpoint,
    ) -> std::result::Result<(u64, u64), String> {
        let n = self.audit.len();
        if old.size > n {
            return Err(format!(
                "the checkpoint covers {} records but the log holds {n} (truncated)",
                old.size
            ));
        }
        let old_root: [u8; 32] = hex::decode(&old.root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the checkpoint's root is not a SHA-256 hash")?;
        let proof = self
            .audit
            .consistency_proof(old.size)
            .map_err(|e| e.to_string())?;
        let root = self.audit.root();
        if custos_audit::merkle::verify_consistency(old.size, n, &old_root, &root, &proof) {
            Ok((old.size, n))
        } else {
            Err("the consistency proof fails: history before the checkpoint was rewritten".into())
        }
    }

    /// Reuses a keystore this command has already unlocked (saves an Argon2id derivation).
    pub(crate) fn use_keystore(&mut self, ks: Option<Arc<custos_keys::Keystore>>) {
        self.keystore = ks;
    }

    fn close(&mut self) -> Result<()> {
        self.audit.sync().context("syncing the audit log")?;
        let unlocked = match &self.keystore {
            Some(ks) => audit_key_in(ks).ok().flatten(),
            None => None,
        };
        let found = match unlocked {
            Some(k) => Ok(Some(k)),
            None => audit_key(&self.state_dir, self.create_audit_key),
        };
        let key = match found {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("audit checkpoint not signed: the keystore did not open: {e}");
                None
            }
        };
        let Some(key) = key else {
            tracing::debug!("audit checkpoint not signed: no keystore or no passphrase");
            return Ok(());
        };
        if let Some(keep) = self.retention_ns {
            let now = now_ns();
            let principal = self.principal();
            if let Some(r) = self
                .audit
                .apply_retention(keep, now, &principal, &self.host)
                .context("applying audit retention")?
            {
                tracing::info!(
                    removed_segments = r.segments,
                    removed_from = r.removed_from,
                    removed_to = r.removed_to,
                    "audit retention removed expired segments"
                );
            }
        }
        self.audit
            .checkpoint(&key, now_ns())
            .context("signing an audit checkpoint")?;
        Ok(())
    }
}
