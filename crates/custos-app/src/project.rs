//! A project opened by its owner process (the server, or one CLI command): the identity
//! store, the policies, the one audit writer, the keystore, the pipeline registry and the run
//! jobs, and the operations on them. Every operation takes the signed-in [`Principal`],
//! authorizes (recording the decision durably first) and records its outcome.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_config::Loaded;
use custos_engine::{RunAuthorizer, RunOptions, RunOutcome, RunStatus, StateStore};
use custos_policy::{Action, Identities, PolicyEngine, Resource};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::audit::{AuditAction, AuditHandle, ErrorCode, Outcome, Record, WriterOptions, now_ns};
use crate::auth::{Authenticator, Cidr, Principal};
use crate::authz::{Authorizer, RunScope};
use crate::confine::Confinement;
use crate::error::{AppError, Result};
use crate::jobs::{Job, JobInfo, JobStatus, Jobs};
use crate::registry::{RegisteredPipeline, Registry};
use crate::settings;

/// Name of the audit checkpoint key in the keystore.
pub const AUDIT_KEY: &str = "custos-audit";

/// The lock file that makes one owner at a time of a state directory: the server holds it
/// exclusively, CLI commands in local mode shared.
pub const LOCK_FILE: &str = "owner.lock";

/// The database connections of `config` that are not `verify-full` TLS, as
/// `KEY sslmode=MODE` (what `[danger] allow_insecure_db` lets a run open).
pub fn insecure_connections(config: &custos_config::PipelineConfig) -> Vec<String> {
    config
        .connections()
        .into_iter()
        .filter(|(_, c)| c.sslmode != "verify-full")
        .map(|(k, c)| format!("{k} sslmode={}", c.sslmode))
        .collect()
}

/// How a project is opened.
pub struct ProjectOptions {
    /// Unlocks the keystore (the server's own secret; the CLI's comes from its environment).
    pub passphrase: Option<custos_keys::Passphrase>,
    /// What registered pipelines may reach.
    pub confinement: Confinement,
    /// Address allowlist for sign-in (empty: any).
    pub allow: Vec<Cidr>,
    /// Runs at once; more wait in the queue.
    pub max_concurrent_runs: usize,
    /// Who the process is, for its own records (`server`).
    pub principal: String,
    /// Privileged actions need a second factor (see [`custos_policy::Action::needs_step_up`]).
    pub mfa_required: bool,
    /// An identity provider whose tokens sign users in.
    pub oidc: Option<crate::oidc::OidcProvider>,
    /// How users enrol their second factor.
    pub mfa_enrollment: EnrollmentMode,
    /// Start even if the identity store is older than the audit log's last record of it
    /// (`[danger] accept_identity_rollback`: after restoring it from a backup). Recorded.
    pub accept_identity_rollback: bool,
}

impl std::fmt::Debug for ProjectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectOptions")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "[redacted]"),
            )
            .field("confinement", &self.confinement)
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .finish()
    }
}

/// How users enrol their second factor (`[auth] mfa_enrollment`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentMode {
    /// A signed-in user enrols their own (the default): whoever first holds a user's token
    /// can enrol for them.
    #[default]
    #[serde(rename = "self")]
    SelfService,
    /// Enrolment needs a one-time ticket an admin issues to the user out of band
    /// (`custos mfa ticket NAME`), so a stolen token alone cannot enrol a second factor.
    Ticket,
}

/// A request to register a pipeline.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The pipeline's TOML text (its `[pipeline] name` is the registered name).
    pub config: String,
    /// Directory its relative paths resolve against (default: the first data root); must be
    /// under a data root.
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
    /// Tags the policies see (default: the config's `[pipeline] tags`).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// `public`, `internal`, `confidential` or `restricted` (default `confidential`).
    #[serde(default)]
    #[schemars(extend("enum" = ["public", "internal", "confidential", "restricted"]))]
    pub classification: Option<String>,
}

/// A filter over audit records.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this principal.
    #[serde(default)]
    pub principal: Option<String>,
    /// Only this action (`run_pipeline`, `authenticate`, ...).
    #[serde(default)]
    pub action: Option<String>,
    /// Only this outcome (`allowed`, `denied`, `succeeded`, `failed`).
    #[serde(default)]
    pub outcome: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// Most records returned (newest kept), default 100, at most 10 000.
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One audit record as returned by queries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log.
    pub position: u64,
    /// The record.
    #[serde(flatten)]
    pub event: custos_audit::Event,
}

/// The result of verifying the audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditVerification {
    /// Positions in the log (present plus removed by retention).
    pub records: u64,
    /// First position present.
    pub first: u64,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// Merkle root of all records, hex.
    pub root: String,
}

/// A signed checkpoint as exported: the statement and the key that verifies it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportedCheckpoint {
    /// The signed statement: size, Merkle root, time.
    #[schemars(with = "serde_json::Value")]
    pub checkpoint: custos_audit::Checkpoint,
    /// The Ed25519 public key, hex.
    pub public_key: String,
}

