//! The sealed identity store: sealing, verification, and tampering through the file.

use std::path::Path;

use custos_policy::{Identities, PolicyError, SealState, StoreKey};
use rusqlite::Connection;

const NOW: i64 = 1_800_000_000;
const NOW_NS: i64 = NOW * 1_000_000_000;

fn key(b: u8) -> StoreKey {
    StoreKey::from_bytes([b; 32])
}

fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join("identity.db")).unwrap()
}

/// A store with two admins, an engineer and one grant to her (id 1), sealed with `key(k)`.
fn sealed_store(k: u8) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open_sealed(dir.path(), &key(k)).unwrap();
    ids.add_user("root", "security_admin", "root", 1).unwrap();
    ids.add_user("sam", "security_admin", "sam", 1).unwrap();
    ids.add_user("eve", "data_engineer", "root", 1).unwrap();
    ids.add_grant(
        "eve",
        "decrypt_column",
        "pipeline:p",
        NOW + 3600,
        "ticket 7",
        "sam",
        NOW_NS,
    )
    .unwrap();
    dir
}

fn tampered(r: Result<impl std::fmt::Debug, PolicyError>) -> String {
    match r {
        Err(PolicyError::Tampered(m)) => m,
        other => panic!("expected Tampered, got {other:?}"),
    }
}

#[test]
fn an_existing_store_is_sealed_on_first_keyed_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ids = Identities::open(dir.path()).unwrap();
        assert!(!ids.is_sealed());
        ids.add_user("sam", "security_admin", "sam", 1).unwrap();
        ids.add_user("eve", "data_engineer", "root", 1).unwrap();
        ids.add_grant("eve", "run_pipeline", "*", NOW + 60, "x", "sam", NOW_NS)
            .unwrap();
        ids.set_setting("audit.retention_days", "30", "sam", 1)
            .unwrap();
    }
    let ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    assert!(ids.is_sealed());
    assert_eq!(ids.users().unwrap().len(), 2);
    assert_eq!(ids.active_grants("eve", NOW).unwrap().len(), 1);
    assert_eq!(
        ids.setting("audit.retention_days").unwrap().unwrap().value,
        "30"
    );
    // Every row now carries a MAC, and the store is marked sealed.
    let conn = raw(dir.path());
    for t in ["users", "grants", "settings"] {
        let unsealed: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {t} WHERE mac IS NULL"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unsealed, 0, "{t}");
    }
    let sealed: i64 = conn
        .query_row("SELECT value FROM meta WHERE name = 'sealed'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(sealed, 1);
    drop(ids);

    // Writes keep it verifiable; reopening verifies.
    let ids = Identities::open_sealed_existing(dir.path(), &key(1)).unwrap();
    ids.set_active("eve", false).unwrap();
    ids.rotate_token("sam", "sam", 2).unwrap();
    drop(ids);
    let ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    assert!(!ids.user("eve").unwrap().unwrap().active);

    // The unkeyed (local) open refuses a sealed store, reading and writing nothing.
    let e = Identities::open(dir.path()).unwrap_err();
    assert!(matches!(e, PolicyError::Sealed), "{e:?}");
    assert!(
        e.to_string()
            .contains("identity.db is sealed by a server; open it with the keystore"),
        "{e}"
    );
}

#[test]
fn an_unkeyed_handle_stops_once_a_server_seals_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let local = Identities::open(dir.path()).unwrap();
    local.add_user("sam", "security_admin", "sam", 1).unwrap();
    let _server = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    assert!(matches!(local.user("sam"), Err(PolicyError::Sealed)));
    assert!(matches!(
        local.set_active("sam", false),
        Err(PolicyError::Sealed)
    ));
}

#[test]
fn a_wrong_key_is_detected() {
    let dir = sealed_store(1);
    let m = tampered(Identities::open_sealed(dir.path(), &key(2)));
    assert!(m.contains("different key"), "{m}");
    Identities::open_sealed(dir.path(), &key(1)).unwrap();
}

