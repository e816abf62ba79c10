//! `custos detect eval`: scoring the detectors on labelled JSON Lines.

use crate::Project;

/// Two records: an email and a phone (both found by default), a SSN label one character
/// short (overlap only), a LOCATION label (ignored), and "Ü" so code points and bytes differ.
const TRUTH: &str = concat!(
    r#"{"text": "Ü: mail jane.doe@example.org or call +44 20 7946 0958", "spans": [{"start": 8, "end": 28, "label": "EMAIL_ADDRESS"}, {"start": 37, "end": 53, "label": "PHONE_NUMBER"}]}"#,
    "\n\n",
    r#"{"text": "SSN 123-45-6789 in Paris", "spans": [{"start": 4, "end": 14, "type": "US_SSN"}, {"start": 19, "end": 24, "label": "LOCATION"}]}"#,
    "\n"
);

fn row<'a>(v: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    v["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == label)
        .unwrap_or_else(|| panic!("no {label} row in {v}"))
}

#[test]
fn eval_scores_labelled_spans_as_json_and_table() {
    let p = Project::new();
    p.write("truth.jsonl", TRUTH);
    let (code, out, err) = p.run_as("tester", &["detect", "eval", "truth.jsonl", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["records"], 2);
    assert_eq!(v["ignored_spans"], 1);
    let email = row(&v, "EMAIL_ADDRESS");
    assert_eq!(
        (email["truth"].as_u64(), email["found"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(email["strict"]["f1"], 1.0);
    let phone = row(&v, "PHONE_NUMBER");
    assert_eq!(phone["overlap"]["recall"], 1.0, "{phone}");
    let ssn = row(&v, "US_SSN");
    assert_eq!(ssn["strict"]["recall"], 0.0);
    assert_eq!(ssn["overlap"]["f1"], 1.0);
    assert_eq!(v["pattern_micro"]["truth"], 3);
    assert_eq!(v["pattern_micro"]["overlap"]["f1"], 1.0);

    let (code, out, err) = p.run_as("tester", &["detect", "eval", "truth.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("2 records from truth.jsonl, 1 ignored spans"),
        "{out}"
    );
    let line = out.lines().find(|l| l.starts_with("US_SSN")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    // type truth found  s.P s.R s.F1  o.P o.R o.F1
    assert_eq!(cols[1..3], ["1", "1"], "{line}");
    assert_eq!(cols[4], "0.000", "{line}"); // strict recall
    assert_eq!(cols[8], "1.000", "{line}"); // overlap F1

    // Standard input works the same way.
    let out = p
        .custos_as("tester")
        .args(["detect", "eval", "-", "--json"])
        .write_stdin(TRUTH)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["origin"], "standard input");
    assert_eq!(v["records"], 2);
}

#[test]
fn eval_restricts_kinds_and_gates_on_f1() {
    let p = Project::new();
    p.write("truth.jsonl", TRUTH);
    // Only the email detector: phone and SSN are missed, so pattern micro recall is 1/3.
    let (code, out, err) = p.run_as(
        "tester",
        &["detect", "eval", "truth.jsonl", "--only", "email", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(row(&v, "PHONE_NUMBER")["found"], 0);
    let micro = &v["pattern_micro"]["overlap"];
    assert!(
        (micro["recall"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9,
        "{micro}"
    );
    let (code, _, err) = p.run_as(
        "tester",
        &[
            "detect",
            "eval",
            "truth.jsonl",
            "--only",
            "email,phone",
            "--min-f1",
            "0.9",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("below --min-f1 0.900"), "{err}");
    let (code, _, err) = p.run_as(
        "tester",
        &["detect", "eval", "truth.jsonl", "--min-f1", "0.9"],
    );
    assert_eq!(code, 0, "{err}");
    // An unknown kind is a usage error naming the valid ones.
    let (code, _, err) = p.run_as(
        "tester",
        &["detect", "eval", "truth.jsonl", "--only", "mail"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("mail") && err.contains("email"), "{err}");
}

#[test]
fn eval_uses_a_pipelines_detection_settings() {
    let p = Project::new();
    p.write(
        "truth.jsonl",
        concat!(
            r#"{"text": "badge EMP-123456 at the gate", "spans": []}"#,
            "\n",
            r#"{"text": "mail ada@example.org", "spans": [{"start": 5, "end": 20, "label": "EMAIL"}]}"#,
            "\n"
        ),
    );
    p.write(
        "p.toml",
        r#"
[pipeline]
name = "p"
[detection]
min_score = 0.6
custom = [{ name = "employee_id", pattern = 'EMP-\d{6}', score = 0.9 }]
[sources.s]
type = "csv"
path = "s.csv"
[sinks.out]
type = "csv"
inputs = ["s"]
path = "out.csv"
"#,
    );
    p.write("s.csv", "id\n1\n");
    let (code, out, err) = p.run_as(
        "tester",
        &[
            "detect",
            "eval",
            "truth.jsonl",
            "--pipeline",
            "p.toml",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The custom kind is not a scored label: it neither counts as a false email nor breaks.
    assert_eq!(row(&v, "EMAIL_ADDRESS")["overlap"]["f1"], 1.0);
    assert_eq!(v["pattern_micro"]["found"], 1);
    // An invalid custom pattern is a config error (exit 2) naming the key.
    p.write(
        "bad.toml",
        p.read("p.toml").replace(r"EMP-\d{6}", r"EMP-(\d{6}"),
    );
    let (code, _, err) = p.run_as(
        "tester",
        &["detect", "eval", "truth.jsonl", "--pipeline", "bad.toml"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml") && err.contains("custom"), "{err}");
}

#[test]
fn eval_errors_name_file_and_line_and_need_sign_in() {
    let p = Project::new();
    p.write(
        "truth.jsonl",
        "{\"text\": \"ok\", \"spans\": []}\n{\"text\": \"4111 1111 1111 1111\", \"spans\": [{\"start\": 3}]}\n",
    );
    let (code, out, err) = p.run_as("tester", &["detect", "eval", "truth.jsonl"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("truth.jsonl") && err.contains("line 2"),
        "{err}"
    );
    // The record's text is personal data: the error does not quote it.
    assert!(!err.contains("4111"), "{err}");
    p.write(
        "span.jsonl",
        r#"{"text": "abc", "spans": [{"start": 1, "end": 9, "label": "PERSON"}]}"#,
    );
    let (code, _, err) = p.run_as("tester", &["detect", "eval", "span.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("span.jsonl") && err.contains("outside"),
        "{err}"
    );
    let (code, _, err) = p.run_as("tester", &["detect", "eval", "missing.jsonl"]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.jsonl"), "{err}");
    // Not signed in: refused before the file is read.
    let out = p
        .custos()
        .env_remove("CUSTOS_TOKEN_FILE")
        .args(["detect", "eval", "truth.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}
