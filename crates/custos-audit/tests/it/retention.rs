//! Retention: removing old segments behind an anchor keeps the log verifiable and growing.

use std::path::{Path, PathBuf};

use custos_audit::{AuditError, AuditLog, Event, verify};

use crate::{event, key, lines};

const T0: i64 = 1_700_000_000_000_000_000;

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    lines(dir).into_iter().map(|(p, _)| p).collect()
}

/// The events of the log in `dir`, in order, as written.
fn events(dir: &Path) -> Vec<Event> {
    lines(dir)
        .into_iter()
        .flat_map(|(_, l)| l)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            serde_json::from_value(v["event"].clone()).unwrap()
        })
        .collect()
}

/// Checks the pruned log against a full copy of the same history: equal roots, and every
/// consistency proof either equal or (only below the first kept position) unavailable.
fn matches_full_history(l: &AuditLog, full: &AuditLog) {
    assert_eq!(l.len(), full.len());
    assert_eq!(l.root(), full.root());
    for m in 0..=l.len() {
        match l.consistency_proof(m) {
            Ok(p) => assert_eq!(p, full.consistency_proof(m).unwrap(), "m={m}"),
            Err(AuditError::ProofUnavailable {
                old_size, first, ..
            }) => {
                assert_eq!(old_size, m);
                assert!(m < first, "m={m} first={first}");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(l.consistency_proof(l.len() + 1).is_err());
}

#[test]
fn retention_removes_old_whole_segments_and_the_log_stays_verifiable() {
    let vk = key().verifying_key();
    let d = tempfile::tempdir().unwrap();
    let f = tempfile::tempdir().unwrap();
    let mut l = AuditLog::open(d.path(), 1500).unwrap();
    let mut full = AuditLog::open(f.path(), 1 << 20).unwrap();
    for i in 0..40 {
        l.append(&event(i)).unwrap();
        full.append(&event(i)).unwrap();
        if i % 9 == 8 {
            l.checkpoint(&key(), i as i64).unwrap();
        }
    }
    l.checkpoint(&key(), 40).unwrap();
    let segs_before = segment_files(d.path());
    assert!(segs_before.len() > 4);

    // Nothing is that old: nothing changes.
    assert_eq!(l.apply_retention(1 << 40, T0, "ops", "h").unwrap(), None);
    assert_eq!(l.len(), 40);
    assert!(!d.path().join("anchor.json").exists());

    // Records 0..23 are older than the cutoff: the whole segments among them go.
    let now = T0 + 23 + 1000;
    let r = l.apply_retention(1000, now, "ops", "h").unwrap().unwrap();
    let k = r.removed_to;
    assert_eq!((r.removed_from, r.event_position), (0, 40));
    assert!(k > 0 && k <= 23, "k={k}");
    assert_eq!(l.first(), k);
    assert_eq!(l.len(), 41);
    for (i, p) in segs_before.iter().enumerate() {
        assert_eq!(p.exists(), i >= r.segments, "{}", p.display());
    }
    let remaining = events(d.path());
    assert_eq!(remaining.len() as u64, 41 - k);
    assert_eq!(remaining[0], event(k));
    let ev = remaining.last().unwrap();
    assert_eq!(
        (
            ev.action.as_str(),
            ev.resource.as_str(),
            ev.outcome.as_str()
        ),
        ("audit_retention", "audit", "succeeded")
    );
    assert!(ev.detail.as_deref().unwrap().contains(&format!("0..{k}")));
    full.append(ev).unwrap();
    matches_full_history(&l, &full);

    let anchor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("anchor.json")).unwrap()).unwrap();
    assert_eq!(anchor["first"], k);
    assert_eq!(
        anchor["frontier"].as_array().unwrap().len(),
        k.count_ones() as usize
    );

    let rep = verify(d.path(), &vk).unwrap();
    assert_eq!((rep.records, rep.first, rep.checkpoints), (41, k, 5));
    let t = custos_audit::tail(d.path(), 1000).unwrap();
    assert_eq!(t.len() as u64, 41 - k);
    assert_eq!(t[0], (k, event(k)));
    assert_eq!(t.last().unwrap().0, 40);
    assert_eq!(rep.root, hex::encode(full.root()));

    // Reopening starts from the anchor; appending continues.
    drop(l);
    let mut l = AuditLog::open(d.path(), 1500).unwrap();
    assert_eq!((l.len(), l.first()), (41, k));
    matches_full_history(&l, &full);
    for i in 41..70 {
        assert_eq!(l.append(&event(i)).unwrap(), i);
        full.append(&event(i)).unwrap();
    }
    l.checkpoint(&key(), 70).unwrap();

    // A second retention moves the anchor forward.
    let r2 = l
        .apply_retention(1000, T0 + 60 + 1000, "ops", "h")
        .unwrap()
        .unwrap();
    assert_eq!(r2.removed_from, k);
    assert!(r2.removed_to > k && r2.removed_to <= 60);
    assert_eq!(r2.event_position, 70);
    full.append(events(d.path()).last().unwrap()).unwrap();
    matches_full_history(&l, &full);
    l.checkpoint(&key(), 71).unwrap();
    let rep = verify(d.path(), &vk).unwrap();
    assert_eq!((rep.records, rep.first), (71, r2.removed_to));
    drop(l);
    let l = AuditLog::open(d.path(), 1500).unwrap();
    matches_full_history(&l, &full);
}

#[test]
fn retention_keeps_the_current_segment_and_uncheckpointed_records() {
    let d = tempfile::tempdir().unwrap();
    let mut l = AuditLog::open(d.path(), 1500).unwrap();
    for i in 0..40 {
        l.append(&event(i)).unwrap();
        if i == 14 {
            l.checkpoint(&key(), 1).unwrap();
        }
    }
    l.sync().unwrap();
    // Everything is old, but only records 0..15 are covered by a checkpoint.
    let r = l
        .apply_retention(0, T0 + 1_000_000, "ops", "h")
        .unwrap()
        .unwrap();
    assert!(r.removed_to <= 15);
    l.checkpoint(&key(), 2).unwrap();
    // Now everything is covered, but the current segment always stays.
    let r = l
        .apply_retention(0, T0 + 1_000_000, "ops", "h")
        .unwrap()
        .unwrap();
    let last = lines(d.path());
    assert_eq!(last.len(), 1);
    assert_eq!(r.removed_to, l.len() - 1 - last[0].1.len() as u64 + 1);
    l.checkpoint(&key(), 3).unwrap();
    assert!(verify(d.path(), &key().verifying_key()).is_ok());
    assert_eq!(
        l.apply_retention(0, T0 + 1_000_000, "ops", "h").unwrap(),
        None
    );
}

#[test]
fn retention_at_many_cut_points_matches_the_full_tree() {
    let vk = key().verifying_key();
    for seg_bytes in [500u64, 700, 1100, 1900] {
        for cut in [1u64, 3, 6, 10, 17, 25, 33] {
            let d = tempfile::tempdir().unwrap();
            let f = tempfile::tempdir().unwrap();
            let mut l = AuditLog::open(d.path(), seg_bytes).unwrap();
            let mut full = AuditLog::open(f.path(), 1 << 20).unwrap();
            for i in 0..36 {
                l.append(&event(i)).unwrap();
                full.append(&event(i)).unwrap();
                if i % 4 == 3 {
                    l.checkpoint(&key(), i as i64).unwrap();
                }
            }
            l.checkpoint(&key(), 36).unwrap();
            let Some(r) = l.apply_retention(0, T0 + cut as i64, "ops", "h").unwrap() else {
                assert!(cut < 3 || seg_bytes > 1500, "seg={seg_bytes} cut={cut}");
                continue;
            };
            assert!(r.removed_to <= cut, "seg={seg_bytes} cut={cut}");
            full.append(events(d.path()).last().unwrap()).unwrap();
            matches_full_history(&l, &full);
            // Every checkpoint at or above the anchor is recomputed from frontier + leaves.
            assert_eq!(verify(d.path(), &vk).unwrap().first, r.removed_to);
            l.checkpoint(&key(), 99).unwrap();
            assert_eq!(
                verify(d.path(), &vk).unwrap().root,
                hex::encode(full.root())
            );
        }
    }
}

#[test]
fn tampering_with_the_anchor_is_caught() {
    let vk = key().verifying_key();
    let d = tempfile::tempdir().unwrap();
    let mut l = AuditLog::open(d.path(), 1500).unwrap();
    for i in 0..40 {
        l.append(&event(i)).unwrap();
    }
    l.checkpoint(&key(), 1).unwrap();
    let r = l.apply_retention(0, T0 + 30, "ops", "h").unwrap().unwrap();
    let k = r.removed_to;
    assert!(
        k >= 3 && !k.is_power_of_two(),
        "k={k}: pick sizes with a 2-node frontier"
    );
    drop(l);
    let path = d.path().join("anchor.json");
    let orig = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&orig).unwrap();
    assert!(verify(d.path(), &vk).is_ok());

    let flip = |h: &str| -> String {
        let mut b = h.as_bytes().to_vec();
        b[10] = if b[10] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };

    // Another chain: the first kept record no longer chains from it.
    let chain = v["chain"].as_str().unwrap();
    std::fs::write(&path, orig.replace(chain, &flip(chain))).unwrap();
    assert!(matches!(verify(d.path(), &vk), Err(AuditError::Modified(p)) if p == k));
    assert!(AuditLog::open(d.path(), 1500).is_err());

    // Another frontier node: the checkpoint over the records no longer matches.
    for node in v["frontier"].as_array().unwrap() {
        let node = node.as_str().unwrap();
        std::fs::write(&path, orig.replace(node, &flip(node))).unwrap();
        assert!(matches!(
            verify(d.path(), &vk),
            Err(AuditError::Mismatch(0))
        ));
        assert!(matches!(
            AuditLog::open(d.path(), 1500),
            Err(AuditError::Mismatch(0))
        ));
    }

    // Another first position: the frontier no longer fits it, or the sequence breaks.
    std::fs::write(
        &path,
        orig.replace(&format!("\"first\": {k}"), &format!("\"first\": {}", k + 1)),
    )
    .unwrap();
    assert!(matches!(
        verify(d.path(), &vk),
        Err(AuditError::Anchor { .. } | AuditError::Sequence { .. })
    ));

    // No anchor: the log seems to start at k.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        verify(d.path(), &vk),
        Err(AuditError::Sequence { position: 0, found }) if found == k
    ));

    std::fs::write(&path, &orig).unwrap();
    assert_eq!(verify(d.path(), &vk).unwrap().first, k);
}

#[test]
fn a_retention_interrupted_before_deleting_is_finished_by_open() {
    let vk = key().verifying_key();
    let d = tempfile::tempdir().unwrap();
    let mut l = AuditLog::open(d.path(), 1500).unwrap();
    for i in 0..40 {
        l.append(&event(i)).unwrap();
    }
    l.checkpoint(&key(), 1).unwrap();
    let saved: Vec<(PathBuf, Vec<u8>)> = segment_files(d.path())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    let r = l.apply_retention(0, T0 + 30, "ops", "h").unwrap().unwrap();
    drop(l);
    // Put the deleted segments back, as if the crash came right after the anchor was written.
    for (p, b) in &saved[..r.segments] {
        std::fs::write(p, b).unwrap();
    }
    assert_eq!(verify(d.path(), &vk).unwrap().first, r.removed_to);
    let l = AuditLog::open(d.path(), 1500).unwrap();
    assert_eq!(l.first(), r.removed_to);
    for (i, (p, _)) in saved.iter().enumerate() {
        assert_eq!(p.exists(), i >= r.segments, "{}", p.display());
    }
}
