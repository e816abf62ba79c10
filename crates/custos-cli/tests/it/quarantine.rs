//! Malformed input lands in quarantine with correct line numbers; limits fail the run.

use std::os::unix::fs::PermissionsExt;

use crate::{Project, assert_invariant};

const PIPELINE: &str = r#"[pipeline]
name = "malformed"
quarantine = { max_ratio = 0.9 }

[sources.raw]
type = "csv"
path = "in.csv"
schema = { id = "int64", amount = "float64", note = "utf8" }

[sinks.out]
type = "csv"
inputs = ["raw"]
path = "out.csv"
"#;

/// (line, rule, column) of each quarantine record.
fn sites(q: &[serde_json::Value]) -> Vec<(u64, &str, Option<&str>)> {
    q.iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["rule"].as_str().unwrap(),
                r["column"].as_str(),
            )
        })
        .collect()
}

#[test]
fn malformed_csv_rows_are_quarantined_with_their_lines() {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    let mut data: Vec<u8> = Vec::new();
    data.extend_from_slice(b"id,amount,note\n"); // 1
    data.extend_from_slice(b"1,1.5,fine\n"); // 2
    data.extend_from_slice(b"2,2.5\n"); // 3 ragged (too few)
    data.extend_from_slice(b"3,3.5,x,extra\n"); // 4 ragged (too many)
    data.extend_from_slice(b"4,4.5,caf\xe9 SECRETCANARY\n"); // 5 invalid UTF-8
    data.extend_from_slice(b"5,NOTANUMBER,x\n"); // 6 bad number
    data.extend_from_slice(b"6,6.5,\"multi\nline\"\n"); // 7-8 good, spans two lines
    data.extend_from_slice(b"7,7.5,\"never closed\n"); // 9 unterminated quote
    data.extend_from_slice(b"8,8.5,after\n"); // 10 good again (resynchronised)
    data.extend_from_slice(b"99999999999999999999,1,x\n"); // 11 integer overflow
    data.extend_from_slice(b"10,1,\"bad\"quote\n"); // 12 text after closing quote
    data.extend_from_slice(b"11,11.5,last"); // 13 good, no trailing newline
    p.write("in.csv", &data);
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_invariant(&summary);
    assert_eq!(summary["rows_read"], 11);
    assert_eq!(summary["rows_written"], 4);
    assert_eq!(summary["rows_quarantined"], 7);
    assert_eq!(
        p.read("out.csv"),
        "id,amount,note\n1,1.5,fine\n6,6.5,\"multi\nline\"\n8,8.5,after\n11,11.5,last\n"
    );
    let q = p.quarantine(&summary);
    let got = sites(&q);
    assert_eq!(
        got,
        vec![
            (3, "ragged_row", None),
            (4, "ragged_row", None),
            (5, "invalid_utf8", Some("note")),
            (6, "type", Some("amount")),
            (9, "unterminated_quote", None),
            (11, "type", Some("id")),
            (12, "malformed_quotes", None),
        ]
    );
    for r in &q {
        assert_eq!(r["source_file"], "in.csv");
        assert_eq!(r["component"], "raw");
        let reason = r["reason"].as_str().unwrap();
        assert!(
            !reason.contains("CANARY")
                && !reason.contains("NOTANUMBER")
                && !reason.contains("9999"),
            "{reason}"
        );
    }
    // Nothing is lost: the raw line is kept, base64 when it is not UTF-8.
    assert_eq!(q[0]["data"]["raw"], "2,2.5");
    assert_eq!(
        q[2]["data"]["raw_base64"],
        "NCw0LjUsY2Fm6SBTRUNSRVRDQU5BUlk="
    );
    assert_eq!(q[3]["reason"], "column \"amount\": not a number");
    assert_eq!(q[0]["reason"], "expected 3 fields, found 2");
    let qpath = summary["quarantine_file"].as_str().unwrap();
    let mode = std::fs::metadata(qpath).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "quarantine file mode");
    assert!(!stderr.contains("CANARY"));
}

