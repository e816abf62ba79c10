//! Principals and their API tokens, and time-bound grants, in `identity.db` beside the run
//! records in the state directory.
//!
//! A token is `cst_<id>_<secret>`: `id` (12 hex digits) finds the user, `secret` is 32 random
//! bytes in base64url. Only an Argon2id hash of the whole token is stored; it is shown once when
//! issued. Unknown, disabled and wrong tokens all fail with the same message after the same
//! work (an Argon2id computation), and the hash comparison is constant time.
//!
//! Two ways to open the store. [`Identities::open`] is the local single-user mode: no key,
//! no MACs. [`Identities::open_sealed`] is the server's: with the [`StoreKey`] from its
//! keystore every row carries a MAC and the set of rows a store MAC (see the `seal` module),
//! decisions re-verify the rows they read, and every write verifies the store, writes, and
//! reseals in one transaction. A sealed store is refused by the unkeyed open, so nobody edits
//! it with file access alone. Whole-file rollback to an older copy is not detected by MACs
//! alone: every write increments a sealed generation, and [`Identities::seal_state`] /
//! [`Identities::check_not_older`] compare it with one kept outside the file.

use std::path::Path;

use base64::Engine as _;
use rand::RngCore;
use rusqlite::types::Value;
use rusqlite::{Connection, Params, Transaction, TransactionBehavior, params};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::seal::{self, GRANTS, SealState, Sealer, StoreKey, TABLES, Table, USERS};
use crate::{Action, PolicyError, ROLES, ResourcePattern};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    active INTEGER NOT NULL,
    token_id TEXT NOT NULL UNIQUE,
    token_salt BLOB NOT NULL,
    token_hash BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    token_issued_ns INTEGER NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    token_issued_by TEXT NOT NULL DEFAULT '',
    mac BLOB
);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    until_s INTEGER NOT NULL,
    reason TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER,
    revoked_by TEXT,
    mac BLOB
);
CREATE INDEX IF NOT EXISTS grants_user ON grants (user, until_s);
CREATE TABLE IF NOT EXISTS mfa (
    user TEXT PRIMARY KEY,
    secret_enc BLOB NOT NULL,
    confirmed INTEGER NOT NULL,
    last_step INTEGER,
    enrolled_ns INTEGER NOT NULL,
    confirmed_ns INTEGER,
    mac BLOB
);
CREATE TABLE IF NOT EXISTS policy_sets (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    set_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_ns INTEGER NOT NULL,
    mac BLOB
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_ns INTEGER NOT NULL,
    mac BLOB
);
CREATE TABLE IF NOT EXISTS mfa_tickets (
    user TEXT PRIMARY KEY,
    ticket_hash BLOB NOT NULL,
    expires_s INTEGER NOT NULL,
    issued_by TEXT NOT NULL,
    issued_ns INTEGER NOT NULL,
    mac BLOB
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// Argon2id cost for token hashes: OWASP's minimum (19 MiB, 2 passes). Tokens carry 256 bits
/// of entropy, so the hash only has to make a stolen database useless, not resist guessing.
const ARGON_MEMORY_KIB: u32 = 19 * 1024;
const ARGON_PASSES: u32 = 2;

/// The message for every failed sign-in, whatever the reason.
pub const AUTH_FAILED: &str =
    "authentication failed: the token is not valid (unknown, disabled, rotated or mistyped)";

/// An API token as issued: shown once, never stored. `Debug` prints `[redacted]`.
pub struct Token(Zeroizing<String>);

impl Token {
    /// A token issued elsewhere (by a server), to hand on to its owner.
    pub fn from_issued(text: &str) -> Self {
        Self(Zeroizing::new(text.trim().to_string()))
    }

    /// The token text, to hand to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// A principal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// Role (one of [`ROLES`]).
    pub role: String,
    /// Whether the user may sign in.
    pub active: bool,
    /// When the user was added, ns since the epoch.
    pub created_ns: i64,
    /// When the current token was issued, ns since the epoch.
    pub token_issued_ns: i64,
    /// Who added the user (empty: unknown, a store from before this was recorded).
    pub created_by: String,
    /// Who issued the current token: the user when they rotated it themselves (empty:
    /// unknown). Whoever issued a token has seen it.
    pub token_issued_by: String,
}

/// A time-bound grant of one action on a resource pattern.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// Id (the policy id is `grant:<id>`).
    pub id: i64,
    /// Grantee.
    pub user: String,
    /// Action name.
    pub action: String,
    /// Resource pattern (`pipeline:NAME`, `column:PIPELINE/COLUMN`, `key:NAME`, ..., `*`).
    pub resource: String,
    /// Expiry, Unix seconds: the grant permits nothing from then on.
    pub until_s: i64,
    /// Why it was granted.
    pub reason: String,
    /// Who granted it.
    pub granted_by: String,
    /// When, ns since the epoch.
    pub created_ns: i64,
    /// When it was revoked, if it was.
    pub revoked_ns: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

impl Grant {
    /// Whether the grant permits anything at `now_s`.
    pub fn is_active(&self, now_s: i64) -> bool {
        self.revoked_ns.is_none() && now_s < self.until_s
    }
}

/// Called with the new [`SealState`] after every committed write to a sealed store.
pub type OnWrite = Box<dyn Fn(&SealState) + Send>;

/// The identity store.
pub struct Identities {
    pub(crate) conn: Connection,
    /// The store's keys when opened with [`Identities::open_sealed`].
    pub(crate) sealer: Option<Sealer>,
    on_write: Option<OnWrite>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities")
            .field("sealed", &self.sealer.is_some())
            .finish()
    }
}

