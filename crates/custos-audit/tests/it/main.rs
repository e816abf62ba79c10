//! The audit log against every kind of tampering.
#![allow(clippy::unwrap_used, missing_docs)]

mod recovery;
mod retention;

use std::path::Path;

use custos_audit::{AuditError, AuditLog, Event, merkle, verify};
use ed25519_dalek::SigningKey;

pub fn event(i: u64) -> Event {
    Event {
        time_ns: 1_700_000_000_000_000_000 + i as i64,
        principal: format!("user{}", i % 3),
        action: "run_pipeline".into(),
        resource: "pipeline:customers".into(),
        outcome: "succeeded".into(),
        error_code: None,
        host: "h".into(),
        pid: 42,
        policies: vec!["data_engineer.run".into()],
        run_id: Some(format!("run-{i}")),
        rows: Some(i * 10),
        detail: None,
    }
}

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// A log of `n` records in small segments, with checkpoints after 5 and after all.
pub fn log(dir: &Path, n: u64) {
    let mut l = AuditLog::open(dir, 600).unwrap();
    for i in 0..n {
        l.append(&event(i)).unwrap();
        if i == 4 {
            l.checkpoint(&key(), 5).unwrap();
        }
    }
    l.checkpoint(&key(), 6).unwrap();
}

pub fn lines(dir: &Path) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("segment-"))
        .collect();
    segs.sort();
    segs.into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t.lines().map(str::to_string).collect())
        })
        .collect()
}

pub fn write(path: &Path, lines: &[String]) {
    let mut t = lines.join("\n");
    if !lines.is_empty() {
        t.push('\n');
    }
    std::fs::write(path, t).unwrap();
}

#[test]
fn an_untouched_log_verifies_across_segments_and_reopens() {
    let d = tempfile::tempdir().unwrap();
    log(d.path(), 12);
    assert!(lines(d.path()).len() > 2, "rotated into several segments");
    let r = verify(d.path(), &key().verifying_key()).unwrap();
    assert_eq!((r.records, r.checkpoints), (12, 2));
    let mut l = AuditLog::open(d.path(), 600).unwrap();
    assert_eq!(l.len(), 12);
    let t = custos_audit::tail(d.path(), 5).unwrap();
    assert_eq!(t, (7..12).map(|i| (i, event(i))).collect::<Vec<_>>());
    assert_eq!(custos_audit::tail(d.path(), 100).unwrap().len(), 12);
    assert!(custos_audit::tail(d.path(), 0).unwrap().is_empty());
    l.append(&event(12)).unwrap();
    l.sync().unwrap();
    assert_eq!(
        verify(d.path(), &key().verifying_key()).unwrap().records,
        13
    );
}

#[test]
fn last_of_finds_the_newest_record_of_an_action_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let mut l = AuditLog::open(d.path(), 600).unwrap();
    let mark = |i: u64, detail: &str| Event {
        action: "identity_seal".into(),
        detail: Some(detail.into()),
        ..event(i)
    };
    l.append(&mark(0, "first")).unwrap();
    for i in 1..8 {
        l.append(&event(i)).unwrap();
    }
    l.append(&mark(8, "second")).unwrap();
    // A record that only mentions the action elsewhere is not one.
    l.append(&Event {
        detail: Some("\"action\":\"identity_seal\"".into()),
        ..event(9)
    })
    .unwrap();
    for i in 10..14 {
        l.append(&event(i)).unwrap();
    }
    l.sync().unwrap();
    assert!(lines(d.path()).len() > 2, "rotated into several segments");
    let (pos, e) = custos_audit::last_of(d.path(), "identity_seal")
        .unwrap()
        .unwrap();
    assert_eq!((pos, e.detail.as_deref()), (8, Some("second")));
    assert_eq!(
        custos_audit::last_of(d.path(), "server_start").unwrap(),
        None
    );
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        custos_audit::last_of(empty.path(), "identity_seal").unwrap(),
        None
    );
}

