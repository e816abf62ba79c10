//! Typed audit records and the one writer that appends them.
//!
//! Every event goes through an [`AuditHandle`] to a single writer thread that owns the
//! [`custos_audit::AuditLog`]: concurrent requests never interleave bytes in a segment, and
//! the writer commits in groups (one fsync for every event queued while the previous fsync
//! ran). [`AuditHandle::record_durable`] returns only once its event is on disk, so a decision
//! is recorded before the action it allows takes place. Checkpoints are signed with the audit
//! key after a sync at most once per [`CHECKPOINT_EVERY`], and always on [`AuditHandle::close`].

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use custos_audit::{AuditLog, Event};
use custos_policy::Action;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::error::{AppError, Result};

/// How often, at most, a long-running writer signs a checkpoint after a sync.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A sign-in attempt (recorded when it fails, or locks a principal out).
    Authenticate,
    /// A policy decision on a schema action, or that action's outcome.
    Policy(Action),
    /// A run allowed to write plaintext personal data by `[danger] allow_plaintext`.
    DangerAllowPlaintext,
    /// A run allowed unverified database connections by `[danger] allow_insecure_db`.
    DangerAllowInsecureDb,
    /// A torn last record was cut off when the log was opened.
    AuditRecover,
    /// The server started serving this project.
    ServerStart,
    /// The server stopped.
    ServerStop,
    /// A user was added.
    UserAdd,
    /// A user was enabled.
    UserEnable,
    /// A user was disabled.
    UserDisable,
    /// A user was removed (and their grants revoked).
    UserRemove,
    /// A token was issued in place of the user's previous one.
    TokenRotate,
    /// A grant was added.
    GrantAdd,
    /// A grant was revoked.
    GrantRevoke,
    /// A user started a second-factor enrolment.
    MfaEnroll,
    /// A user confirmed their enrolment with a first code.
    MfaConfirm,
    /// An admin removed a user's second factor.
    MfaReset,
    /// An admin issued a user a one-time enrolment ticket.
    MfaTicket,
    /// The stored policies were replaced.
    PoliciesSet,
    /// A stored setting (audit retention) changed.
    SettingSet,
    /// Where the sealed identity store stands (`generation=N digest=HEX`): recorded after
    /// every write to it and when a server starts and stops, and checked when it is opened.
    IdentitySeal,
    /// Opening the identity store found it older than the last `identity_seal` record.
    IdentityCheck,
    /// A server accepted an identity store older than the last `identity_seal` record
    /// (`[danger] accept_identity_rollback`, after restoring a backup).
    DangerAcceptIdentityRollback,
}

impl AuditAction {
    /// The action's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Authenticate => "authenticate",
            AuditAction::Policy(a) => a.name(),
            AuditAction::DangerAllowPlaintext => "danger_allow_plaintext",
            AuditAction::DangerAllowInsecureDb => "danger_allow_insecure_db",
            AuditAction::AuditRecover => "audit_recover",
            AuditAction::ServerStart => "server_start",
            AuditAction::ServerStop => "server_stop",
            AuditAction::UserAdd => "user_add",
            AuditAction::UserEnable => "user_enable",
            AuditAction::UserDisable => "user_disable",
            AuditAction::UserRemove => "user_remove",
            AuditAction::TokenRotate => "token_rotate",
            AuditAction::GrantAdd => "grant_add",
            AuditAction::GrantRevoke => "grant_revoke",
            AuditAction::MfaEnroll => "mfa_enroll",
            AuditAction::MfaConfirm => "mfa_confirm",
            AuditAction::MfaReset => "mfa_reset",
            AuditAction::MfaTicket => "mfa_ticket",
            AuditAction::PoliciesSet => "policies_set",
            AuditAction::SettingSet => "setting_set",
            AuditAction::IdentitySeal => "identity_seal",
            AuditAction::IdentityCheck => "identity_check",
            AuditAction::DangerAcceptIdentityRollback => "danger_accept_identity_rollback",
        }
    }
}

