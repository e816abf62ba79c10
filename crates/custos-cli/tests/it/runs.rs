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
    assert_eq!(summary["rows_read"], 10);
    assert_eq!(summary["rows_written"], 5);
    assert_eq!(summary["rows_quarantined"], 5);
    assert!(p.path().join("out/customers.parquet").is_file());
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
    assert_eq!(comps, ["raw", "clean", "checked", "out"]);
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
