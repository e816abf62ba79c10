//! The sealed identity store: in server mode every row of `identity.db` carries an
//! HMAC-SHA256 under a key only the server holds, and a store MAC binds the set of rows.
//!
//! Someone with the file but not the key cannot change a row (its MAC fails), add one (its
//! MAC covers the table, its primary key and the store's random id, so a MAC copied from
//! another row, or a row copied from another store, fails), delete one or roll one back to
//! an older valid version (the store MAC over every `(table, key, row MAC)` no longer
//! matches). The store MAC covers a manifest of those triples kept beside it, so a mismatch
//! names the rows that differ.
//!
//! The whole store is verified when it is opened and before every write. Reads check each
//! row they return against its MAC and against the manifest (cached, and reloaded and
//! verified whenever the store MAC changes), and lookups by key that find nothing check that
//! the manifest has no such row: a row rolled back or deleted while the server runs is
//! caught at the next read of it.
//!
//! Replacing the whole file by an older copy of itself (every MAC in it is valid) needs
//! state outside the file to detect. Every write increments the store's *generation*, which
//! the store MAC covers; a handle refuses a store whose generation went back below one it
//! has seen, and [`SealState`] (generation and a digest of the store MAC) is what the caller
//! keeps elsewhere (custos-app records it in the audit log after every write) and checks
//! with `Identities::check_not_older` when it opens the store again.
//!
//! Keys: HKDF-SHA256 of the [`StoreKey`] gives a MAC key (info `custos identity.db mac v1`)
//! and an encryption key for secrets such as TOTP seeds (info `custos identity.db secrets
//! v1`, AES-256-GCM through `custos-crypto`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

use custos_crypto::SecretBytes;
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::Connection;
use rusqlite::types::Value;
use sha2_11::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::PolicyError;

/// The key that seals `identity.db`: 32 bytes from the server's keystore. Zeroized on drop;
/// `Debug` prints `[redacted]`.
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl StoreKey {
    /// Wraps 32 bytes of key material (the caller zeroizes its own copy).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey([redacted])")
    }
}

const MAC_INFO: &[u8] = b"custos identity.db mac v1";
const SECRETS_INFO: &[u8] = b"custos identity.db secrets v1";
const ROW_DOMAIN: &[u8] = b"custos identity.db row v1";
const STORE_DOMAIN: &[u8] = b"custos identity.db store v1";
/// The store MAC with a generation (every store written since generations exist).
const STORE_DOMAIN_V2: &[u8] = b"custos identity.db store v2";
const KEY_CHECK_DOMAIN: &[u8] = b"custos identity.db key check v1";

/// A table under the seal. `columns[0]` is the primary key; every column except `mac` is
/// covered by the row MAC, so a column added later needs a migration that verifies the rows
/// under the old list and reseals them under the new one.
pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// `SELECT <columns>, mac FROM <table>`; append a `WHERE`/`ORDER BY` tail.
    pub fn select(&self) -> String {
        format!("SELECT {}, mac FROM {}", self.columns.join(", "), self.name)
    }

    fn pk(&self) -> &'static str {
        self.columns[0]
    }
}

pub(crate) const USERS: Table = Table {
    name: "users",
    columns: &[
        "name",
        "role",
        "active",
        "token_id",
        "token_salt",
        "token_hash",
        "created_ns",
        "token_issued_ns",
        "created_by",
        "token_issued_by",
    ],
};

pub(crate) const GRANTS: Table = Table {
    name: "grants",
    columns: &[
        "id",
        "user",
        "action",
        "resource",
        "until_s",
        "reason",
        "granted_by",
        "created_ns",
        "revoked_ns",
        "revoked_by",
    ],
};

pub(crate) const MFA: Table = Table {
    name: "mfa",
    columns: &[
        "user",
        "secret_enc",
        "confirmed",
        "last_step",
        "enrolled_ns",
        "confirmed_ns",
    ],
};

pub(crate) const MFA_TICKETS: Table = Table {
    name: "mfa_tickets",
    columns: &["user", "ticket_hash", "expires_s", "issued_by", "issued_ns"],
};

pub(crate) const POLICY_SETS: Table = Table {
    name: "policy_sets",
    columns: &["version", "text", "sha256", "set_by", "reason", "set_ns"],
};