/// An open project.
pub struct Project {
    state_dir: PathBuf,
    pub(crate) ids: Arc<Mutex<Identities>>,
    /// How users enrol their second factor.
    pub(crate) mfa_enrollment: EnrollmentMode,
    authenticator: Arc<Authenticator>,
    pub(crate) authorizer: Arc<Authorizer>,
    pub(crate) audit: AuditHandle,
    /// Opened on first use (a CLI command rarely needs it).
    registry: Mutex<Option<Registry>>,
    keystore: std::sync::RwLock<Option<Arc<custos_keys::Keystore>>>,
    /// The keystore file.
    pub(crate) keystore_file: PathBuf,
    /// Why the keystore did not open, when a command's passphrase did not open it.
    pub(crate) keystore_error: Option<AppError>,
    /// The server's own passphrase, to reopen the keystore for key changes.
    pub(crate) passphrase: Option<custos_keys::Passphrase>,
    /// A server, or one CLI command in local mode.
    pub(crate) owner: Owner,
    /// Serializes key changes.
    pub(crate) key_changes: tokio::sync::Mutex<()>,
    pub(crate) confinement: Confinement,
    pub(crate) jobs: Jobs,
    permits: Arc<Semaphore>,
    closing: AtomicBool,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

/// Takes the owner lock of a state directory: exclusive for a server, shared for CLI
/// commands. Fails at once if the other kind holds it.
pub fn lock_state_dir(state_dir: &Path, exclusive: bool) -> Result<std::fs::File> {
    use rustix::fs::{FlockOperation, flock};
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| AppError::internal(&format!("opening {}", path.display()), e))?;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    flock(&file, op).map_err(|_| {
        AppError::Invalid(if exclusive {
            format!(
                "{} is in use (a custos server or command is using it); a server needs the project to itself",
                state_dir.display()
            )
        } else {
            format!(
                "{} is served by a custos server, which alone holds its keys and audit log: send commands to it (CUSTOS_SERVER)",
                state_dir.display()
            )
        })
    })?;
    Ok(file)
}

/// Who has a project open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// `custos serve`: the sole owner, holding the keys and state for every user.
    Server,
    /// One CLI command in local mode (one trust domain: whoever runs it holds the
    /// passphrase and the state directory).
    Command,
}

/// How a CLI command opens a project in local mode.
#[derive(Default)]
pub struct LocalOptions {
    /// Unlocks the keystore (from the command's environment); without it the command runs
    /// without keys and its audit records get no signed checkpoint.
    pub passphrase: Option<custos_keys::Passphrase>,
    /// The keystore file [default: `$CUSTOS_KEYSTORE`, else `keystore.ck` in the state
    /// directory].
    pub keystore_file: Option<PathBuf>,
}

impl std::fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOptions")
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "[redacted]"),
            )
            .field("keystore_file", &self.keystore_file)
            .finish()
    }
}

/// The audit checkpoint key of an open keystore, when it has one.
pub(crate) async fn audit_signing_key(ks: &custos_keys::Keystore) -> Result<Option<SigningKey>> {
    if ks.key(AUDIT_KEY).is_err() {
        return Ok(None);
    }
    let (_, _, seed) = ks
        .encryption_key(AUDIT_KEY, custos_keys::Purpose::Signing)
        .await
        .map_err(|e| AppError::internal("reading the audit key", e))?;
    let seed: [u8; 32] = seed
        .expose()
        .try_into()
        .map_err(|_| AppError::Internal(format!("audit key \"{AUDIT_KEY}\" has the wrong size")))?;
    Ok(Some(SigningKey::from_bytes(&seed)))
}

/// An open keystore, its audit key, and whether the identity key was created now.
type OpenedKeystore = (Arc<custos_keys::Keystore>, Option<SigningKey>, bool);

/// Opens the keystore at `path` (`None` when there is no such file) and returns it with its
/// audit key. With `create`, the audit and identity keys are created when missing.
async fn open_keystore(
    path: &Path,
    pass: &custos_keys::Passphrase,
    create: bool,
) -> Result<Option<OpenedKeystore>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut ks = custos_keys::Keystore::open(path, pass).map_err(|e| {
        AppError::Invalid(format!(
            "the keystore {} does not open: {e}",
            path.display()
        ))
    })?;
    let identity_created = create && ks.key(IDENTITY_KEY).is_err();
    if create {
        for name in [AUDIT_KEY, IDENTITY_KEY] {
            if ks.key(name).is_err() {
                ks.create(name, custos_keys::Purpose::Signing)
                    .await
                    .map_err(|e| AppError::internal(&format!("creating the key \"{name}\""), e))?;
            }
        }
    }
    let key = audit_signing_key(&ks).await?;
    Ok(Some((Arc::new(ks), key, identity_created)))
}

/// Name of the key in the keystore whose seed seals the identity store.
pub const IDENTITY_KEY: &str = "custos-identity";

/// Opens the identity store of `state_dir`: sealed under the keystore's identity key when a
/// keystore with the identity key is given, else unsealed (which
/// fails for a store a server has sealed). A server's keystore always has the key (it is
/// created when the server opens the project); a CLI's has it once a server has run.
///
/// `first_seal`: the identity key was created just now, so an unsealed store may be sealed as
/// it is. Otherwise a keyed open refuses an unsealed store: one whose seal was stripped from
/// the file (every MAC and the store MAC removed) must not be sealed again with its edits.
pub async fn open_identities(
    state_dir: &Path,
    keystore: Option<&custos_keys::Keystore>,
    first_seal: bool,
) -> Result<Identities> {
    let key = match keystore {
        Some(ks) if ks.key(IDENTITY_KEY).is_ok() => Some(identity_key(ks).await?),
        _ => None,
    };
    let opened = match &key {
        Some(k) if first_seal => Identities::open_sealed(state_dir, k),
        Some(k) => Identities::open_sealed_existing(state_dir, k),
        None => Identities::open(state_dir),
    };
    opened.map_err(|e| match e {
        e @ custos_policy::PolicyError::Sealed => AppError::Invalid(e.to_string()),
        custos_policy::PolicyError::Tampered(m) => AppError::Internal(format!(
            "the identity store was changed outside custos ({m}); restore it from a backup"
        )),
        other => AppError::internal("opening the identity store", other),
    })
}

async fn identity_key(ks: &custos_keys::Keystore) -> Result<custos_policy::StoreKey> {
    let (_, _, seed) = ks
        .encryption_key(IDENTITY_KEY, custos_keys::Purpose::Signing)
        .await
        .map_err(|e| AppError::internal("reading the identity key", e))?;
    let seed: [u8; 32] = seed.expose().try_into().map_err(|_| {
        AppError::Internal(format!(
            "identity key \"{IDENTITY_KEY}\" has the wrong size"
        ))
    })?;
    Ok(custos_policy::StoreKey::from_bytes(seed))
}