pub(crate) fn db(e: rusqlite::Error) -> PolicyError {
    PolicyError::Store(e.to_string())
}

/// Opens the database file and sets the connection up, changing nothing in it.
fn connect(dir: &Path) -> Result<Connection, PolicyError> {
    let path = dir.join("identity.db");
    let conn = Connection::open(&path)
        .map_err(|e| PolicyError::Store(format!("opening {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    // Every commit reaches the disk before the caller records the new seal state elsewhere
    // (the audit log), so a power cut never leaves that record ahead of the file.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    Ok(conn)
}

fn has_column(conn: &Connection, table: &str, col: &str) -> Result<bool, PolicyError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, col],
            |r| r.get(0),
        )
        .map_err(db)?;
    Ok(n > 0)
}

/// Creates missing tables and adds the columns older stores lack.
fn migrate(conn: &Connection) -> Result<(), PolicyError> {
    conn.execute_batch(SCHEMA).map_err(db)?;
    // Stores from before creators and token issuers were recorded: add the columns (their
    // rows read as unknown).
    for col in ["created_by", "token_issued_by"] {
        if !has_column(conn, "users", col)? {
            conn.execute_batch(&format!(
                "ALTER TABLE users ADD COLUMN {col} TEXT NOT NULL DEFAULT ''"
            ))
            .map_err(db)?;
        }
    }
    // Stores from before sealing: rows without a MAC until a server seals the store.
    for t in ["users", "grants"] {
        if !has_column(conn, t, "mac")? {
            conn.execute_batch(&format!("ALTER TABLE {t} ADD COLUMN mac BLOB"))
                .map_err(db)?;
        }
    }
    Ok(())
}

/// Every sealed table has exactly the columns its MAC covers, plus `mac`: a column nobody
/// MACs would be editable without the key.
fn check_columns(conn: &Connection) -> Result<(), PolicyError> {
    for t in TABLES {
        let mut st = conn
            .prepare("SELECT name FROM pragma_table_info(?1) WHERE name != 'mac' ORDER BY name")
            .map_err(db)?;
        let actual: Vec<String> = st
            .query_map([t.name], |r| r.get(0))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let mut expected: Vec<&str> = t.columns.to_vec();
        expected.sort_unstable();
        if actual != expected {
            return Err(PolicyError::Store(format!(
                "table {} has columns [{}], expected [{}]",
                t.name,
                actual.join(", "),
                expected.join(", ")
            )));
        }
    }
    Ok(())
}

