//! The API through the router: sign-in, decisions, confinement, runs as jobs, audit.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::*;

fn audit_lines(env: &Env) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(env.state.join("audit")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            all.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    all
}

#[tokio::test]
async fn sign_in_is_required_and_recorded() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, v) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!((s, v.as_str()), (StatusCode::OK, Some("ok\n")));
    let (s, h, v) = call_from(&app, "127.0.0.1", "GET", "/v1/whoami", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(h["www-authenticate"], "Bearer");
    assert_eq!(v["error"]["code"], "unauthenticated");
    assert!(h.contains_key("x-request-id"));
    let forged = format!("{}x", &env.eng[..env.eng.len() - 1]);
    let (s, v) = call(&app, "GET", "/v1/whoami", Some(&forged), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = call(&app, "GET", "/v1/whoami", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user"]["name"], "eng");
    assert_eq!(v["user"]["role"], "data_engineer");
    assert_eq!(v["method"], "api_token");
    // Both refusals are in the log, and no token or passphrase is.
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?action=authenticate&outcome=denied",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let codes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["no_token", "invalid_token"]);
    project
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let log = audit_lines(&env);
    for secret in [&env.eng, &env.admin, &forged, &PASSPHRASE.to_string()] {
        let tail = &secret[secret.len() - 20..];
        assert!(!log.contains(tail), "a secret reached the audit log");
    }
}

#[tokio::test]
async fn register_run_and_read_the_records() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": pipeline("orders", &[]), "classification": "internal"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], "orders");
    assert_eq!(v["version"], 1);
    assert_eq!(v["classification"], "internal");
    let (s, h, v) = call_from(
        &app,
        "127.0.0.1",
        "POST",
        "/v1/pipelines/orders/runs",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(h["location"], format!("/v1/jobs/{id}"));
    let job = wait_job(&app, &env.eng, &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["summary"]["rows_written"], 50);
    assert!(env.data.join("out/orders.parquet").is_file());
    let run_id = job["run_id"].as_str().unwrap();
    let (s, v) = call(
        &app,
        "GET",
        &format!("/v1/runs/{run_id}"),
        Some(&env.ana),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "succeeded");
    let (s, v) = call(&app, "GET", "/v1/runs?limit=5", Some(&env.ana), None).await;
    assert_eq!((s, v.as_array().unwrap().len()), (StatusCode::OK, 1));
    let (s, v) = call(&app, "GET", "/v1/runs/nope", Some(&env.ana), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines/missing/runs",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    // The run's decision and outcome, with its run id, are in the log.
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?principal=eng&action=run_pipeline",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows: Vec<(String, Value)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_string(),
                e["run_id"].clone(),
            )
        })
        .collect();
    assert_eq!(rows[0].0, "allowed");
    assert_eq!(rows[1], ("succeeded".to_string(), json!(run_id)));
    // Re-registering makes a new version.
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": pipeline("orders", &["finance"])})),
    )
    .await;
    assert_eq!((s, &v["version"]), (StatusCode::CREATED, &json!(2)), "{v}");
    let (s, v) = call(&app, "GET", "/v1/pipelines/orders", Some(&env.ana), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["tags"], json!(["finance"]));
    assert!(v["config"].as_str().unwrap().contains("[sources.orders]"));
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    let m = m.as_str().unwrap();
    assert!(
        m.contains("route=\"/v1/pipelines/{name}/runs\",method=\"POST\",status=\"202\"} 1"),
        "{m}"
    );
    assert!(m.contains("custos_jobs{status=\"succeeded\"} 1"), "{m}");
}

