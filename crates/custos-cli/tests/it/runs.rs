//! Run records, `custos init`, exit codes.

use sha2::{Digest, Sha256};

use crate::{Project, assert_invariant};

#[test]
fn init_creates_a_project_that_runs() {
    let p = Project::new();
    let out = p.run(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The keystore init unlocked for the keys also signs its audit checkpoint (and verify
    // signs one over the log as it is before checking).
    let checkpoints = p.read(".custos/audit/checkpoints.jsonl");
    assert_eq!(checkpoints.lines().count(), 1, "{checkpoints}");
    let (code, o, e) = p.run_as("admin", &["audit", "verify"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains(" 2 checkpoints"), "{o}");
    let (code, o, e) = p.run_as("admin", &["keys", "list"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(o.contains("custos-audit") && o.contains("signing"), "{o}");
    let v = p.run(&["validate", "pipeline.toml"]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_invariant(&summary);
    assert_eq!(summary["rows_read"], 13);
    assert_eq!(summary["rows_written"], 10);
    assert_eq!(summary["rows_quarantined"], 3);
    assert!(p.path().join("out/customers.parquet").is_file());
    let reasons: Vec<String> = p
        .quarantine(&summary)
        .iter()
        .map(|q| format!("{} {}", q["rule"], q["line"]))
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");

    // The protected Parquet decrypts back to the input with the CLI.
    let (code, _, stderr) = p.run_json("decrypt.toml");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("DANGER"), "{stderr}");
    let input = p.read("data/customers.csv");
    let back = p.read("out/customers-decrypted.csv");
    let header: Vec<&str> = back.lines().next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    let mut n = 0;
    for line in back.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (id, name, email, ssn) = (
            f[col("id")],
            f[col("full_name")],
            f[col("email")],
            f[col("ssn")],
        );
        let orig = input
            .lines()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap();
        assert!(
            orig.starts_with(&format!("{id},{name},{email},"))
                && orig.contains(&format!(",{ssn},")),
            "row {id}: {line}"
        );
        n += 1;
    }
    assert_eq!(n, 10);
    // Protected columns are not the plaintext; PyArrow reads the file when available.
    let pq = std::fs::read(p.path().join("out/customers.parquet")).unwrap();
    assert!(!String::from_utf8_lossy(&pq).contains("morgan_bennett2001@orozco-hansen.info"));
    if let Ok(py) = std::env::var("CUSTOS_PYTHON") {
        let out = std::process::Command::new(py)
            .args([
                "-c",
                "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); print(t.num_rows, t.column('email')[0].as_py()[:4])",
            ])
            .arg(p.path().join("out/customers.parquet"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "10 cx1.",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // scan finds the personal data and suggests the protect transform.
    let out = p.run(&["scan", "data/customers.csv", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = |c: &str| {
        v[0]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == c)
            .unwrap()["profile"]["recommended"]["action"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(rec("email"), "encrypt");
    assert_eq!(rec("ssn"), "fpe");
    assert_eq!(rec("credit_card"), "tokenize");
    assert_eq!(rec("notes"), "redact");
    assert_eq!(rec("id"), "keep");
    let out = p.run(&["scan", "pipeline.toml", "--suggest"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[transforms.raw_protected]")
            && text.contains("columns.email = { action = \"encrypt\", key = \"pii-main\" }"),
        "{text}"
    );
    // init refuses to clobber without --force.
    assert_eq!(p.run(&["init"]).status.code(), Some(1));
    assert_eq!(p.run(&["init", "--force"]).status.code(), Some(0));
}

#[test]
fn runs_are_recorded_with_file_digests() {
    let p = Project::new();
    assert!(p.run(&["init"]).status.success());
    let (code, summary, _) = p.run_json("pipeline.toml");
    assert_eq!(code, 0);
    let id = summary["run_id"].as_str().unwrap();
    let list = p.run(&["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs[0]["id"], id);
    assert_eq!(runs[0]["status"], "succeeded");
    let show = p.run(&["runs", "show", &id[..13], "--json"]);
    assert!(show.status.success());
    let run: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(run["pipeline"], "customers");
    assert_eq!(run["invariant_ok"], true);
    assert_eq!(
        run["config_hash"].as_str().unwrap(),
        hex(&std::fs::read(p.path().join("pipeline.toml")).unwrap())
    );
    let files = run["files"].as_array().unwrap();
    let roles: Vec<&str> = files.iter().map(|f| f["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["input", "quarantine", "output"]);
    for f in files {
        let bytes = std::fs::read(f["path"].as_str().unwrap()).unwrap();
        assert_eq!(f["size"].as_u64().unwrap(), bytes.len() as u64);
        assert_eq!(f["sha256"].as_str().unwrap(), hex(&bytes), "{f}");
    }
    let comps: Vec<&str> = run["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(comps, ["raw", "checked", "safe", "out"]);
    // Human-readable forms.
    let text = String::from_utf8(p.run(&["runs", "show", id]).stdout).unwrap();
    assert!(text.contains("invariant held"), "{text}");
    let text = String::from_utf8(p.run(&["runs", "list"]).stdout).unwrap();
    assert!(text.contains(id), "{text}");
    // Unknown id.
    assert_eq!(p.run(&["runs", "show", "nope"]).status.code(), Some(2));
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn exit_codes_and_help() {
    let p = Project::new();
    assert_eq!(p.run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(p.run(&["run"]).status.code(), Some(2));
    assert_eq!(p.run(&["run", "missing.toml"]).status.code(), Some(2));
    let help = String::from_utf8(p.run(&["run", "--help"]).stdout).unwrap();
    assert!(
        help.contains("--quiet") && help.contains("--json") && help.contains("Exit code"),
        "{help}"
    );
    let help = String::from_utf8(p.run(&["--help"]).stdout).unwrap();
    for cmd in ["init", "validate", "run", "runs"] {
        assert!(help.contains(cmd), "{help}");
    }
    // A human summary names every component.
    assert!(p.run(&["init"]).status.success());
    let out = p.run(&["run", "pipeline.toml"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("transforms.checked") && text.contains("succeeded"),
        "{text}"
    );
    // --quiet prints nothing on success.
    let out = p.run(&["run", "pipeline.toml", "--quiet"]);
    assert!(out.stdout.is_empty() && out.status.success());
}