pub(crate) const SETTINGS: Table = Table {
    name: "settings",
    columns: &["name", "value", "set_by", "set_ns"],
};

/// Every sealed table, in manifest order (a table added later goes last: with no rows it
/// leaves the manifest, and so existing store MACs, unchanged).
pub(crate) const TABLES: [&Table; 6] =
    [&USERS, &GRANTS, &MFA, &POLICY_SETS, &SETTINGS, &MFA_TICKETS];

/// A row's primary key as written in errors: `"alice"` or `3`. Keys are names and ids,
/// never cell data.
pub(crate) fn row_name(table: &Table, pk: &Value) -> String {
    let key = match pk {
        Value::Integer(i) => i.to_string(),
        Value::Text(s) => format!("{s:?}"),
        Value::Null => "NULL".into(),
        Value::Real(_) | Value::Blob(_) => "(non-key value)".into(),
    };
    format!("{} row {key}", table.name)
}

fn tampered(what: String) -> PolicyError {
    PolicyError::Tampered(what)
}

fn db(e: rusqlite::Error) -> PolicyError {
    PolicyError::Store(e.to_string())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

/// Canonical, unambiguous encoding of one SQLite value: a type tag, then fixed-width
/// integers or length-prefixed bytes.
fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Real(r) => {
            out.push(2);
            out.extend_from_slice(&r.to_bits().to_be_bytes());
        }
        Value::Text(s) => {
            out.push(3);
            put_bytes(out, s.as_bytes());
        }
        Value::Blob(b) => {
            out.push(4);
            put_bytes(out, b);
        }
    }
}

fn pk_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => serde_json::Value::from(*i),
        Value::Text(s) => serde_json::Value::from(s.as_str()),
        Value::Null => serde_json::Value::Null,
        Value::Real(r) => serde_json::json!({ "real": r.to_bits() }),
        Value::Blob(b) => serde_json::json!({ "blob": hex::encode(b) }),
    }
}

fn json_row_name(table: &str, pk: &serde_json::Value) -> String {
    match pk {
        serde_json::Value::String(s) => format!("{table} row {s:?}"),
        serde_json::Value::Number(n) => format!("{table} row {n}"),
        _ => format!("{table} row (non-key value)"),
    }
}

/// One entry of the manifest: (table, primary key, row MAC in hex).
type Entry = (String, serde_json::Value, String);

/// Where a sealed store stands: its generation (incremented by every write) and a digest of
/// its store MAC. Neither reveals anything about the rows or the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealState {
    /// Writes since the store was sealed (0 for a store sealed before generations existed).
    pub generation: u64,
    /// SHA-256 of the store MAC, hex.
    pub digest: String,
}

impl SealState {
    /// `generation=N digest=HEX`, the form kept in audit records.
    pub fn to_detail(&self) -> String {
        format!("generation={} digest={}", self.generation, self.digest)
    }

    /// Parses [`SealState::to_detail`].
    pub fn from_detail(s: &str) -> Option<Self> {
        let mut generation = None;
        let mut digest = None;
        for part in s.split_whitespace() {
            match part.split_once('=') {
                Some(("generation", g)) => generation = g.parse().ok(),
                Some(("digest", d))
                    if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    digest = Some(d.to_ascii_lowercase())
                }
                _ => {}
            }
        }
        Some(Self {
            generation: generation?,
            digest: digest?,
        })
    }
}

/// The manifest as of the store MAC it was verified under.
struct Known {
    store_mac: Vec<u8>,
    /// The generation that store MAC covers.
    generation: u64,
    /// (table, primary key as JSON text) -> row MAC in hex.
    rows: HashMap<(String, String), String>,
}

/// The subkeys of a [`StoreKey`] and the store's id, once the store is open.
pub(crate) struct Sealer {
    mac_key: Zeroizing<[u8; 32]>,
    enc_key: SecretBytes,
    store_id: Vec<u8>,
    known: RefCell<Option<Known>>,
    /// The highest generation this handle verified or was told of: a store found below it
    /// was replaced by an older copy.
    floor: Cell<u64>,
}

