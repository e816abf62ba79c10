//! Policies and settings in the identity store.

use custos_policy::{
    Action, DEFAULT_POLICIES, Identities, PolicyEngine, PolicyError, Resource, StoreKey, User,
};

const BAD_ATTRIBUTE: &str = "@id(\"x\")\npermit (principal, action == Custos::Action::\"run_pipeline\", resource) when { resource.colour == \"red\" };\n";

fn check_policies(ids: &Identities) {
    assert!(ids.policies().unwrap().is_none());
    assert!(ids.policy_history().unwrap().is_empty());
    let v1 = ids
        .set_policies(DEFAULT_POLICIES, "sam", "initial", 10)
        .unwrap();
    assert_eq!(v1, 1);
    let p = ids.policies().unwrap().unwrap();
    assert_eq!(
        (
            p.version,
            p.text.as_str(),
            p.set_by.as_str(),
            p.reason.as_str(),
            p.set_ns
        ),
        (1, DEFAULT_POLICIES, "sam", "initial", 10)
    );
    assert_eq!(p.sha256.len(), 64);

    // Invalid text is refused with the validation error; version 1 stays active.
    let e = ids
        .set_policies(BAD_ATTRIBUTE, "sam", "oops", 11)
        .unwrap_err();
    assert!(matches!(e, PolicyError::Policies(_)), "{e:?}");
    assert!(e.to_string().contains("stored policies"), "{e}");
    let e = ids
        .set_policies("permit (principal, action, resource);", "sam", "no id", 11)
        .unwrap_err();
    assert!(e.to_string().contains("@id"), "{e}");
    for bad in ["permit (principal action, resource);", "", "// nothing\n"] {
        assert!(matches!(
            ids.set_policies(bad, "sam", "bad", 11),
            Err(PolicyError::Policies(_))
        ));
    }
    assert!(matches!(
        ids.set_policies(DEFAULT_POLICIES, "sam", " ", 11),
        Err(PolicyError::Invalid(_))
    ));
    assert_eq!(ids.policies().unwrap().unwrap().version, 1);

    // A narrower set: only the engineers' rules.
    let narrow = "@id(\"eng-run\")\npermit (principal in Custos::Role::\"data_engineer\", action == Custos::Action::\"run_pipeline\", resource);\n";
    assert_eq!(ids.set_policies(narrow, "root", "ticket 9", 12).unwrap(), 2);
    let p = ids.policies().unwrap().unwrap();
    assert_eq!((p.version, p.text.as_str()), (2, narrow));
    let history = ids.policy_history().unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![2, 1]
    );
    assert_eq!(history[1].reason, "initial");

    // The stored text is what the engine runs.
    let engine = PolicyEngine::from_text(&p.text, "stored policies").unwrap();
    assert_eq!(engine.source(), "stored policies");
    let eve = User {
        name: "eve".into(),
        role: "data_engineer".into(),
        active: true,
        created_ns: 0,
        token_issued_ns: 0,
        created_by: String::new(),
        token_issued_by: String::new(),
    };
    let p = Resource::Pipeline {
        name: "p".into(),
        tags: vec![],
    };
    let d = engine.decide(&eve, Action::RunPipeline, &p, &[], 0);
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["eng-run".to_string()]);
}

fn check_settings(ids: &Identities) {
    assert!(ids.setting("audit.retention_days").unwrap().is_none());
    ids.set_setting("audit.retention_days", "365", "sam", 1)
        .unwrap();
    let s = ids.setting("audit.retention_days").unwrap().unwrap();
    assert_eq!(
        (
            s.name.as_str(),
            s.value.as_str(),
            s.set_by.as_str(),
            s.set_ns
        ),
        ("audit.retention_days", "365", "sam", 1)
    );
    ids.set_setting("audit.retention_days", "90", "root", 2)
        .unwrap();
    let s = ids.setting("audit.retention_days").unwrap().unwrap();
    assert_eq!((s.value.as_str(), s.set_by.as_str()), ("90", "root"));
    for bad in ["", "Audit", "a b", &"x".repeat(65)] {
        assert!(matches!(
            ids.set_setting(bad, "1", "sam", 3),
            Err(PolicyError::Invalid(_))
        ));
    }
}

#[test]
fn stored_policies_unkeyed() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open(dir.path()).unwrap();
    check_policies(&ids);
    check_settings(&ids);
}

#[test]
fn stored_policies_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let key = StoreKey::from_bytes([3; 32]);
    let ids = Identities::open_sealed(dir.path(), &key).unwrap();
    check_policies(&ids);
    check_settings(&ids);
    drop(ids);
    let ids = Identities::open_sealed(dir.path(), &key).unwrap();
    assert_eq!(ids.policies().unwrap().unwrap().version, 2);

    // Deleting the latest version would reactivate the one before: caught.
    let conn = rusqlite::Connection::open(dir.path().join("identity.db")).unwrap();
    conn.execute("DELETE FROM policy_sets WHERE version = 2", [])
        .unwrap();
    match ids.policies() {
        Err(PolicyError::Tampered(m)) => assert!(m.contains("policy_sets row 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Editing a setting, too.
    conn.execute("UPDATE settings SET value = '1'", []).unwrap();
    match ids.setting("audit.retention_days") {
        Err(PolicyError::Tampered(m)) => {
            assert!(m.contains("settings row \"audit.retention_days\""), "{m}")
        }
        other => panic!("{other:?}"),
    }
    conn.execute("DELETE FROM settings", []).unwrap();
    assert!(matches!(
        ids.setting("audit.retention_days"),
        Err(PolicyError::Tampered(_))
    ));
}