fn hash_token(token: &str, salt: &[u8]) -> Result<[u8; 32], PolicyError> {
    let params = argon2::Params::new(ARGON_MEMORY_KIB, ARGON_PASSES, 1, Some(32))
        .map_err(|e| PolicyError::Store(format!("argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(token.as_bytes(), salt, &mut out)
        .map_err(|e| PolicyError::Store(format!("argon2: {e}")))?;
    Ok(out)
}

/// A fresh token and what is stored for it: (token, id, salt, hash).
fn issue() -> Result<(Token, String, Vec<u8>, Vec<u8>), PolicyError> {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    rng.fill_bytes(&mut id);
    let id = hex::encode(id);
    let mut secret = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut secret[..]);
    let token = Token(Zeroizing::new(format!(
        "cst_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret[..])
    )));
    let mut salt = vec![0u8; 16];
    rng.fill_bytes(&mut salt);
    let hash = hash_token(token.expose(), &salt)?.to_vec();
    Ok((token, id, salt, hash))
}

/// Prefix of the grantee names of users an identity provider signs in (OIDC): they are not in
/// the store, so their grants are kept under `oidc:NAME`, a name no local user can have.
pub const EXTERNAL_PREFIX: &str = "oidc:";

/// The name grants are kept under for the user `name`: a local user's own name, or
/// `oidc:NAME` for a user an identity provider signed in.
pub fn grant_subject(name: &str, external: bool) -> String {
    if external {
        format!("{EXTERNAL_PREFIX}{name}")
    } else {
        name.to_string()
    }
}

/// Whether `name` is a valid user name: 1-64 of `[A-Za-z0-9._@-]`.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// A user from a row read with `USERS.select()`.
fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        name: r.get(0)?,
        role: r.get(1)?,
        active: r.get::<_, i64>(2)? != 0,
        created_ns: r.get(6)?,
        token_issued_ns: r.get(7)?,
        created_by: r.get(8)?,
        token_issued_by: r.get(9)?,
    })
}

/// A grant from a row read with `GRANTS.select()`.
fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        user: r.get(1)?,
        action: r.get(2)?,
        resource: r.get(3)?,
        until_s: r.get(4)?,
        reason: r.get(5)?,
        granted_by: r.get(6)?,
        created_ns: r.get(7)?,
        revoked_ns: r.get(8)?,
        revoked_by: r.get(9)?,
    })
}

impl Identities {
    /// Opens (creating if needed) `identity.db` in the state directory `dir` without a key:
    /// the local single-user mode. A store a server has sealed is refused
    /// ([`PolicyError::Sealed`]): its rows are neither read nor written unverified.
    pub fn open(dir: &Path) -> Result<Self, PolicyError> {
        let conn = connect(dir)?;
        if seal::is_sealed(&conn)? {
            return Err(PolicyError::Sealed);
        }
        migrate(&conn)?;
        Ok(Self {
            conn,
            sealer: None,
            on_write: None,
        })
    }

    /// Opens (creating if needed) `identity.db` in `dir` sealed with `key`, the server mode.
    /// A store that is not sealed yet (new, or from before sealing) is sealed in one
    /// transaction; a sealed one is verified, every row MAC and the store MAC, and any
    /// mismatch or a different key is [`PolicyError::Tampered`].
    ///
    /// Sealing on first open trusts the file as it is then. Once a server has sealed its
    /// store it should open it with [`Identities::open_sealed_existing`], so that a store
    /// stripped back to the unsealed format is not sealed again.
    pub fn open_sealed(dir: &Path, key: &StoreKey) -> Result<Self, PolicyError> {
        Self::open_keyed(dir, key, false)
    }

    /// Like [`Identities::open_sealed`], but a store that is not sealed is
    /// [`PolicyError::Tampered`] instead of being sealed.
    pub fn open_sealed_existing(dir: &Path, key: &StoreKey) -> Result<Self, PolicyError> {
        Self::open_keyed(dir, key, true)
    }