impl Sealer {
    /// Derives the subkeys; `store_id` is filled in by [`Sealer::open`].
    fn derive(key: &StoreKey) -> Result<Self, PolicyError> {
        let hk = hkdf::Hkdf::<Sha256>::new(None, &key.0[..]);
        let mut mac_key = Zeroizing::new([0u8; 32]);
        let mut enc_key = Zeroizing::new([0u8; 32]);
        hk.expand(MAC_INFO, &mut mac_key[..])
            .and_then(|()| hk.expand(SECRETS_INFO, &mut enc_key[..]))
            .map_err(|_| PolicyError::Store("deriving the identity.db keys".into()))?;
        Ok(Self {
            mac_key,
            enc_key: SecretBytes::new(enc_key.to_vec()),
            store_id: Vec::new(),
            known: RefCell::new(None),
            floor: Cell::new(0),
        })
    }

    /// Runs `f` on the manifest the current store MAC covers, reloading and verifying it
    /// when the store MAC changed since the last call (a write, here or by another handle).
    fn with_known<T>(
        &self,
        conn: &Connection,
        f: impl FnOnce(&Known) -> Result<T, PolicyError>,
    ) -> Result<T, PolicyError> {
        let store_mac = meta(conn, "store_mac")?.unwrap_or_default();
        let mut known = self.known.borrow_mut();
        // A cached manifest from before a later generation was seen is stale even when the
        // store MAC matches it again: the store was rolled back to it.
        let fresh = known
            .as_ref()
            .is_some_and(|k| k.store_mac == store_mac && k.generation >= self.floor.get());
        if !fresh {
            let manifest = meta(conn, "manifest")?.unwrap_or_default();
            let generation = generation(conn)?;
            if !bool::from(
                self.store_mac(&manifest, generation)
                    .ct_eq(store_mac.as_slice()),
            ) {
                *known = None;
                return Err(tampered(
                    "the store MAC does not match (its meta table was modified)".into(),
                ));
            }
            if let Err(e) = self.raise_floor(generation.unwrap_or(0)) {
                *known = None;
                return Err(e);
            }
            let entries: Vec<Entry> = serde_json::from_slice(&manifest)
                .map_err(|e| PolicyError::Store(format!("manifest: {e}")))?;
            *known = Some(Known {
                store_mac,
                generation: generation.unwrap_or(0),
                rows: entries
                    .into_iter()
                    .map(|(t, pk, mac)| ((t, pk.to_string()), mac))
                    .collect(),
            });
        }
        match known.as_ref() {
            Some(k) => f(k),
            None => Err(PolicyError::Store("manifest not loaded".into())),
        }
    }

