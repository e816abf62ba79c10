//! Administration through the API: second-factor enrolment and step-up, users, tokens and
//! grants, stored policies and retention, the sealed identity store, per-key use decisions,
//! and the Unix socket.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use custos_app::{Confinement, Project, ProjectOptions};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::*;

/// One request with an optional one-time code.
async fn call_otp(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: &str,
    otp: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some(c) = otp {
        req = req.header("x-custos-otp", c);
    }
    let mut req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let addr: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v)
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn code(secret: &str, at: u64) -> String {
    custos_policy::mfa::totp_code(secret, 6, at).unwrap()
}

/// Enrols `token`'s user and confirms with the current code; returns the secret and the
/// code the confirmation used.
async fn enrol(app: &axum::Router, token: &str) -> (String, String) {
    let (s, v) = call_otp(app, "POST", "/v1/mfa/enroll", token, None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(
        v["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let first = code(&secret, now_s());
    let (s, v) = call_otp(
        app,
        "POST",
        "/v1/mfa/confirm",
        token,
        None,
        Some(json!({"code": first})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (secret, first)
}

fn error_codes(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["error_code"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn privileged_actions_need_a_fresh_second_factor() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    // Listing users is user administration: refused without a second factor.
    let (s, v) = call_otp(&app, "GET", "/v1/users", &env.admin, None, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("second factor"),
        "{v}"
    );
    // A code without an enrolment is refused too.
    let (s, _) = call_otp(&app, "GET", "/v1/users", &env.admin, Some("123456"), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Reading the audit log is not privileged.
    let (s, _) = call_otp(&app, "GET", "/v1/audit", &env.admin, None, None).await;
    assert_eq!(s, StatusCode::OK);

    let (secret, used) = enrol(&app, &env.admin).await;
    let (s, v) = call_otp(&app, "GET", "/v1/mfa", &env.admin, None, None).await;
    assert_eq!((s, &v["confirmed"]), (StatusCode::OK, &json!(true)), "{v}");
    // A second enrolment over a confirmed one is refused (an admin must reset it).
    let (s, _) = call_otp(&app, "POST", "/v1/mfa/enroll", &env.admin, None, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // The confirming code was used: it cannot be used again.
    let (s, v) = call_otp(&app, "GET", "/v1/users", &env.admin, Some(&used), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // The next step's code works once.
    let next = code(&secret, now_s() + 30);
    let (s, v) = call_otp(&app, "GET", "/v1/users", &env.admin, Some(&next), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 3);
    let (s, _) = call_otp(&app, "GET", "/v1/users", &env.admin, Some(&next), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a replayed code is refused");
    // A stale code (three steps old) is refused.
    let stale = code(&secret, now_s() - 90);
    let (s, _) = call_otp(&app, "GET", "/v1/users", &env.admin, Some(&stale), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call_otp(
        &app,
        "GET",
        "/v1/audit?action=manage_users&outcome=denied",
        &env.admin,
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let codes = error_codes(&v);
    for c in ["mfa_required", "mfa_invalid", "mfa_replayed"] {
        assert!(codes.iter().any(|x| x == c), "{c} not in {codes:?}");
    }
    // Guessing codes locks the second factor.
    for _ in 0..6 {
        call_otp(&app, "GET", "/v1/users", &env.admin, Some("000001"), None).await;
    }
    let good = code(&secret, now_s() + 60);
    let (s, v) = call_otp(&app, "GET", "/v1/users", &env.admin, Some(&good), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("locked"),
        "{v}"
    );
    // The TOTP secret is not in the identity store's file.
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    let db = std::fs::read(env.state.join("identity.db")).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the TOTP secret is stored in the clear"
    );
}

#[tokio::test]
async fn users_tokens_and_grants_through_the_api() {
    let env = setup();
    let project = open(
        &env,
        Opts {
            mfa: false,
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/users",
        Some(&env.admin),
        Some(json!({"name": "dana", "role": "data_engineer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dana = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["user"]["created_by"], "admin");
    let (s, v) = call(&app, "GET", "/v1/whoami", Some(&dana), None).await;
    assert_eq!((s, &v["user"]["name"]), (StatusCode::OK, &json!("dana")));
    // Analysts administer nothing.
    let (s, _) = call(&app, "GET", "/v1/users", Some(&env.ana), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A second admin, who replaces the token the first one handed over.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/users",
        Some(&env.admin),
        Some(json!({"name": "sec", "role": "security_admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let first = v["token"].as_str().unwrap().to_string();
    let (s, v) = call(&app, "POST", "/v1/token", Some(&first), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let sec = v["token"].as_str().unwrap().to_string();
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(&first), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old token stops at once");
    // The admin who created dana may not approve her grant; sec may.
    let grant = json!({"user": "dana", "action": "decrypt_column", "resource": "pipeline:p", "until": "+1h", "reason": "INC-7"});
    let (s, v) = call(
        &app,
        "POST",
        "/v1/grants",
        Some(&env.admin),
        Some(grant.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("second person")
    );
    let (s, v) = call(&app, "POST", "/v1/grants", Some(&sec), Some(grant)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["granted_by"], "sec");
    let (s, v) = call(&app, "GET", "/v1/grants", Some(&sec), None).await;
    assert_eq!((s, v.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (s, v) = call(
        &app,
        "DELETE",
        &format!("/v1/grants/{id}"),
        Some(&sec),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["revoked_by"], "sec");
    let (s, v) = call(&app, "GET", "/v1/grants?all=true", Some(&sec), None).await;
    assert_eq!((s, v.as_array().unwrap().len()), (StatusCode::OK, 1));
    // Bad input is named.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/grants",
        Some(&sec),
        Some(json!({"user": "dana", "action": "fly", "resource": "*", "until": "+1h", "reason": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("fly"),
        "{v}"
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/users",
        Some(&sec),
        Some(json!({"name": "x", "role": "pilot", "extra": 1})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Disabling signs dana out at once; nobody disables themselves.
    let (s, _) = call(&app, "POST", "/v1/users/dana/disable", Some(&sec), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(&dana), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, "POST", "/v1/users/sec/disable", Some(&sec), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(&app, "DELETE", "/v1/users/dana", Some(&sec), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Every change is in the audit log, and no token is.
    let (s, v) = call(&app, "GET", "/v1/audit?limit=1000", Some(&sec), None).await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "succeeded")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "user_add",
        "token_rotate",
        "grant_add",
        "grant_revoke",
        "user_disable",
        "user_remove",
    ] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    let text = v.to_string();
    for t in [&dana, &sec, &first] {
        assert!(!text.contains(&t[t.len() - 16..]));
    }
}

#[tokio::test]
async fn policies_and_retention_change_only_through_audited_actions() {
    let env = setup();
    let opts = || Opts {
        mfa: false,
        ..Opts::default()
    };
    let project = open(&env, opts()).await;
    let app = app(&project);
    let (s, v) = call(&app, "GET", "/v1/policies", Some(&env.admin), None).await;
    assert_eq!((s, &v), (StatusCode::OK, &Value::Null));
    // Engineers change no policies.
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/policies",
        Some(&env.eng),
        Some(json!({"text": custos_policy::DEFAULT_POLICIES, "reason": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Invalid Cedar changes nothing.
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/policies",
        Some(&env.admin),
        Some(json!({"text": "permit (principal, action, resource) when { resource.nope };", "reason": "x"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Policies that lock their installer out are refused.
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/policies",
        Some(&env.admin),
        Some(json!({"text": "@id(\"runs\")\npermit (principal, action == Custos::Action::\"run_pipeline\", resource);\n", "reason": "oops"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manage_policies"),
        "{v}"
    );
    // Policies without the engineers' pipeline permissions: registering is then denied.
    let text =
        custos_policy::DEFAULT_POLICIES.replace("    Custos::Action::\"register_pipeline\"\n", "");
    let text = text.replace(
        "    Custos::Action::\"validate_pipeline\",\n",
        "    Custos::Action::\"validate_pipeline\"\n",
    );
    assert_ne!(text, custos_policy::DEFAULT_POLICIES);
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/policies",
        Some(&env.admin),
        Some(json!({"text": text, "reason": "CHG-1: registrations by security only"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["version"], 1);
    assert_eq!(v["set_by"], "admin");
    let reg = json!({"config": pipeline("p1", &[])});
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(reg.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/settings/audit-retention",
        Some(&env.admin),
        Some(json!({"retention": "soon"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = call(
        &app,
        "PUT",
        "/v1/settings/audit-retention",
        Some(&env.admin),
        Some(json!({"retention": "7y"})),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(app);
    drop(project);
    // A policy file dropped into the project changes nothing: the stored version stays in
    // force after a restart.
    let dir = env.state.parent().unwrap().join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("permit-all.cedar"),
        "@id(\"all\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    let project = open(&env, opts()).await;
    let app = crate::app(&project);
    let (s, v) = call(&app, "POST", "/v1/pipelines", Some(&env.eng), Some(reg)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?action=policies_set",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let outcomes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?action=setting_set",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!((s, v.as_array().unwrap().len()), (StatusCode::OK, 1), "{v}");
    project.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn an_identity_store_changed_outside_the_server_is_refused() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(project);
    // Someone with file access but without the keystore promotes the analyst.
    let db = rusqlite::Connection::open(env.state.join("identity.db")).unwrap();
    db.execute(
        "UPDATE users SET role = 'security_admin' WHERE name = 'ana'",
        [],
    )
    .unwrap();
    drop(db);
    let e = Project::open(&env.state, options(&env, false))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("changed outside custos") && msg.contains("ana"),
        "{msg}"
    );
    // Opening without the keystore is refused too, rather than trusting unverified rows.
    let e = custos_policy::Identities::open(&env.state).unwrap_err();
    assert!(matches!(e, custos_policy::PolicyError::Sealed), "{e}");
}

/// Copies `identity.db` (and its WAL files, if any) of `from` to `to`.
fn copy_identity_db(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("identity.db{suffix}");
        let _ = std::fs::remove_file(to.join(&name));
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

/// The audit records of `state` with `action`, oldest first.
fn records(state: &Path, action: &str) -> Vec<custos_audit::Event> {
    custos_audit::tail(&state.join("audit"), 100_000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.action == action)
        .collect()
}

#[tokio::test]
async fn an_identity_store_rolled_back_to_an_older_copy_is_refused_unless_accepted() {
    let env = setup();
    let no_mfa = || Opts {
        mfa: false,
        ..Opts::default()
    };
    let backup = tempfile::tempdir().unwrap();
    let replaced = tempfile::tempdir().unwrap();
    // A backup of the sealed store while the analyst is active.
    let project = open(&env, no_mfa()).await;
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(project);
    copy_identity_db(&env.state, backup.path());
    // The admin disables her through the server: the write is recorded as it commits.
    let project = open(&env, no_mfa()).await;
    let (s, v) = call(
        &app(&project),
        "POST",
        "/v1/users/ana/disable",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(project);
    let seals = records(&env.state, "identity_seal");
    let generations: Vec<u64> = seals
        .iter()
        .map(|e| {
            custos_policy::SealState::from_detail(e.detail.as_deref().unwrap())
                .unwrap()
                .generation
        })
        .collect();
    assert!(
        generations.windows(2).all(|w| w[0] <= w[1]) && generations.len() >= 4,
        "{generations:?}"
    );
    copy_identity_db(&env.state, replaced.path());
    // Someone with file access puts the backup back: every MAC in it is valid.
    copy_identity_db(backup.path(), &env.state);
    let e = Project::open(&env.state, options(&env, false))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("older copy of itself") && msg.contains("accept_identity_rollback"),
        "{msg}"
    );
    assert!(!msg.contains(PASSPHRASE), "{msg}");
    let refused = records(&env.state, "identity_check");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (
            refused[0].outcome.as_str(),
            refused[0].error_code.as_deref()
        ),
        ("failed", Some("tampered"))
    );
    // Refused again: the failed check is no new record of the store.
    assert!(
        Project::open(&env.state, options(&env, false))
            .await
            .is_err()
    );
    // An operator who restored the backup on purpose starts once with the danger switch.
    let project = open(
        &env,
        Opts {
            accept_identity_rollback: true,
            ..no_mfa()
        },
    )
    .await;
    let (s, _) = call(&app(&project), "GET", "/v1/whoami", Some(&env.ana), None).await;
    assert_eq!(s, StatusCode::OK, "the backup's analyst is active");
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(project);
    assert_eq!(
        records(&env.state, "danger_accept_identity_rollback").len(),
        1
    );
    // From then on the store is the one recorded, and starts normally.
    let project = open(&env, no_mfa()).await;
    project.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(project);
    // The store the backup replaced is older now than the accepted one.
    copy_identity_db(replaced.path(), &env.state);
    let msg = Project::open(&env.state, options(&env, false))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("older copy of itself"), "{msg}");
}

/// The project options of a server with or without `[danger] accept_identity_rollback`.
fn options(env: &Env, accept_identity_rollback: bool) -> ProjectOptions {
    ProjectOptions {
        passphrase: Some(custos_keys::Passphrase::new(PASSPHRASE.into())),
        confinement: Confinement::new(std::slice::from_ref(&env.data), &[]).unwrap(),
        allow: Vec::new(),
        max_concurrent_runs: 1,
        principal: "server".into(),
        mfa_required: false,
        oidc: None,
        mfa_enrollment: custos_app::EnrollmentMode::SelfService,
        accept_identity_rollback,
    }
}

/// A pipeline tokenizing the product column with key `tok`.
fn tokenizing(name: &str, tags: &[&str]) -> String {
    pipeline(name, tags).replace(
        "[sinks.out]\ntype = \"parquet\"\ninputs = [\"big\"]",
        "[transforms.safe]\ntype = \"protect\"\ninputs = [\"big\"]\ncolumns = { product = { action = \"tokenize\", key = \"tok\" } }\n\n[sinks.out]\ntype = \"parquet\"\ninputs = [\"safe\"]",
    )
}

#[tokio::test]
async fn deterministic_key_uses_are_decided_per_key() {
    let env = setup();
    {
        let path = custos_keys::keystore_path(&env.state);
        let mut ks =
            custos_keys::Keystore::open(&path, &custos_keys::Passphrase::new(PASSPHRASE.into()))
                .unwrap();
        ks.create("tok", custos_keys::Purpose::Hmac).await.unwrap();
    }
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let cfg = tokenizing("tokens", &["analytics"]);
    assert!(cfg.contains("tokenize"), "{cfg}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": cfg})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The engineer may tokenize with any key.
    let (s, job) = call(
        &app,
        "POST",
        "/v1/pipelines/tokens/runs",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let done = wait_job(&app, &env.eng, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The analyst may run the pipeline, but not tokenize with the key: a codebook of products
    // (or SSNs) would be one run away.
    let (s, job) = call(
        &app,
        "POST",
        "/v1/pipelines/tokens/runs",
        Some(&env.ana),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let done = wait_job(&app, &env.ana, job["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    let err = done["error"].as_str().unwrap_or_default().to_string()
        + done["summary"]["error"].as_str().unwrap_or_default();
    assert!(err.contains("use_key") && err.contains("key:tok"), "{done}");
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?action=use_key",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let rows: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["principal"].as_str().unwrap().to_string(),
                e["resource"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        rows.contains(&(
            "eng".into(),
            "key:tok/tokens/tokenize".into(),
            "allowed".into()
        )),
        "{rows:?}"
    );
    assert!(
        rows.contains(&(
            "ana".into(),
            "key:tok/tokens/tokenize".into(),
            "denied".into()
        )),
        "{rows:?}"
    );
    project.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_unix_socket_serves_local_clients() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let sock = env.state.parent().unwrap().join("custos.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let server = custos_server::Server::serve_on(
        None,
        Some(listener),
        None,
        project,
        Duration::from_secs(5),
    )
    .unwrap();
    let url = format!("unix://{}", sock.display());
    let c = custos_server::client::Client::new(&url, None, &env.eng).unwrap();
    let v = c.call("GET", "/v1/whoami", None).await.unwrap();
    assert_eq!(v["user"]["name"], "eng");
    let c = custos_server::client::Client::new(&url, None, "cst_000000000000_nope").unwrap();
    let e = c.call("GET", "/v1/whoami", None).await.unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn keys_through_the_api() {
    let env = setup();
    let project = open(
        &env,
        Opts {
            mfa: false,
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    // The server's own keys are listed, never their material.
    let (s, v) = call(&app, "GET", "/v1/keys", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"custos-audit") && names.contains(&"custos-identity"),
        "{names:?}"
    );
    assert!(!v.to_string().contains("wrapped"), "{v}");
    // Engineers create and rotate keys; analysts do not.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/keys",
        Some(&env.eng),
        Some(json!({"name": "pii-main", "purpose": "aead"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["primary"], 1);
    let (s, _) = call(
        &app,
        "POST",
        "/v1/keys",
        Some(&env.ana),
        Some(json!({"name": "mine", "purpose": "hmac"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    for (body, what) in [
        (json!({"name": "pii-main", "purpose": "aead"}), "exists"),
        (json!({"name": "x", "purpose": "signing"}), "purpose"),
        (json!({"name": "Bad Name", "purpose": "aead"}), "name"),
    ] {
        let (s, v) = call(&app, "POST", "/v1/keys", Some(&env.eng), Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {v}");
    }
    let (s, v) = call(
        &app,
        "POST",
        "/v1/keys/pii-main/rotate",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["primary"], 2);
    // The keystore the next run gets is the rotated one.
    assert_eq!(
        project
            .keystore()
            .unwrap()
            .key("pii-main")
            .unwrap()
            .primary()
            .unwrap()
            .version,
        2
    );
    // The server's own keys cannot be rotated, even by an admin.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/keys/custos-identity/rotate",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // Destroying needs a grant (and the name repeated).
    let (s, _) = call(
        &app,
        "DELETE",
        "/v1/keys/pii-main/versions/1?confirm=pii-main",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        "DELETE",
        "/v1/keys/pii-main/versions/1?confirm=other",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/keys/pii-main/versions/1/disable",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["versions"][0]["state"], "disabled");
    let (s, v) = call(&app, "GET", "/v1/keys/missing", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // Every change's outcome is audited.
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?principal=eng&outcome=succeeded",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"manage_keys") && actions.contains(&"rotate_key"),
        "{actions:?}"
    );
    project.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn taking_key_material_out_of_use_waits_for_the_runs_that_hold_it() {
    let env = setup();
    write_orders(&env.data.join("in/orders.csv"), 600_000);
    let project = open(
        &env,
        Opts {
            mfa: false,
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    for (method, path, body) in [
        (
            "POST",
            "/v1/keys",
            Some(json!({"name": "k", "purpose": "aead"})),
        ),
        ("POST", "/v1/keys/k/rotate", None),
        (
            "POST",
            "/v1/pipelines",
            Some(json!({"config": pipeline("slow", &[])})),
        ),
    ] {
        let (s, v) = call(&app, method, path, Some(&env.eng), body).await;
        assert!(s.is_success(), "{path}: {v}");
    }
    let (s, job) = call(
        &app,
        "POST",
        "/v1/pipelines/slow/runs",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job_status = |app: axum::Router, id: String, token: String| async move {
        let (_, v) = call(&app, "GET", &format!("/v1/jobs/{id}"), Some(&token), None).await;
        v["status"].as_str().unwrap_or_default().to_string()
    };
    let mut status = String::new();
    for _ in 0..200 {
        status = job_status(app.clone(), id.clone(), env.eng.clone()).await;
        if status != "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(status, "running", "the run should still be going");
    // The run holds the keystore as it was; disabling version 1 returns only once it ended.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/keys/k/versions/1/disable",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let after = job_status(app.clone(), id.clone(), env.eng.clone()).await;
    assert!(
        ["succeeded", "failed", "cancelled"].contains(&after.as_str()),
        "{after}"
    );
    project
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn with_ticket_enrolment_a_token_alone_cannot_enrol_a_second_factor() {
    let env = setup();
    // The first admin's ticket comes from the keystore holder, before the server starts.
    let first = custos_policy::Identities::open(&env.state)
        .unwrap()
        .mfa_ticket_issue(
            "admin",
            "admin",
            24,
            i64::try_from(now_s()).unwrap() * 1_000_000_000,
            true,
        )
        .unwrap();
    let project = open(
        &env,
        Opts {
            mfa_enrollment: custos_app::EnrollmentMode::Ticket,
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    // A token alone (stolen, say) enrols nothing.
    let (s, v) = call_otp(&app, "POST", "/v1/mfa/enroll", &env.eng, None, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("ticket"),
        "{v}"
    );
    let enrol_with = |token: &'static str, ticket: String| {
        let app = app.clone();
        async move {
            call_otp(
                &app,
                "POST",
                "/v1/mfa/enroll",
                token,
                None,
                Some(json!({ "ticket": ticket })),
            )
            .await
        }
    };
    let admin: &'static str = Box::leak(env.admin.clone().into_boxed_str());
    let eng: &'static str = Box::leak(env.eng.clone().into_boxed_str());
    // Another user's ticket is not the engineer's.
    let (s, v) = enrol_with(eng, first.expose().to_string()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = enrol_with(admin, first.expose().to_string()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    let (s, v) = call_otp(
        &app,
        "POST",
        "/v1/mfa/confirm",
        admin,
        None,
        // The previous step: the next two privileged calls use this step and the next.
        Some(json!({"code": code(&secret, now_s() - 30)})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = call_otp(
        &app,
        "POST",
        "/v1/users/eng/mfa/ticket",
        &env.ana,
        None,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let otp = code(&secret, now_s());
    let (s, v) = call_otp(
        &app,
        "POST",
        "/v1/users/eng/mfa/ticket",
        admin,
        Some(&otp),
        Some(json!({"valid_hours": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["user"], "eng");
    let ticket = v["ticket"].as_str().unwrap().to_string();
    let expires = v["expires"].as_str().unwrap();
    assert!(expires.len() == 20 && expires.ends_with('Z'), "{v}");
    // Never for oneself.
    let otp = code(&secret, now_s() + 30);
    let (s, v) = call_otp(
        &app,
        "POST",
        "/v1/users/admin/mfa/ticket",
        admin,
        Some(&otp),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another admin"),
        "{v}"
    );
    let (s, v) = enrol_with(eng, format!("{ticket}x")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = enrol_with(eng, ticket.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Used up.
    let (s, v) = enrol_with(eng, ticket.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    project.audit().flush(false).await.unwrap();
    let issued: Vec<_> = records(&env.state, "mfa_ticket")
        .into_iter()
        .filter(|e| e.outcome == "succeeded")
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(
        (issued[0].principal.as_str(), issued[0].resource.as_str()),
        ("admin", "user:eng")
    );
    let enrol_failures = records(&env.state, "mfa_enroll")
        .iter()
        .filter(|e| e.outcome == "failed")
        .count();
    assert_eq!(enrol_failures, 4);
    // Tickets are secrets: never in the audit log.
    for dirent in std::fs::read_dir(env.state.join("audit")).unwrap() {
        let text = std::fs::read_to_string(dirent.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&ticket[4..]) && !text.contains(&first.expose()[4..]));
    }
}
