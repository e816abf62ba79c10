//! Principals and their API tokens, and time-bound grants, in `identity.db` beside the run
//! records in the state directory.
//!
//! A token is `cst_<id>_<secret>`: `id` (12 hex digits) finds the user, `secret` is 32 random
//! bytes in base64url. Only an Argon2id hash of the whole token is stored; it is shown once when
//! issued. Unknown, disabled and wrong tokens all fail with the same message after the same
//! work (an Argon2id computation), and the hash comparison is constant time.

use std::path::Path;

use base64::Engine as _;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

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
    token_issued_by TEXT NOT NULL DEFAULT ''
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
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS grants_user ON grants (user, until_s);
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

/// The identity store.
pub struct Identities {
    conn: Connection,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identities")
    }
}

fn db(e: rusqlite::Error) -> PolicyError {
    PolicyError::Store(e.to_string())
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

/// Whether `name` is a valid user name: 1-64 of `[A-Za-z0-9._@-]`.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        name: r.get(0)?,
        role: r.get(1)?,
        active: r.get::<_, i64>(2)? != 0,
        created_ns: r.get(3)?,
        token_issued_ns: r.get(4)?,
        created_by: r.get(5)?,
        token_issued_by: r.get(6)?,
    })
}

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

const GRANT_COLUMNS: &str =
    "id, user, action, resource, until_s, reason, granted_by, created_ns, revoked_ns, revoked_by";