#[tokio::test]
async fn policies_see_the_registered_tags_not_the_file() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    // The file claims "analytics" (which analysts may run); the registration says otherwise.
    let reg = json!({"config": pipeline("report", &["analytics"]), "tags": []});
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.ana),
        Some(reg.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "analysts may not register: {v}");
    let (s, v) = call(&app, "POST", "/v1/pipelines", Some(&env.eng), Some(reg)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines/report/runs",
        Some(&env.ana),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "denied");
    let reg = json!({"config": pipeline("report", &[]), "tags": ["analytics"]});
    let (s, v) = call(&app, "POST", "/v1/pipelines", Some(&env.eng), Some(reg)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines/report/runs",
        Some(&env.ana),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let job = wait_job(&app, &env.ana, v["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // security_admin may not run pipelines, only audit.
    let (s, _) = call(
        &app,
        "POST",
        "/v1/pipelines/report/runs",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, "POST", "/v1/audit/verify", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn registered_pipelines_stay_inside_the_roots_and_the_secret_allowlist() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let base = pipeline("p", &[]);
    let outside = env.state.parent().unwrap().join("secret.csv");
    std::fs::write(&outside, "a\n1\n").unwrap();
    let cases: Vec<(String, &str)> = vec![
        (base.replace("in/orders.csv", &outside.display().to_string()), "sources.orders.path"),
        (base.replace("in/orders.csv", "../project/secret.csv"), "sources.orders.path"),
        (base.replace("out/p.parquet", "/tmp/custos-escape.parquet"), "sinks.out.path"),
        (
            base.replace(
                "[sinks.out]",
                "[transforms.x]\ntype = \"rewrap\"\ninputs = [\"big\"]\ncolumns = [\"product\"]\nkeystore = \"/tmp/other.ck\"\n\n[sinks.out]",
            ),
            "transforms.x.keystore",
        ),
        (
            format!("{base}\n[sinks.db]\ntype = \"postgres\"\ninputs = [\"big\"]\ntable = \"t\"\nhost = \"localhost\"\nuser = \"u\"\ndbname = \"d\"\npassword = \"${{env:CUSTOS_KEYSTORE_PASSPHRASE}}\"\n"),
            "CUSTOS_KEYSTORE_PASSPHRASE",
        ),
        (
            format!("{base}\n[sinks.db]\ntype = \"postgres\"\ninputs = [\"big\"]\ntable = \"t\"\nhost = \"localhost\"\nuser = \"u\"\ndbname = \"d\"\npassword = \"${{file:/etc/shadow}}\"\n"),
            "file:/etc/shadow",
        ),
    ];
    for (config, key) in cases {
        let (s, v) = call(
            &app,
            "POST",
            "/v1/pipelines",
            Some(&env.eng),
            Some(json!({"config": config})),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(key), "{key}: {msg}");
        assert!(!msg.contains(PASSPHRASE));
    }
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": base, "base_dir": "/etc"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": 5})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("config"),
        "{v}"
    );
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": base, "classification": "secret-ish"})),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = call(&app, "GET", "/v1/pipelines", Some(&env.eng), None).await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));
    assert!(!std::path::Path::new("/tmp/custos-escape.parquet").exists());
}