/// How a recorded request or operation came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A policy allowed the request.
    Allowed,
    /// Sign-in failed or a policy denied.
    Denied,
    /// The allowed operation succeeded.
    Succeeded,
    /// The allowed operation failed.
    Failed,
}

impl Outcome {
    /// The outcome's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Outcome::Allowed,
            Outcome::Denied,
            Outcome::Succeeded,
            Outcome::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Why a request was denied or an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No credential was presented.
    NoToken,
    /// The credential is not valid.
    InvalidToken,
    /// A verified client certificate names no active user.
    InvalidCertificate,
    /// An OIDC token is not valid (signature, issuer, audience, time, algorithm or claims).
    InvalidJwt,
    /// A privileged action was asked without a second factor.
    MfaRequired,
    /// The one-time code is wrong or stale, or the caller has no confirmed enrolment.
    MfaInvalid,
    /// The one-time code was already used.
    MfaReplayed,
    /// Too many failed sign-ins from this principal or address.
    LockedOut,
    /// The address is not in the allowlist.
    AddressNotAllowed,
    /// The policies do not load: everything is denied.
    InvalidPolicies,
    /// Policy evaluation raised an error: denied.
    PolicyError,
    /// The request was invalid.
    Invalid,
    /// The run failed.
    RunFailed,
    /// The run was cancelled.
    Cancelled,
    /// A later decision of the same operation was denied.
    Denied,
    /// An internal error.
    Error,
    /// A torn record was repaired.
    TornRecord,
    /// A sealed store failed verification (rolled back or edited outside custos).
    Tampered,
}

impl ErrorCode {
    /// The code's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoToken => "no_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidCertificate => "invalid_certificate",
            ErrorCode::InvalidJwt => "invalid_jwt",
            ErrorCode::MfaRequired => "mfa_required",
            ErrorCode::MfaInvalid => "mfa_invalid",
            ErrorCode::MfaReplayed => "mfa_replayed",
            ErrorCode::LockedOut => "locked_out",
            ErrorCode::AddressNotAllowed => "address_not_allowed",
            ErrorCode::InvalidPolicies => "invalid_policies",
            ErrorCode::PolicyError => "policy_error",
            ErrorCode::Invalid => "invalid",
            ErrorCode::RunFailed => "run_failed",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Denied => "denied",
            ErrorCode::Error => "error",
            ErrorCode::TornRecord => "torn_record",
            ErrorCode::Tampered => "tampered",
        }
    }
}

/// One audit record before it is stamped with time, host and process.
#[derive(Debug, Clone)]
pub struct Record {
    /// Who (a user name, or `anonymous`).
    pub principal: String,
    /// What.
    pub action: AuditAction,
    /// On what (`pipeline:NAME`, `key:NAME`, `audit`, ...).
    pub resource: String,
    /// How it came out.
    pub outcome: Outcome,
    /// Why it was denied or failed.
    pub error_code: Option<ErrorCode>,
    /// The policies that decided.
    pub policies: Vec<String>,
    /// The run, for pipeline runs.
    pub run_id: Option<String>,
    /// Rows written, for pipeline runs.
    pub rows: Option<u64>,
    /// Value-free detail (request id, source address, what `[danger]` allowed).
    pub detail: Option<String>,
}

impl Record {
    /// A record with no error code, policies, run or detail.
    pub fn new(
        principal: &str,
        action: AuditAction,
        resource: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        Self {
            principal: principal.to_string(),
            action,
            resource: resource.into(),
            outcome,
            error_code: None,
            policies: Vec::new(),
            run_id: None,
            rows: None,
            detail: None,
        }
    }

    /// With an error code.
    pub fn code(mut self, code: ErrorCode) -> Self {
        self.error_code = Some(code);
        self
    }

