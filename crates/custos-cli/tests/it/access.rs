//! Sign-in, Cedar authorization, grants and the audit log through the real binary.

use std::path::Path;

use crate::Project;

const PII_CANARY: &str = "canary.person@example.org";
const PASSPHRASE: &str = "test-passphrase-not-secret";

const INPUT: &str = "id,email\n1,canary.person@example.org\n2,other@example.org\n";

const PROTECT: &str = r#"
[pipeline]
name = "protect"

[sources.raw]
type = "csv"
path = "in.csv"
pii = ["email"]

[transforms.safe]
type = "protect"
inputs = ["raw"]
columns.email = { action = "encrypt", key = "pii-main" }

[sinks.out]
type = "parquet"
inputs = ["safe"]
path = "out/safe.parquet"
"#;

const DECRYPT: &str = r#"
[pipeline]
name = "reveal"

[sources.safe]
type = "parquet"
path = "out/safe.parquet"

[transforms.clear]
type = "protect"
inputs = ["safe"]
columns.email = { action = "decrypt", key = "pii-main" }

[sinks.out]
type = "csv"
inputs = ["clear"]
path = "out/clear.csv"

[danger]
allow_plaintext = ["out.email"]
"#;

const SQL_DECRYPT: &str = r#"
[pipeline]
name = "reveal-sql"

[sources.safe]
type = "parquet"
path = "out/safe.parquet"

[transforms.clear]
type = "sql"
inputs = ["safe"]
query = "SELECT id, decrypt(email, 'pii-main') AS email FROM safe"

[sinks.out]
type = "csv"
inputs = ["clear"]
path = "out/clear-sql.csv"

[danger]
allow_plaintext = ["out.email"]
"#;

fn tagged(tags: &str) -> String {
    PROTECT.replace(
        "name = \"protect\"",
        &format!("name = \"protect\"\ntags = [{tags}]"),
    )
}

/// A project with a keystore (so checkpoints are signed), the key, the input and pipelines.
fn project() -> Project {
    let p = Project::new();
    for args in [
        &[
            "keys",
            "init",
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ][..],
        &["keys", "create", "pii-main", "--purpose", "aead"][..],
    ] {
        let (code, o, e) = p.run_as("admin", args);
        assert_eq!(code, 0, "{args:?}: {o}{e}");
    }
    p.write("in.csv", INPUT);
    p.write("protect.toml", PROTECT);
    p.write("reveal.toml", DECRYPT);
    p.write("reveal-sql.toml", SQL_DECRYPT);
    p
}

fn add_user(p: &Project, name: &str, role: &str) {
    let file = p.path().join(format!(".custos/{name}.token"));
    let (code, o, e) = p.run_as(
        "admin",
        &[
            "users",
            "add",
            name,
            "--role",
            role,
            "--token-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{o}{e}");
}

/// `user` rotates their own token (so nobody else has seen it), as an approver must.
fn self_rotate(p: &Project, user: &str) {
    let fresh = p.path().join(format!(".custos/{user}.token.new"));
    let (code, o, e) = p.run_as(
        user,
        &["tokens", "rotate", "--token-file", fresh.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{o}{e}");
    std::fs::rename(&fresh, p.path().join(format!(".custos/{user}.token"))).unwrap();
}

fn audit_text(p: &Project) -> String {
    let dir = p.path().join(".custos/audit");
    let mut text = String::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
    }
    text
}

fn events(p: &Project) -> Vec<serde_json::Value> {
    let (code, o, e) = p.run_as("admin", &["audit", "tail", "-n", "1000", "--json"]);
    assert_eq!(code, 0, "{e}");
    o.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect()
}

#[test]
fn init_creates_the_first_admin_once() {
    let p = Project::bare();
    let out = p
        .custos()
        .env_remove("CUSTOS_TOKEN_FILE")
        .args(["init", "--no-example", "."])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    let token = stdout
        .lines()
        .find(|l| l.starts_with("cst_"))
        .expect("the admin token is printed")
        .to_string();
    assert!(p.path().join("policies/default.cedar").is_file());
    let listed = p
        .custos()
        .env_remove("CUSTOS_TOKEN_FILE")
        .env("CUSTOS_TOKEN", &token)
        .args(["users", "list", "--json"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let users: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(users[0]["name"], "admin");
    assert_eq!(users[0]["role"], "security_admin");
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&token));
    // A second init creates no second admin and prints no token.
    let again = p
        .custos()
        .env("CUSTOS_TOKEN", &token)
        .args(["init", "--no-example", "."])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stdout).contains("cst_"));
}