#[test]
fn utf8_is_checked_in_quoted_and_escaped_fields_and_text_is_kept_as_written() {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    let mut data: Vec<u8> = Vec::new();
    data.extend_from_slice(b"id,amount,note\n"); // 1
    data.extend_from_slice("1,1.5,\"caf\u{e9} \"\"cr\u{e8}me\"\"\"\n".as_bytes()); // 2 good
    data.extend_from_slice(b"2,2.5,\"bad \"\"\xff\"\"\"\n"); // 3 invalid, escaped field
    data.extend_from_slice(b"3,3.5,\"caf\xe9\"\n"); // 4 invalid, quoted field
    data.extend_from_slice(b"4,\xe94.5,x\n"); // 5 invalid in a number column
    data.extend_from_slice("5,5.5,  spaced \u{2014} text  \n".as_bytes()); // 6 good, spaces kept
    p.write("in.csv", &data);
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_invariant(&summary);
    let q = p.quarantine(&summary);
    let got = sites(&q);
    assert_eq!(
        got,
        vec![
            (3, "invalid_utf8", Some("note")),
            (4, "invalid_utf8", Some("note")),
            (5, "invalid_utf8", Some("amount")),
        ]
    );
    let out = p.read("out.csv");
    assert!(out.contains("caf\u{e9} \"\"cr\u{e8}me\"\""), "{out}");
    assert!(out.contains("  spaced \u{2014} text  "), "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
}

#[test]
fn too_many_quarantined_rows_fail_the_run_and_keep_the_old_output() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        PIPELINE.replace("max_ratio = 0.9", "max_ratio = 0.25"),
    );
    p.write("in.csv", "id,amount,note\n1,1,a\n2,2,b\n3,3,c\n");
    let (code, _, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    let before = p.read("out.csv");
    p.write("in.csv", "id,amount,note\n1,1,a\nx,2,b\ny,3,c\n4,4,d\n");
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["status"], "failed");
    assert_eq!(
        summary["error"],
        "2 of 4 rows quarantined (50.00%), above pipeline.quarantine.max_ratio (25.00%)"
    );
    assert_eq!(summary["rows_written"], 0);
    assert_eq!(p.read("out.csv"), before, "previous output untouched");
    let leftovers: Vec<_> = std::fs::read_dir(p.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("custos-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The quarantine is still kept for inspection.
    assert_eq!(p.quarantine(&summary).len(), 2);
}

#[test]
fn a_configured_quarantine_path_receives_the_records() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        PIPELINE.replace("max_ratio = 0.9", "path = \"bad/rows.jsonl\""),
    );
    p.write("in.csv", "id,amount,note\n1,1,a\nzz,2,b\n");
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        summary["quarantine_file"]
            .as_str()
            .unwrap()
            .ends_with("bad/rows.jsonl")
    );
    let text = p.read("bad/rows.jsonl");
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("\"line\":3"));
    let mode = std::fs::metadata(p.path().join("bad/rows.jsonl"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn sql_errors_do_not_leak_cell_values() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        r#"[pipeline]
name = "leak"
[sources.raw]
type = "csv"
path = "in.csv"
schema = { name = "utf8" }
[transforms.t]
type = "sql"
inputs = ["raw"]
query = "SELECT CAST(name AS INT) AS n FROM raw"
[sinks.out]
type = "csv"
inputs = ["t"]
path = "out.csv"
"#,
    );
    p.write("in.csv", "name\nSECRETCANARY42\n");
    let (code, summary, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 1, "{stderr}");
    let text = format!("{summary} {stderr}");
    assert!(text.contains("Cannot cast"), "{text}");
    assert!(!text.contains("SECRETCANARY42"), "{text}");
    assert!(!p.path().join("out.csv").exists());
    // Nor does the run record.
    let runs = p.run(&["runs", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&runs.stdout).contains("SECRETCANARY42"));
}
