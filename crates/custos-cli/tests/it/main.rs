//! End-to-end tests through the real `custos` binary, each in a fresh temporary directory.
#![allow(clippy::unwrap_used)]

mod access;
mod config_errors;
mod crash;
mod detect;
mod formats;
mod golden;
mod keys;
mod postgres;
mod protect;
mod quarantine;
mod runs;
mod serve;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A fresh project directory with its own state directory.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

/// The test principal's grants: tests decrypt their own synthetic data and destroy keys.
const TESTER_GRANTS: [&str; 3] = ["decrypt_column", "destroy_key", "set_key_min_version"];

impl Project {
    /// A project with an admin (`.custos/admin.token`) and the user `tester` (role
    /// data_engineer, with [`TESTER_GRANTS`]) whose token every command uses.
    pub(crate) fn new() -> Self {
        let p = Self::bare();
        let state = p.path().join(".custos");
        std::fs::create_dir_all(&state).unwrap();
        let ids = custos_policy::Identities::open(&state).unwrap();
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap();
        for (user, role) in [("admin", "security_admin"), ("tester", "data_engineer")] {
            let t = ids.add_user(user, role, user, now_ns).unwrap();
            std::fs::write(state.join(format!("{user}.token")), t.expose()).unwrap();
        }
        for action in TESTER_GRANTS {
            ids.add_grant(
                "tester",
                action,
                "*",
                now_ns / 1_000_000_000 + 86_400,
                "tests work on synthetic data",
                "admin",
                now_ns,
            )
            .unwrap();
        }
        p
    }

    /// A project with no users at all.
    pub(crate) fn bare() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel))
            .unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    pub(crate) fn custos(&self) -> Command {
        let mut c = Command::cargo_bin("custos").expect("custos binary");
        c.current_dir(self.path())
            .env("CUSTOS_STATE_DIR", self.path().join(".custos"))
            .env("CUSTOS_KEYSTORE_PASSPHRASE", "test-passphrase-not-secret")
            .env(
                "CUSTOS_TOKEN_FILE",
                self.path().join(".custos/tester.token"),
            )
            .env_remove("CUSTOS_TOKEN")
            .env_remove("CUSTOS_POLICY_DIR")
            .env_remove("CUSTOS_LOG");
        c
    }

    /// `custos` as the user whose token is in `.custos/<user>.token`.
    pub(crate) fn custos_as(&self, user: &str) -> Command {
        let mut c = self.custos();
        c.env(
            "CUSTOS_TOKEN_FILE",
            self.path().join(format!(".custos/{user}.token")),
        );
        c
    }

    /// Runs `custos args...` as `user`: (exit code, stdout, stderr).
    pub(crate) fn run_as(&self, user: &str, args: &[&str]) -> (i32, String, String) {
        let out = self
            .custos_as(user)
            .args(args)
            .output()
            .expect("run custos");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Runs `custos args...` and returns the output (any exit code).
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.custos().args(args).output().expect("run custos")
    }

    /// Runs a pipeline with `--json` and returns (exit code, summary).
    pub(crate) fn run_json(&self, pipeline: &str) -> (i32, serde_json::Value, String) {
        let out = self.run(&["run", pipeline, "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), v, stderr)
    }

    /// Quarantine records with absolute source paths made relative to the project.
    pub(crate) fn quarantine(&self, summary: &serde_json::Value) -> Vec<serde_json::Value> {
        let Some(q) = summary["quarantine_file"].as_str() else {
            return Vec::new();
        };
        let root = format!("{}/", self.path().canonicalize().unwrap().display());
        let root2 = format!("{}/", self.path().display());
        std::fs::read_to_string(q)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(f) = v["source_file"].as_str() {
                    v["source_file"] = f.replace(&root, "").replace(&root2, "").into();
                }
                v
            })
            .collect()
    }
}

/// Asserts `in + added = out + quarantined + filtered` for every component of a summary.
pub(crate) fn assert_invariant(summary: &serde_json::Value) {
    assert_eq!(summary["invariant_ok"], true, "{summary:#}");
    for c in summary["components"].as_array().unwrap() {
        let g = |k: &str| c[k].as_u64().unwrap();
        assert_eq!(
            g("rows_in") + g("added"),
            g("rows_out") + g("quarantined") + g("filtered"),
            "component {c}"
        );
    }
    let comps = summary["components"].as_array().unwrap();
    let sum = |section: &str, k: &str| -> u64 {
        comps
            .iter()
            .filter(|c| c["section"] == section)
            .map(|c| c[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        summary["rows_read"].as_u64().unwrap(),
        sum("sources", "rows_in")
    );
    assert_eq!(
        summary["rows_written"].as_u64().unwrap(),
        sum("sinks", "rows_out")
    );
    let quarantined: u64 = comps
        .iter()
        .map(|c| c["quarantined"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["rows_quarantined"].as_u64().unwrap(), quarantined);
}

/// A CSV of `rows` rows of synthetic customers.
pub(crate) fn big_csv(rows: usize) -> String {
    let mut s = String::with_capacity(rows * 64);
    s.push_str("id,name,email,zip,signup\n");
    for i in 1..=rows {
        s.push_str(&format!(
            "{i},Name {i},user{i}@example.org,{:05},2020-01-{:02}\n",
            i % 100000,
            1 + i % 28
        ));
    }
    s
}
