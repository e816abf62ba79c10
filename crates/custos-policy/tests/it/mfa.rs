//! TOTP step-up: the RFC 6238 generator, enrolment, the window, replay, reset.

use custos_policy::mfa::totp_code;
use custos_policy::{Identities, MfaStatus, PolicyError, StoreKey};

/// A multiple of 30: step boundaries are at T0 + 30k.
const T0: i64 = 1_800_000_000;

fn key() -> StoreKey {
    StoreKey::from_bytes([7; 32])
}

fn store() -> (tempfile::TempDir, Identities) {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open_sealed(dir.path(), &key()).unwrap();
    ids.add_user("root", "security_admin", "root", 1).unwrap();
    ids.add_user("sam", "security_admin", "root", 1).unwrap();
    (dir, ids)
}

fn code(secret: &str, at: i64) -> String {
    totp_code(secret, 6, u64::try_from(at).unwrap()).unwrap()
}

#[test]
fn rfc6238_sha1_vectors() {
    // The seed "12345678901234567890" in base32.
    let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let vectors = include_str!("vectors/rfc6238-sha1.txt");
    let mut n = 0;
    for line in vectors
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (t, expected) = line.split_once(' ').unwrap();
        let t: u64 = t.parse().unwrap();
        assert_eq!(totp_code(seed, 8, t).unwrap(), expected, "T = {t}");
        // The 6-digit code is the low six digits of the same value.
        assert_eq!(totp_code(seed, 6, t).unwrap(), expected[2..], "T = {t}");
        n += 1;
    }
    assert_eq!(n, 6);
    assert!(totp_code("not base32!", 6, 0).is_err());
}

#[test]
fn enrol_confirm_verify() {
    let (_dir, ids) = store();
    assert_eq!(
        ids.mfa_status("sam").unwrap(),
        MfaStatus {
            enrolled: false,
            confirmed: false,
            confirmed_ns: None
        }
    );
    assert!(matches!(
        ids.mfa_verify("sam", "123456", T0),
        Err(PolicyError::MfaNotEnrolled)
    ));
    assert!(matches!(
        ids.mfa_confirm("sam", "123456", T0),
        Err(PolicyError::MfaNotEnrolled)
    ));

    let e = ids.mfa_enroll("sam", 5, None).unwrap();
    let secret = e.secret_base32().to_string();
    assert_eq!(secret.len(), 32, "20 bytes in base32");
    assert_eq!(
        e.otpauth_uri(),
        format!(
            "otpauth://totp/custos:sam?secret={secret}&issuer=custos&algorithm=SHA1&digits=6&period=30"
        )
    );
    let status = ids.mfa_status("sam").unwrap();
    assert!(status.enrolled && !status.confirmed);
    // An unconfirmed enrolment does not verify.
    assert!(matches!(
        ids.mfa_verify("sam", &code(&secret, T0), T0),
        Err(PolicyError::MfaNotEnrolled)
    ));
    // Enrolling again before confirming replaces the secret.
    let e = ids.mfa_enroll("sam", 6, None).unwrap();
    assert_ne!(e.secret_base32(), secret);
    let secret = e.secret_base32().to_string();

    let wrong = {
        let c = code(&secret, T0);
        let d = (c.as_bytes()[5] - b'0' + 1) % 10;
        format!("{}{d}", &c[..5])
    };
    let err = ids.mfa_confirm("sam", &wrong, T0).unwrap_err();
    assert!(matches!(err, PolicyError::MfaInvalid), "{err:?}");
    assert!(!err.to_string().contains(&wrong));
    ids.mfa_confirm("sam", &code(&secret, T0), T0).unwrap();
    let status = ids.mfa_status("sam").unwrap();
    assert!(status.confirmed);
    assert_eq!(status.confirmed_ns, Some(T0 * 1_000_000_000));

    // The code that confirmed is used up.
    let c0 = code(&secret, T0);
    let err = ids.mfa_verify("sam", &c0, T0).unwrap_err();
    assert!(matches!(err, PolicyError::MfaReplayed), "{err:?}");
    assert!(!err.to_string().contains(&c0));

    // Next step: accepted once, then a replay.
    let c1 = code(&secret, T0 + 30);
    ids.mfa_verify("sam", &c1, T0 + 30).unwrap();
    assert!(matches!(
        ids.mfa_verify("sam", &c1, T0 + 30),
        Err(PolicyError::MfaReplayed)
    ));

    // At step 5: two steps either side are refused as wrong/stale...
    let now = T0 + 150;
    for off in [-60, 60] {
        assert!(matches!(
            ids.mfa_verify("sam", &code(&secret, now + off), now),
            Err(PolicyError::MfaInvalid)
        ));
    }
    // ...one step ahead is accepted (whitespace trimmed)...
    ids.mfa_verify("sam", &format!(" {} \n", code(&secret, now + 30)), now)
        .unwrap();
    // ...and after it, the current step's code is older than one used: refused.
    assert!(matches!(
        ids.mfa_verify("sam", &code(&secret, now), now),
        Err(PolicyError::MfaReplayed)
    ));
    // One step behind is accepted too.
    let now = T0 + 300;
    ids.mfa_verify("sam", &code(&secret, now - 30), now)
        .unwrap();
    ids.mfa_verify("sam", &code(&secret, now), now).unwrap();

    // Not six ASCII digits: invalid, whatever the rest.
    for bad in [
        "",
        "12345",
        "1234567",
        "12a456",
        "12 456",
        "１２３４５６",
        "+12345",
    ] {
        assert!(
            matches!(
                ids.mfa_verify("sam", bad, now + 30),
                Err(PolicyError::MfaInvalid)
            ),
            "{bad:?}"
        );
    }

    // A confirmed enrolment is not replaced, and its owner cannot reset it.
    assert!(matches!(
        ids.mfa_enroll("sam", 7, None),
        Err(PolicyError::Invalid(_))
    ));
    assert!(matches!(
        ids.mfa_reset("sam", "sam", 8),
        Err(PolicyError::Invalid(_))
    ));
    ids.mfa_reset("sam", "root", 8).unwrap();
    assert!(!ids.mfa_status("sam").unwrap().enrolled);
    assert!(matches!(
        ids.mfa_verify("sam", &code(&secret, T0 + 600), T0 + 600),
        Err(PolicyError::MfaNotEnrolled)
    ));
    assert!(ids.mfa_reset("sam", "root", 9).is_err());
    let again = ids.mfa_enroll("sam", 10, None).unwrap();
    assert_ne!(again.secret_base32(), secret);
}