#[tokio::test]
async fn repeated_failures_lock_out_the_token_and_the_address() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let id_part = &env.eng[..env.eng.rfind('_').unwrap()];
    for i in 0..custos_app::auth::FAILURES_BEFORE_LOCKOUT {
        let guess = format!("{id_part}_guess{i}");
        let (s, _, _) = call_from(&app, "10.9.9.9", "GET", "/v1/whoami", Some(&guess), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // The right token is refused now, from that address and (for this token id) from any.
    for from in ["10.9.9.9", "10.1.1.1"] {
        let (s, _, v) = call_from(&app, from, "GET", "/v1/whoami", Some(&env.eng), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{from}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("locked"),
            "{v}"
        );
    }
    // Another user from another address is not affected; from the locked address they are.
    let (s, _, _) = call_from(&app, "10.1.1.1", "GET", "/v1/whoami", Some(&env.ana), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call_from(&app, "10.9.9.9", "GET", "/v1/whoami", Some(&env.ana), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_address_allowlist_comes_first() {
    let env = setup();
    let project = open(
        &env,
        Opts {
            allow: vec!["10.0.0.0/8", "127.0.0.1"],
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    let (s, _, v) = call_from(
        &app,
        "192.168.1.7",
        "GET",
        "/v1/whoami",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowlist")
    );
    let (s, _, _) = call_from(
        &app,
        "10.20.30.40",
        "GET",
        "/v1/whoami",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn the_token_cache_notices_rotation_and_disabling() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::OK);
    let new = project
        .identities()
        .lock()
        .unwrap()
        .rotate_token("eng", "eng", 1_800_000_000_000_000_000)
        .unwrap();
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(&env.eng), None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a rotated token is refused at once"
    );
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(new.expose()), None).await;
    assert_eq!(s, StatusCode::OK);
    project
        .identities()
        .lock()
        .unwrap()
        .set_active("eng", false)
        .unwrap();
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(new.expose()), None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a disabled user is refused at once"
    );
}

#[tokio::test]
async fn cancelled_jobs_commit_nothing() {
    let env = setup();
    write_orders(&env.data.join("in/orders.csv"), 400_000);
    let project = open(
        &env,
        Opts {
            runs: 1,
            ..Opts::default()
        },
    )
    .await;
    let app = app(&project);
    for name in ["first", "second"] {
        let (s, v) = call(
            &app,
            "POST",
            "/v1/pipelines",
            Some(&env.eng),
            Some(json!({"config": pipeline(name, &[])})),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (_, a) = call(
        &app,
        "POST",
        "/v1/pipelines/first/runs",
        Some(&env.eng),
        None,
    )
    .await;
    let (_, b) = call(
        &app,
        "POST",
        "/v1/pipelines/second/runs",
        Some(&env.eng),
        None,
    )
    .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    // The second waits for the only slot; cancelling it means it never starts.
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v1/jobs/{b}/cancel"),
        Some(&env.ana),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v1/jobs/{b}/cancel"),
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v1/jobs/{a}/cancel"),
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for id in [a, b] {
        let job = wait_job(&app, &env.eng, id).await;
        assert_eq!(job["status"], "cancelled", "{job}");
    }
    assert!(!env.data.join("out/first.parquet").exists());
    assert!(!env.data.join("out/second.parquet").exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.data.join("out"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

#[tokio::test]
async fn audit_verifies_and_shutdown_seals_it() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, v) = call(&app, "POST", "/v1/audit/verify", Some(&env.admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["checkpoints"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["records"].as_u64().unwrap() >= 2, "{v}");
    let (s, v) = call(
        &app,
        "GET",
        "/v1/audit?since=yesterday",
        Some(&env.admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A second owner is refused while the server holds the project.
    let e = custos_app::project::lock_state_dir(&env.state, false).unwrap_err();
    assert!(e.to_string().contains("served by a custos server"), "{e}");
    project
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    drop(app);
    drop(project);
    let lines = audit_lines(&env);
    assert!(lines.contains("\"server_start\"") && lines.contains("\"server_stop\""));
    let ks = custos_keys::Keystore::open(
        &custos_keys::keystore_path(&env.state),
        &custos_keys::Passphrase::new(PASSPHRASE.into()),
    )
    .unwrap();
    let (_, _, seed) = ks
        .encryption_key(
            custos_app::project::AUDIT_KEY,
            custos_keys::Purpose::Signing,
        )
        .await
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed.expose().try_into().unwrap());
    let report = custos_audit::verify(&env.state.join("audit"), &key.verifying_key()).unwrap();
    assert!(report.checkpoints >= 2);
    // The project can be opened again: the lock went with the server.
    let again = open(&env, Opts::default()).await;
    again
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn job_events_stream_progress_until_the_end() {
    let env = setup();
    write_orders(&env.data.join("in/orders.csv"), 300_000);
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": pipeline("events", &[])})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, job) = call(
        &app,
        "POST",
        "/v1/pipelines/events/runs",
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap();
    // The stream ends when the job does: reading it whole returns after the end event.
    let (s, h, body) = call_from(
        &app,
        "127.0.0.1",
        "GET",
        &format!("/v1/jobs/{id}/events"),
        Some(&env.eng),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "text/event-stream");
    let text = body.as_str().unwrap().to_string();
    let events: Vec<(&str, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty() && !e.starts_with(':'))
        .map(|e| {
            let kind = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default();
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .unwrap_or(Value::Null);
            (kind, data)
        })
        .collect();
    let (last_kind, last) = events.last().unwrap();
    assert_eq!(*last_kind, "end", "{text}");
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["summary"]["rows_written"], 300_000);
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|(k, _)| *k == "progress"),
        "{text}"
    );
    // Progress only grows.
    let read: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["progress"]["rows_read"].as_u64().unwrap_or(0))
        .collect();
    assert!(read.windows(2).all(|w| w[0] <= w[1]), "{read:?}");
    // Another user's view of the job is the same; an unknown job is 404.
    let (s, _) = call(&app, "GET", "/v1/jobs/nope/events", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scans_reach_registered_pipelines_and_files_under_the_roots_only() {
    let env = setup();
    std::fs::write(
        env.data.join("in/people.csv"),
        "id,email,note\n1,ann.lee@example.org,x\n2,bo.chan@example.com,y\n3,cy.diaz@example.net,z\n",
    )
    .unwrap();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/scan",
        Some(&env.eng),
        Some(json!({"path": "in/people.csv", "sample": 100})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let email = v[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "email")
        .unwrap();
    assert_eq!(email["profile"]["classes"][0]["kind"], "email", "{v}");
    assert_ne!(email["profile"]["recommended"]["action"], "keep", "{v}");
    // The reports read back into the engine's types (what the CLI prints from).
    let _: Vec<custos_engine::scan::SourceScan> = serde_json::from_value(v).unwrap();
    let (s, v) = call(
        &app,
        "POST",
        "/v1/pipelines",
        Some(&env.eng),
        Some(json!({"config": pipeline("orders", &[])})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/scan",
        Some(&env.eng),
        Some(json!({"pipeline": "orders"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["source"], "orders");
    assert_eq!(v[0]["rows"], 50);
    // Outside the data roots, malformed, or by a role that may not read data sets: refused.
    let outside = env.state.parent().unwrap().join("secret.csv");
    std::fs::write(&outside, "ssn\n123-45-6789\n").unwrap();
    for (who, body, want) in [
        (&env.eng, json!({"path": outside}), StatusCode::FORBIDDEN),
        (
            &env.eng,
            json!({"path": "../secret.csv"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &env.eng,
            json!({"pipeline": "orders", "path": "in/people.csv"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (&env.eng, json!({}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            &env.eng,
            json!({"path": "in/people.csv", "sample": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (&env.eng, json!({"pipeline": "nope"}), StatusCode::NOT_FOUND),
        (
            &env.ana,
            json!({"path": "in/people.csv"}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (s, v) = call(&app, "POST", "/v1/scan", Some(who), Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {v}");
    }
    let lines = audit_lines(&env);
    assert!(lines.contains("dataset:in/people.csv"), "scans are decided");
    assert!(
        !lines.contains("ann.lee@example.org"),
        "no values in the audit log"
    );
    project
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn exported_checkpoints_prove_the_log_only_grew() {
    let env = setup();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    let (s, cp) = call(&app, "POST", "/v1/audit/checkpoint", Some(&env.admin), None).await;
    assert_eq!(s, StatusCode::OK, "{cp}");
    assert_eq!(cp["public_key"].as_str().unwrap().len(), 64, "{cp}");
    // More records, then the proof.
    let _ = call(&app, "GET", "/v1/whoami", Some(&env.eng), None).await;
    let (s, v) = call(
        &app,
        "POST",
        "/v1/audit/prove",
        Some(&env.admin),
        Some(cp.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["size"].as_u64().unwrap() > v["old_size"].as_u64().unwrap(),
        "{v}"
    );
    // A checkpoint whose statement was edited does not verify; one under another key is
    // not this project's.
    let mut edited = cp.clone();
    edited["checkpoint"]["size"] = json!(cp["checkpoint"]["size"].as_u64().unwrap() + 1);
    let (s, v) = call(
        &app,
        "POST",
        "/v1/audit/prove",
        Some(&env.admin),
        Some(edited),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let mut foreign = cp.clone();
    foreign["public_key"] = json!(hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes()
    ));
    let (s, v) = call(
        &app,
        "POST",
        "/v1/audit/prove",
        Some(&env.admin),
        Some(foreign),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another key"),
        "{v}"
    );
    // Reading the audit log is the security admin's.
    let (s, _) = call(&app, "POST", "/v1/audit/checkpoint", Some(&env.eng), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    project
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_scan_of_what_does_not_read_is_the_requests_fault() {
    let env = setup();
    std::fs::write(env.data.join("in/broken.parquet"), "not parquet").unwrap();
    let project = open(&env, Opts::default()).await;
    let app = app(&project);
    for path in ["in/missing.csv", "in/broken.parquet", "in/notes.docx"] {
        let (s, v) = call(
            &app,
            "POST",
            "/v1/scan",
            Some(&env.eng),
            Some(json!({ "path": path })),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
    }
    project
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}