#[test]
fn a_changed_column_is_detected() {
    let dir = sealed_store(1);
    let ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    raw(dir.path())
        .execute(
            "UPDATE users SET role = 'security_admin' WHERE name = 'eve'",
            [],
        )
        .unwrap();
    // The running server's reads and writes see it...
    let m = tampered(ids.user("eve"));
    assert!(m.contains("users row \"eve\""), "{m}");
    assert!(!m.contains("security_admin"), "never the data: {m}");
    let m = tampered(ids.users());
    assert!(m.contains("users row \"eve\""), "{m}");
    // ...and a write does not bless it by resealing.
    let m = tampered(ids.set_active("sam", false));
    assert!(m.contains("users row \"eve\""), "{m}");
    drop(ids);
    // So does the next open.
    let m = tampered(Identities::open_sealed(dir.path(), &key(1)));
    assert!(m.contains("users row \"eve\""), "{m}");
    assert!(
        PolicyError::Tampered(m)
            .to_string()
            .starts_with("identity.db failed verification: users row")
    );
}

#[test]
fn restoring_an_older_row_with_its_valid_mac_is_detected() {
    let dir = sealed_store(1);
    let ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    let conn = raw(dir.path());
    let old_mac: Vec<u8> = conn
        .query_row("SELECT mac FROM grants WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    ids.revoke_grant(1, "sam", NOW_NS).unwrap();
    assert!(ids.active_grants("eve", NOW).unwrap().is_empty());
    // Un-revoke: the row as it was, MAC and all.
    conn.execute(
        "UPDATE grants SET revoked_ns = NULL, revoked_by = NULL, mac = ?1 WHERE id = 1",
        [&old_mac],
    )
    .unwrap();
    let m = tampered(ids.active_grants("eve", NOW));
    assert!(m.contains("grants row 1"), "{m}");
    assert!(m.contains("rolled back"), "{m}");
    drop(ids);
    let m = tampered(Identities::open_sealed(dir.path(), &key(1)));
    assert!(m.contains("grants row 1"), "{m}");
}

#[test]
fn a_deleted_row_is_detected() {
    let dir = sealed_store(1);
    let ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    let conn = raw(dir.path());
    conn.execute("DELETE FROM grants WHERE id = 1", []).unwrap();
    let m = tampered(ids.grants(None));
    assert!(m.contains("grants"), "{m}");
    conn.execute("DELETE FROM users WHERE name = 'sam'", [])
        .unwrap();
    let m = tampered(ids.user("sam"));
    assert!(m.contains("users row \"sam\" was deleted"), "{m}");
    drop(ids);
    let m = tampered(Identities::open_sealed(dir.path(), &key(1)));
    assert!(m.contains("grants row 1 was deleted"), "{m}");
    assert!(m.contains("users row \"sam\" was deleted"), "{m}");
}

#[test]
fn a_row_inserted_with_a_copied_mac_is_detected() {
    let dir = sealed_store(1);
    raw(dir.path())
        .execute(
            "INSERT INTO users (name, role, active, token_id, token_salt, token_hash, created_ns,
               token_issued_ns, created_by, token_issued_by, mac)
             SELECT 'mallory', role, active, 'aaaaaaaaaaaa', token_salt, token_hash, created_ns,
               token_issued_ns, created_by, token_issued_by, mac FROM users WHERE name = 'sam'",
            [],
        )
        .unwrap();
    let m = tampered(Identities::open_sealed(dir.path(), &key(1)));
    assert!(m.contains("users row \"mallory\""), "{m}");
}

