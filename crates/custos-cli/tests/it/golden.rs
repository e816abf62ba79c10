//! Golden pipelines: every folder under `tests/golden` holds a pipeline, its inputs and the
//! expected outputs (`expected/<path>`; `*.parquet.csv` is a Parquet output read back as CSV;
//! `expected/quarantine.jsonl` the quarantine records). Each is run through the CLI.

use std::path::Path;

use datafusion::arrow::csv::WriterBuilder;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::{Project, assert_invariant};

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == "expected" {
            continue;
        }
        let dest = to.join(&name);
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A Parquet file's rows as CSV text.
pub(crate) fn parquet_as_csv(path: &Path) -> String {
    let f = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut buf = Vec::new();
    let mut first = true;
    for batch in reader {
        let batch = batch.unwrap();
        let mut w = WriterBuilder::new().with_header(first).build(&mut buf);
        w.write(&batch).unwrap();
        first = false;
    }
    String::from_utf8(buf).unwrap()
}

#[test]
fn golden_pipelines() {
    // The runtime variable (set by `cargo test`), not `env!`: see the crypto vectors test.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let root = Path::new(&dir).join("tests/golden");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "golden cases missing");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let p = Project::new();
        copy_dir(&case, p.path());
        let (code, summary, stderr) = p.run_json("pipeline.toml");
        assert_eq!(code, 0, "case {name}: {stderr}\n{summary:#}");
        assert_eq!(summary["status"], "succeeded", "case {name}");
        assert_invariant(&summary);
        let expected_dir = case.join("expected");
        let mut expected = Vec::new();
        files(&expected_dir, &mut expected);
        let mut saw_quarantine = false;
        for exp in expected {
            let rel = exp
                .strip_prefix(&expected_dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let want = std::fs::read_to_string(&exp).unwrap();
            if rel == "quarantine.jsonl" {
                saw_quarantine = true;
                let got: Vec<String> = p
                    .quarantine(&summary)
                    .iter()
                    .map(|v| v.to_string())
                    .collect();
                let want: Vec<String> = want
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l)
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                assert_eq!(got, want, "case {name}: quarantine");
                continue;
            }
            let got = match rel.strip_suffix(".csv").filter(|r| r.ends_with(".parquet")) {
                Some(parquet) => parquet_as_csv(&p.path().join(parquet)),
                None => p.read(&rel),
            };
            assert_eq!(got, want, "case {name}: {rel}");
        }
        if !saw_quarantine {
            assert_eq!(summary["rows_quarantined"], 0, "case {name}");
            assert!(summary["quarantine_file"].is_null(), "case {name}");
        }
        // Nothing but the committed outputs under out/: no temporaries left behind.
        let mut outs = Vec::new();
        files(&p.path().join("out"), &mut outs);
        for o in outs {
            let n = o.file_name().unwrap().to_string_lossy().to_string();
            assert!(!n.starts_with('.'), "case {name}: leftover {n}");
        }
    }
}