#[test]
fn modification_deletion_insertion_and_reordering_name_the_position() {
    let d = tempfile::tempdir().unwrap();
    log(d.path(), 12);
    let segs = lines(d.path());
    let (p, orig) = segs[1].clone();
    let first = segs[0].1.len() as u64;
    let vk = key().verifying_key();

    let mut m = orig.clone();
    m[0] = m[0].replace("user", "admin");
    write(&p, &m);
    assert!(matches!(verify(d.path(), &vk), Err(AuditError::Modified(x)) if x == first));

    let mut del = orig.clone();
    del.remove(0);
    write(&p, &del);
    assert!(
        matches!(verify(d.path(), &vk), Err(AuditError::Sequence { position, .. }) if position == first)
    );

    let mut ins = orig.clone();
    ins.insert(1, orig[0].clone());
    write(&p, &ins);
    assert!(
        matches!(verify(d.path(), &vk), Err(AuditError::Sequence { position, .. }) if position == first + 1)
    );

    if orig.len() > 1 {
        let mut re = orig.clone();
        re.swap(0, 1);
        write(&p, &re);
        assert!(matches!(
            verify(d.path(), &vk),
            Err(AuditError::Sequence { .. })
        ));
    }
    write(&p, &orig);
    assert!(verify(d.path(), &vk).is_ok());
}

#[test]
fn truncation_torn_records_and_forged_checkpoints_are_caught() {
    let d = tempfile::tempdir().unwrap();
    log(d.path(), 12);
    let vk = key().verifying_key();
    let segs = lines(d.path());
    let (last, orig) = segs.last().cloned().unwrap();

    // Truncation: drop the last record; the last checkpoint still covers 12.
    write(&last, &orig[..orig.len() - 1]);
    assert!(matches!(
        verify(d.path(), &vk),
        Err(AuditError::Truncated {
            size: 12,
            actual: 11,
            ..
        })
    ));

    // A torn last line (crash mid-write) is reported, not accepted or dropped.
    let mut t = orig.join("\n");
    t.push('\n');
    t.push_str(&orig[0][..orig[0].len() / 2]);
    std::fs::write(&last, t).unwrap();
    assert!(matches!(verify(d.path(), &vk), Err(AuditError::Torn(12))));
    write(&last, &orig);

    // A checkpoint signed by another key, or altered, is forged.
    let cp = d.path().join("checkpoints.jsonl");
    let cps = std::fs::read_to_string(&cp).unwrap();
    let other = SigningKey::from_bytes(&[9u8; 32]);
    assert!(matches!(
        verify(d.path(), &other.verifying_key()),
        Err(AuditError::Forged(0))
    ));
    std::fs::write(&cp, cps.replacen("\"size\":5", "\"size\":4", 1)).unwrap();
    assert!(matches!(verify(d.path(), &vk), Err(AuditError::Forged(0))));
    std::fs::write(&cp, &cps).unwrap();

    // Rewriting history consistently (chain recomputed) still breaks the signed root.
    let l2 = tempfile::tempdir().unwrap();
    let mut rewritten = AuditLog::open(l2.path(), 600).unwrap();
    for i in 0..12 {
        let mut e = event(i);
        if i == 2 {
            e.outcome = "denied".into();
        }
        rewritten.append(&e).unwrap();
    }
    rewritten.sync().unwrap();
    std::fs::copy(&cp, l2.path().join("checkpoints.jsonl")).unwrap();
    assert!(matches!(
        verify(l2.path(), &vk),
        Err(AuditError::Mismatch(0))
    ));
}

#[test]
fn an_exported_checkpoint_proves_the_log_only_grew() {
    let d = tempfile::tempdir().unwrap();
    let mut l = AuditLog::open(d.path(), 1 << 20).unwrap();
    for i in 0..7 {
        l.append(&event(i)).unwrap();
    }
    let old = l.checkpoint(&key(), 1).unwrap();
    for i in 7..30 {
        l.append(&event(i)).unwrap();
    }
    let new = l.checkpoint(&key(), 2).unwrap();
    let proof = l.consistency_proof(old.size).unwrap();
    let h = |s: &str| -> merkle::Hash { hex::decode(s).unwrap().try_into().unwrap() };
    assert!(old.verify_signature(&key().verifying_key()));
    assert!(merkle::verify_consistency(
        old.size,
        new.size,
        &h(&old.root),
        &h(&new.root),
        &proof
    ));
    // A forked history does not prove consistent with the exported checkpoint.
    let f = tempfile::tempdir().unwrap();
    let mut fork = AuditLog::open(f.path(), 1 << 20).unwrap();
    for i in 0..30 {
        let mut e = event(i);
        if i == 3 {
            e.principal = "mallory".into();
        }
        fork.append(&e).unwrap();
    }
    assert!(!merkle::verify_consistency(
        old.size,
        30,
        &h(&old.root),
        &fork.root(),
        &fork.consistency_proof(old.size).unwrap()
    ));
}