    /// Checks rows read with [`Table::select`] (their columns and MAC): each MAC, and that
    /// each row is the version the store MAC records.
    pub fn check_reads(
        &self,
        conn: &Connection,
        table: &Table,
        rows: &[&(Vec<Value>, Value)],
    ) -> Result<(), PolicyError> {
        for (values, mac) in rows {
            self.check_row(table, values, mac)?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.with_known(conn, |k| {
            for (values, mac) in rows {
                let Value::Blob(mac) = mac else {
                    continue;
                };
                let key = (table.name.to_string(), pk_json(&values[0]).to_string());
                match k.rows.get(&key) {
                    Some(m) if *m == hex::encode(mac) => {}
                    Some(_) => {
                        return Err(tampered(format!(
                            "{} was replaced by another validly sealed version (rolled back)",
                            row_name(table, &values[0])
                        )));
                    }
                    None => {
                        return Err(tampered(format!(
                            "{} is not in the seal (it was deleted before and put back)",
                            row_name(table, &values[0])
                        )));
                    }
                }
            }
            Ok(())
        })
    }

    /// Checks that a lookup by primary key that found nothing is not a deleted row.
    pub fn check_absent(
        &self,
        conn: &Connection,
        table: &Table,
        pk: &Value,
    ) -> Result<(), PolicyError> {
        let key = (table.name.to_string(), pk_json(pk).to_string());
        self.with_known(conn, |k| {
            if k.rows.contains_key(&key) {
                Err(tampered(format!("{} was deleted", row_name(table, pk))))
            } else {
                Ok(())
            }
        })
    }

    /// The primary keys the seal records for `table` (to check a listing is complete).
    pub fn recorded_count(&self, conn: &Connection, table: &Table) -> Result<usize, PolicyError> {
        self.with_known(conn, |k| {
            Ok(k.rows.keys().filter(|(t, _)| t == table.name).count())
        })
    }

    /// The largest integer primary key the seal records for `table`.
    pub fn recorded_max(
        &self,
        conn: &Connection,
        table: &Table,
    ) -> Result<Option<i64>, PolicyError> {
        self.with_known(conn, |k| {
            Ok(k.rows
                .keys()
                .filter(|(t, _)| t == table.name)
                .filter_map(|(_, pk)| pk.parse::<i64>().ok())
                .max())
        })
    }

    /// The AES-256-GCM key for secrets stored in the database.
    pub fn enc_key(&self) -> &SecretBytes {
        &self.enc_key
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // The key is 32 bytes, which HMAC accepts (any length is valid).
        let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(&self.mac_key[..]) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn row_mac(&self, table: &Table, values: &[Value]) -> [u8; 32] {
        let mut buf = Vec::with_capacity(256);
        put_bytes(&mut buf, ROW_DOMAIN);
        put_bytes(&mut buf, &self.store_id);
        put_bytes(&mut buf, table.name.as_bytes());
        buf.extend_from_slice(&(values.len() as u64).to_be_bytes());
        for (c, v) in table.columns.iter().zip(values) {
            put_bytes(&mut buf, c.as_bytes());
            put_value(&mut buf, v);
        }
        let mac = self.mac(&[&buf]);
        zeroize::Zeroize::zeroize(&mut buf);
        mac
    }

    /// Checks one row read with [`Table::select`]: `values` are its columns, `mac` its MAC.
    pub fn check_row(
        &self,
        table: &Table,
        values: &[Value],
        mac: &Value,
    ) -> Result<(), PolicyError> {
        let Value::Blob(stored) = mac else {
            return Err(tampered(format!(
                "{} has no MAC",
                row_name(table, &values[0])
            )));
        };
        let ok: bool = self.row_mac(table, values).ct_eq(stored.as_slice()).into();
        if ok {
            Ok(())
        } else {
            Err(tampered(format!(
                "{} does not match its MAC",
                row_name(table, &values[0])
            )))
        }
    }

    fn key_check(&self) -> [u8; 32] {
        self.mac(&[KEY_CHECK_DOMAIN, &self.store_id])
    }

    /// The store MAC over the manifest; with a generation (v2) it covers that too.
    fn store_mac(&self, manifest: &[u8], generation: Option<u64>) -> [u8; 32] {
        let mut head = Vec::new();
        put_bytes(&mut head, &self.store_id);
        match generation {
            None => self.mac(&[STORE_DOMAIN, &head, manifest]),
            Some(g) => {
                head.extend_from_slice(&g.to_be_bytes());
                self.mac(&[STORE_DOMAIN_V2, &head, manifest])
            }
        }
    }

    /// Records that the store is at `generation`; one below what this handle saw before was
    /// replaced by an older copy of itself.
    fn raise_floor(&self, generation: u64) -> Result<(), PolicyError> {
        let floor = self.floor.get();
        if generation < floor {
            return Err(tampered(format!(
                "it was replaced by an older copy of itself (generation {generation}, but generation {floor} was seen before)"
            )));
        }
        self.floor.set(generation);
        Ok(())
    }

    /// The store's generation and store MAC digest, after checking the store MAC.
    pub fn state(&self, conn: &Connection) -> Result<SealState, PolicyError> {
        use sha2_11::Digest as _;
        self.with_known(conn, |_| Ok(()))?;
        let mac = meta(conn, "store_mac")?.unwrap_or_default();
        Ok(SealState {
            generation: generation(conn)?.unwrap_or(0),
            digest: hex::encode(Sha256::digest(&mac)),
        })
    }

    /// Checks the store is not older than `recorded` (kept outside the file) and remembers
    /// that generation as the floor.
    pub fn check_not_older(
        &self,
        conn: &Connection,
        recorded: &SealState,
    ) -> Result<(), PolicyError> {
        let now = self.state(conn)?;
        if now.generation < recorded.generation {
            return Err(tampered(format!(
                "it was replaced by an older copy of itself (generation {}, but generation {} was recorded)",
                now.generation, recorded.generation
            )));
        }
        if now.generation == recorded.generation && now.digest != recorded.digest {
            return Err(tampered(format!(
                "generation {} is not the one recorded (its store MAC differs)",
                now.generation
            )));
        }
        self.floor.set(self.floor.get().max(recorded.generation));
        Ok(())
    }

    /// Reads every sealed row, checks each row MAC when `check` is set (else recomputes it
    /// and updates rows whose MAC differs), and returns the manifest.
    fn walk(&self, conn: &Connection, check: bool) -> Result<Vec<u8>, PolicyError> {
        let mut entries: Vec<Entry> = Vec::new();
        for t in TABLES {
            let n = t.columns.len();
            let mut st = conn
                .prepare(&format!("{} ORDER BY {}", t.select(), t.pk()))
                .map_err(db)?;
            let rows = st
                .query_map([], |r| {
                    let values = (0..n)
                        .map(|i| r.get::<_, Value>(i))
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok((values, r.get::<_, Value>(n)?))
                })
                .map_err(db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db)?;
            for (values, mac) in rows {
                let mac = if check {
                    self.check_row(t, &values, &mac)?;
                    match mac {
                        Value::Blob(b) => b,
                        _ => Vec::new(),
                    }
                } else {
                    let fresh = self.row_mac(t, &values);
                    let same = matches!(&mac, Value::Blob(b) if b.as_slice() == fresh.as_slice());
                    if !same {
                        conn.execute(
                            &format!("UPDATE {} SET mac = ?1 WHERE {} = ?2", t.name, t.pk()),
                            rusqlite::params![fresh.to_vec(), values[0]],
                        )
                        .map_err(db)?;
                    }
                    fresh.to_vec()
                };
                entries.push((t.name.to_string(), pk_json(&values[0]), hex::encode(mac)));
            }
        }
        serde_json::to_vec(&entries).map_err(|e| PolicyError::Store(format!("manifest: {e}")))
    }

    /// Verifies the key, every row MAC and the store MAC.
    pub fn verify_all(&self, conn: &Connection) -> Result<(), PolicyError> {
        let stored_check = meta(conn, "key_check")?;
        let key_ok = stored_check
            .as_deref()
            .is_some_and(|c| bool::from(self.key_check().ct_eq(c)));
        if !key_ok {
            return Err(tampered(
                "it is sealed with a different key (or its seal was modified)".into(),
            ));
        }
        let manifest = self.walk(conn, true)?;
        let stored_mac = meta(conn, "store_mac")?.unwrap_or_default();
        let generation = generation(conn)?;
        if bool::from(
            self.store_mac(&manifest, generation)
                .ct_eq(stored_mac.as_slice()),
        ) {
            return self.raise_floor(generation.unwrap_or(0));
        }
        // Name what differs, if the recorded manifest is authentic.
        let recorded = meta(conn, "manifest")?.unwrap_or_default();
        if !bool::from(
            self.store_mac(&recorded, generation)
                .ct_eq(stored_mac.as_slice()),
        ) {
            return Err(tampered(
                "the store MAC does not match (its meta table was modified)".into(),
            ));
        }
        Err(tampered(diff(&recorded, &manifest)))
    }

    /// Recomputes the row MACs that changed and the store MAC, and increments the
    /// generation, to at least `at_least` (inside the caller's transaction, after its
    /// writes; the caller verified the store first).
    pub fn reseal(&self, conn: &Connection, at_least: u64) -> Result<(), PolicyError> {
        let manifest = self.walk(conn, false)?;
        let next = generation(conn)?
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| PolicyError::Store("the store generation overflowed".into()))?
            .max(at_least);
        let mac = self.store_mac(&manifest, Some(next));
        set_meta(conn, "manifest", &manifest)?;
        set_meta(conn, "generation", &next.to_be_bytes())?;
        set_meta(conn, "store_mac", &mac)?;
        // Raised once the caller commits; a rollback leaves the store where it was, and a
        // floor above it would refuse it.
        Ok(())
    }

    /// After a committed write: the store is at least at this generation now.
    pub fn committed(&self, conn: &Connection) -> Result<(), PolicyError> {
        self.raise_floor(generation(conn)?.unwrap_or(0))
    }

    /// Opens the seal of a store: seals it first if it never was (in one transaction), then
    /// verifies it. `must_exist` refuses an unsealed store.
    pub fn open(conn: &Connection, key: &StoreKey, must_exist: bool) -> Result<Self, PolicyError> {
        let mut sealer = Self::derive(key)?;
        if !is_sealed(conn)? {
            if must_exist {
                return Err(tampered(
                    "it is not sealed, but a server sealed it before (stripped or replaced)".into(),
                ));
            }
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(db)?;
            // Another process may have sealed it meanwhile.
            if !is_sealed(&tx)? {
                refuse_stripped_seal(&tx)?;
                let mut id = [0u8; 16];
                rand::fill(&mut id[..]);
                sealer.store_id = id.to_vec();
                set_meta(&tx, "store_id", &sealer.store_id)?;
                set_meta(&tx, "key_check", &sealer.key_check())?;
                sealer.reseal(&tx, 0)?;
                tx.execute("INSERT INTO meta (name, value) VALUES ('sealed', 1)", [])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
        }
        sealer.store_id = meta(conn, "store_id")?.ok_or_else(|| {
            tampered("it is sealed but has no store id (its meta table was modified)".into())
        })?;
        sealer.verify_all(conn)?;
        Ok(sealer)
    }
}

/// An unsealed store in which something carries a MAC was sealed before and had its seal
/// marker removed: sealing it again would bless whatever was changed meanwhile.
fn refuse_stripped_seal(conn: &Connection) -> Result<(), PolicyError> {
    let meta_rows: i64 = conn
        .query_row("SELECT count(*) FROM meta", [], |r| r.get(0))
        .map_err(db)?;
    let mut macs = 0i64;
    for t in TABLES {
        macs += conn
            .query_row(
                &format!("SELECT count(*) FROM {} WHERE mac IS NOT NULL", t.name),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db)?;
    }
    if meta_rows > 0 || macs > 0 {
        return Err(tampered(
            "its rows carry MACs but its seal marker was removed".into(),
        ));
    }
    Ok(())
}

/// Whether a server sealed the store.
pub(crate) fn is_sealed(conn: &Connection) -> Result<bool, PolicyError> {
    let has_meta: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    Ok(has_meta > 0 && meta(conn, "sealed")?.is_some())
}

fn meta(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>, PolicyError> {
    use rusqlite::OptionalExtension;
    let v: Option<Value> = conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::Blob(b)) => Some(b),
        Some(Value::Text(s)) => Some(s.into_bytes()),
        Some(Value::Integer(i)) => Some(i.to_string().into_bytes()),
        Some(Value::Real(r)) => Some(r.to_string().into_bytes()),
    })
}