#[test]
fn sign_in_failures_share_one_message() {
    let p = project();
    let no_token = p
        .custos()
        .env_remove("CUSTOS_TOKEN_FILE")
        .args(["runs", "list"])
        .output()
        .unwrap();
    assert_eq!(no_token.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("CUSTOS_TOKEN"));

    let good = std::fs::read_to_string(p.path().join(".custos/tester.token")).unwrap();
    let mut wrong = good.trim().to_string();
    wrong.truncate(wrong.len() - 2);
    wrong.push_str("zz");
    let try_token = |t: &str| {
        let out = p
            .custos()
            .env_remove("CUSTOS_TOKEN_FILE")
            .env("CUSTOS_TOKEN", t)
            .args(["runs", "list"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains(t), "the token is echoed: {err}");
        (out.status.code(), err)
    };
    let (code, wrong_msg) = try_token(&wrong);
    assert_eq!(code, Some(3));
    let (_, unknown_msg) = try_token("cst_0123456789ab_nope");
    assert_eq!(wrong_msg, unknown_msg);
    let (code, o, e) = p.run_as("admin", &["users", "disable", "tester"]);
    assert_eq!(code, 0, "{o}{e}");
    let (code, disabled_msg) = try_token(good.trim());
    assert_eq!(code, Some(3));
    assert_eq!(disabled_msg, wrong_msg);
    let failures: Vec<_> = events(&p)
        .into_iter()
        .filter(|e| e["event"]["action"] == "authenticate")
        .collect();
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert!(failures.iter().all(|e| e["event"]["outcome"] == "denied"));
}

#[test]
fn roles_and_grants_are_enforced_on_runs() {
    let p = project();
    add_user(&p, "ann", "analyst");
    add_user(&p, "eve", "data_engineer");
    add_user(&p, "sam", "security_admin");

    // analyst: only pipelines tagged analytics.
    let (code, _, e) = p.run_as("ann", &["run", "protect.toml"]);
    assert_eq!(code, 3, "{e}");
    assert!(
        e.contains("may not run_pipeline on pipeline:protect")
            && e.contains("no policy permits it"),
        "{e}"
    );
    assert!(!p.path().join("out/safe.parquet").exists());
    p.write("protect.toml", tagged("\"analytics\""));
    let (code, _, e) = p.run_as("ann", &["run", "protect.toml"]);
    assert_eq!(code, 0, "{e}");
    // security_admin does not run pipelines.
    assert_eq!(p.run_as("sam", &["run", "protect.toml"]).0, 3);
    // Tokenizing (deterministic: a codebook of emails) is a decision per key, in config and
    // SQL alike: the engineer may, the analyst may not, before anything is read.
    let (code, o, e) = p.run_as("admin", &["keys", "create", "tok", "--purpose", "hmac"]);
    assert_eq!(code, 0, "{o}{e}");
    let tokens = tagged("\"analytics\"")
        .replace(
            "{ action = \"encrypt\", key = \"pii-main\" }",
            "{ action = \"tokenize\", key = \"tok\" }",
        )
        .replace("out/safe.parquet", "out/tokens.parquet");
    p.write("tokens.toml", &tokens);
    let sql = tokens
        .replace(
            "type = \"protect\"\ninputs = [\"raw\"]\ncolumns.email = { action = \"tokenize\", key = \"tok\" }",
            "type = \"sql\"\ninputs = [\"raw\"]\nquery = \"SELECT id, tokenize(email, 'tok') AS email FROM raw\"",
        )
        .replace("out/tokens.parquet", "out/tokens-sql.parquet");
    assert!(sql.contains("tokenize(email"), "{sql}");
    p.write("tokens-sql.toml", &sql);
    for file in ["tokens.toml", "tokens-sql.toml"] {
        let (code, _, e) = p.run_as("ann", &["run", file]);
        assert_eq!(code, 3, "{file}: {e}");
        assert!(
            e.contains("may not use_key on key:tok/protect/tokenize"),
            "{e}"
        );
        let (code, _, e) = p.run_as("eve", &["run", file]);
        assert_eq!(code, 0, "{file}: {e}");
    }
    assert!(
        events(&p).iter().any(|e| e["event"]["action"] == "use_key"
            && e["event"]["principal"] == "ann"
            && e["event"]["outcome"] == "denied"),
        "no use_key denial recorded"
    );

    // data_engineer: runs, but decrypting PII needs a grant, in config and in SQL alike.
    for pipeline in ["reveal.toml", "reveal-sql.toml"] {
        let (code, _, e) = p.run_as("eve", &["run", pipeline]);
        assert_eq!(code, 3, "{pipeline}: {e}");
        assert!(e.contains("decrypt_column on column:reveal"), "{e}");
        assert!(!e.contains(PII_CANARY));
    }
    assert!(!p.path().join("out/clear.csv").exists());
    assert!(!p.path().join("out/clear-sql.csv").exists());

    // Nobody grants to themselves.
    let (code, _, e) = p.run_as(
        "admin",
        &[
            "grants",
            "add",
            "admin",
            "decrypt_column",
            "--on",
            "*",
            "--until",
            "+1h",
            "--reason",
            "x",
        ],
    );
    assert_ne!(code, 0);
    assert!(e.contains("second person"), "{e}");
    // admin added eve and saw her first token: a grant needs another admin...
    let grant_eve = [
        "grants",
        "add",
        "eve",
        "decrypt_column",
        "--on",
        "pipeline:reveal",
        "--until",
        "+1h",
        "--reason",
        "ticket 17",
    ];
    let (code, _, e) = p.run_as("admin", &grant_eve);
    assert_ne!(code, 0);
    assert!(e.contains("you added \"eve\""), "{e}");
    // ...whose own token nobody else has seen.
    let (code, _, e) = p.run_as("sam", &grant_eve);
    assert_ne!(code, 0);
    assert!(e.contains("rotate it yourself"), "{e}");
    self_rotate(&p, "sam");
    // A grant from a second admin opens exactly that pipeline.
    let (code, o, e) = p.run_as(
        "sam",
        &[
            "grants",
            "add",
            "eve",
            "decrypt_column",
            "--on",
            "pipeline:reveal",
            "--until",
            "+1h",
            "--reason",
            "ticket 17",
        ],
    );
    assert_eq!(code, 0, "{o}{e}");
    let grant_id = o
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let (code, _, e) = p.run_as("eve", &["run", "reveal.toml"]);
    assert_eq!(code, 0, "{e}");
    assert!(p.read("out/clear.csv").contains(PII_CANARY));
    assert_eq!(p.run_as("eve", &["run", "reveal-sql.toml"]).0, 3);
    // Revoked: refused again at once.
    assert_eq!(p.run_as("admin", &["grants", "revoke", &grant_id]).0, 0);
    assert_eq!(p.run_as("eve", &["run", "reveal.toml"]).0, 3);

    // An expired grant stops working without anyone acting.
    let ids = custos_policy::Identities::open(&p.path().join(".custos")).unwrap();
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    ids.add_grant(
        "eve",
        "decrypt_column",
        "*",
        now_ns / 1_000_000_000 + 1,
        "short",
        "sam",
        now_ns,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(p.run_as("eve", &["run", "reveal.toml"]).0, 3);

    // The decisions are audited with the policies that made them.
    let ev = events(&p);
    let decided = |action: &str, outcome: &str| {
        ev.iter()
            .filter(|e| e["event"]["action"] == action && e["event"]["outcome"] == outcome)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        decided("run_pipeline", "allowed")
            .iter()
            .any(|e| e["event"]["principal"] == "ann"
                && e["event"]["policies"][0] == "analyst.run-analytics")
    );
    assert!(
        decided("decrypt_column", "allowed")
            .iter()
            .any(|e| e["event"]["principal"] == "eve"
                && e["event"]["policies"][0] == format!("grant:{grant_id}"))
    );
    assert!(
        decided("decrypt_column", "denied").len() >= 4,
        "{} events: {:?}",
        ev.len(),
        ev.iter()
            .map(|e| format!(
                "{} {} {}",
                e["event"]["principal"], e["event"]["action"], e["event"]["outcome"]
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        decided("run_pipeline", "succeeded")
            .iter()
            .any(|e| e["event"]["run_id"].is_string() && e["event"]["rows"] == 2),
        "{} events: {:?}",
        ev.len(),
        decided("run_pipeline", "succeeded")
    );
}

#[test]
fn key_destruction_needs_a_grant() {
    let p = project();
    add_user(&p, "sam", "security_admin");
    self_rotate(&p, "sam");
    assert_eq!(p.run_as("admin", &["keys", "rotate", "pii-main"]).0, 0);
    let (code, _, e) = p.run_as("admin", &["keys", "destroy", "pii-main", "1", "--yes"]);
    assert_eq!(code, 3, "{e}");
    assert!(e.contains("destroy_key on key:pii-main"), "{e}");
    // Moving the minimum version makes old ciphertexts undecryptable: a grant too.
    let (code, _, e) = p.run_as("admin", &["keys", "set-min-version", "pii-main", "2"]);
    assert_eq!(code, 3, "{e}");
    assert!(e.contains("set_key_min_version on key:pii-main"), "{e}");
    let (code, o, e) = p.run_as(
        "sam",
        &[
            "grants",
            "add",
            "admin",
            "destroy_key",
            "--on",
            "key:pii-main",
            "--until",
            "+10m",
            "--reason",
            "shred 2019 backup",
        ],
    );
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) = p.run_as("admin", &["keys", "destroy", "pii-main", "1", "--yes"]);
    assert_eq!(code, 0, "{o}{e}");
    // The audit key cannot be destroyed or rotated.
    let (code, _, e) = p.run_as("admin", &["keys", "rotate", "custos-audit"]);
    assert_ne!(code, 0);
    assert!(e.contains("audit"), "{e}");
    // Analysts do not manage keys at all.
    add_user(&p, "ann", "analyst");
    assert_eq!(p.run_as("ann", &["keys", "list"]).0, 3);
}

#[test]
fn policies_are_validated_and_fail_closed() {
    let p = project();
    std::fs::create_dir_all(p.path().join("policies")).unwrap();
    p.write(
        "policies/team.cedar",
        "@id(\"typo\")\npermit (principal, action == Custos::Action::\"run_pipeline\", resource) when { resource.colour == \"red\" };\n",
    );
    let out = p.run(&["validate", "protect.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("team.cedar"), "{err}");
    // Policies that do not load deny everything.
    let (code, _, e) = p.run_as("tester", &["run", "protect.toml"]);
    assert_eq!(code, 3, "{e}");
    assert!(e.contains("fail closed"), "{e}");
    // A valid custom policy set replaces the defaults.
    p.write(
        "policies/team.cedar",
        "@id(\"everyone-runs\")\npermit (principal, action == Custos::Action::\"run_pipeline\", resource);\n\
         @id(\"everyone-protects\")\npermit (principal, action == Custos::Action::\"use_key\", resource);\n",
    );
    assert_eq!(p.run(&["validate", "protect.toml"]).status.code(), Some(0));
    let (code, _, e) = p.run_as("tester", &["run", "protect.toml"]);
    assert_eq!(code, 0, "{e}");
    assert_eq!(p.run_as("admin", &["users", "list"]).0, 3);
}

#[test]
fn policies_from_before_use_key_are_named_as_the_reason() {
    let p = project();
    std::fs::create_dir_all(p.path().join("policies")).unwrap();
    // A project's policy file written before `use_key` existed: runs are permitted, keys not.
    p.write(
        "policies/default.cedar",
        "@id(\"everyone-runs\")\npermit (principal, action == Custos::Action::\"run_pipeline\", resource);\n",
    );
    let out = p.run(&["validate", "protect.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning") && err.contains("use_key to nobody"),
        "{err}"
    );
    let out = p.run(&["validate", "--deny-warnings", "protect.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let (code, _, e) = p.run_as("tester", &["run", "protect.toml"]);
    assert_eq!(code, 3, "{e}");
    assert!(
        e.contains("use_key on key:pii-main") && e.contains("data_engineer.use-keys"),
        "{e}"
    );
}

#[test]
fn commands_at_once_share_one_audit_log() {
    let p = project();
    let before = events(&p).len();
    // Local commands run side by side (cron jobs, two terminals): each appends its records
    // and a checkpoint under the log's lock, on the chain as the others left it.
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let who = if i % 2 == 0 { "admin" } else { "tester" };
                let mut cmd = p.custos_as(who);
                s.spawn(move || cmd.args(["keys", "list", "--json"]).output().unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (code, o, e) = p.run_as("admin", &["audit", "verify"]);
    assert_eq!(code, 0, "{o}{e}");
    // Every command's decision is there once (the first `events` call adds one too).
    let decided = events(&p)
        .into_iter()
        .skip(before)
        .filter(|e| e["event"]["action"] == "manage_keys")
        .count();
    assert_eq!(decided, 8);
}

#[test]
fn the_audit_tail_filters_by_principal_action_outcome_and_time() {
    let p = project();
    assert_eq!(p.run_as("tester", &["run", "protect.toml"]).0, 0);
    assert_eq!(p.run_as("tester", &["users", "list"]).0, 3);
    let tail = |args: &[&str]| {
        let mut all = vec!["audit", "tail", "-n", "100", "--json"];
        all.extend_from_slice(args);
        let (code, o, e) = p.run_as("admin", &all);
        assert_eq!(code, 0, "{args:?}: {e}");
        o.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"].clone())
            .collect::<Vec<_>>()
    };
    let runs = tail(&[
        "--principal",
        "tester",
        "--action",
        "run_pipeline",
        "--outcome",
        "succeeded",
    ]);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["resource"], "pipeline:protect");
    let denied = tail(&["--principal", "tester", "--outcome", "denied"]);
    assert!(
        !denied.is_empty()
            && denied
                .iter()
                .all(|e| e["principal"] == "tester" && e["outcome"] == "denied"),
        "{denied:?}"
    );
    assert!(tail(&["--since", "2200-01-01T00:00:00Z"]).is_empty());
    assert!(!tail(&["--until", "2200-01-01T00:00:00Z"]).is_empty());
    for (bad, why) in [
        ("yesterday", "RFC 3339"),
        ("2999-01-01T00:00:00Z", "years 1678 to 2261"),
    ] {
        let (code, _, e) = p.run_as("admin", &["audit", "tail", "--since", bad]);
        assert_eq!(code, 2, "{e}");
        assert!(e.contains("since") && e.contains(why), "{e}");
    }
}

#[test]
fn audit_log_verifies_and_catches_tampering() {
    let p = project();
    let (code, _, e) = p.run_as("tester", &["run", "protect.toml"]);
    assert_eq!(code, 0, "{e}");
    let (code, o, e) = p.run_as("admin", &["audit", "verify"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("audit log ok"), "{o}");

    // Export a checkpoint, do more, prove the log only grew.
    let cp = p.path().join("cp.json");
    let (code, o, e) = p.run_as(
        "admin",
        &["audit", "export-checkpoint", "--out", cp.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{o}{e}");
    assert_eq!(p.run_as("tester", &["run", "protect.toml"]).0, 0);
    let (code, o, e) = p.run_as("admin", &["audit", "prove", cp.to_str().unwrap()]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("consistent"), "{o}");

    // Secrets, tokens and cell values never reach the audit log or the logs, even at debug
    // level and for a run that decrypts.
    let out = p
        .custos()
        .env("CUSTOS_LOG", "debug")
        .args(["run", "reveal.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(p.read("out/clear.csv").contains(PII_CANARY));
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = audit_text(&p);
    assert!(
        text.contains("danger_allow_plaintext"),
        "the [danger] switch is audited"
    );
    let tester_token = std::fs::read_to_string(p.path().join(".custos/tester.token")).unwrap();
    for canary in [PII_CANARY, PASSPHRASE, tester_token.trim()] {
        assert!(!text.contains(canary), "audit log holds {canary}");
        assert!(!logs.contains(canary), "logs hold {canary}");
    }

    // Change one byte of a recorded event: verification names the position.
    let seg = first_segment(&p.path().join(".custos/audit"));
    let original = std::fs::read_to_string(&seg).unwrap();
    let tampered = original.replacen("\"tester\"", "\"tester2\"", 1);
    assert_ne!(tampered, original);
    std::fs::write(&seg, &tampered).unwrap();
    let (code, o, e) = p.run_as("admin", &["audit", "verify"]);
    // The log no longer opens for anyone (fail closed), and says where it broke.
    assert_eq!(code, 1, "{o}{e}");
    assert!(e.contains("position"), "{e}");
}

fn first_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("segment-")
        })
        .collect();
    segs.sort();
    segs.remove(0)
}

#[test]
fn retention_removes_expired_segments_and_the_log_still_verifies() {
    let p = Project::new();
    // Two years of old history in small segments, written before any command ran.
    let dir = p.path().join(".custos/audit");
    let old = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 730 * 86_400 * 1_000_000_000;
    {
        let mut log = custos_audit::AuditLog::open(&dir, 16 * 1024).unwrap();
        for i in 0..400 {
            log.append(&custos_audit::Event {
                time_ns: old + i,
                principal: "tester".into(),
                action: "run_pipeline".into(),
                resource: "pipeline:old".into(),
                outcome: "succeeded".into(),
                error_code: None,
                host: "h".into(),
                pid: 1,
                policies: vec!["data_engineer.pipelines".into()],
                run_id: None,
                rows: Some(1),
                detail: None,
            })
            .unwrap();
        }
        log.sync().unwrap();
    }
    let segments = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("segment-")
            })
            .count()
    };
    let before = segments();
    assert!(before > 3, "{before}");
    p.write(
        "custos.toml",
        "[audit]\nretention = \"1y\"\nsegment_mib = 1\n",
    );
    // The first command signs a checkpoint over the old records; the next removes them.
    for args in [
        &[
            "keys",
            "init",
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ][..],
        &["keys", "list"][..],
    ] {
        let (code, o, e) = p.run_as("admin", args);
        assert_eq!(code, 0, "{args:?}: {o}{e}");
    }
    assert!(
        segments() < before,
        "{} of {before} segments left",
        segments()
    );
    assert!(dir.join("anchor.json").is_file());
    let (code, o, e) = p.run_as("admin", &["audit", "verify"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(
        events(&p)
            .iter()
            .any(|e| e["event"]["action"] == "audit_retention")
    );
    // A retention that is not a duration is a clear error.
    p.write("custos.toml", "[audit]\nretention = \"forever\"\n");
    let (code, _, e) = p.run_as("admin", &["keys", "list"]);
    assert_ne!(code, 0);
    assert!(e.contains("custos.toml") && e.contains("retention"), "{e}");
}

#[test]
fn tokens_rotate_and_removed_users_lose_their_grants() {
    let p = project();
    add_user(&p, "eve", "data_engineer");
    let old = std::fs::read_to_string(p.path().join(".custos/eve.token")).unwrap();
    // Eve rotates her own token: the old one stops working at once.
    let new_file = p.path().join(".custos/eve2.token");
    let (code, o, e) = p.run_as(
        "eve",
        &[
            "tokens",
            "rotate",
            "--token-file",
            new_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{o}{e}");
    let with = |token_file: &Path| {
        p.custos()
            .env("CUSTOS_TOKEN_FILE", token_file)
            .args(["run", "protect.toml", "--quiet"])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(with(&p.path().join(".custos/eve.token")), Some(3));
    assert_eq!(with(&new_file), Some(0));
    assert!(!o.contains(old.trim()));
    // Rotating someone else's token needs manage_users.
    assert_eq!(
        p.run_as("tester", &["tokens", "rotate", "--user", "eve"]).0,
        3
    );

    // Removing a user revokes the grants they held.
    add_user(&p, "sam", "security_admin");
    self_rotate(&p, "sam");
    let (code, _, e) = p.run_as(
        "sam",
        &[
            "grants",
            "add",
            "eve",
            "decrypt_column",
            "--on",
            "*",
            "--until",
            "+1h",
            "--reason",
            "ticket 9",
        ],
    );
    assert_eq!(code, 0, "{e}");
    assert_eq!(p.run_as("admin", &["users", "remove", "eve"]).0, 0);
    let (code, o, _) = p.run_as("admin", &["grants", "list", "--all", "--json"]);
    assert_eq!(code, 0);
    let grants: serde_json::Value = serde_json::from_str(&o).unwrap();
    let eve: Vec<_> = grants
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["user"] == "eve")
        .collect();
    assert_eq!(eve.len(), 1);
    assert_eq!(eve[0]["revoked_by"], "admin");
    assert_eq!(with(&new_file), Some(3));
    // Nobody removes or disables themselves.
    assert_ne!(p.run_as("admin", &["users", "remove", "admin"]).0, 0);
}

#[test]
fn the_keystore_holder_issues_enrolment_tickets_locally() {
    let p = project();
    let (code, o, e) = p.run_as("admin", &["mfa", "ticket", "tester", "--json"]);
    assert_eq!(code, 0, "{o}{e}");
    let t: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(t["user"], "tester");
    let ticket = t["ticket"].as_str().unwrap();
    assert!(ticket.starts_with("cmt_") && ticket.len() == 44, "{o}");
    // Locally the keystore holder is the trust root: the first admin's own ticket too.
    let (code, o, e) = p.run_as("admin", &["mfa", "ticket", "admin", "--valid-hours", "2"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("shown once") && o.contains("cmt_"), "{o}");
    // Issuing is user administration.
    let (code, _, e) = p.run_as("tester", &["mfa", "ticket", "tester"]);
    assert_eq!(code, 3, "{e}");
    let (code, _, e) = p.run_as("admin", &["mfa", "ticket", "admin", "--valid-hours", "0"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("valid_hours"), "{e}");
    // Enrolling is the server's (it holds the secrets key).
    let (code, _, e) = p.run_as("tester", &["mfa", "enroll"]);
    assert_eq!(code, 2, "{e}");
    assert!(e.contains("talks to a server"), "{e}");
    // The ticket is a secret: not in the audit log.
    for f in std::fs::read_dir(p.path().join(".custos/audit")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&ticket[4..]));
    }
}
