//! Phase-one config checks: every message asserted verbatim, with its location.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use custos_config::{SinkKind, SourceKind, TransformKind, load_str};

fn errors(text: &str) -> Vec<String> {
    load_str(Path::new("p.toml"), text)
        .diagnostics
        .0
        .iter()
        .map(|d| d.to_string())
        .collect()
}

const GOOD: &str = r#"[pipeline]
name = "customers"

[sources.raw]
type = "csv"
path = "data/customers-*.csv"
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

#[test]
fn good_config_loads_into_the_typed_model() {
    let l = load_str(Path::new("dir/p.toml"), GOOD);
    assert!(l.diagnostics.0.is_empty(), "{}", l.diagnostics);
    let c = l.config;
    assert_eq!(c.pipeline.name, "customers");
    assert!(c.pipeline.preserve_order);
    let SourceKind::Csv(csv) = &c.sources[0].kind else {
        panic!("csv")
    };
    let cols: Vec<&str> = csv
        .schema
        .as_ref()
        .unwrap()
        .0
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        cols,
        ["id", "email", "signup"],
        "schema keeps declaration order"
    );
    assert!(csv.header);
    assert_eq!(csv.null_values, [""]);
    assert!(matches!(c.transforms[0].kind, TransformKind::Sql(_)));
    let TransformKind::Validate(v) = &c.transforms[1].kind else {
        panic!("validate")
    };
    assert_eq!(v.rules.len(), 3);
    let SinkKind::Parquet(p) = &c.sinks[0].kind else {
        panic!("parquet")
    };
    assert_eq!(p.compression, "zstd");
    assert_eq!(p.row_group_size, 131072);
    assert_eq!(c.resolve("x.csv"), Path::new("dir/x.csv"));
    assert_eq!(c.hash.len(), 64);
}