    /// With a detail text (never a value, token or secret).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

enum Msg {
    Append(Box<Event>, Option<oneshot::Sender<Result<()>>>),
    Flush {
        checkpoint: bool,
        done: oneshot::Sender<Result<()>>,
    },
    Close(oneshot::Sender<Result<()>>),
    Retention(Option<i64>),
    SetKey(Box<SigningKey>),
    Checkpoint(oneshot::Sender<Result<custos_audit::Checkpoint>>),
    Prove(
        Box<custos_audit::Checkpoint>,
        oneshot::Sender<Result<std::result::Result<(u64, u64), String>>>,
    ),
}

/// A sender of audit records to the project's writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
    dir: PathBuf,
    host: String,
    verifying_key: std::sync::Arc<std::sync::RwLock<Option<VerifyingKey>>>,
}

impl std::fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandle")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Options of the audit writer.
pub struct WriterOptions {
    /// Segment size in bytes.
    pub segment_bytes: u64,
    /// Checkpoint key; without it events are chained but no checkpoint is signed.
    pub key: Option<SigningKey>,
    /// Remove whole segments older than this (ns) when the writer closes.
    pub retention_ns: Option<i64>,
    /// Who the writer acts for in retention records.
    pub principal: String,
    /// Sign a checkpoint after a sync at most every [`CHECKPOINT_EVERY`] (a long-running
    /// server); without it, only when asked and on close (one CLI command).
    pub periodic_checkpoints: bool,
}

impl AuditHandle {
    /// Opens the log in `dir` (repairing a torn last record, which is then recorded) and
    /// starts its writer thread.
    pub fn start(dir: &Path, opts: WriterOptions) -> Result<Self> {
        let segment_bytes = opts.segment_bytes.max(1 << 20);
        let opened = custos_audit::lock(dir).and_then(|_held| AuditLog::open(dir, segment_bytes));
        let log = opened.map_err(|e| {
            AppError::internal(&format!("opening the audit log in {}", dir.display()), e)
        })?;
        let host = custos_engine::host_name();
        let verifying_key = opts.key.as_ref().map(SigningKey::verifying_key);
        let recovered = log.recovered().cloned();
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            log,
            dir: dir.to_path_buf(),
            segment_bytes,
            key: opts.key,
            retention_ns: opts.retention_ns,
            principal: opts.principal,
            host: host.clone(),
            last_checkpoint: None,
            periodic: opts.periodic_checkpoints,
        };
        std::thread::Builder::new()
            .name("custos-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AppError::internal("starting the audit writer", e))?;
        let handle = Self {
            tx,
            dir: dir.to_path_buf(),
            host,
            verifying_key: std::sync::Arc::new(std::sync::RwLock::new(verifying_key)),
        };
        if let Some(r) = recovered {
            tracing::warn!(
                position = r.position,
                bytes = r.bytes,
                saved_to = %r.saved_to.display(),
                "the audit log ended in a torn record (a crash during a write); it was cut off and saved aside"
            );
            handle.record(
                Record::new("-", AuditAction::AuditRecover, "audit", Outcome::Succeeded)
                    .code(ErrorCode::TornRecord),
            )?;
        }
        Ok(handle)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The checkpoint verification key, when the writer signs checkpoints.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        *self
            .verifying_key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives the writer a checkpoint key (one created after the log was opened, by the
    /// command that set up the keystore).
    pub fn set_key(&self, key: SigningKey) -> Result<()> {
        *self
            .verifying_key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(key.verifying_key());
        self.send(Msg::SetKey(Box::new(key)))
    }

    /// Syncs and signs a checkpoint of the log as it is now, and returns it.
    pub async fn checkpoint(&self) -> Result<custos_audit::Checkpoint> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Checkpoint(done))?;
        wait.await
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }

