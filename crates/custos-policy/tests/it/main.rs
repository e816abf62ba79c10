//! The role matrix, grants, fail-closed evaluation, the identity store and OIDC bearer tokens.
#![allow(clippy::unwrap_used, missing_docs)]

mod mfa;
mod oidc;
mod sealed;
mod stored;

use custos_policy::{
    Action, DEFAULT_POLICIES, Grant, Identities, PolicyEngine, PolicyError, Resource, User,
};

const NOW: i64 = 1_800_000_000;

fn user(name: &str, role: &str) -> User {
    User {
        name: name.into(),
        role: role.into(),
        active: true,
        created_ns: 0,
        token_issued_ns: 0,
        created_by: String::new(),
        token_issued_by: String::new(),
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::load(std::path::Path::new("/nonexistent/policies")).unwrap()
}

fn pipeline(tags: &[&str]) -> Resource {
    Resource::Pipeline {
        name: "p".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn column(pii: bool, protection: &str) -> Resource {
    Resource::Column {
        pipeline: "p".into(),
        tags: vec![],
        name: "c".into(),
        pii,
        protection: protection.into(),
    }
}

fn key() -> Resource {
    Resource::Key {
        name: "pii-main".into(),
    }
}

fn allowed(u: &User, a: Action, r: &Resource) -> bool {
    engine().decide(u, a, r, &[], NOW).allowed
}

#[test]
fn role_matrix() {
    let analyst = user("ann", "analyst");
    let eng = user("eve", "data_engineer");
    let ml = user("max", "ml_engineer");
    let admin = user("sam", "security_admin");

    // analyst: run pipelines tagged analytics, read only protected columns, no decrypt.
    assert!(allowed(
        &analyst,
        Action::RunPipeline,
        &pipeline(&["analytics"])
    ));
    assert!(!allowed(&analyst, Action::RunPipeline, &pipeline(&["etl"])));
    assert!(allowed(
        &analyst,
        Action::ReadDataset,
        &column(true, "encrypt")
    ));
    assert!(allowed(
        &analyst,
        Action::ReadDataset,
        &column(true, "mask")
    ));
    assert!(!allowed(
        &analyst,
        Action::ReadDataset,
        &column(true, "none")
    ));
    assert!(!allowed(
        &analyst,
        Action::DecryptColumn,
        &column(true, "encrypt")
    ));
    assert!(!allowed(&analyst, Action::ManageKeys, &key()));

    // data_engineer: run and validate any pipeline, no decrypt of PII, no key destroy.
    assert!(allowed(&eng, Action::RunPipeline, &pipeline(&[])));
    assert!(allowed(&eng, Action::ValidatePipeline, &pipeline(&[])));
    assert!(!allowed(
        &eng,
        Action::DecryptColumn,
        &column(true, "encrypt")
    ));
    assert!(allowed(
        &eng,
        Action::DecryptColumn,
        &column(false, "encrypt")
    ));
    assert!(allowed(&eng, Action::RotateKey, &key()));
    assert!(!allowed(&eng, Action::DestroyKey, &key()));
    assert!(!allowed(&eng, Action::ManageUsers, &Resource::Directory));
    assert!(!allowed(&eng, Action::ReadAudit, &Resource::AuditLog));

    // ml_engineer: pseudonymized columns only, no decrypt.
    assert!(allowed(&ml, Action::ReadDataset, &column(true, "tokenize")));
    assert!(allowed(
        &ml,
        Action::ReadDataset,
        &column(true, "encrypt_deterministic")
    ));
    assert!(!allowed(&ml, Action::ReadDataset, &column(true, "encrypt")));
    assert!(!allowed(&ml, Action::ReadDataset, &column(true, "none")));
    assert!(!allowed(
        &ml,
        Action::DecryptColumn,
        &column(true, "tokenize")
    ));
    assert!(!allowed(
        &ml,
        Action::RunPipeline,
        &pipeline(&["analytics"])
    ));

    // security_admin: keys, users, audit; destroy and decrypt only with a grant.
    assert!(allowed(&admin, Action::ManageKeys, &key()));
    assert!(allowed(&admin, Action::RotateKey, &key()));
    assert!(allowed(&admin, Action::ManageUsers, &Resource::Directory));
    assert!(allowed(&admin, Action::ReadAudit, &Resource::AuditLog));
    assert!(!allowed(&admin, Action::DestroyKey, &key()));
    assert!(!allowed(
        &admin,
        Action::DecryptColumn,
        &column(true, "encrypt")
    ));
    assert!(!allowed(&admin, Action::RunPipeline, &pipeline(&[])));

    // Unknown roles and disabled users get nothing.
    assert!(!allowed(
        &user("x", "intern"),
        Action::RunPipeline,
        &pipeline(&["analytics"])
    ));
    let mut off = eng.clone();
    off.active = false;
    let d = engine().decide(&off, Action::RunPipeline, &pipeline(&[]), &[], NOW);
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["disabled-users-denied".to_string()]);
}

#[test]
fn decisions_name_their_policies() {
    let d = engine().decide(
        &user("eve", "data_engineer"),
        Action::RunPipeline,
        &pipeline(&[]),
        &[],
        NOW,
    );
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["data_engineer.pipelines".to_string()]);
    let d = engine().decide(
        &user("eve", "data_engineer"),
        Action::DestroyKey,
        &key(),
        &[],
        NOW,
    );
    assert!(!d.allowed);
    assert!(d.policies.is_empty(), "default deny names no policy");
}

fn grant(id: i64, user: &str, action: &str, resource: &str, until_s: i64) -> Grant {
    Grant {
        id,
        user: user.into(),
        action: action.into(),
        resource: resource.into(),
        until_s,
        reason: "incident 42".into(),
        granted_by: "boss".into(),
        created_ns: 0,
        revoked_ns: None,
        revoked_by: None,
    }
}

#[test]
fn time_bound_grants() {
    let admin = user("sam", "security_admin");
    let e = engine();
    let g = [grant(7, "sam", "destroy_key", "key:pii-main", NOW + 60)];
    let d = e.decide(&admin, Action::DestroyKey, &key(), &g, NOW);
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["grant:7".to_string()]);
    // Expired: nobody had to act.
    assert!(
        !e.decide(&admin, Action::DestroyKey, &key(), &g, NOW + 60)
            .allowed
    );
    // Another key, another action, another user: not covered.
    let other = Resource::Key {
        name: "tokens".into(),
    };
    assert!(
        !e.decide(&admin, Action::DestroyKey, &other, &g, NOW)
            .allowed
    );
    assert!(
        !e.decide(
            &user("eve", "data_engineer"),
            Action::DestroyKey,
            &key(),
            &g,
            NOW
        )
        .allowed
    );
    // A pipeline grant covers the pipeline's columns.
    let eng = user("eve", "data_engineer");
    let g = [grant(8, "eve", "decrypt_column", "pipeline:p", NOW + 60)];
    assert!(
        e.decide(
            &eng,
            Action::DecryptColumn,
            &column(true, "encrypt"),
            &g,
            NOW
        )
        .allowed
    );
    let g = [grant(
        9,
        "eve",
        "decrypt_column",
        "column:p/other",
        NOW + 60,
    )];
    assert!(
        !e.decide(
            &eng,
            Action::DecryptColumn,
            &column(true, "encrypt"),
            &g,
            NOW
        )
        .allowed
    );
    // A revoked grant permits nothing.
    let mut g = grant(10, "eve", "decrypt_column", "*", NOW + 60);
    g.revoked_ns = Some(1);
    assert!(
        !e.decide(
            &eng,
            Action::DecryptColumn,
            &column(true, "encrypt"),
            &[g],
            NOW
        )
        .allowed
    );
    // Names that look like Cedar syntax stay names.
    let g = [grant(
        11,
        "eve",
        "decrypt_column",
        "pipeline:p\" || true || \"",
        NOW + 60,
    )];
    assert!(
        !e.decide(
            &eng,
            Action::DecryptColumn,
            &column(true, "encrypt"),
            &g,
            NOW
        )
        .allowed
    );
}