    fn open_keyed(dir: &Path, key: &StoreKey, must_exist: bool) -> Result<Self, PolicyError> {
        let conn = connect(dir)?;
        migrate(&conn)?;
        check_columns(&conn)?;
        let sealer = Sealer::open(&conn, key, must_exist)?;
        Ok(Self {
            conn,
            sealer: Some(sealer),
            on_write: None,
        })
    }

    /// Where a sealed store stands (`None` when opened without the key): keep it outside
    /// the file to detect a rollback of the whole file later.
    pub fn seal_state(&self) -> Result<Option<SealState>, PolicyError> {
        self.sealer
            .as_ref()
            .map(|s| self.read(|| s.state(&self.conn)))
            .transpose()
    }

    /// Checks that a sealed store is not older than `recorded`, a [`SealState`] kept outside
    /// the file: an older generation, or the same generation with another store MAC, is
    /// [`PolicyError::Tampered`]. From then on this handle also refuses any store older than
    /// `recorded`.
    pub fn check_not_older(&self, recorded: &SealState) -> Result<(), PolicyError> {
        match &self.sealer {
            Some(s) => self.read(|| s.check_not_older(&self.conn, recorded)),
            None => Ok(()),
        }
    }

    /// Accepts a sealed store older than `recorded` (restored from a backup on purpose): moves
    /// its generation past `recorded`, so the copy that was replaced, and any other copy from
    /// before, is older than the store from now on. Returns the new state.
    pub fn supersede(&self, recorded: &SealState) -> Result<SealState, PolicyError> {
        let past = recorded
            .generation
            .checked_add(1)
            .ok_or_else(|| PolicyError::Store("the store generation overflowed".into()))?;
        self.write_at_least(past, |_| Ok(()))?;
        self.seal_state()?
            .ok_or_else(|| PolicyError::Invalid("the identity store is not sealed".into()))
    }

    /// Calls `f` with the new [`SealState`] after every committed write to a sealed store.
    pub fn on_write(&mut self, f: OnWrite) {
        self.on_write = Some(f);
    }

    /// Whether the store was opened with its key.
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// The keys, or the error for operations that need them (MFA).
    pub(crate) fn keys(&self) -> Result<&Sealer, PolicyError> {
        self.sealer.as_ref().ok_or_else(|| {
            PolicyError::Invalid(
                "MFA needs the server's keystore: identity.db was opened without it (local mode)"
                    .into(),
            )
        })
    }

    /// An unkeyed handle refuses a store a server sealed after it was opened.
    fn refuse_if_sealed_meanwhile(&self) -> Result<(), PolicyError> {
        if self.sealer.is_none() && seal::is_sealed(&self.conn)? {
            return Err(PolicyError::Sealed);
        }
        Ok(())
    }