#[test]
fn the_secret_is_not_in_the_file() {
    let (dir, ids) = store();
    let e = ids.mfa_enroll("sam", 1, None).unwrap();
    let raw = totp_rs::Secret::try_from_base32(e.secret_base32())
        .unwrap()
        .as_bytes()
        .to_vec();
    assert_eq!(raw.len(), 20);
    ids.mfa_confirm("sam", &code(e.secret_base32(), T0), T0)
        .unwrap();
    for file in ["identity.db", "identity.db-wal"] {
        let Ok(bytes) = std::fs::read(dir.path().join(file)) else {
            continue;
        };
        let b32 = e.secret_base32().as_bytes();
        assert!(!bytes.windows(b32.len()).any(|w| w == b32), "{file}");
        assert!(!bytes.windows(raw.len()).any(|w| w == raw), "{file}");
    }
    // Another store key (say, the MAC key of a copied store) opens nothing.
    drop(ids);
    assert!(matches!(
        Identities::open_sealed(dir.path(), &StoreKey::from_bytes([8; 32])),
        Err(PolicyError::Tampered(_))
    ));
}

#[test]
fn an_encrypted_secret_moved_to_another_user_does_not_decrypt() {
    let (dir, ids) = store();
    let e = ids.mfa_enroll("sam", 1, None).unwrap();
    ids.mfa_confirm("sam", &code(e.secret_base32(), T0), T0)
        .unwrap();
    let f = ids.mfa_enroll("root", 1, None).unwrap();
    ids.mfa_confirm("root", &code(f.secret_base32(), T0), T0)
        .unwrap();
    drop(ids);
    // Only the row MAC stops the copy at open; the associated data would stop it too.
    let conn = rusqlite::Connection::open(dir.path().join("identity.db")).unwrap();
    conn.execute(
        "UPDATE mfa SET secret_enc = (SELECT secret_enc FROM mfa WHERE user = 'sam') WHERE user = 'root'",
        [],
    )
    .unwrap();
    let e = Identities::open_sealed(dir.path(), &key()).unwrap_err();
    assert!(e.to_string().contains("mfa row \"root\""), "{e}");
}

#[test]
fn removing_a_user_removes_the_enrolment() {
    let (_dir, ids) = store();
    let e = ids.mfa_enroll("sam", 1, None).unwrap();
    ids.mfa_confirm("sam", &code(e.secret_base32(), T0), T0)
        .unwrap();
    ids.remove_user("sam", "root", 2).unwrap();
    ids.add_user("sam", "security_admin", "root", 3).unwrap();
    assert!(!ids.mfa_status("sam").unwrap().enrolled);
    assert!(ids.mfa_enroll("nobody", 1, None).is_err());
}