#[test]
fn evaluation_errors_deny() {
    let dir = tempfile::tempdir().unwrap();
    // The forbid overflows at run time (validation cannot see it): Cedar skips an erroring
    // policy, so the permit alone would allow; custos denies.
    std::fs::write(
        dir.path().join("p.cedar"),
        r#"
@id("permit-all")
permit (principal, action, resource);
@id("overflowing-forbid")
forbid (principal, action, resource) when { context.now * 9223372036854775807 > 0 };
"#,
    )
    .unwrap();
    let e = PolicyEngine::load(dir.path()).unwrap();
    let d = e.decide(
        &user("eve", "data_engineer"),
        Action::RunPipeline,
        &pipeline(&[]),
        &[],
        NOW,
    );
    assert!(!d.allowed);
    assert!(!d.errors.is_empty());
}

#[test]
fn policy_files_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.cedar");
    std::fs::write(&p, "@id(\"x\")\npermit (principal, action == Custos::Action::\"run_pipeline\", resource) when { resource.colour == \"red\" };\n").unwrap();
    let e = PolicyEngine::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("bad.cedar"), "{e}");
    std::fs::write(&p, "permit (principal, action, resource);\n").unwrap();
    let e = PolicyEngine::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("@id"), "{e}");
    std::fs::write(&p, "permit (principal action, resource);\n").unwrap();
    assert!(matches!(
        PolicyEngine::load(dir.path()),
        Err(PolicyError::Policies(_))
    ));
    // The file init writes is the built-in default and validates.
    std::fs::write(&p, DEFAULT_POLICIES).unwrap();
    PolicyEngine::load(dir.path()).unwrap();
}