    /// Rows of `table` (`tail`: a `WHERE`/`ORDER BY` clause), each checked against its MAC
    /// when the store is sealed; `f` reads a row whose columns are in `table.columns` order.
    pub(crate) fn select<T>(
        &self,
        table: &Table,
        tail: &str,
        p: impl Params,
        f: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, PolicyError> {
        self.refuse_if_sealed_meanwhile()?;
        let n = table.columns.len();
        let keyed = self.sealer.is_some();
        let mut st = self
            .conn
            .prepare(&format!("{} {tail}", table.select()))
            .map_err(db)?;
        let rows = st
            .query_map(p, |r| {
                let checked = if keyed {
                    let values = (0..n)
                        .map(|i| r.get::<_, Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Some((values, r.get::<_, Value>(n)?))
                } else {
                    None
                };
                Ok((checked, f(r)))
            })
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        // Check the MACs before looking at the decoded rows: a tampered row fails as
        // tampered, not as a type error.
        if let Some(s) = &self.sealer {
            let checked: Vec<_> = rows.iter().filter_map(|(c, _)| c.as_ref()).collect();
            s.check_reads(&self.conn, table, &checked)?;
        }
        rows.into_iter().map(|(_, item)| item.map_err(db)).collect()
    }

    /// Runs the reads of `f` on one snapshot of a sealed store, so rows and seal agree.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce() -> Result<T, PolicyError>,
    ) -> Result<T, PolicyError> {
        if self.sealer.is_none() || !self.conn.is_autocommit() {
            return f();
        }
        let tx =
            Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred).map_err(db)?;
        let out = f()?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// On a sealed store, checks that a lookup by key that found nothing is not a row
    /// deleted behind the server's back.
    pub(crate) fn check_absent(&self, table: &Table, pk: Value) -> Result<(), PolicyError> {
        match &self.sealer {
            Some(s) => s.check_absent(&self.conn, table, &pk),
            None => Ok(()),
        }
    }

    /// On a sealed store, checks that a listing of a whole table has every row it records.
    fn check_complete(&self, table: &Table, n: usize) -> Result<(), PolicyError> {
        if let Some(s) = &self.sealer {
            let recorded = s.recorded_count(&self.conn, table)?;
            if recorded != n {
                return Err(PolicyError::Tampered(format!(
                    "{}: {} rows where the seal records {recorded} (rows were deleted or added)",
                    table.name, n
                )));
            }
        }
        Ok(())
    }

    /// Runs `f` in one write transaction. On a sealed store the whole store is verified
    /// first (so a write never blesses a row changed behind the server's back) and the
    /// changed rows and the store MAC are resealed before committing.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, PolicyError>,
    ) -> Result<T, PolicyError> {
        self.write_at_least(0, f)
    }

    /// [`Identities::write`], leaving a sealed store at a generation of at least `at_least`.
    fn write_at_least<T>(
        &self,
        at_least: u64,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, PolicyError>,
    ) -> Result<T, PolicyError> {
        let tx =
            Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(db)?;
        self.refuse_if_sealed_meanwhile()?;
        if let Some(s) = &self.sealer {
            s.verify_all(&tx)?;
        }
        let out = f(&tx)?;
        if let Some(s) = &self.sealer {
            s.reseal(&tx, at_least)?;
        }
        tx.commit().map_err(db)?;
        if let Some(s) = &self.sealer {
            s.committed(&self.conn)?;
            if let Some(f) = &self.on_write {
                f(&s.state(&self.conn)?);
            }
        }
        Ok(out)
    }