/// Checks a sealed identity store against the audit log's last `identity_seal` record (a
/// copy of the whole file from before then has valid MACs, but an older generation), records
/// where it stands now, and has every later write recorded as it commits.
///
/// A store found older is refused, unless a server was started with
/// `[danger] accept_identity_rollback` (after restoring it from a backup); both are recorded.
async fn anchor_identities(
    ids: &Arc<Mutex<Identities>>,
    audit: &AuditHandle,
    opts: &ProjectOptions,
    owner: Owner,
) -> Result<()> {
    let store_error = |e: custos_policy::PolicyError| AppError::internal("the identity store", e);
    let Some(now) = lock(ids).seal_state().map_err(store_error)? else {
        return Ok(());
    };
    let dir = audit.dir().to_path_buf();
    let last = tokio::task::spawn_blocking(move || {
        custos_audit::lock(&dir)
            .and_then(|_held| custos_audit::last_of(&dir, AuditAction::IdentitySeal.as_str()))
    })
    .await
    .map_err(|e| AppError::internal("reading the audit log", e))?
    .map_err(|e| AppError::internal("reading the audit log", e))?;
    let recorded = match last {
        None => None,
        Some((position, e)) => Some(
            e.detail
                .as_deref()
                .and_then(custos_policy::SealState::from_detail)
                .ok_or_else(|| {
                    AppError::Internal(format!(
                        "the audit log's identity_seal record at position {position} has no generation and digest"
                    ))
                })?,
        ),
    };
    let principal = opts.principal.as_str();
    let mut now = now;
    if let Some(r) = &recorded {
        let checked = lock(ids).check_not_older(r);
        if let Err(e) = checked {
            let found = format!("found {}; recorded {}", now.to_detail(), r.to_detail());
            if owner == Owner::Server && opts.accept_identity_rollback {
                tracing::warn!(
                    "[danger] accept_identity_rollback: starting with an identity store older than the audit log's last record of it ({found}); remove the setting once this start is done"
                );
                audit
                    .record_durable(
                        Record::new(
                            principal,
                            AuditAction::DangerAcceptIdentityRollback,
                            "identity.db",
                            Outcome::Succeeded,
                        )
                        .detail(found),
                    )
                    .await?;
                // Past the recorded generation: the store that was replaced (and any copy
                // from before) is older than this one from now on.
                now = lock(ids).supersede(r).map_err(store_error)?;
            } else {
                audit
                    .record_durable(
                        Record::new(
                            principal,
                            AuditAction::IdentityCheck,
                            "identity.db",
                            Outcome::Failed,
                        )
                        .code(ErrorCode::Tampered)
                        .detail(found),
                    )
                    .await?;
                audit.close().await?;
                return Err(AppError::Internal(format!(
                    "{e}; if it was restored from a backup on purpose, start the server once with [danger] accept_identity_rollback = true"
                )));
            }
        }
    }
    // A server records where the store stands at every start (and stop), so the newest
    // record outlives audit retention; a command only when it changed.
    if owner == Owner::Server || recorded.as_ref() != Some(&now) {
        audit.record(seal_record(principal, &now))?;
    }
    let handle = audit.clone();
    let principal = principal.to_string();
    lock(ids).on_write(Box::new(move |state| {
        if let Err(e) = handle.record(seal_record(&principal, state)) {
            tracing::error!("recording the identity store's new state: {e}");
        }
    }));
    Ok(())
}