    /// Checks that the log `old` describes is a prefix of the log now (RFC 6962 consistency
    /// proof): the two sizes, or why not.
    pub async fn prove(
        &self,
        old: &custos_audit::Checkpoint,
    ) -> Result<std::result::Result<(u64, u64), String>> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Prove(Box::new(old.clone()), done))?;
        wait.await
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }

    fn stamp(&self, r: Record) -> Event {
        Event {
            time_ns: now_ns(),
            principal: r.principal,
            action: r.action.as_str().to_string(),
            resource: r.resource,
            outcome: r.outcome.as_str().to_string(),
            error_code: r.error_code.map(|c| c.as_str().to_string()),
            host: self.host.clone(),
            pid: std::process::id(),
            policies: r.policies,
            run_id: r.run_id,
            rows: r.rows,
            detail: r.detail,
        }
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.tx
            .send(msg)
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))
    }

    /// Queues a record; it reaches the disk with the next group commit.
    pub fn record(&self, r: Record) -> Result<()> {
        self.send(Msg::Append(Box::new(self.stamp(r)), None))
    }

    /// Appends a record and waits until it is on disk.
    pub async fn record_durable(&self, r: Record) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Append(Box::new(self.stamp(r)), Some(done)))?;
        wait.await
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }

    /// [`AuditHandle::record_durable`] for callers outside an async runtime.
    pub fn record_durable_blocking(&self, r: Record) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Append(Box::new(self.stamp(r)), Some(done)))?;
        wait.blocking_recv()
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }

    /// Waits until every record queued so far is on disk; with `checkpoint`, signs one too.
    pub async fn flush(&self, checkpoint: bool) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Flush { checkpoint, done })?;
        wait.await
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }

    /// Changes the retention period applied when the writer closes.
    pub fn set_retention(&self, retention_ns: Option<i64>) -> Result<()> {
        self.send(Msg::Retention(retention_ns))
    }

    /// Syncs, applies retention, signs a final checkpoint and stops the writer. Records sent
    /// after this fail.
    pub async fn close(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Close(done))?;
        wait.await
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }

    /// [`AuditHandle::close`] for callers outside an async runtime.
    pub fn close_blocking(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Msg::Close(done))?;
        wait.blocking_recv()
            .map_err(|_| AppError::Internal("the audit writer has stopped".into()))?
    }
}