#[test]
fn identities_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open(dir.path()).unwrap();
    assert!(ids.is_empty().unwrap());
    let t = ids.add_user("eve", "data_engineer", "eve", 1).unwrap();
    assert!(t.expose().starts_with("cst_"));
    assert_eq!(format!("{t:?}"), "Token([redacted])");
    assert_eq!(ids.authenticate(t.expose()).unwrap().name, "eve");
    // Nothing of the token is stored in clear.
    let db = std::fs::read(dir.path().join("identity.db")).unwrap();
    let secret = t.expose().rsplit('_').next().unwrap();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));

    // Wrong, unknown, malformed, disabled, rotated: one message.
    let mut wrong = t.expose().to_string();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let generic = PolicyError::Authentication.to_string();
    for bad in [wrong.as_str(), "cst_000000000000_xyz", "hello", ""] {
        let e = ids.authenticate(bad).unwrap_err();
        assert_eq!(e.to_string(), generic);
        assert!(!e.to_string().contains(bad) || bad.is_empty());
    }
    ids.set_active("eve", false).unwrap();
    assert_eq!(
        ids.authenticate(t.expose()).unwrap_err().to_string(),
        generic
    );
    ids.set_active("eve", true).unwrap();
    let t2 = ids.rotate_token("eve", "eve", 2).unwrap();
    assert_eq!(
        ids.authenticate(t.expose()).unwrap_err().to_string(),
        generic
    );
    assert_eq!(ids.authenticate(t2.expose()).unwrap().name, "eve");

    assert!(ids.add_user("eve", "analyst", "x", 3).is_err());
    assert!(ids.add_user("bob", "wizard", "x", 3).is_err());
    assert!(ids.add_user("bad name", "analyst", "x", 3).is_err());
}

#[test]
fn grants_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open(dir.path()).unwrap();
    ids.add_user("sam", "security_admin", "sam", 1).unwrap();
    ids.add_user("eve", "data_engineer", "eve", 1).unwrap();
    let now_ns = NOW * 1_000_000_000;
    // Nobody grants to themselves; actions, resources, expiry and reason are checked.
    assert!(
        ids.add_grant("sam", "destroy_key", "key:k", NOW + 60, "x", "sam", now_ns)
            .is_err()
    );
    assert!(
        ids.add_grant("eve", "fly", "key:k", NOW + 60, "x", "sam", now_ns)
            .is_err()
    );
    assert!(
        ids.add_grant(
            "eve",
            "decrypt_column",
            "table:t",
            NOW + 60,
            "x",
            "sam",
            now_ns
        )
        .is_err()
    );
    assert!(
        ids.add_grant("eve", "decrypt_column", "*", NOW - 1, "x", "sam", now_ns)
            .is_err()
    );
    assert!(
        ids.add_grant("eve", "decrypt_column", "*", NOW + 60, " ", "sam", now_ns)
            .is_err()
    );
    let id = ids
        .add_grant(
            "eve",
            "decrypt_column",
            "pipeline:p",
            NOW + 60,
            "ticket 1",
            "sam",
            now_ns,
        )
        .unwrap();
    assert_eq!(ids.active_grants("eve", NOW).unwrap().len(), 1);
    assert!(ids.active_grants("eve", NOW + 60).unwrap().is_empty());
    assert_eq!(ids.grants(None).unwrap().len(), 1);
    let g = ids.revoke_grant(id, "sam", now_ns).unwrap();
    assert_eq!(g.revoked_by.as_deref(), Some("sam"));
    assert!(ids.active_grants("eve", NOW).unwrap().is_empty());
    assert!(ids.revoke_grant(id, "sam", now_ns).is_err());
}