#[test]
fn rows_copied_between_stores_are_detected() {
    // Same layout, different keys: a's row "eve" replaced by b's.
    let a = sealed_store(1);
    let b = sealed_store(2);
    let conn = raw(a.path());
    conn.execute(
        "ATTACH DATABASE ?1 AS b",
        [b.path().join("identity.db").to_str().unwrap()],
    )
    .unwrap();
    conn.execute_batch(
        "DELETE FROM main.users WHERE name = 'eve';
         INSERT INTO main.users SELECT * FROM b.users WHERE name = 'eve';",
    )
    .unwrap();
    conn.execute("DETACH DATABASE b", []).unwrap();
    let m = tampered(Identities::open_sealed(a.path(), &key(1)));
    assert!(m.contains("users row \"eve\""), "{m}");

    // Same key, two stores: each store's id is under its row MACs.
    let c = sealed_store(3);
    let d = sealed_store(3);
    let conn = raw(c.path());
    conn.execute(
        "ATTACH DATABASE ?1 AS d",
        [d.path().join("identity.db").to_str().unwrap()],
    )
    .unwrap();
    conn.execute_batch(
        "DELETE FROM main.grants WHERE id = 1;
         INSERT INTO main.grants SELECT * FROM d.grants WHERE id = 1;",
    )
    .unwrap();
    let m = tampered(Identities::open_sealed(c.path(), &key(3)));
    assert!(m.contains("grants row 1"), "{m}");
}

#[test]
fn removing_the_seal_marker_does_not_unseal() {
    let dir = sealed_store(1);
    raw(dir.path())
        .execute("DELETE FROM meta WHERE name = 'sealed'", [])
        .unwrap();
    // The server neither trusts nor reseals a store whose rows carry MACs.
    let m = tampered(Identities::open_sealed(dir.path(), &key(1)));
    assert!(m.contains("seal marker was removed"), "{m}");
    // Stripped of every trace, it looks like an older store: a server that sealed it
    // before opens with open_sealed_existing and refuses it.
    let conn = raw(dir.path());
    conn.execute_batch(
        "DELETE FROM meta; UPDATE users SET mac = NULL; UPDATE grants SET mac = NULL;",
    )
    .unwrap();
    let m = tampered(Identities::open_sealed_existing(dir.path(), &key(1)));
    assert!(m.contains("not sealed"), "{m}");
}

#[test]
fn a_changed_store_mac_is_detected() {
    let dir = sealed_store(1);
    raw(dir.path())
        .execute(
            "UPDATE meta SET value = zeroblob(32) WHERE name = 'store_mac'",
            [],
        )
        .unwrap();
    let m = tampered(Identities::open_sealed(dir.path(), &key(1)));
    assert!(m.contains("store MAC"), "{m}");
}

/// Replaces every sealed table and the seal of `dir`'s store, in place, by those of the
/// store file `old` (what someone with file access and an old copy can do while the server
/// runs).
fn restore_in_place(dir: &Path, old: &Path) {
    let mut conn = raw(dir);
    conn.execute("ATTACH ?1 AS old", [old.to_str().unwrap()])
        .unwrap();
    let tx = conn.transaction().unwrap();
    for t in [
        "users",
        "grants",
        "mfa",
        "policy_sets",
        "settings",
        "mfa_tickets",
        "meta",
    ] {
        tx.execute(&format!("DELETE FROM main.{t}"), []).unwrap();
        tx.execute(&format!("INSERT INTO main.{t} SELECT * FROM old.{t}"), [])
            .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn every_write_advances_the_generation_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    // Sealing the new store is the first write.
    let first = ids.seal_state().unwrap().unwrap();
    assert_eq!(first.generation, 1);
    assert_eq!(first.digest.len(), 64);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    ids.on_write(Box::new(move |s| sink.lock().unwrap().push(s.clone())));
    ids.add_user("sam", "security_admin", "sam", 1).unwrap();
    ids.set_active("sam", false).unwrap();
    // A write that fails commits nothing and reports nothing.
    assert!(ids.add_user("sam", "analyst", "sam", 1).is_err());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|s| s.generation).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_ne!(seen[0].digest, seen[1].digest);
    assert_eq!(ids.seal_state().unwrap().unwrap(), seen[1]);
    assert_eq!(
        SealState::from_detail(&seen[1].to_detail()),
        Some(seen[1].clone())
    );
    assert_eq!(SealState::from_detail("generation=3"), None);
    // The unkeyed store has no seal state.
    let other = tempfile::tempdir().unwrap();
    assert_eq!(
        Identities::open(other.path())
            .unwrap()
            .seal_state()
            .unwrap(),
        None
    );
}