impl Identities {
    /// Opens (creating if needed) `identity.db` in the state directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, PolicyError> {
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
        conn.execute_batch(SCHEMA).map_err(db)?;
        // Stores from before creators and token issuers were recorded: add the columns (their
        // rows read as unknown).
        for col in ["created_by", "token_issued_by"] {
            let has: i64 = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('users') WHERE name = ?1",
                    [col],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if has == 0 {
                conn.execute_batch(&format!(
                    "ALTER TABLE users ADD COLUMN {col} TEXT NOT NULL DEFAULT ''"
                ))
                .map_err(db)?;
            }
        }
        Ok(Self { conn })
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
        if self.user(name)?.is_some() {
            return Err(PolicyError::Invalid(format!(
                "user \"{name}\" already exists"
            )));
        }
        let (token, id, salt, hash) = issue()?;
        self.conn
            .execute(
                "INSERT INTO users (name, role, active, token_id, token_salt, token_hash, created_ns, token_issued_ns, created_by, token_issued_by)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?6, ?7, ?7)",
                params![name, role, id, salt, hash, now_ns, by],
            )
            .map_err(db)?;
        Ok(token)
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<User>, PolicyError> {
        self.conn
            .query_row(
                "SELECT name, role, active, created_ns, token_issued_ns, created_by, token_issued_by FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
            .map_err(db)
    }

    fn existing(&self, name: &str) -> Result<User, PolicyError> {
        self.user(name)?
            .ok_or_else(|| PolicyError::Invalid(format!("no user named \"{name}\"")))
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, PolicyError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT name, role, active, created_ns, token_issued_ns, created_by, token_issued_by FROM users ORDER BY name",
            )
            .map_err(db)?;
        st.query_map([], user_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    /// Enables or disables a user's sign-in.
    pub fn set_active(&self, name: &str, active: bool) -> Result<(), PolicyError> {
        self.existing(name)?;
        self.conn
            .execute(
                "UPDATE users SET active = ?2 WHERE name = ?1",
                params![name, i64::from(active)],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Removes a user and revokes its grants (the grants stay listed as revoked).
    pub fn remove_user(&self, name: &str, by: &str, now_ns: i64) -> Result<(), PolicyError> {
        self.existing(name)?;
        self.conn
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(db)?;
        self.conn
            .execute(
                "UPDATE grants SET revoked_ns = ?2, revoked_by = ?3 WHERE user = ?1 AND revoked_ns IS NULL",
                params![name, now_ns, by],
            )
            .map_err(db)?;
        Ok(())
    }

    /// Replaces a user's token on behalf of `by` (the user themselves, or an admin who then
    /// has seen it); the old one stops working at once.
    pub fn rotate_token(&self, name: &str, by: &str, now_ns: i64) -> Result<Token, PolicyError> {
        self.existing(name)?;
        let (token, id, salt, hash) = issue()?;
        self.conn
            .execute(
                "UPDATE users SET token_id = ?2, token_salt = ?3, token_hash = ?4, token_issued_ns = ?5, token_issued_by = ?6 WHERE name = ?1",
                params![name, id, salt, hash, now_ns, by],
            )
            .map_err(db)?;
        Ok(token)
    }

    /// The active user whose token this is, or [`PolicyError::Authentication`] with one generic
    /// message for every reason.
    pub fn authenticate(&self, token: &str) -> Result<User, PolicyError> {
        let token = token.trim();
        let id = token
            .strip_prefix("cst_")
            .and_then(|t| t.split_once('_'))
            .map(|(id, _)| id)
            .unwrap_or("");
        let row: Option<(Vec<u8>, Vec<u8>, String)> = self
            .conn
            .query_row(
                "SELECT token_salt, token_hash, name FROM users WHERE token_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db)?;
        // Do the same work whether or not the id exists.
        let (salt, stored, name) =
            row.unwrap_or_else(|| (vec![0u8; 16], vec![0xffu8; 32], String::new()));
        let computed = hash_token(token, &salt)?;
        let matches: bool = computed.ct_eq(stored.as_slice()).into();
        if !matches || name.is_empty() {
            return Err(PolicyError::Authentication);
        }
        match self.user(&name)? {
            Some(u) if u.active => Ok(u),
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
        self.existing(user)?;
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
        let grantee = self.existing(user)?;
        if grantee.created_by == granted_by {
            return Err(PolicyError::Invalid(format!(
                "a grant needs a second person: you added \"{user}\" and saw their first token; another admin must approve"
            )));
        }
        if grantee.token_issued_by == granted_by {
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
        if until_s * 1_000_000_000 <= now_ns {
            return Err(PolicyError::Invalid("--until is in the past".into()));
        }
        if reason.trim().is_empty() {
            return Err(PolicyError::Invalid("a grant needs a --reason".into()));
        }
        self.conn
            .execute(
                "INSERT INTO grants (user, action, resource, until_s, reason, granted_by, created_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![user, action, resource, until_s, reason, granted_by, now_ns],
            )
            .map_err(db)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Grants, newest first: all of them, or only those active at `active_at` (Unix seconds).
    pub fn grants(&self, active_at: Option<i64>) -> Result<Vec<Grant>, PolicyError> {
        let mut st;
        let rows = match active_at {
            Some(now_s) => {
                st = self
                    .conn
                    .prepare(&format!(
                        "SELECT {GRANT_COLUMNS} FROM grants WHERE revoked_ns IS NULL AND until_s > ?1 ORDER BY id DESC"
                    ))
                    .map_err(db)?;
                st.query_map([now_s], grant_row)
            }
            None => {
                st = self
                    .conn
                    .prepare(&format!(
                        "SELECT {GRANT_COLUMNS} FROM grants ORDER BY id DESC"
                    ))
                    .map_err(db)?;
                st.query_map([], grant_row)
            }
        };
        rows.map_err(db)?.collect::<Result<_, _>>().map_err(db)
    }

    /// The grants of `user` active at `now_s`.
    pub fn active_grants(&self, user: &str, now_s: i64) -> Result<Vec<Grant>, PolicyError> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE user = ?1 AND revoked_ns IS NULL AND until_s > ?2 ORDER BY id"
            ))
            .map_err(db)?;
        st.query_map(params![user, now_s], grant_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    /// Revokes a grant.
    pub fn revoke_grant(&self, id: i64, by: &str, now_ns: i64) -> Result<Grant, PolicyError> {
        let n = self
            .conn
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
        self.conn
            .query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"),
                [id],
                grant_row,
            )
            .map_err(db)
    }
}