#[test]
fn the_approver_cannot_be_able_to_act_as_the_grantee() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open(dir.path()).unwrap();
    let now_ns = NOW * 1_000_000_000;
    let grant = |to: &str, by: &str| {
        ids.add_grant(to, "decrypt_column", "*", NOW + 60, "incident", by, now_ns)
    };
    ids.add_user("root", "security_admin", "root", 1).unwrap();
    // root adds eve and a second admin; both tokens pass through root's hands.
    ids.add_user("eve", "data_engineer", "root", 1).unwrap();
    ids.add_user("sam", "security_admin", "root", 1).unwrap();
    let e = grant("eve", "root").unwrap_err().to_string();
    assert!(e.contains("you added \"eve\""), "{e}");
    // sam still holds the token root issued: no approving until sam rotates it.
    let e = grant("eve", "sam").unwrap_err().to_string();
    assert!(e.contains("rotate it yourself"), "{e}");
    ids.rotate_token("sam", "sam", 2).unwrap();
    grant("eve", "sam").unwrap();
    // Whoever rotates eve's token has seen it, and may not approve for eve afterwards.
    ids.rotate_token("eve", "sam", 3).unwrap();
    let e = grant("eve", "sam").unwrap_err().to_string();
    assert!(e.contains("issued \"eve\"'s current token"), "{e}");
    let u = ids.user("eve").unwrap().unwrap();
    assert_eq!(
        (u.created_by.as_str(), u.token_issued_by.as_str()),
        ("root", "sam")
    );
}

#[test]
fn identity_provider_users_get_grants_under_their_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let ids = Identities::open(dir.path()).unwrap();
    let now_ns = NOW * 1_000_000_000;
    let grant = |to: &str, by: &str| {
        ids.add_grant(to, "read_audit", "audit", NOW + 60, "incident", by, now_ns)
    };
    ids.add_user("sam", "security_admin", "sam", 1).unwrap();
    ids.add_user("olga", "data_engineer", "sam", 1).unwrap();
    // Not in the store, so no creator or token issuer to exclude: a second person approves.
    let id = grant("oidc:olga", "sam").unwrap();
    assert!(grant("oidc:olga", "oidc:olga").is_err());
    assert!(grant("oidc:bad name", "sam").is_err());
    assert!(grant("oidc:", "sam").is_err());
    // The provider's olga and the local olga are different people.
    assert_eq!(ids.active_grants("oidc:olga", NOW).unwrap()[0].id, id);
    assert!(ids.active_grants("olga", NOW).unwrap().is_empty());
    assert_eq!(custos_policy::grant_subject("olga", true), "oidc:olga");
    assert_eq!(custos_policy::grant_subject("olga", false), "olga");
    // The engine applies it to the provider's user it belongs to, and to nobody else.
    let engine = PolicyEngine::from_text(custos_policy::DEFAULT_POLICIES, "defaults").unwrap();
    let grants = ids.active_grants("oidc:olga", NOW).unwrap();
    let olga = user("olga", "data_engineer");
    let bob = user("bob", "data_engineer");
    assert!(
        engine
            .decide(&olga, Action::ReadAudit, &Resource::AuditLog, &grants, NOW)
            .allowed
    );
    assert!(
        !engine
            .decide(&bob, Action::ReadAudit, &Resource::AuditLog, &grants, NOW)
            .allowed
    );
}

#[test]
fn an_older_identity_store_gains_the_new_columns() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("identity.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, active INTEGER NOT NULL,
               token_id TEXT NOT NULL UNIQUE, token_salt BLOB NOT NULL, token_hash BLOB NOT NULL,
               created_ns INTEGER NOT NULL, token_issued_ns INTEGER NOT NULL);
             INSERT INTO users VALUES ('old', 'analyst', 1, 'abc', x'00', x'00', 1, 1);",
        )
        .unwrap();
    }
    let ids = Identities::open(dir.path()).unwrap();
    let u = ids.user("old").unwrap().unwrap();
    assert_eq!(
        (u.created_by.as_str(), u.token_issued_by.as_str()),
        ("", "")
    );
    ids.add_user("new", "analyst", "old", 2).unwrap();
    assert_eq!(ids.user("new").unwrap().unwrap().created_by, "old");
}