/// The `identity_seal` record of `state`.
fn seal_record(principal: &str, state: &custos_policy::SealState) -> Record {
    Record::new(
        principal,
        AuditAction::IdentitySeal,
        "identity.db",
        Outcome::Succeeded,
    )
    .detail(state.to_detail())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Project {
    /// Opens the project of `state_dir` as its sole owner (a server): takes the exclusive
    /// lock, opens the identity store, the policies (`policies/` beside the state directory),
    /// the keystore and the audit log, and records the start.
    pub async fn open(state_dir: &Path, opts: ProjectOptions) -> Result<Arc<Self>> {
        let keystore_file = custos_keys::keystore_path(state_dir);
        Self::open_as(state_dir, opts, Owner::Server, keystore_file).await
    }

    /// Opens the project of `state_dir` for one CLI command in local mode: a shared lock (no
    /// server may own the project meanwhile), the policies of `$CUSTOS_POLICY_DIR` or
    /// `policies/` (stored ones win), the keystore when the passphrase opens it, and an audit
    /// writer that signs a checkpoint when the command closes the project.
    pub async fn open_local(state_dir: &Path, opts: LocalOptions) -> Result<Arc<Self>> {
        let keystore_file = opts
            .keystore_file
            .unwrap_or_else(|| custos_keys::keystore_path(state_dir));
        let options = ProjectOptions {
            passphrase: opts.passphrase,
            confinement: Confinement::default(),
            allow: Vec::new(),
            max_concurrent_runs: 1,
            principal: "cli".into(),
            mfa_required: false,
            oidc: None,
            mfa_enrollment: EnrollmentMode::SelfService,
            accept_identity_rollback: false,
        };
        Self::open_as(state_dir, options, Owner::Command, keystore_file).await
    }

    async fn open_as(
        state_dir: &Path,
        opts: ProjectOptions,
        owner: Owner,
        keystore_file: PathBuf,
    ) -> Result<Arc<Self>> {
        custos_engine::create_private_dir(state_dir).map_err(|e| {
            AppError::internal(
                &format!("creating the state directory {}", state_dir.display()),
                e,
            )
        })?;
        let lock_file = lock_state_dir(state_dir, owner == Owner::Server)?;
        let project = settings::load_project(state_dir)?;
        let mut keystore_error = None;
        let (keystore, key, first_seal) = match &opts.passphrase {
            Some(p) => match open_keystore(&keystore_file, p, owner == Owner::Server).await {
                Ok(Some((ks, key, created))) => (Some(ks), key, created),
                Ok(None) => (None, None, false),
                // A command that needs no keys still runs; one that does reports this.
                Err(e) if owner == Owner::Command => {
                    tracing::debug!("the keystore did not open: {e}");
                    // Not the caller's usage: the environment's passphrase or file.
                    keystore_error = Some(AppError::Internal(e.to_string()));
                    (None, None, false)
                }
                Err(e) => return Err(e),
            },
            None => (None, None, false),
        };
        // With the keystore's identity key, the identity store is sealed: every row carries a
        // MAC under a key only the keystore's holder has, so editing identity.db outside
        // custos is detected.
        let ids = match open_identities(state_dir, keystore.as_deref(), first_seal).await {
            Err(AppError::Invalid(_)) if owner == Owner::Command && keystore.is_none() => {
                return Err(AppError::Invalid(format!(
                    "the identity store was sealed by a custos server: set CUSTOS_KEYSTORE_PASSPHRASE (or CUSTOS_KEYSTORE_PASSPHRASE_FILE) to open it locally, or use the server (CUSTOS_SERVER){}",
                    keystore_error
                        .as_ref()
                        .map(|e| format!("; {e}"))
                        .unwrap_or_default()
                )));
            }
            other => other?,
        };
        // Stored policies (changed only through `manage_policies`) win over policy files.
        let policies = match ids.policies() {
            Ok(Some(p)) => {
                PolicyEngine::from_text(&p.text, &format!("stored policies version {}", p.version))
                    .map_err(|e| e.to_string())
            }
            Ok(None) => {
                PolicyEngine::load(&settings::policy_dir(state_dir, owner == Owner::Command))
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("reading the stored policies: {e}")),
        };
        match &policies {
            Err(e) if owner == Owner::Server => {
                tracing::error!("the policies do not load; every request will be denied: {e}");
            }
            Ok(p) if owner == Owner::Server && !p.may_permit(Action::UseKey) => {
                tracing::warn!(
                    "the policies permit use_key to nobody: every run that protects data will be denied{}",
                    crate::authz::USE_KEY_HINT
                );
            }
            _ => {}
        }
        let retention_ns = match ids.setting(crate::admin::RETENTION_SETTING) {
            Ok(Some(s)) => settings::parse_retention(&s.value),
            Ok(None) => project.audit.retention_ns(),
            Err(e) => return Err(AppError::internal("reading the stored settings", e)),
        };
        let ids = Arc::new(Mutex::new(ids));
        let audit = AuditHandle::start(
            &state_dir.join("audit"),
            WriterOptions {
                segment_bytes: project.audit.segment_mib.max(1) << 20,
                key,
                retention_ns,
                principal: opts.principal.clone(),
                periodic_checkpoints: owner == Owner::Server,
            },
        )?;
        anchor_identities(&ids, &audit, &opts, owner).await?;
        let authenticator = Arc::new(Authenticator::new(
            ids.clone(),
            audit.clone(),
            opts.allow,
            opts.oidc.map(Arc::new),
        ));
        let authorizer = Arc::new(Authorizer::new(
            policies,
            ids.clone(),
            audit.clone(),
            opts.mfa_required,
        ));
        if owner == Owner::Server {
            audit
                .record_durable(Record::new(
                    &opts.principal,
                    AuditAction::ServerStart,
                    "project",
                    Outcome::Succeeded,
                ))
                .await?;
        }
        Ok(Arc::new(Self {
            state_dir: state_dir.to_path_buf(),
            ids,
            authenticator,
            authorizer,
            audit,
            registry: Mutex::new(None),
            keystore: std::sync::RwLock::new(keystore),
            keystore_file,
            keystore_error,
            passphrase: opts.passphrase,
            owner,
            key_changes: tokio::sync::Mutex::new(()),
            confinement: opts.confinement,
            jobs: Jobs::default(),
            permits: Arc::new(Semaphore::new(opts.max_concurrent_runs.max(1))),
            closing: AtomicBool::new(false),
            mfa_enrollment: opts.mfa_enrollment,
            _lock: lock_file,
        }))
    }

    /// Runs `f` on the pipeline registry, opened on first use.
    fn with_registry<T>(&self, f: impl FnOnce(&Registry) -> Result<T>) -> Result<T> {
        let mut r = lock(&self.registry);
        if r.is_none() {
            *r = Some(Registry::open(&self.state_dir)?);
        }
        match r.as_ref() {
            Some(reg) => f(reg),
            None => Err(AppError::Internal(
                "the pipeline registry did not open".into(),
            )),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Signs callers in.
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// Decides and records.
    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// The audit writer.
    pub fn audit(&self) -> &AuditHandle {
        &self.audit
    }

    /// The identity store.
    pub fn identities(&self) -> &Arc<Mutex<Identities>> {
        &self.ids
    }

    /// The keystore as it is now (runs take it when they start).
    pub fn keystore(&self) -> Option<Arc<custos_keys::Keystore>> {
        self.keystore
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts a keystore changed by a key operation in place for the runs that start next.
    pub(crate) fn replace_keystore(&self, ks: custos_keys::Keystore) {
        *self
            .keystore
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(ks));
    }

    /// The keystore file.
    pub fn keystore_file(&self) -> &Path {
        &self.keystore_file
    }

    /// Whether the keystore is open (runs that use keys need it).
    pub fn has_keystore(&self) -> bool {
        self.keystore().is_some()
    }

    /// Whether a shutdown has begun.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Whether the project can serve: the audit writer answers.
    pub async fn ready(&self) -> Result<()> {
        if self.is_closing() {
            return Err(AppError::Internal("shutting down".into()));
        }
        self.audit.flush(false).await
    }

    pub(crate) fn load_registered(&self, p: &RegisteredPipeline) -> Result<Loaded> {
        // The server's rules first: they hold whatever else is wrong with the config.
        let loaded = custos_config::load_str(&p.virtual_path(), &p.config);
        let mut bad = self.confinement.check_secrets(&p.config);
        bad.extend(self.confinement.check_config(&loaded.config));
        if !bad.is_empty() {
            return Err(AppError::Invalid(format!(
                "pipeline \"{}\" breaks the server's rules:\n  {}",
                p.name,
                bad.join("\n  ")
            )));
        }
        if loaded.diagnostics.has_errors() {
            return Err(AppError::Invalid(format!(
                "pipeline \"{}\" is invalid:\n{}",
                p.name, loaded.diagnostics
            )));
        }
        Ok(loaded)
    }

    /// Registers a pipeline (`register_pipeline` on it, with the tags it will carry).
    pub async fn register_pipeline(
        &self,
        who: &Principal,
        req: RegisterRequest,
    ) -> Result<RegisteredPipeline> {
        let base_dir = match &req.base_dir {
            Some(d) => d.clone(),
            None => self.confinement.roots().first().cloned().ok_or_else(|| {
                AppError::Invalid("the server has no data roots; pass base_dir".into())
            })?,
        };
        if !base_dir.is_absolute() || !self.confinement.path_allowed(&base_dir) {
            return Err(AppError::Invalid(format!(
                "base_dir {} is not an absolute path under the server's data roots",
                base_dir.display()
            )));
        }
        let probe = custos_config::load_str(&base_dir.join("pipeline.toml"), &req.config);
        let name = probe.config.pipeline.name.clone();
        if name.is_empty() {
            return Err(AppError::Invalid(format!(
                "the config has no [pipeline] name:\n{}",
                probe.diagnostics
            )));
        }
        let tags = req
            .tags
            .clone()
            .unwrap_or_else(|| probe.config.pipeline.tags.clone());
        let classification = req
            .classification
            .clone()
            .unwrap_or_else(|| "confidential".into());
        let candidate = RegisteredPipeline {
            name: name.clone(),
            version: 0,
            sha256: String::new(),
            base_dir: base_dir.clone(),
            tags: tags.clone(),
            classification: classification.clone(),
            registered_by: who.name().to_string(),
            registered_ns: now_ns(),
            config: req.config.clone(),
        };
        let resource = Resource::Pipeline {
            name: name.clone(),
            tags: candidate.policy_tags(),
        };
        self.authorizer
            .authorize(who, Action::RegisterPipeline, &resource)
            .await?;
        let result = async {
            let loaded = self.load_registered(&candidate)?;
            let keystore = self.keystore();
            let diags = custos_engine::check(&loaded, &self.state_dir, keystore.as_deref()).await;
            if diags.has_errors() {
                return Err(AppError::Invalid(format!(
                    "pipeline \"{name}\" is invalid:\n{diags}"
                )));
            }
            self.with_registry(|r| {
                r.register(
                    &name,
                    &req.config,
                    &base_dir,
                    &tags,
                    &classification,
                    who.name(),
                    now_ns(),
                )
            })
        }
        .await;
        let status = match &result {
            Ok(p) => Ok(p.version),
            Err(e) => Err((ErrorCode::Invalid, e.code().to_string())),
        };
        self.authorizer
            .outcome(
                who.name(),
                Action::RegisterPipeline,
                &resource.spec(),
                status.map(|_| ()),
                None,
            )
            .await?;
        result
    }

    /// The registered pipelines (any signed-in user: configs hold no data or secrets).
    pub fn pipelines(&self, _who: &Principal) -> Result<Vec<RegisteredPipeline>> {
        self.with_registry(Registry::list)
    }

    /// One registered pipeline with its config text.
    pub fn pipeline(&self, _who: &Principal, name: &str) -> Result<RegisteredPipeline> {
        self.with_registry(|r| r.get(name))?
            .ok_or_else(|| AppError::NotFound(format!("no registered pipeline \"{name}\"")))
    }

    /// Starts a run of a registered pipeline as a job (`run_pipeline` on it, with its
    /// registered tags). Returns at once; the job runs when a slot is free.
    pub async fn start_run(self: &Arc<Self>, who: &Principal, name: &str) -> Result<JobInfo> {
        if self.is_closing() {
            return Err(AppError::Invalid("the server is shutting down".into()));
        }
        let pipeline = self
            .with_registry(|r| r.get(name))?
            .ok_or_else(|| AppError::NotFound(format!("no registered pipeline \"{name}\"")))?;
        let resource = Resource::Pipeline {
            name: pipeline.name.clone(),
            tags: pipeline.policy_tags(),
        };
        self.authorizer
            .authorize(who, Action::RunPipeline, &resource)
            .await?;
        let loaded = match self.load_registered(&pipeline) {
            Ok(l) => l,
            Err(e) => {
                self.authorizer
                    .outcome(
                        who.name(),
                        Action::RunPipeline,
                        &resource.spec(),
                        Err((ErrorCode::Invalid, "invalid".into())),
                        None,
                    )
                    .await?;
                return Err(e);
            }
        };
        self.record_dangers(who, &resource.spec(), &loaded).await?;
        let job = Job::new(&pipeline.name, pipeline.version, who.name());
        self.jobs.insert(job.clone());
        let info = job.info();
        let this = self.clone();
        let who = who.clone();
        tokio::spawn(async move {
            this.execute(job, who, pipeline, loaded).await;
        });
        Ok(info)
    }

    async fn execute(
        self: Arc<Self>,
        job: Arc<Job>,
        who: Principal,
        pipeline: RegisteredPipeline,
        loaded: Loaded,
    ) {
        let spec = format!("pipeline:{}", pipeline.name);
        let permit = tokio::select! {
            p = self.permits.clone().acquire_owned() => p.ok(),
            _ = job.cancel.cancelled() => None,
        };
        let Some(permit) = permit else {
            job.finish(
                JobStatus::Cancelled,
                Some("cancelled before it started".into()),
                None,
            );
            self.record_run_outcome(
                &who,
                &spec,
                Err((ErrorCode::Cancelled, "cancelled".into())),
                None,
            )
            .await;
            return;
        };
        if !job.set_running() {
            return;
        }
        let opts = RunOptions {
            state_dir: self.state_dir.clone(),
            authorizer: Arc::new(DecryptAuthorizer {
                authorizer: self.authorizer.clone(),
                who: who.clone(),
                scope: RunScope {
                    pipeline: pipeline.name.clone(),
                    tags: pipeline.policy_tags(),
                },
            }),
            cancel: job.cancel.clone(),
            keystore: self.keystore(),
        };
        let progress = job.progress.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!(
                "custos-run-{}",
                &job.id[job.id.len().saturating_sub(8)..]
            ))
            .spawn(move || {
                let out = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the run's runtime: {e}"))
                    .and_then(|rt| {
                        rt.block_on(custos_engine::run(&loaded, &opts, progress))
                            .map_err(|e| custos_engine::redact_values(&e.to_string()))
                    });
                let _ = tx.send(out);
            });
        let outcome = match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Err("the run's thread ended without a result".into())),
            Err(e) => Err(format!("starting the run's thread: {e}")),
        };
        drop(permit);
        match outcome {
            Ok(RunOutcome::Ran(summary)) => {
                let status = match summary.status {
                    RunStatus::Succeeded => JobStatus::Succeeded,
                    RunStatus::Failed => JobStatus::Failed,
                    RunStatus::Cancelled => JobStatus::Cancelled,
                };
                let run = (summary.run_id.clone(), summary.rows_written);
                self.record_run_outcome(&who, &spec, run_result(&summary), Some((&run.0, run.1)))
                    .await;
                job.finish(status, summary.error.clone(), Some(summary));
            }
            Ok(RunOutcome::Invalid(diags)) => {
                self.record_run_outcome(
                    &who,
                    &spec,
                    Err((ErrorCode::Invalid, "invalid".into())),
                    None,
                )
                .await;
                job.finish(
                    JobStatus::Failed,
                    Some(format!("invalid pipeline:\n{diags}")),
                    None,
                );
            }
            Err(e) => {
                self.record_run_outcome(&who, &spec, Err((ErrorCode::Error, "error".into())), None)
                    .await;
                job.finish(JobStatus::Failed, Some(e), None);
            }
        }
    }

    async fn record_run_outcome(
        &self,
        who: &Principal,
        spec: &str,
        result: std::result::Result<(), (ErrorCode, String)>,
        run: Option<(&str, u64)>,
    ) {
        if let Err(e) = self
            .authorizer
            .outcome(who.name(), Action::RunPipeline, spec, result, run)
            .await
        {
            tracing::error!("recording a run's outcome in the audit log: {e}");
        }
    }

    /// Records the `[danger]` switches a run of `loaded` uses, before it starts.
    async fn record_dangers(&self, who: &Principal, spec: &str, loaded: &Loaded) -> Result<()> {
        let danger = &loaded.config.danger;
        if !danger.allow_plaintext.is_empty() {
            self.audit
                .record_durable(
                    Record::new(
                        who.name(),
                        AuditAction::DangerAllowPlaintext,
                        spec,
                        Outcome::Allowed,
                    )
                    .detail(format!(
                        "[danger] allow_plaintext = {:?}",
                        danger.allow_plaintext
                    )),
                )
                .await?;
        }
        let insecure = insecure_connections(&loaded.config);
        if danger.allow_insecure_db && !insecure.is_empty() {
            tracing::warn!(
                components = ?insecure,
                "DANGER: [danger] allow_insecure_db lets this run connect to PostgreSQL without a verified TLS connection"
            );
            self.audit
                .record_durable(
                    Record::new(
                        who.name(),
                        AuditAction::DangerAllowInsecureDb,
                        spec,
                        Outcome::Allowed,
                    )
                    .detail(format!(
                        "[danger] allow_insecure_db = true: {}",
                        insecure.join(", ")
                    )),
                )
                .await?;
        }
        Ok(())
    }

    /// Runs a pipeline from the caller's own file, in this process (CLI local mode, one trust
    /// domain: the policies see the name and tags the file gives). `run_pipeline` is decided
    /// first, every decrypted column and key use during planning, and the outcome recorded
    /// with the run's id. A server runs only registered pipelines ([`Project::start_run`]).
    pub async fn run_local(
        &self,
        who: &Principal,
        loaded: &Loaded,
        progress: Arc<custos_engine::Progress>,
        cancel: custos_engine::CancellationToken,
    ) -> Result<RunOutcome> {
        if self.owner == Owner::Server {
            return Err(AppError::Invalid(
                "a server runs registered pipelines only (register it, then run it by name)".into(),
            ));
        }
        let pipeline = &loaded.config.pipeline;
        let scope = RunScope {
            pipeline: pipeline.name.clone(),
            tags: pipeline.tags.clone(),
        };
        let resource = Resource::Pipeline {
            name: scope.pipeline.clone(),
            tags: scope.tags.clone(),
        };
        let spec = resource.spec();
        self.authorizer
            .authorize(who, Action::RunPipeline, &resource)
            .await?;
        self.record_dangers(who, &spec, loaded).await?;
        let opts = RunOptions {
            state_dir: self.state_dir.clone(),
            authorizer: Arc::new(DecryptAuthorizer {
                authorizer: self.authorizer.clone(),
                who: who.clone(),
                scope,
            }),
            cancel,
            keystore: self.keystore(),
        };
        let outcome = custos_engine::run(loaded, &opts, progress).await;
        let (result, run) = match &outcome {
            Ok(RunOutcome::Ran(summary)) => (
                run_result(summary),
                Some((summary.run_id.as_str(), summary.rows_written)),
            ),
            Ok(RunOutcome::Invalid(_)) => (Err((ErrorCode::Invalid, "invalid".into())), None),
            Err(_) => (Err((ErrorCode::Error, "error".into())), None),
        };
        self.authorizer
            .outcome(who.name(), Action::RunPipeline, &spec, result, run)
            .await?;
        outcome.map_err(|e| AppError::RunFailed(custos_engine::redact_values(&e.to_string())))
    }

    /// One job (any signed-in user: jobs hold counts and hashes, never data).
    pub fn job(&self, _who: &Principal, id: &str) -> Result<Arc<Job>> {
        self.jobs
            .get(id)
            .ok_or_else(|| AppError::NotFound(format!("no job \"{id}\"")))
    }

    /// The jobs this server remembers, newest first.
    pub fn jobs(&self, _who: &Principal) -> Vec<JobInfo> {
        self.jobs.all().iter().map(|j| j.info()).collect()
    }

    /// The status of every job remembered (for metrics).
    pub fn jobs_statuses(&self) -> Vec<JobStatus> {
        self.jobs.all().iter().map(|j| j.status()).collect()
    }

    /// Cancels a job (`run_pipeline` on its pipeline): a queued job never starts, a running
    /// one is aborted and rolled back.
    pub async fn cancel_job(&self, who: &Principal, id: &str) -> Result<JobInfo> {
        let job = self.job(who, id)?;
        let pipeline = self.with_registry(|r| r.get(job.pipeline()))?;
        let tags = pipeline.map(|p| p.policy_tags()).unwrap_or_default();
        self.authorizer
            .authorize(
                who,
                Action::RunPipeline,
                &Resource::Pipeline {
                    name: job.pipeline().to_string(),
                    tags,
                },
            )
            .await?;
        job.cancel.cancel();
        Ok(job.info())
    }

    /// Recorded runs, newest first (any signed-in user).
    pub fn runs(&self, _who: &Principal, limit: usize) -> Result<Vec<custos_engine::RunRecord>> {
        let store = StateStore::open(&self.state_dir)
            .map_err(|e| AppError::internal("opening the state store", e))?;
        store
            .list(limit)
            .map_err(|e| AppError::internal("reading run records", e))
    }

    /// One recorded run by id or unique prefix.
    pub fn run_record(&self, _who: &Principal, id: &str) -> Result<custos_engine::RunRecord> {
        let store = StateStore::open(&self.state_dir)
            .map_err(|e| AppError::internal("opening the state store", e))?;
        store
            .get(id)
            .map_err(|e| AppError::internal("reading run records", e))?
            .ok_or_else(|| AppError::NotFound(format!("no run with id \"{id}\"")))
    }

    /// Verifies the audit log against its signed checkpoints (`read_audit`), with the
    /// project's audit key.
    pub async fn audit_verify(&self, who: &Principal) -> Result<AuditVerification> {
        self.audit_verify_with(who, None).await
    }

    /// [`Project::audit_verify`] with the checkpoint key given (kept apart from the keystore),
    /// or else the project's.
    pub async fn audit_verify_with(
        &self,
        who: &Principal,
        key: Option<VerifyingKey>,
    ) -> Result<AuditVerification> {
        self.authorizer
            .authorize(who, Action::ReadAudit, &Resource::AuditLog)
            .await?;
        let key = key
            .or_else(|| self.audit.verifying_key())
            .ok_or_else(|| self.no_audit_key())?;
        self.audit.flush(true).await?;
        let dir = self.audit.dir().to_path_buf();
        // Under the directory's lock: no other process is halfway through a record.
        let report = tokio::task::spawn_blocking(move || {
            custos_audit::lock(&dir).and_then(|_held| custos_audit::verify(&dir, &key))
        })
        .await
        .map_err(|e| AppError::internal("verifying the audit log", e))?;
        let outcome = match &report {
            Ok(_) => Ok(()),
            Err(_) => Err((ErrorCode::Error, "verification failed".into())),
        };
        self.authorizer
            .outcome(who.name(), Action::ReadAudit, "audit", outcome, None)
            .await?;
        let r = report
            .map_err(|e| AppError::RunFailed(format!("audit log verification FAILED: {e}")))?;
        Ok(AuditVerification {
            records: r.records,
            first: r.first,
            checkpoints: r.checkpoints,
            root: r.root,
        })
    }

    fn no_audit_key(&self) -> AppError {
        AppError::Invalid(match self.owner {
            Owner::Server => "no audit key: the server runs without a keystore".into(),
            Owner::Command => "the audit checkpoint key is in the keystore: set CUSTOS_KEYSTORE_PASSPHRASE (or CUSTOS_KEYSTORE_PASSPHRASE_FILE), or pass --public-key".into(),
        })
    }

    /// Signs a checkpoint of the log as it is now (`read_audit`), to keep elsewhere and
    /// later prove the log only grew ([`Project::prove_checkpoint`]).
    pub async fn export_checkpoint(&self, who: &Principal) -> Result<ExportedCheckpoint> {
        self.authorized(who, Action::ReadAudit, &Resource::AuditLog, async {
            let key = self
                .audit
                .verifying_key()
                .ok_or_else(|| self.no_audit_key())?;
            Ok(ExportedCheckpoint {
                checkpoint: self.audit.checkpoint().await?,
                public_key: hex::encode(key.to_bytes()),
            })
        })
        .await
    }

    /// Proves that the log an exported checkpoint describes is a prefix of the log now
    /// (`read_audit`): its signature must verify under its key, which must be the project's
    /// audit key when the project has one. Returns the two sizes, or
    /// [`AppError::RunFailed`] naming why the log is not consistent with it.
    pub async fn prove_checkpoint(
        &self,
        who: &Principal,
        old: &ExportedCheckpoint,
    ) -> Result<(u64, u64)> {
        self.authorized(who, Action::ReadAudit, &Resource::AuditLog, async {
            let key: [u8; 32] = hex::decode(&old.public_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| AppError::Invalid("public_key: expected 64 hex digits".into()))?;
            let key = VerifyingKey::from_bytes(&key)
                .map_err(|_| AppError::Invalid("public_key: not a valid Ed25519 key".into()))?;
            // A checkpoint that is not this project's proves nothing either way: invalid input.
            if let Some(ours) = self.audit.verifying_key()
                && ours != key
            {
                return Err(AppError::Invalid(
                    "the checkpoint was signed by another key than this project's audit key".into(),
                ));
            }
            if !old.checkpoint.verify_signature(&key) {
                return Err(AppError::Invalid(
                    "the checkpoint signature does not verify".into(),
                ));
            }
            self.audit.prove(&old.checkpoint).await?.map_err(|e| {
                AppError::RunFailed(format!(
                    "the audit log is NOT consistent with the checkpoint: {e}"
                ))
            })
        })
        .await
    }

    /// The newest audit records matching `filter` (`read_audit`), oldest first.
    pub async fn audit_query(
        &self,
        who: &Principal,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>> {
        self.authorizer
            .authorize(who, Action::ReadAudit, &Resource::AuditLog)
            .await?;
        let time = |s: &Option<String>, key: &str| -> Result<Option<i64>> {
            s.as_deref()
                .map(|t| {
                    let d = chrono::DateTime::parse_from_rfc3339(t).map_err(|_| {
                        AppError::Invalid(format!("{key}: \"{t}\" is not an RFC 3339 time"))
                    })?;
                    // Records carry nanoseconds in an i64: years 1678 to 2261.
                    d.timestamp_nanos_opt().ok_or_else(|| {
                        AppError::Invalid(format!(
                            "{key}: \"{t}\" is outside the times a record can carry (years 1678 to 2261)"
                        ))
                    })
                })
                .transpose()
        };
        let since = time(&filter.since, "since")?;
        let until = time(&filter.until, "until")?;
        if let Some(o) = &filter.outcome
            && Outcome::parse(o).is_none()
        {
            return Err(AppError::Invalid(format!(
                "outcome: \"{o}\" is not allowed, denied, succeeded or failed"
            )));
        }
        let limit = filter.limit.unwrap_or(100).clamp(1, 10_000);
        self.audit.flush(false).await?;
        let dir = self.audit.dir().to_path_buf();
        // Scan a window of the newest records, large enough for selective filters.
        let window = (limit * 50).clamp(10_000, 1_000_000);
        let records = tokio::task::spawn_blocking(move || {
            custos_audit::lock(&dir).and_then(|_held| custos_audit::tail(&dir, window))
        })
        .await
        .map_err(|e| AppError::internal("reading the audit log", e))?
        .map_err(|e| AppError::internal("reading the audit log", e))?;
        let mut out: Vec<AuditEntry> = records
            .into_iter()
            .filter(|(_, e)| {
                filter.principal.as_ref().is_none_or(|p| &e.principal == p)
                    && filter.action.as_ref().is_none_or(|a| &e.action == a)
                    && filter.outcome.as_ref().is_none_or(|o| &e.outcome == o)
                    && since.is_none_or(|s| e.time_ns >= s)
                    && until.is_none_or(|u| e.time_ns < u)
            })
            .map(|(position, event)| AuditEntry { position, event })
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        Ok(out)
    }

    /// Stops: refuses new runs, cancels queued ones, gives running ones `grace` to finish and
    /// then cancels them (they roll back), records the stop and closes the audit log with a
    /// signed checkpoint.
    pub async fn shutdown(&self, grace: Duration) -> Result<()> {
        self.closing.store(true, Ordering::Relaxed);
        let jobs = self.jobs.all();
        for j in &jobs {
            if j.status() == JobStatus::Queued {
                j.cancel.cancel();
            }
        }
        let all = futures_wait(&jobs);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("runs still going after the shutdown grace period are cancelled");
            for j in &jobs {
                j.cancel.cancel();
            }
            futures_wait(&jobs).await;
        }
        // The stop's record of the identity store keeps the newest one in the segment that
        // retention (applied on close) never removes.
        match lock(&self.ids).seal_state() {
            Ok(Some(state)) => self.audit.record(seal_record("server", &state))?,
            Ok(None) => {}
            Err(e) => tracing::error!("reading the identity store's state at shutdown: {e}"),
        }
        self.audit.record(Record::new(
            "server",
            AuditAction::ServerStop,
            "project",
            Outcome::Succeeded,
        ))?;
        self.audit.close().await
    }
}

