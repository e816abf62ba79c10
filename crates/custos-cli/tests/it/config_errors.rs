//! `custos validate` and `custos run` on broken configs: messages asserted verbatim.

use crate::Project;

const BASE: &str = r#"[pipeline]
name = "customers"

[sources.raw]
type = "csv"
path = "data/customers.csv"
schema = { id = "int64", email = "utf8", signup = "date32" }

[transforms.clean]
type = "sql"
inputs = ["raw"]
query = "SELECT id, lower(trim(email)) AS email, signup FROM raw"

[transforms.checked]
type = "validate"
inputs = ["clean"]
rules = [
  { column = "id", not_null = true, unique = true },
  { column = "email", regex = '^[^@\s]+@[^@\s]+$' },
  { column = "signup", min = "2000-01-01", max = "today" },
]

[sinks.out]
type = "parquet"
inputs = ["checked"]
path = "out/customers.parquet"
"#;

fn project(config: &str) -> Project {
    let p = Project::new();
    p.write("pipeline.toml", config);
    p.write(
        "data/customers.csv",
        "id,email,signup\n1,a@b.c,2020-01-01\n",
    );
    p
}

fn validate(config: &str) -> (i32, String) {
    let p = project(config);
    let out = p.run(&["validate", "pipeline.toml"]);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn valid_config_passes() {
    let p = project(BASE);
    let out = p.run(&["validate", "pipeline.toml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "pipeline.toml: ok (1 sources, 2 transforms, 1 sinks)\n"
    );
}

#[test]
fn unknown_key() {
    let (code, err) = validate(&BASE.replace("type = \"sql\"", "type = \"sql\"\nquerry = \"x\""));
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: pipeline.toml:11:1: transforms.clean.querry: unknown key \"querry\"; expected one of \"query\"; did you mean \"query\"?\n\
         pipeline.toml: 1 error(s), 0 warning(s)\n"
    );
}

#[test]
fn typo_in_inputs() {
    let (code, err) = validate(&BASE.replace("inputs = [\"clean\"]", "inputs = [\"claen\"]"));
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "warning: pipeline.toml:9:13: transforms.clean: component \"clean\" is not read by any transform or sink\n\
         error: pipeline.toml:16:11: transforms.checked.inputs[0]: no component named \"claen\"; did you mean \"clean\"?\n\
         pipeline.toml: 1 error(s), 1 warning(s)\n"
    );
}

#[test]
fn cycle() {
    let (code, err) = validate(&BASE.replace("inputs = [\"raw\"]", "inputs = [\"checked\"]"));
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "warning: pipeline.toml:4:10: sources.raw: component \"raw\" is not read by any transform or sink\n\
         error: pipeline.toml:16:10: transforms.checked.inputs: cycle: \"checked\" -> \"clean\" -> \"checked\"\n\
         pipeline.toml: 1 error(s), 1 warning(s)\n"
    );
}

#[test]
fn bad_sql() {
    let (code, err) = validate(&BASE.replace("lower(trim(email))", "lower(trim(emial))"));
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: pipeline.toml:12:9: transforms.clean.query: SQL does not plan: No field named emial. Did you mean 'raw.email'?\n\
         pipeline.toml: 1 error(s), 0 warning(s)\n"
    );
}

#[test]
fn sql_reading_a_table_not_in_inputs() {
    let (code, err) = validate(&BASE.replace("FROM raw", "FROM raw, checked"));
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: pipeline.toml:12:9: transforms.clean.query: query reads \"checked\" which is not in `inputs`; add to `inputs` what the query reads\n\
         pipeline.toml: 1 error(s), 0 warning(s)\n"
    );
    let (code, err) = validate(&BASE.replace("FROM raw", "FROM rwa"));
    assert_eq!(code, 2);
    assert!(err.starts_with("error: pipeline.toml:12:9: transforms.clean.query: no table named \"rwa\"; the query can read its inputs: \"raw\"; did you mean \"raw\"?\n"), "{err}");
}

#[test]
fn schema_mismatches() {
    // A rule on a column the input does not have, a bound of the wrong type, and a declared
    // schema that does not match the file's header: all reported together.
    let cfg = BASE
        .replace("{ column = \"email\", regex", "{ column = \"emial\", regex")
        .replace("min = \"2000-01-01\"", "min = 5");
    let (code, err) = validate(&cfg);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "error: pipeline.toml:19:14: transforms.checked.rules[1].column: no column named \"emial\" in the input; did you mean \"email\"?\n\
         error: pipeline.toml:20:30: transforms.checked.rules[2].min: bound 5 does not fit column type Date32\n\
         pipeline.toml: 2 error(s), 0 warning(s)\n"
    );
    let p = project(&BASE.replace("email = \"utf8\"", "mail = \"utf8\""));
    let out = p.run(&["validate", "pipeline.toml"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let file = p.path().join("data/customers.csv");
    assert!(
        err.starts_with(&format!(
            "error: pipeline.toml:6:8: sources.raw.path: {}: declared schema column(s) \"mail\" not in the header; did you mean \"email\"?\n",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn run_refuses_an_invalid_config_with_exit_2() {
    let p = project(&BASE.replace("inputs = [\"raw\"]", "inputs = [\"rwa\"]"));
    let out = p.run(&["run", "pipeline.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "transforms.clean.inputs[0]: no component named \"rwa\"; did you mean \"raw\"?"
        ),
        "{err}"
    );
    assert!(err.ends_with("nothing was run\n"), "{err}");
    assert!(!p.path().join("out").exists());
}

#[test]
fn json_diagnostics() {
    let p = project(&BASE.replace("inputs = [\"raw\"]", "inputs = [\"rwa\"]"));
    let out = p.run(&["validate", "pipeline.toml", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap();
    assert_eq!(e["severity"], "error");
    assert_eq!(e["key"], "transforms.clean.inputs[0]");
    assert_eq!(e["line"], 11);
    assert_eq!(e["column"], 11);
}

#[test]
fn deny_warnings() {
    let cfg = format!("{BASE}\n[sources.unused]\ntype = \"csv\"\npath = \"data/customers.csv\"\n");
    let p = project(&cfg);
    assert_eq!(p.run(&["validate", "pipeline.toml"]).status.code(), Some(0));
    assert_eq!(
        p.run(&["validate", "pipeline.toml", "--deny-warnings"])
            .status
            .code(),
        Some(2)
    );
}