#[test]
fn a_whole_file_rolled_back_to_an_older_copy_is_detected_against_the_recorded_state() {
    let dir = sealed_store(1);
    let copy = tempfile::tempdir().unwrap();
    let old = copy.path().join("identity.db");
    // Every handle is closed, so the file holds the whole store (no WAL).
    std::fs::copy(dir.path().join("identity.db"), &old).unwrap();
    let recorded = {
        let ids = Identities::open_sealed_existing(dir.path(), &key(1)).unwrap();
        ids.set_active("eve", false).unwrap();
        ids.revoke_grant(1, "sam", NOW_NS).unwrap();
        ids.seal_state().unwrap().unwrap()
    };
    std::fs::copy(&old, dir.path().join("identity.db")).unwrap();
    // Every MAC in the old copy is valid: the file alone does not tell.
    let ids = Identities::open_sealed_existing(dir.path(), &key(1)).unwrap();
    assert!(ids.user("eve").unwrap().unwrap().active);
    // The state kept outside the file does.
    let m = tampered(ids.check_not_older(&recorded));
    assert!(m.contains("older copy of itself"), "{m}");
    assert!(
        m.contains(&format!("generation {} was recorded", recorded.generation)),
        "{m}"
    );
    // The same generation with another store MAC is not the recorded store either.
    let now = ids.seal_state().unwrap().unwrap();
    let forged = SealState {
        generation: now.generation,
        digest: "0".repeat(64),
    };
    let m = tampered(ids.check_not_older(&forged));
    assert!(m.contains("is not the one recorded"), "{m}");
    // A store at or past the recorded state passes.
    ids.check_not_older(&now).unwrap();
}

#[test]
fn a_store_rolled_back_in_place_while_open_is_detected_at_the_next_read() {
    let dir = sealed_store(1);
    let copy = tempfile::tempdir().unwrap();
    let old = copy.path().join("identity.db");
    std::fs::copy(dir.path().join("identity.db"), &old).unwrap();
    let ids = Identities::open_sealed_existing(dir.path(), &key(1)).unwrap();
    ids.set_active("eve", false).unwrap();
    restore_in_place(dir.path(), &old);
    let m = tampered(ids.user("eve"));
    assert!(m.contains("older copy of itself"), "{m}");
    // Writes verify first, so none blesses the old copy.
    let m = tampered(ids.add_user("mallory", "security_admin", "eve", 1));
    assert!(m.contains("older copy of itself"), "{m}");
}

#[test]
fn removing_the_generation_does_not_downgrade_the_seal() {
    let dir = sealed_store(1);
    raw(dir.path())
        .execute("DELETE FROM meta WHERE name = 'generation'", [])
        .unwrap();
    let m = tampered(Identities::open_sealed_existing(dir.path(), &key(1)));
    assert!(m.contains("store MAC"), "{m}");
}

#[test]
fn sign_in_checks_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open_sealed(dir.path(), &key(1)).unwrap();
    let t = ids.add_user("eve", "analyst", "eve", 1).unwrap();
    assert_eq!(ids.authenticate(t.expose()).unwrap().name, "eve");
    raw(dir.path())
        .execute("UPDATE users SET active = 1, role = 'security_admin'", [])
        .unwrap();
    let m = tampered(ids.authenticate(t.expose()));
    assert!(m.contains("users row \"eve\""), "{m}");
}

#[test]
fn the_store_key_never_prints() {
    let k = StoreKey::from_bytes([0x41; 32]);
    let s = format!("{k:?}");
    assert_eq!(s, "StoreKey([redacted])");
}