#[test]
fn typo_in_input_names_the_key_and_suggests() {
    let text = GOOD.replace("inputs = [\"raw\"]", "inputs = [\"rwa\"]");
    assert_eq!(
        errors(&text),
        ["error: p.toml:11:11: transforms.clean.inputs[0]: no component named \"rwa\"; did you mean \"raw\"?"]
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once("warning: p.toml:4:10: sources.raw: component \"raw\" is not read by any transform or sink".to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn unknown_key_is_rejected_with_suggestion() {
    let text = GOOD.replace(
        "path = \"out/customers.parquet\"",
        "path = \"out/customers.parquet\"\ncompresion = \"zstd\"",
    );
    assert_eq!(
        errors(&text),
        [
            "error: p.toml:27:1: sinks.out.compresion: unknown key \"compresion\"; expected one of \"path\", \"compression\", \"row_group_size\"; did you mean \"compression\"?"
        ]
    );
}

#[test]
fn unknown_type_and_wrong_value_type() {
    let text = GOOD
        .replace("type = \"csv\"", "type = \"cvs\"")
        .replace("name = \"customers\"", "name = 5");
    assert_eq!(
        errors(&text),
        [
            "error: p.toml:2:8: pipeline.name: invalid type: integer 5, expected a string",
            "error: p.toml:5:8: sources.raw.type: unknown source type \"cvs\"; expected one of \"csv\", \"jsonl\", \"parquet\", \"postgres\"; did you mean \"csv\"?",
        ]
    );
}

#[test]
fn cycles_are_reported_once_with_their_path() {
    let text = r#"[pipeline]
name = "c"
[sources.raw]
type = "csv"
path = "x.csv"
[transforms.a]
type = "sql"
inputs = ["raw", "b"]
query = "SELECT * FROM raw"
[transforms.b]
type = "sql"
inputs = ["a"]
query = "SELECT * FROM a"
[sinks.out]
type = "csv"
inputs = ["b"]
path = "out.csv"
"#;
    assert_eq!(
        errors(text),
        ["error: p.toml:12:10: transforms.b.inputs: cycle: \"b\" -> \"a\" -> \"b\""]
    );
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"[pipeline]
name = "many"
[pipelines]
x = 1
[sources.raw]
type = "csv"
path = "x.csv"
delimiter = ";;"
[transforms.t]
type = "validate"
inputs = ["raw"]
rules = [{ column = "a" }, { column = "b", regex = "(" }]
[sinks.a]
type = "jsonl"
inputs = ["t", "nope"]
path = "out/*.jsonl"
[sinks.b]
type = "parquet"
inputs = ["a"]
path = "b.parquet"
compression = "brotli"
"#;
    assert_eq!(
        errors(text),
        [
            "error: p.toml:3:2: pipelines: unknown top-level key \"pipelines\"; expected one of pipeline, sources, transforms, sinks, danger, detection; did you mean \"pipeline\"?",
            "error: p.toml:8:13: sources.raw.delimiter: `delimiter` must be a single ASCII character",
            "error: p.toml:12:10: transforms.t.rules[0]: rule checks nothing: add not_null, unique, regex, min, max, one_of, min_length or max_length",
            "error: p.toml:12:52: transforms.t.rules[1].regex: invalid regular expression: error: unclosed group",
            "error: p.toml:16:8: sinks.a.path: a sink `path` must name one file (no glob, not a directory)",
            "error: p.toml:21:15: sinks.b.compression: unknown compression \"brotli\"; expected zstd, zstd(1..22), snappy, lz4, gzip or none",
            "error: p.toml:15:16: sinks.a.inputs[1]: no component named \"nope\"",
            "error: p.toml:19:11: sinks.b.inputs[0]: \"a\" is a sink; sinks produce no output to read",
        ]
    );
}

#[test]
fn syntax_errors_have_a_location() {
    let e = errors("[pipeline]\nname = = 3\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("error: p.toml:2:8: invalid TOML: "),
        "{}",
        e[0]
    );
    assert!(e[0].contains("invalid TOML"), "{}", e[0]);
}

#[test]
fn sinks_cannot_be_inputs_and_names_are_checked() {
    let text = r#"[pipeline]
name = "x"
[sources.raw]
type = "csv"
path = "x.csv"
[sources.Bad-name]
type = "csv"
path = "y.csv"
[sinks.a]
type = "csv"
inputs = ["raw"]
path = "a.csv"
[sinks.b]
type = "csv"
inputs = ["a"]
path = "b.csv"
"#;
    assert_eq!(
        errors(text),
        [
            "error: p.toml:6:10: sources.Bad-name: invalid component name \"Bad-name\": use letters, digits and underscores, starting with a letter (it is also the SQL table name)",
            "error: p.toml:15:11: sinks.b.inputs[0]: \"a\" is a sink; sinks produce no output to read",
            "warning: p.toml:6:10: sources.Bad-name: component \"Bad-name\" is not read by any transform or sink",
        ]
    );
}

#[test]
fn references_are_checked_and_literal_credentials_rejected() {
    let e = errors(
        r#"
[pipeline]
name = "p"
[sources.raw]
type = "csv"
path = "${nope:x}/in.csv"
[sinks.out]
type = "csv"
inputs = ["raw"]
path = "s3://user:CANARY-PW@bucket/out.csv"
"#,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].contains("sources.raw.path: unknown secret provider \"nope\""),
        "{e:?}"
    );
    assert!(
        e[1].contains("sinks.out.path: the URL holds a literal password"),
        "{e:?}"
    );
    assert!(!e[1].contains("CANARY-PW"), "{e:?}");
    let ok = errors(
        r#"
[pipeline]
name = "p"
[sources.raw]
type = "csv"
path = "${env:HOME}/in.csv"
[sinks.out]
type = "csv"
inputs = ["raw"]
path = "${env:CUSTOS_TEST_NEVER_SET_3f}/out.csv"
"#,
    );
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert!(
        ok[0].contains("sinks.out.path: environment variable CUSTOS_TEST_NEVER_SET_3f"),
        "{ok:?}"
    );
    let l = load_str(
        Path::new("p.toml"),
        "[pipeline]\nname = \"p\"\n[sources.raw]\ntype = \"csv\"\npath = \"${env:HOME}/in.csv\"\n[sinks.out]\ntype = \"csv\"\ninputs = [\"raw\"]\npath = \"o.csv\"\n",
    );
    assert_eq!(
        l.config.sources[0].kind.path(),
        Some(format!("{}/in.csv", std::env::var("HOME").unwrap()).as_str())
    );
}