#[test]
fn mfa_needs_the_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open(dir.path()).unwrap();
    ids.add_user("sam", "security_admin", "sam", 1).unwrap();
    let checks = [
        ids.mfa_enroll("sam", 1, None).map(|_| ()),
        ids.mfa_confirm("sam", "123456", T0),
        ids.mfa_verify("sam", "123456", T0),
        ids.mfa_status("sam").map(|_| ()),
        ids.mfa_reset("sam", "root", 1),
    ];
    for r in checks {
        match r {
            Err(PolicyError::Invalid(m)) => assert!(m.contains("keystore"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_enrolment_never_prints() {
    let (_dir, ids) = store();
    let e = ids.mfa_enroll("sam", 1, None).unwrap();
    let s = format!("{e:?}");
    assert_eq!(s, "MfaEnrollment([redacted])");
    assert!(!s.contains(e.secret_base32()));
}

#[test]
fn an_enrolment_ticket_is_one_time_bound_to_its_user_and_expires() {
    let (dir, ids) = store();
    let now_ns = T0 * 1_000_000_000;
    // Not for oneself (unless the caller allows it: the local keystore holder).
    let m = ids
        .mfa_ticket_issue("sam", "sam", 24, now_ns, false)
        .unwrap_err()
        .to_string();
    assert!(m.contains("another admin"), "{m}");
    assert!(ids.mfa_ticket_issue("sam", "sam", 24, now_ns, true).is_ok());
    assert!(
        ids.mfa_ticket_issue("sam", "root", 0, now_ns, false)
            .is_err()
    );
    assert!(
        ids.mfa_ticket_issue("sam", "root", 721, now_ns, false)
            .is_err()
    );
    assert!(
        ids.mfa_ticket_issue("nobody", "root", 1, now_ns, false)
            .is_err()
    );
    // The newest ticket replaces the earlier one.
    let old = ids
        .mfa_ticket_issue("sam", "root", 24, now_ns, false)
        .unwrap();
    let t = ids
        .mfa_ticket_issue("sam", "root", 24, now_ns, false)
        .unwrap();
    assert_eq!(t.expires_s, T0 + 24 * 3600);
    assert!(t.expose().starts_with("cmt_") && t.expose().len() == 44);
    assert_eq!(format!("{t:?}"), "MfaTicket([redacted])");
    // Only a hash is stored.
    let stored: Vec<u8> = rusqlite::Connection::open(dir.path().join("identity.db"))
        .unwrap()
        .query_row(
            "SELECT ticket_hash FROM mfa_tickets WHERE user = 'sam'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&t.expose()[4..]));
    let wrong = |r: Result<custos_policy::MfaEnrollment, PolicyError>| match r {
        Err(PolicyError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let m = wrong(ids.mfa_enroll("sam", now_ns, Some(old.expose())));
    assert!(m.contains("not the one issued"), "{m}");
    // Another user's ticket is not theirs.
    let root_t = ids
        .mfa_ticket_issue("root", "sam", 24, now_ns, false)
        .unwrap();
    let m = wrong(ids.mfa_enroll("sam", now_ns, Some(root_t.expose())));
    assert!(m.contains("not the one issued"), "{m}");
    // Expired.
    let late = (T0 + 24 * 3600) * 1_000_000_000;
    let m = wrong(ids.mfa_enroll("sam", late, Some(t.expose())));
    assert!(m.contains("expired"), "{m}");
    // Failed attempts used nothing up: the right ticket in time enrols, once.
    let e = ids.mfa_enroll("sam", now_ns, Some(&format!(" {}\n", t.expose())));
    assert!(e.is_ok(), "{e:?}");
    assert!(ids.mfa_status("sam").unwrap().enrolled);
    let m = wrong(ids.mfa_enroll("sam", now_ns, Some(t.expose())));
    assert!(m.contains("none was issued, or it was used"), "{m}");
    // A ticket row deleted behind the store's back is caught, not read as "none".
    rusqlite::Connection::open(dir.path().join("identity.db"))
        .unwrap()
        .execute("DELETE FROM mfa_tickets WHERE user = 'root'", [])
        .unwrap();
    assert!(matches!(
        ids.mfa_enroll("root", now_ns, Some(root_t.expose())),
        Err(PolicyError::Tampered(_))
    ));
}