pub(crate) async fn futures_wait(jobs: &[Arc<Job>]) {
    for j in jobs {
        j.wait().await;
    }
}

/// How a run that ran came out, for its audit record.
fn run_result(summary: &custos_engine::RunSummary) -> std::result::Result<(), (ErrorCode, String)> {
    match (summary.status, summary.failure) {
        (RunStatus::Succeeded, _) => Ok(()),
        (RunStatus::Cancelled, _) => Err((ErrorCode::Cancelled, "cancelled".into())),
        (_, Some(custos_engine::RunFailure::Denied)) => Err((ErrorCode::Denied, "denied".into())),
        (_, f) => Err((
            ErrorCode::RunFailed,
            f.map_or("error".into(), |f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            }),
        )),
    }
}

/// The decrypt and key-use decisions of one run: asked for the run's principal, on the
/// pipeline's tags (registered ones on a server).
struct DecryptAuthorizer {
    authorizer: Arc<Authorizer>,
    who: Principal,
    scope: RunScope,
}

impl DecryptAuthorizer {
    async fn decide(&self, action: Action, resource: &Resource) -> std::result::Result<(), String> {
        self.authorizer
            .authorize(&self.who, action, resource)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl RunAuthorizer for DecryptAuthorizer {
    async fn decrypt_column(&self, column: &str) -> std::result::Result<(), String> {
        self.decide(Action::DecryptColumn, &self.scope.decrypted_column(column))
            .await
    }

    async fn use_key(
        &self,
        key: &str,
        operation: &str,
        deterministic: bool,
    ) -> std::result::Result<(), String> {
        self.decide(
            Action::UseKey,
            &self.scope.key_use(key, operation, deterministic),
        )
        .await
    }
}
