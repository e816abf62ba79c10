//! Killing a run midway leaves earlier outputs untouched and no partial file under a target
//! name; several sinks commit all or none.

use std::time::{Duration, Instant};

use crate::{Project, big_csv};

const PIPELINE: &str = r#"[pipeline]
name = "crash"

[sources.raw]
type = "csv"
path = "in.csv"

[transforms.clean]
type = "sql"
inputs = ["raw"]
query = "SELECT id, upper(name) AS name, email, zip FROM raw"

[sinks.out]
type = "csv"
inputs = ["clean"]
path = "out/out.csv"

[sinks.pq]
type = "parquet"
inputs = ["clean"]
path = "out/out.parquet"

# Synthetic PII-like test data, written in the clear on purpose.
[danger]
allow_plaintext = ["out.*", "pq.*"]
"#;

fn hidden_temps(p: &Project) -> Vec<String> {
    std::fs::read_dir(p.path().join("out"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_midway_leaves_no_partial_output() {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    p.write("in.csv", big_csv(10));
    let (code, _, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    let before_csv = p.read("out/out.csv");
    let before_pq = std::fs::read(p.path().join("out/out.parquet")).unwrap();

    p.write("in.csv", big_csv(1_500_000));
    let bin = assert_cmd::cargo::cargo_bin("custos");
    let mut child = std::process::Command::new(bin)
        .args(["run", "pipeline.toml", "--quiet"])
        .current_dir(p.path())
        .env("CUSTOS_STATE_DIR", p.path().join(".custos"))
        .env("CUSTOS_TOKEN_FILE", p.path().join(".custos/tester.token"))
        .spawn()
        .unwrap();
    // Wait until the run is writing its temporary files, then kill it without warning.
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("run finished before it could be killed: {status}");
        }
        let temps = hidden_temps(&p);
        let writing = temps.iter().any(|t| {
            t.contains("custos-tmp")
                && std::fs::metadata(p.path().join("out").join(t))
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
        });
        if writing {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no temporary file appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(p.read("out/out.csv"), before_csv, "csv output untouched");
    assert_eq!(
        std::fs::read(p.path().join("out/out.parquet")).unwrap(),
        before_pq,
        "parquet output untouched"
    );
    let names: Vec<String> = std::fs::read_dir(p.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for n in &names {
        assert!(
            n == "out.csv" || n == "out.parquet" || n.starts_with('.'),
            "unexpected file {n}"
        );
    }

    // The next run marks the killed run and clears its temporaries.
    p.write("in.csv", big_csv(20));
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["rows_written"], 40);
    assert!(hidden_temps(&p).is_empty(), "{:?}", hidden_temps(&p));
    let runs: serde_json::Value =
        serde_json::from_slice(&p.run(&["runs", "list", "--json"]).stdout).unwrap();
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["succeeded", "killed", "succeeded"]);
}

#[test]
fn several_sinks_commit_all_or_none() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        PIPELINE.replace(
            "path = \"out/out.parquet\"",
            "path = \"blocked/out.parquet\"",
        ),
    );
    p.write("in.csv", big_csv(5));
    // `blocked` is a file, so the Parquet sink cannot write beneath it.
    p.write("blocked", "not a directory");
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["status"], "failed");
    assert!(
        summary["error"].as_str().unwrap().contains("sink \"pq\""),
        "{summary}"
    );
    assert!(
        !p.path().join("out/out.csv").exists(),
        "the csv sink must not be committed alone"
    );
    assert!(hidden_temps(&p).is_empty(), "{:?}", hidden_temps(&p));
}
