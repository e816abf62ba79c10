//! Format round trips: Parquet as a source, JSON lines inference, directory sources.

use crate::{Project, assert_invariant};

#[test]
fn parquet_written_by_one_pipeline_is_read_by_the_next() {
    let p = Project::new();
    p.write(
        "in.csv",
        "id,email,zip\n1,a@x.org,02134\n2,not-an-email,10001\n3,c@x.org,00501\n",
    );
    p.write(
        "to_parquet.toml",
        r#"[pipeline]
name = "to_parquet"
[sources.raw]
type = "csv"
path = "in.csv"
[sinks.pq]
type = "parquet"
inputs = ["raw"]
path = "mid/data.parquet"
compression = "snappy"

# Synthetic PII-like test data, written in the clear on purpose.
[danger]
allow_plaintext = ["pq.*"]
"#,
    );
    p.write(
        "from_parquet.toml",
        r#"[pipeline]
name = "from_parquet"
[sources.pq]
type = "parquet"
path = "mid"
[transforms.checked]
type = "validate"
inputs = ["pq"]
rules = [{ column = "email", regex = "@" }]
[sinks.out]
type = "csv"
inputs = ["checked"]
path = "out.csv"

# Synthetic PII-like test data, written in the clear on purpose.
[danger]
allow_plaintext = ["out.*"]
"#,
    );
    let (code, s1, stderr) = p.run_json("to_parquet.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_invariant(&s1);
    let (code, s2, stderr) = p.run_json("from_parquet.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_invariant(&s2);
    // Inferred types survive the round trip: id is an integer, ZIP codes keep their zeros.
    assert_eq!(
        p.read("out.csv"),
        "id,email,zip\n1,a@x.org,02134\n3,c@x.org,00501\n"
    );
    let q = p.quarantine(&s2);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["source_file"], "mid/data.parquet");
    assert_eq!(q[0]["line"], 2, "Parquet provenance is the row number");
    assert_eq!(q[0]["rule"], "regex");
    // The Parquet file was hashed as an input of the second run.
    assert_eq!(s2["inputs"][0]["sha256"], s1["outputs"][0]["sha256"]);
}

#[test]
fn jsonl_schema_is_inferred_and_identifiers_stay_text() {
    let p = Project::new();
    p.write(
        "data/a.jsonl",
        "{\"id\":1,\"phone\":5551234567,\"amount\":2,\"tags\":[\"x\"],\"ok\":true}\n{\"id\":2,\"phone\":5557654321,\"amount\":2.5,\"tags\":null,\"ok\":false}\n",
    );
    p.write(
        "pipeline.toml",
        r#"[pipeline]
name = "infer_jsonl"
[sources.events]
type = "jsonl"
path = "data"
[transforms.t]
type = "sql"
inputs = ["events"]
query = "SELECT id * 10 AS id10, phone || '' AS phone, amount * 2 AS amount2, tags, NOT ok AS not_ok FROM events"
[sinks.out]
type = "jsonl"
inputs = ["t"]
path = "out.jsonl"

# Synthetic PII-like test data, written in the clear on purpose.
[danger]
allow_plaintext = ["out.*"]
"#,
    );
    let (code, s, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_invariant(&s);
    assert_eq!(
        p.read("out.jsonl"),
        "{\"id10\":10,\"phone\":\"5551234567\",\"amount2\":4.0,\"tags\":\"[\\\"x\\\"]\",\"not_ok\":false}\n{\"id10\":20,\"phone\":\"5557654321\",\"amount2\":5.0,\"not_ok\":true}\n"
    );
}

#[test]
fn headerless_csv_uses_the_declared_schema() {
    let p = Project::new();
    p.write("in.tsv", "1\tann\n2\tbob\n");
    p.write(
        "pipeline.toml",
        r#"[pipeline]
name = "tsv"
[sources.raw]
type = "csv"
path = "in.tsv"
header = false
delimiter = "\t"
schema = { n = "int32", name = "utf8" }
[sinks.out]
type = "csv"
inputs = ["raw"]
path = "out.csv"
delimiter = "|"
header = false

# Synthetic PII-like test data, written in the clear on purpose.
[danger]
allow_plaintext = ["out.*"]
"#,
    );
    let (code, _, stderr) = p.run_json("pipeline.toml");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(p.read("out.csv"), "1|ann\n2|bob\n");
}