/// The store's generation: `None` for a store sealed before generations existed.
fn generation(conn: &Connection) -> Result<Option<u64>, PolicyError> {
    match meta(conn, "generation")? {
        None => Ok(None),
        Some(b) => b
            .try_into()
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|_| {
                tampered("its generation is not 8 bytes (its meta table was modified)".into())
            }),
    }
}

fn set_meta(conn: &Connection, name: &str, value: &[u8]) -> Result<(), PolicyError> {
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        rusqlite::params![name, value],
    )
    .map_err(db)?;
    Ok(())
}

/// Names the rows that differ between the recorded (authentic) manifest and the current one.
fn diff(recorded: &[u8], current: &[u8]) -> String {
    let parse = |b: &[u8]| -> BTreeMap<String, String> {
        serde_json::from_slice::<Vec<Entry>>(b)
            .unwrap_or_default()
            .into_iter()
            .map(|(t, pk, mac)| (json_row_name(&t, &pk), mac))
            .collect()
    };
    let (old, new) = (parse(recorded), parse(current));
    let mut out = Vec::new();
    for (row, mac) in &old {
        match new.get(row) {
            None => out.push(format!("{row} was deleted")),
            Some(m) if m != mac => out.push(format!(
                "{row} was replaced by another validly sealed version (rolled back)"
            )),
            Some(_) => {}
        }
    }
    for row in new.keys().filter(|r| !old.contains_key(*r)) {
        out.push(format!("{row} was added"));
    }
    if out.is_empty() {
        "the store MAC does not match its rows".into()
    } else {
        out.join("; ")
    }
}