struct Writer {
    log: AuditLog,
    dir: PathBuf,
    segment_bytes: u64,
    key: Option<SigningKey>,
    retention_ns: Option<i64>,
    principal: String,
    host: String,
    last_checkpoint: Option<Instant>,
    periodic: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            // Group commit: everything queued now shares one fsync.
            let mut batch = vec![first];
            while let Ok(m) = rx.try_recv() {
                batch.push(m);
            }
            let mut waiting: Vec<oneshot::Sender<Result<()>>> = Vec::new();
            let mut checkpoint = false;
            let mut close = None;
            let mut failed: Option<AppError> = None;
            let mut signed = Vec::new();
            let mut proofs = Vec::new();
            // Other processes may share the log (CLI commands at once): the batch is written
            // under the directory's lock, on the log as it is now.
            let held = self.catch_up();
            for m in batch {
                match m {
                    Msg::Append(e, done) => {
                        let appended = match &held {
                            Ok(_) => self.log.append(&e).map_err(|err| {
                                AppError::internal("appending to the audit log", err)
                            }),
                            Err(err) => Err(err.clone()),
                        };
                        if let Err(err) = appended {
                            tracing::error!("{err}");
                            if let Some(d) = done {
                                let _ = d.send(Err(err.clone()));
                            }
                            failed = Some(err);
                            continue;
                        }
                        waiting.extend(done);
                    }
                    Msg::Flush {
                        checkpoint: c,
                        done,
                    } => {
                        checkpoint |= c;
                        waiting.push(done);
                    }
                    Msg::Close(done) => close = Some(done),
                    Msg::Retention(r) => self.retention_ns = r,
                    Msg::SetKey(k) => self.key = Some(*k),
                    Msg::Checkpoint(done) => signed.push(done),
                    Msg::Prove(old, done) => proofs.push((old, done)),
                }
            }
            let mut result = match &held {
                Ok(_) => self
                    .log
                    .sync()
                    .map_err(|e| AppError::internal("syncing the audit log", e)),
                Err(e) => Err(e.clone()),
            };
            if result.is_ok() && failed.is_none() {
                let due = self.periodic
                    && self
                        .last_checkpoint
                        .is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY);
                if checkpoint || close.is_some() || due {
                    result = self.checkpoint(close.is_some());
                }
            }
            for w in waiting {
                let _ = w.send(result.clone());
            }
            for done in signed {
                let _ = done.send(result.clone().and_then(|()| self.sign()));
            }
            for (old, done) in proofs {
                let _ = done.send(result.clone().map(|()| self.prove(&old)));
            }
            if let Some(done) = close {
                let _ = done.send(result);
                return;
            }
        }
        // Every handle dropped without a close: sync what there is.
        if let Err(e) = self.log.sync() {
            tracing::error!("syncing the audit log: {e}");
        }
    }

    /// Takes the directory's lock and, when another process appended or removed records
    /// since this writer's last batch, opens the log again (recording a torn record it cut
    /// off, as at start).
    fn catch_up(&mut self) -> Result<std::fs::File> {
        let held = custos_audit::lock(&self.dir)
            .map_err(|e| AppError::internal("locking the audit log", e))?;
        let stale = self
            .log
            .is_stale()
            .map_err(|e| AppError::internal("reading the audit log", e))?;
        if stale {
            self.log = AuditLog::open(&self.dir, self.segment_bytes)
                .map_err(|e| AppError::internal("opening the audit log again", e))?;
            if self.log.recovered().is_some() {
                let event = Event {
                    time_ns: now_ns(),
                    principal: "-".into(),
                    action: AuditAction::AuditRecover.as_str().into(),
                    resource: "audit".into(),
                    outcome: Outcome::Succeeded.as_str().into(),
                    error_code: Some(ErrorCode::TornRecord.as_str().into()),
                    host: self.host.clone(),
                    pid: std::process::id(),
                    policies: Vec::new(),
                    run_id: None,
                    rows: None,
                    detail: None,
                };
                self.log
                    .append(&event)
                    .map_err(|e| AppError::internal("appending to the audit log", e))?;
            }
        }
        Ok(held)
    }

    fn checkpoint(&mut self, closing: bool) -> Result<()> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        if closing && let Some(keep) = self.retention_ns {
            let r = self
                .log
                .apply_retention(keep, now_ns(), &self.principal, &self.host)
                .map_err(|e| AppError::internal("applying audit retention", e))?;
            if let Some(r) = r {
                tracing::info!(
                    removed_segments = r.segments,
                    removed_from = r.removed_from,
                    removed_to = r.removed_to,
                    "audit retention removed expired segments"
                );
            }
        }
        self.log
            .checkpoint(key, now_ns())
            .map_err(|e| AppError::internal("signing an audit checkpoint", e))?;
        self.last_checkpoint = Some(Instant::now());
        Ok(())
    }

    /// A checkpoint signed on request (to export): needs the key.
    fn sign(&mut self) -> Result<custos_audit::Checkpoint> {
        let Some(key) = &self.key else {
            return Err(AppError::Invalid(
                "signing a checkpoint needs the audit key: it is in the keystore (CUSTOS_KEYSTORE_PASSPHRASE)".into(),
            ));
        };
        let cp = self
            .log
            .checkpoint(key, now_ns())
            .map_err(|e| AppError::internal("signing an audit checkpoint", e))?;
        self.last_checkpoint = Some(Instant::now());
        Ok(cp)
    }

    fn prove(&self, old: &custos_audit::Checkpoint) -> std::result::Result<(u64, u64), String> {
        let n = self.log.len();
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
            .log
            .consistency_proof(old.size)
            .map_err(|e| e.to_string())?;
        let root = self.log.root();
        if custos_audit::merkle::verify_consistency(old.size, n, &old_root, &root, &proof) {
            Ok((old.size, n))
        } else {
            Err("the consistency proof fails: history before the checkpoint was rewritten".into())
        }
    }
}