    /// Whether no user exists yet (a project before `custos init`).
    pub fn is_empty(&self) -> Result<bool, PolicyError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .map_err(db)?;
        Ok(n == 0)
    }

    /// Adds a user with `role` on behalf of `by` (who sees the first token, and so may not
    /// approve grants to this user) and returns the token (shown once).
    pub fn add_user(
        &self,
        name: &str,
        role: &str,
        by: &str,
        now_ns: i64,
    ) -> Result<Token, PolicyError> {
        if !valid_user_name(name) {
            return Err(PolicyError::Invalid(format!(
                "invalid user name \"{name}\": use 1-64 letters, digits, '.', '_', '@' or '-'"
            )));
        }
        if !ROLES.contains(&role) {
            return Err(PolicyError::Invalid(format!(
                "unknown role \"{role}\"; roles: {}",
                ROLES.join(", ")
            )));
        }
        let (token, id, salt, hash) = issue()?;
        self.write(|tx| {
            if self.user(name)?.is_some() {
                return Err(PolicyError::Invalid(format!(
                    "user \"{name}\" already exists"
                )));
            }
            tx.execute(
                "INSERT INTO users (name, role, active, token_id, token_salt, token_hash, created_ns, token_issued_ns, created_by, token_issued_by)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?6, ?7, ?7)",
                params![name, role, id, salt, hash, now_ns, by],
            )
            .map_err(db)?;
            Ok(())
        })?;
        Ok(token)
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<User>, PolicyError> {
        self.read(|| {
            let found = self
                .select(&USERS, "WHERE name = ?1", [name], user_row)?
                .into_iter()
                .next();
            if found.is_none() {
                self.check_absent(&USERS, Value::Text(name.into()))?;
            }
            Ok(found)
        })
    }

    pub(crate) fn existing(&self, name: &str) -> Result<User, PolicyError> {
        self.user(name)?
            .ok_or_else(|| PolicyError::Invalid(format!("no user named \"{name}\"")))
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, PolicyError> {
        self.read(|| {
            let users = self.select(&USERS, "ORDER BY name", [], user_row)?;
            self.check_complete(&USERS, users.len())?;
            Ok(users)
        })
    }

    /// Enables or disables a user's sign-in.
    pub fn set_active(&self, name: &str, active: bool) -> Result<(), PolicyError> {
        self.write(|tx| {
            self.existing(name)?;
            tx.execute(
                "UPDATE users SET active = ?2 WHERE name = ?1",
                params![name, i64::from(active)],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    /// Removes a user and its MFA enrolment, and revokes its grants (the grants stay listed
    /// as revoked).
    pub fn remove_user(&self, name: &str, by: &str, now_ns: i64) -> Result<(), PolicyError> {
        self.write(|tx| {
            self.existing(name)?;
            tx.execute("DELETE FROM users WHERE name = ?1", [name])
                .map_err(db)?;
            tx.execute("DELETE FROM mfa WHERE user = ?1", [name])
                .map_err(db)?;
            tx.execute(
                "UPDATE grants SET revoked_ns = ?2, revoked_by = ?3 WHERE user = ?1 AND revoked_ns IS NULL",
                params![name, now_ns, by],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    /// Replaces a user's token on behalf of `by` (the user themselves, or an admin who then
    /// has seen it); the old one stops working at once.
    pub fn rotate_token(&self, name: &str, by: &str, now_ns: i64) -> Result<Token, PolicyError> {
        let (token, id, salt, hash) = issue()?;
        self.write(|tx| {
            self.existing(name)?;
            tx.execute(
                "UPDATE users SET token_id = ?2, token_salt = ?3, token_hash = ?4, token_issued_ns = ?5, token_issued_by = ?6 WHERE name = ?1",
                params![name, id, salt, hash, now_ns, by],
            )
            .map_err(db)?;
            Ok(())
        })?;
        Ok(token)
    }

    /// The active user whose token this is, or [`PolicyError::Authentication`] with one generic
    /// message for every reason. On a sealed store a row that fails its MAC is
    /// [`PolicyError::Tampered`].
    pub fn authenticate(&self, token: &str) -> Result<User, PolicyError> {
        let token = token.trim();
        let id = token
            .strip_prefix("cst_")
            .and_then(|t| t.split_once('_'))
            .map(|(id, _)| id)
            .unwrap_or("");
        let row = self.read(|| {
            Ok(self
                .select(&USERS, "WHERE token_id = ?1", [id], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                        user_row(r)?,
                    ))
                })?
                .into_iter()
                .next())
        })?;
        // Do the same work whether or not the id exists.
        let (salt, stored, user) = match row {
            Some((salt, hash, user)) => (salt, hash, Some(user)),
            None => (vec![0u8; 16], vec![0xffu8; 32], None),
        };
        let computed = hash_token(token, &salt)?;
        let matches: bool = computed.ct_eq(stored.as_slice()).into();
        match user {
            Some(u) if matches && u.active => Ok(u),
            _ => Err(PolicyError::Authentication),
        }
    }

    /// Records a grant of `action` on `resource` to `user` until `until_s`; returns its id.
    ///
    /// A grant needs a second person who cannot act as the grantee: the approver may not be
    /// the grantee, whoever added the grantee, or whoever issued the grantee's current token
    /// (they have seen it). And the approver's own token must be one they issued themselves,
    /// so nobody approves through an account whose token they handed out.
    #[allow(clippy::too_many_arguments)]
    pub fn add_grant(
        &self,
        user: &str,
        action: &str,
        resource: &str,
        until_s: i64,
        reason: &str,
        granted_by: &str,
        now_ns: i64,
    ) -> Result<i64, PolicyError> {
        self.write(|tx| {
            // Identity-provider users are not in the store: nobody here created them or
            // issued their credentials, so only the grantee-is-not-the-approver rule applies.
            let external = user.strip_prefix(EXTERNAL_PREFIX);
            match external {
                Some(name) if !valid_user_name(name) => {
                    return Err(PolicyError::Invalid(format!(
                        "\"{user}\" is not a valid identity-provider user name (oidc: then 1-64 of letters, digits, '.', '_', '@', '-')"
                    )));
                }
                Some(_) => {}
                None => {
                    self.existing(user)?;
                }
            }
            if Action::parse(action).is_none() {
                return Err(PolicyError::Invalid(format!(
                    "unknown action \"{action}\"; actions: {}",
                    Action::ALL
                        .iter()
                        .map(|a| a.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            ResourcePattern::parse(resource)?;
            if user == granted_by {
                return Err(PolicyError::Invalid(
                    "a grant needs a second person: you cannot grant to yourself".into(),
                ));
            }
            let grantee = match external {
                Some(_) => None,
                None => Some(self.existing(user)?),
            };
            if let Some(grantee) = &grantee
                && grantee.created_by == granted_by
            {
                return Err(PolicyError::Invalid(format!(
                    "a grant needs a second person: you added \"{user}\" and saw their first token; another admin must approve"
                )));
            }
            if let Some(grantee) = &grantee
                && grantee.token_issued_by == granted_by
            {
                return Err(PolicyError::Invalid(format!(
                    "a grant needs a second person: you issued \"{user}\"'s current token; another admin must approve (or {user} rotates it with `custos tokens rotate`)"
                )));
            }
            if let Some(approver) = self.user(granted_by)?
                && !approver.token_issued_by.is_empty()
                && approver.token_issued_by != granted_by
            {
                return Err(PolicyError::Invalid(format!(
                    "your token was issued by \"{}\": rotate it yourself (`custos tokens rotate`) before approving grants",
                    approver.token_issued_by
                )));
            }
            if until_s.saturating_mul(1_000_000_000) <= now_ns {
                return Err(PolicyError::Invalid("--until is in the past".into()));
            }
            if reason.trim().is_empty() {
                return Err(PolicyError::Invalid("a grant needs a --reason".into()));
            }
            tx.execute(
                "INSERT INTO grants (user, action, resource, until_s, reason, granted_by, created_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![user, action, resource, until_s, reason, granted_by, now_ns],
            )
            .map_err(db)?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Grants, newest first: all of them, or only those active at `active_at` (Unix seconds).
    pub fn grants(&self, active_at: Option<i64>) -> Result<Vec<Grant>, PolicyError> {
        self.read(|| match active_at {
            Some(now_s) => self.select(
                &GRANTS,
                "WHERE revoked_ns IS NULL AND until_s > ?1 ORDER BY id DESC",
                [now_s],
                grant_row,
            ),
            None => {
                let all = self.select(&GRANTS, "ORDER BY id DESC", [], grant_row)?;
                self.check_complete(&GRANTS, all.len())?;
                Ok(all)
            }
        })
    }

    /// The grants of `user` active at `now_s`.
    pub fn active_grants(&self, user: &str, now_s: i64) -> Result<Vec<Grant>, PolicyError> {
        self.read(|| {
            self.select(
                &GRANTS,
                "WHERE user = ?1 AND revoked_ns IS NULL AND until_s > ?2 ORDER BY id",
                params![user, now_s],
                grant_row,
            )
        })
    }

    /// Revokes a grant.
    pub fn revoke_grant(&self, id: i64, by: &str, now_ns: i64) -> Result<Grant, PolicyError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE grants SET revoked_ns = ?2, revoked_by = ?3 WHERE id = ?1 AND revoked_ns IS NULL",
                    params![id, now_ns, by],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(PolicyError::Invalid(format!(
                    "no active grant with id {id}"
                )));
            }
            tx.query_row(
                &format!("{} WHERE id = ?1", GRANTS.select()),
                [id],
                grant_row,
            )
            .map_err(db)
        })
    }
}