fn key_use(key: &str, pipeline: &str, operation: &str, deterministic: bool) -> Resource {
    Resource::KeyUse {
        key: key.into(),
        pipeline: pipeline.into(),
        tags: vec!["analytics".into()],
        operation: operation.into(),
        deterministic,
    }
}

#[test]
fn deterministic_key_uses_need_the_role_or_a_grant() {
    let analyst = user("ann", "analyst");
    let ml = user("max", "ml_engineer");
    let eng = user("eve", "data_engineer");
    let admin = user("sam", "security_admin");
    let random = key_use("pii-main", "p", "encrypt", false);
    let tokens = key_use("tokens", "p", "tokenize", true);
    let fpe = key_use("tokens", "p", "fpe", true);
    // Random encryption gives no codebook: everyone who runs pipelines may use it.
    for u in [&analyst, &ml, &eng] {
        assert!(allowed(u, Action::UseKey, &random), "{}", u.role);
    }
    // Deterministic uses: data engineers only, by default.
    assert!(allowed(&eng, Action::UseKey, &tokens));
    for u in [&analyst, &ml, &admin] {
        assert!(!allowed(u, Action::UseKey, &tokens), "{}", u.role);
        assert!(!allowed(u, Action::UseKey, &fpe), "{}", u.role);
    }
    assert!(!allowed(&admin, Action::UseKey, &random));
    // A grant on the key covers its uses in every pipeline, and no other key.
    let g = grant(7, "ann", "use_key", "key:tokens", NOW + 60);
    let e = engine();
    let d = e.decide(
        &analyst,
        Action::UseKey,
        &tokens,
        std::slice::from_ref(&g),
        NOW,
    );
    assert!(d.allowed && d.policies == ["grant:7"], "{d:?}");
    assert!(
        e.decide(
            &analyst,
            Action::UseKey,
            &fpe,
            std::slice::from_ref(&g),
            NOW
        )
        .allowed
    );
    let other = key_use("other", "p", "tokenize", true);
    assert!(
        !e.decide(
            &analyst,
            Action::UseKey,
            &other,
            std::slice::from_ref(&g),
            NOW
        )
        .allowed
    );
    // A grant on a pipeline covers the keys that pipeline uses.
    let g = grant(8, "ann", "use_key", "pipeline:p", NOW + 60);
    assert!(
        e.decide(
            &analyst,
            Action::UseKey,
            &tokens,
            std::slice::from_ref(&g),
            NOW
        )
        .allowed
    );
    let elsewhere = key_use("tokens", "q", "tokenize", true);
    assert!(
        !e.decide(
            &analyst,
            Action::UseKey,
            &elsewhere,
            std::slice::from_ref(&g),
            NOW
        )
        .allowed
    );
    assert_eq!(tokens.spec(), "key:tokens/p/tokenize");
}

#[test]
fn a_policy_set_without_use_key_permits_is_recognised() {
    let defaults = PolicyEngine::from_text(custos_policy::DEFAULT_POLICIES, "defaults").unwrap();
    assert!(defaults.may_permit(Action::UseKey));
    assert!(defaults.may_permit(Action::RunPipeline));
    // Destroying keys is for grants only.
    assert!(!defaults.may_permit(Action::DestroyKey));
    let old = PolicyEngine::from_text(
        "@id(\"runs\")\npermit (principal, action in [Custos::Action::\"run_pipeline\", Custos::Action::\"read_dataset\"], resource);\n\
         @id(\"no-keys\")\nforbid (principal, action == Custos::Action::\"use_key\", resource);\n",
        "old",
    )
    .unwrap();
    assert!(old.may_permit(Action::ReadDataset));
    assert!(!old.may_permit(Action::UseKey));
    let all = PolicyEngine::from_text(
        "@id(\"all\")\npermit (principal, action, resource) when { principal.active };\n",
        "all",
    )
    .unwrap();
    assert!(all.may_permit(Action::UseKey));
}
