//! PostgreSQL sources and sinks through the CLI, against the throwaway servers of
//! `scripts/pg.sh`: round trips of every mapped type, all-or-nothing loads (constraint failure
//! midway, killed process), upsert, partitioned reads, the `[danger]` switch for unverified
//! connections, and a canary password that must never leave the process.

use std::path::Path;
use std::time::{Duration, Instant};

use custos_connectors::postgres::{PgConnection, PgTarget, connect};
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::{Project, assert_invariant, big_csv};

/// The servers' settings, or `None` (skip) outside `scripts/test.sh`; `CUSTOS_PG_REQUIRED=1`
/// turns a missing server into a failure.
fn env(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var("CUSTOS_PG_REQUIRED").as_deref() != Ok("1"),
                "{name} is not set: source scripts/pg.sh (scripts/test.sh does)"
            );
            eprintln!("skipping: {name} is not set (run through scripts/test.sh)");
            None
        }
    }
}

/// A test's view of the TLS server: SQL through a verified connection, and the connection
/// keys for pipelines (the password as an `${env:...}` reference).
struct Db {
    rt: tokio::runtime::Runtime,
    conn: PgConnection,
    port: String,
    ca: String,
    /// A prefix unique to this test, for table names.
    tag: String,
}

impl Db {
    fn open(test: &str) -> Option<Db> {
        let target = PgTarget {
            host: Some(env("CUSTOS_PG_HOST")?),
            port: Some(env("CUSTOS_PG_PORT")?.parse().unwrap()),
            dbname: Some(env("CUSTOS_PG_DB")?),
            user: Some(env("CUSTOS_PG_USER")?),
            password: Some(
                custos_config::secret::parse("${env:CUSTOS_PG_PASSWORD}")
                    .unwrap()
                    .resolve(Path::new("."))
                    .unwrap()
                    .0,
            ),
            ca_file: Some(env("CUSTOS_PG_CA")?.into()),
            ..PgTarget::default()
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let conn = rt.block_on(connect(&target)).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Some(Db {
            rt,
            conn,
            port: env("CUSTOS_PG_PORT")?,
            ca: env("CUSTOS_PG_CA")?,
            tag: format!("{test}_{}_{nanos}", std::process::id()),
        })
    }

    fn table(&self, name: &str) -> String {
        format!("{}_{name}", self.tag)
    }

    fn exec(&self, sql: &str) {
        self.rt
            .block_on(self.conn.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Rows of a query as text (NULL as `None`).
    fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let msgs = self
            .rt
            .block_on(self.conn.client.simple_query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        msgs.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect()
    }

    fn one(&self, sql: &str) -> String {
        self.rows(sql)[0][0].clone().unwrap_or_default()
    }

    /// The connection keys of a pipeline component.
    fn keys(&self) -> String {
        format!(
            "host = \"localhost\"\nport = {}\ndbname = \"custos_test\"\nuser = \"custos\"\npassword = \"${{env:CUSTOS_PG_PASSWORD}}\"\nca_file = \"{}\"\n",
            self.port, self.ca
        )
    }

    /// The same connection as one URL whose password part is a reference.
    fn url_keys(&self) -> String {
        format!(
            "url = \"postgres://custos:${{env:CUSTOS_PG_PASSWORD}}@localhost:{}/custos_test\"\nca_file = \"{}\"\n",
            self.port, self.ca
        )
    }

    /// md5 of a table's rows in key order: equal tables, equal digests.
    fn digest(&self, table: &str, order: &str) -> String {
        self.one(&format!(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY {order}), '')) FROM {table} t"
        ))
    }
}

fn parquet(path: &Path) -> Vec<RecordBatch> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    })
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
}

const TYPED_CSV: &str = "id,name,zip,amount,active,signup,seen\n\
1,Ada Lovelace,02134,12.5,true,2020-01-31,2024-03-01T10:11:12\n\
2,,00501,-0.25,false,1999-12-31,1970-01-01T00:00:00\n\
3,Émile Zola,99950,,true,,2038-01-19T03:14:08\n\
4,\"Quote, \"\"Inc\"\"\",10001,1e10,,2000-02-29,\n";

const TYPED_SCHEMA: &str = "schema = { id = \"int64\", name = \"utf8\", zip = \"utf8\", amount = \"float64\", active = \"boolean\", signup = \"date32\", seen = \"timestamp\" }\n";

#[test]
fn csv_to_postgres_and_back_keeps_every_value_and_null() {
    let Some(db) = Db::open("rt") else { return };
    let p = Project::new();
    let table = db.table("customers");
    p.write("in.csv", TYPED_CSV);
    p.write(
        "load.toml",
        format!(
            "[pipeline]\nname = \"load\"\n[sources.raw]\ntype = \"csv\"\npath = \"in.csv\"\n{TYPED_SCHEMA}\
             [sinks.db]\ntype = \"postgres\"\ninputs = [\"raw\"]\ntable = \"{table}\"\ncreate_table = true\n{}\
             [sinks.direct]\ntype = \"parquet\"\ninputs = [\"raw\"]\npath = \"direct.parquet\"\n\
             # Synthetic data, written in the clear on purpose.\n[danger]\nallow_plaintext = [\"db.*\", \"direct.*\"]\n",
            db.keys()
        ),
    );
    let (code, summary, stderr) = p.run_json("load.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_invariant(&summary);
    assert_eq!(summary["rows_written"], 8, "{summary:#}");
    let out = summary["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["sink"] == "db")
        .unwrap()
        .clone();
    assert!(
        out["path"]
            .as_str()
            .unwrap()
            .starts_with("postgres://localhost:"),
        "{out}"
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
        ))
        .into_iter()
        .map(|r| format!("{}:{}", r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect::<Vec<_>>(),
        [
            "id:bigint",
            "name:text",
            "zip:text",
            "amount:double precision",
            "active:boolean",
            "signup:date",
            "seen:timestamp without time zone"
        ]
    );
    assert_eq!(
        db.rows(&format!(
            "SELECT zip, name IS NULL FROM {table} ORDER BY id"
        )),
        [
            [Some("02134".into()), Some("f".into())],
            [Some("00501".into()), Some("t".into())],
            [Some("99950".into()), Some("f".into())],
            [Some("10001".into()), Some("f".into())],
        ]
    );

    p.write(
        "unload.toml",
        format!(
            "[pipeline]\nname = \"unload\"\n[sources.db]\ntype = \"postgres\"\ntable = \"{table}\"\n{}\
             [sinks.back]\ntype = \"parquet\"\ninputs = [\"db\"]\npath = \"back.parquet\"\n\
             [danger]\nallow_plaintext = [\"back.*\"]\n",
            db.keys()
        ),
    );
    let (code, summary, stderr) = p.run_json("unload.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_invariant(&summary);
    assert!(
        summary["inputs"][0]["path"]
            .as_str()
            .unwrap()
            .contains(&format!("table {table}")),
        "{summary:#}"
    );
    let direct = concat(&parquet(&p.path().join("direct.parquet")));
    let back = concat(&parquet(&p.path().join("back.parquet")));
    assert_eq!(direct.schema(), back.schema());
    assert_eq!(direct, back);
    db.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn every_postgres_type_round_trips_through_a_pipeline() {
    let Some(db) = Db::open("types") else { return };
    let p = Project::new();
    let (src, dst) = (db.table("src"), db.table("dst"));
    let def = "(b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, \
               n numeric(12,2), nu numeric, t text, vc varchar(20), c char(5), j json, jb jsonb, \
               u uuid, by bytea, d date, tm time, ts timestamp, tz timestamptz, ai integer[], at text[])";
    db.exec(&format!(
        "CREATE TABLE {src} {def}; CREATE TABLE {dst} {def};
         INSERT INTO {src} VALUES
           (true, -32768, 2147483647, -9223372036854775808, 1.5, -2.25e300, 1234567890.12, 0.000123,
            'héllo', 'v', 'ab', '{{\"a\": [1, 2]}}', '{{\"b\": null}}',
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', '0001-01-01', '23:59:59.999999',
            '1900-01-01 00:00:00.000001', '2024-06-30 12:00:00+02', '{{1, NULL, 3}}', '{{\"x\", NULL, \"\"}}'),
           (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
            NULL, NULL, NULL, NULL, NULL, NULL),
           (false, 0, 0, 0, 0, 0, -0.01, -987654321.5, '', '', '', '[]', '{{}}',
            '00000000-0000-0000-0000-000000000000', '\\x', '9999-12-31', '00:00:00',
            '2262-04-11 23:47:16', '1970-01-01 00:00:00+00', '{{}}', '{{}}');"
    ));
    p.write(
        "copy.toml",
        format!(
            "[pipeline]\nname = \"copy\"\n[sources.src]\ntype = \"postgres\"\ntable = \"{src}\"\n{keys}\
             [sinks.dst]\ntype = \"postgres\"\ninputs = [\"src\"]\ntable = \"{dst}\"\n{keys}\
             [sinks.pq]\ntype = \"parquet\"\ninputs = [\"src\"]\npath = \"all.parquet\"\n\
             [danger]\nallow_plaintext = [\"dst.*\", \"pq.*\"]\n",
            keys = db.keys()
        ),
    );
    let (code, summary, stderr) = p.run_json("copy.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_invariant(&summary);
    assert_eq!(summary["rows_read"], 3);
    assert_eq!(summary["rows_quarantined"], 0);
    // Every value and NULL arrives as the server itself renders it.
    assert_eq!(
        db.digest(&src, "t.t NULLS FIRST"),
        db.digest(&dst, "t.t NULLS FIRST")
    );
    assert_eq!(db.one(&format!("SELECT count(*) FROM {dst}")), "3");
    let pq = concat(&parquet(&p.path().join("all.parquet")));
    let types: Vec<String> = pq
        .schema()
        .fields()
        .iter()
        // DataFusion reads Parquet strings and binaries as views; the file holds Utf8/Binary.
        .map(|f| format!("{}:{}", f.name(), f.data_type()).replace("View", ""))
        .collect();
    for want in [
        "b:Boolean",
        "i2:Int16",
        "i8:Int64",
        "f4:Float32",
        "n:Decimal128(12, 2)",
        "t:Utf8",
        "u:Utf8",
        "by:Binary",
        "d:Date32",
        "ts:Timestamp(µs)",
    ] {
        assert!(types.iter().any(|t| t == want), "{want} not in {types:?}");
    }
    assert!(types.iter().any(|t| t.starts_with("ai:List")), "{types:?}");
    db.exec(&format!("DROP TABLE {src}; DROP TABLE {dst}"));
}

#[test]
fn unsupported_types_and_bad_values_are_named() {
    let Some(db) = Db::open("unsup") else { return };
    let p = Project::new();
    let t = db.table("t");
    db.exec(&format!(
        "CREATE TABLE {t} (id int, dur interval); INSERT INTO {t} VALUES (1, '1 day');"
    ));
    p.write(
        "p.toml",
        format!(
            "[pipeline]\nname = \"p\"\n[sources.db]\ntype = \"postgres\"\ntable = \"{t}\"\n{}\
             [sinks.out]\ntype = \"csv\"\ninputs = [\"db\"]\npath = \"out.csv\"\n",
            db.keys()
        ),
    );
    let (code, _, stderr) = p.run_as("tester", &["validate", "p.toml"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("column \"dur\"") && stderr.contains("interval"),
        "{stderr}"
    );

    // A value that has no Arrow form (numeric NaN) sends its row to quarantine, named.
    p.write(
        "q.toml",
        format!(
            "[pipeline]\nname = \"q\"\n[sources.db]\ntype = \"postgres\"\nquery = \"\"\"\nSELECT id, v::numeric(4,1) AS v\nFROM (VALUES (1, 1.5), (2, 'NaN'), (3, 2.5)) AS x(id, v) -- NaN has no decimal form\n\"\"\"\n{}\
             [sinks.out]\ntype = \"csv\"\ninputs = [\"db\"]\npath = \"out.csv\"\n",
            db.keys()
        ),
    );
    let (code, summary, stderr) = p.run_json("q.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_invariant(&summary);
    assert_eq!(summary["rows_quarantined"], 1);
    assert_eq!(p.read("out.csv"), "id,v\n1,1.5\n3,2.5\n");
    let q = p.quarantine(&summary);
    assert_eq!(q[0]["column"], "v", "{q:?}");
    assert_eq!(q[0]["line"], 2, "{q:?}");
    assert!(
        q[0]["source_file"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"),
        "{q:?}"
    );
    db.exec(&format!("DROP TABLE {t}"));
}

/// A sink table whose CHECK constraint rejects id 7000, seeded with three rows.
fn seeded(db: &Db, name: &str) -> String {
    let t = db.table(name);
    db.exec(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY CHECK (id <> 7000), name text, email text, zip text, signup date);
         INSERT INTO {t} VALUES (100001, 'a', 'a@x', '00001', '2020-01-01'), (100002, 'b', 'b@x', '00002', NULL),
                                (100003, 'c', NULL, '00003', '2021-05-05');"
    ));
    t
}

fn sink_pipeline(db: &Db, table: &str, mode: &str) -> String {
    let key = if mode == "upsert" {
        "key = [\"id\"]\n"
    } else {
        ""
    };
    format!(
        "[pipeline]\nname = \"load\"\n[sources.raw]\ntype = \"csv\"\npath = \"in.csv\"\n\
         [sinks.db]\ntype = \"postgres\"\ninputs = [\"raw\"]\ntable = \"{table}\"\nmode = \"{mode}\"\n{key}{}\
         [danger]\nallow_plaintext = [\"db.*\"]\n",
        db.keys()
    )
}

#[test]
fn a_sink_failing_midway_leaves_the_table_exactly_as_it_was() {
    let Some(db) = Db::open("fail") else { return };
    let p = Project::new();
    p.write("in.csv", big_csv(20_000));
    for mode in ["append", "overwrite", "upsert"] {
        let t = seeded(&db, mode);
        let before = db.digest(&t, "id");
        p.write("p.toml", sink_pipeline(&db, &t, mode));
        let (code, summary, stderr) = p.run_json("p.toml");
        assert_ne!(code, 0, "{mode}: {summary:#}");
        let err = summary["error"].as_str().unwrap_or_default();
        assert!(
            err.contains("sink \"db\"") && err.contains("check constraint"),
            "{mode}: {err}\n{stderr}"
        );
        assert_eq!(summary["rows_written"], 0, "{mode}");
        assert_eq!(db.digest(&t, "id"), before, "{mode}");
        assert_eq!(db.one(&format!("SELECT count(*) FROM {t}")), "3", "{mode}");
        db.exec(&format!("DROP TABLE {t}"));
    }
}

#[test]
fn a_killed_load_leaves_the_table_exactly_as_it_was() {
    let Some(db) = Db::open("kill") else { return };
    let p = Project::new();
    p.write("in.csv", big_csv(400_000));
    let t = seeded(&db, "t");
    // Without the failing id, so the load would succeed if left alone.
    db.exec(&format!("ALTER TABLE {t} DROP CONSTRAINT {t}_id_check"));
    let before = db.digest(&t, "id");
    p.write("p.toml", sink_pipeline(&db, &t, "append"));
    let mut child = spawn_run(&p, &["run", "p.toml", "--quiet"]);
    // Wait until rows are streaming into the table, then kill the process outright.
    let start = Instant::now();
    loop {
        let copying = db.one(&format!(
            "SELECT count(*) FROM pg_stat_progress_copy WHERE relid = '{t}'::regclass AND tuples_processed > 0"
        ));
        if copying != "0" {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no COPY seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The server notices the dropped connection and rolls the transaction back.
    let start = Instant::now();
    while db.one(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query ILIKE '%COPY {t}%'"
    )) != "0"
    {
        assert!(start.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(db.digest(&t, "id"), before);
    assert_eq!(db.one(&format!("SELECT count(*) FROM {t}")), "3");
    db.exec(&format!("DROP TABLE {t}"));
}

/// Starts `custos ARGS` in the project without waiting; output is piped.
fn spawn_run(p: &Project, args: &[&str]) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("custos"))
        .args(args)
        .current_dir(p.path())
        .env("CUSTOS_STATE_DIR", p.path().join(".custos"))
        .env("CUSTOS_TOKEN_FILE", p.path().join(".custos/tester.token"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `p.toml`: two rows loaded into table `t` (created by the sink) while `big_rows` go to a
/// Parquet file, so the finished load waits for the slower sink before the commit.
fn load_beside_a_slow_sink(p: &Project, t: &str, keys: &str, big_rows: usize) {
    p.write("small.csv", "id,name\n1,a\n2,b\n");
    p.write("big.csv", big_csv(big_rows));
    p.write(
        "p.toml",
        format!(
            "[pipeline]\nname = \"two_sinks\"\n\
             [sources.small]\ntype = \"csv\"\npath = \"small.csv\"\n\
             [sources.big]\ntype = \"csv\"\npath = \"big.csv\"\n\
             [sinks.db]\ntype = \"postgres\"\ninputs = [\"small\"]\ntable = \"{t}\"\ncreate_table = true\n{keys}\
             [sinks.out]\ntype = \"parquet\"\ninputs = [\"big\"]\npath = \"out.parquet\"\n\
             [danger]\nallow_plaintext = [\"db.*\", \"out.*\"]\n"
        ),
    );
}

#[test]
fn a_load_waiting_for_a_slower_sink_outlives_the_servers_idle_timeout() {
    let Some(db) = Db::open("idle") else { return };
    // A role whose sessions the server ends after 100 ms idle inside a transaction, as DBAs
    // configure against forgotten sessions. The load into the table is done in a moment and
    // then waits, idle, for the Parquet sink before the engine commits both.
    let role = db.table("loader");
    let password = std::env::var("CUSTOS_PG_PASSWORD").unwrap();
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'; \
         ALTER ROLE {role} SET idle_in_transaction_session_timeout = '100ms'; \
         GRANT CREATE ON SCHEMA public TO {role}"
    ));
    let t = db.table("t");
    let p = Project::new();
    let keys = db
        .keys()
        .replace("user = \"custos\"", &format!("user = \"{role}\""));
    load_beside_a_slow_sink(&p, &t, &keys, 1_000_000);
    let (code, summary, stderr) = p.run_json("p.toml");
    let cleanup = || {
        db.exec(&format!(
            "DROP TABLE IF EXISTS {t}; DROP OWNED BY {role}; DROP ROLE {role}"
        ))
    };
    if code != 0 {
        cleanup();
        panic!("{summary:#}\n{stderr}");
    }
    assert_eq!(summary["rows_written"], 1_000_002, "{summary:#}");
    assert_eq!(db.one(&format!("SELECT count(*) FROM {t}")), "2");
    cleanup();
}

#[test]
fn a_session_the_server_ends_fails_the_run_with_the_servers_reason() {
    let Some(db) = Db::open("ended") else { return };
    let t = db.table("t");
    let p = Project::new();
    load_beside_a_slow_sink(&p, &t, &db.keys(), 2_000_000);
    let child = spawn_run(&p, &["run", "p.toml", "--json"]);
    // The load (its last statement the COPY) is done in a moment and then waits, idle in its
    // transaction, for the Parquet sink: an administrator ends that session (as a server
    // shutdown or a failover would).
    let start = Instant::now();
    loop {
        let ended = db.one(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND state = 'idle in transaction' AND query ILIKE 'COPY %{t}%'"
        ));
        if ended != "0" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no idle load to end"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{summary:#}\n{stderr}");
    // The server's reason when it arrived before the client found the connection closed:
    // at the commit, or (when the session ended between the server finishing the COPY and the
    // client reading that it had) at the end of the COPY.
    let err = summary["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("sink \"db\": ")
            && (err.ends_with("connection closed")
                || err.ends_with(
                    "the server said: terminating connection due to administrator command (57P01)"
                )),
        "{err}\n{stderr}"
    );
    // Nothing was committed: the file went back, the table was never created.
    assert!(!p.path().join("out.parquet").exists());
    assert_eq!(summary["rows_written"], 0);
    assert_eq!(
        db.one(&format!(
            "SELECT coalesce(to_regclass('{t}')::text, 'none')"
        )),
        "none"
    );
}

#[test]
fn overwrite_replaces_and_upsert_merges() {
    let Some(db) = Db::open("modes") else { return };
    let p = Project::new();
    p.write(
        "in.csv",
        "id,name,email,zip,signup\n100002,B2,b2@x,00002,2022-02-02\n5,e,e@x,00005,\n",
    );
    let t = seeded(&db, "up");
    p.write("p.toml", sink_pipeline(&db, &t, "upsert"));
    let (code, summary, stderr) = p.run_json("p.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(
        db.rows(&format!("SELECT id, name, signup FROM {t} ORDER BY id")),
        [
            [Some("5".into()), Some("e".into()), None],
            [
                Some("100001".into()),
                Some("a".into()),
                Some("2020-01-01".into())
            ],
            [
                Some("100002".into()),
                Some("B2".into()),
                Some("2022-02-02".into())
            ],
            [
                Some("100003".into()),
                Some("c".into()),
                Some("2021-05-05".into())
            ],
        ]
    );
    let t2 = seeded(&db, "ow");
    p.write("p.toml", sink_pipeline(&db, &t2, "overwrite"));
    let (code, summary, stderr) = p.run_json("p.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t2} ORDER BY id")),
        [[Some("5".into())], [Some("100002".into())]]
    );
    // Appending the same keys again violates the primary key: nothing changes.
    let before = db.digest(&t2, "id");
    p.write("p.toml", sink_pipeline(&db, &t2, "append"));
    let (code, summary, _) = p.run_json("p.toml");
    assert_ne!(code, 0);
    assert!(
        summary["error"].as_str().unwrap().contains("duplicate key"),
        "{summary:#}"
    );
    assert_eq!(db.digest(&t2, "id"), before);
    db.exec(&format!("DROP TABLE {t}; DROP TABLE {t2}"));
}

#[test]
fn overwrite_of_a_table_referenced_by_foreign_keys() {
    let Some(db) = Db::open("fk") else { return };
    let p = Project::new();
    p.write(
        "in.csv",
        "id,name,email,zip,signup\n100002,B2,b2@x,00002,2022-02-02\n5,e,e@x,00005,\n",
    );
    let t = seeded(&db, "parent");
    let child = db.table("child");
    let late = db.table("late");
    db.exec(&format!(
        "CREATE TABLE {child} (pid bigint REFERENCES {t}(id));
         CREATE TABLE {late} (pid bigint REFERENCES {t}(id) DEFERRABLE INITIALLY DEFERRED);"
    ));
    // Nothing refers to the rows yet: replaced (TRUNCATE would be refused here).
    p.write("p.toml", sink_pipeline(&db, &t, "overwrite"));
    let (code, summary, stderr) = p.run_json("p.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert_eq!(
        db.rows(&format!("SELECT id FROM {t} ORDER BY id")),
        [[Some("5".into())], [Some("100002".into())]]
    );
    // A deferred reference to a key the new contents keep: checked at commit, and satisfied.
    db.exec(&format!("INSERT INTO {late} VALUES (5)"));
    let (code, summary, stderr) = p.run_json("p.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    // An immediate reference to a row being deleted: the run fails, the table is unchanged.
    db.exec(&format!("INSERT INTO {child} VALUES (100002)"));
    let before = db.digest(&t, "id");
    let (code, summary, _) = p.run_json("p.toml");
    assert_ne!(code, 0);
    let err = summary["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("sink \"db\"") && err.contains("foreign key"),
        "{err}"
    );
    assert_eq!(db.digest(&t, "id"), before);
    db.exec(&format!(
        "DROP TABLE {child}; DROP TABLE {late}; DROP TABLE {t}"
    ));
}

/// A pipeline reading `table` whole into `out.csv`.
fn table_to_csv(db: &Db, table: &str) -> String {
    format!(
        "[pipeline]\nname = \"p\"\n[sources.db]\ntype = \"postgres\"\ntable = \"{table}\"\n{}\
         [sinks.out]\ntype = \"csv\"\ninputs = [\"db\"]\npath = \"out.csv\"\n",
        db.keys()
    )
}

#[test]
fn table_sources_read_inherited_rows_and_generated_columns() {
    // Table sources read through `SELECT *`: the rows of inheritance children and generated
    // columns are included (`COPY t TO`, tried as a shortcut for plain tables, leaves both out
    // and measured no faster here).
    let Some(db) = Db::open("tbl") else { return };
    let p = Project::new();
    let (parent, child, generated, plain) = (
        db.table("parent"),
        db.table("child"),
        db.table("gen"),
        db.table("plain"),
    );
    db.exec(&format!(
        "CREATE TABLE {parent} (id int, v text);
         CREATE TABLE {child} () INHERITS ({parent});
         INSERT INTO {parent} VALUES (1, 'p');
         INSERT INTO {child} VALUES (2, 'c');
         CREATE TABLE {generated} (id int, twice int GENERATED ALWAYS AS (id * 2) STORED);
         INSERT INTO {generated} (id) VALUES (1), (2);
         CREATE TABLE {plain} (id int, v text);
         INSERT INTO {plain} VALUES (1, 'x'), (2, NULL);"
    ));
    for (t, want) in [
        (&parent, "id,v\n1,p\n2,c\n"),
        (&generated, "id,twice\n1,2\n2,4\n"),
        (&plain, "id,v\n1,x\n2,\n"),
    ] {
        p.write("p.toml", table_to_csv(&db, t));
        let (code, summary, stderr) = p.run_json("p.toml");
        assert_eq!(code, 0, "{t}: {stderr}\n{summary:#}");
        let mut lines: Vec<String> = p.read("out.csv").lines().map(str::to_string).collect();
        lines[1..].sort();
        assert_eq!(lines.join("\n") + "\n", want, "{t}");
    }
    db.exec(&format!(
        "DROP TABLE {child}; DROP TABLE {parent}; DROP TABLE {generated}; DROP TABLE {plain}"
    ));
}

#[test]
fn scan_samples_a_large_table_on_the_server() {
    let Some(db) = Db::open("scan") else { return };
    let p = Project::new();
    let (big, small) = (db.table("big"), db.table("small"));
    db.exec(&format!(
        "CREATE TABLE {big} AS SELECT g AS id, 'user' || g || '@example.com' AS email
         FROM generate_series(1, 200000) g;
         CREATE TABLE {small} AS SELECT * FROM {big} WHERE id <= 1000;
         ANALYZE {big}; ANALYZE {small};"
    ));
    let scan = |t: &str| {
        p.write("p.toml", table_to_csv(&db, t));
        let out = p.run(&["scan", "p.toml", "--sample", "500", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0].clone()
    };
    // ~3x the sample comes back (whole blocks), not the 200k rows; the same rows each time.
    let first = scan(&big);
    let rows = first["rows"].as_u64().unwrap();
    assert!((500..20_000).contains(&rows), "{first:#}");
    assert_eq!(first["sampled"], 500);
    let email = first["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "email")
        .unwrap();
    assert_eq!(
        email["profile"]["recommended"]["action"], "encrypt",
        "{email:#}"
    );
    assert_eq!(scan(&big)["rows"], rows);
    // A table under 3x the sample is read whole.
    assert_eq!(scan(&small)["rows"], 1000);
    db.exec(&format!("DROP TABLE {big}; DROP TABLE {small}"));
}

#[test]
fn partitioned_reads_cover_every_row_once() {
    let Some(db) = Db::open("part") else { return };
    let p = Project::new();
    let t = db.table("t");
    db.exec(&format!(
        "CREATE TABLE {t} AS SELECT CASE WHEN g % 1000 = 0 THEN NULL ELSE g END AS id, md5(g::text) AS h
         FROM generate_series(1, 30000) g;"
    ));
    for (parts, ordered) in [(1, true), (4, true), (3, false)] {
        p.write(
            "p.toml",
            format!(
                "[pipeline]\nname = \"p\"\npreserve_order = {ordered}\n[sources.db]\ntype = \"postgres\"\ntable = \"{t}\"\npartitions = {parts}\npartition_column = \"id\"\n{}\
                 [sinks.out]\ntype = \"csv\"\ninputs = [\"db\"]\npath = \"out{parts}.csv\"\n",
                db.url_keys()
            ),
        );
        let (code, summary, stderr) = p.run_json("p.toml");
        assert_eq!(code, 0, "{stderr}\n{summary:#}");
        assert_invariant(&summary);
        assert_eq!(summary["rows_written"], 30000, "{parts}");
        assert_eq!(
            summary["inputs"].as_array().unwrap().len(),
            parts,
            "{summary:#}"
        );
    }
    let sorted = |name: &str| {
        let text = p.read(name);
        let mut lines: Vec<&str> = text.lines().skip(1).collect();
        lines.sort_unstable();
        lines.join("\n")
    };
    let one = sorted("out1.csv");
    assert_eq!(sorted("out4.csv"), one);
    assert_eq!(sorted("out3.csv"), one);
    // Kept order: the ranges follow each other (NULL keys belong to the first range).
    let ids: Vec<i64> = p
        .read("out4.csv")
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next().unwrap().parse().ok())
        .collect();
    let range = |id: i64| (id - 1) / 7500;
    assert!(ids.windows(2).all(|w| range(w[0]) <= range(w[1])));
    db.exec(&format!("DROP TABLE {t}"));
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_canary_password_never_leaves_the_process() {
    let Some(db) = Db::open("canary") else { return };
    let canary = format!("Canary-Pw-{}-7f3a9c", std::process::id());
    let role = db.table("role");
    let t = db.table("t");
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{canary}'; CREATE TABLE {t} (id int, v text);
         INSERT INTO {t} VALUES (1, 'x'); GRANT SELECT, INSERT ON {t} TO {role};"
    ));
    let p = Project::new();
    let keys = |password_var: &str| {
        format!(
            "host = \"localhost\"\nport = {}\ndbname = \"custos_test\"\nuser = \"{role}\"\npassword = \"${{env:{password_var}}}\"\nca_file = \"{}\"\n",
            db.port, db.ca
        )
    };
    p.write(
        "p.toml",
        format!(
            "[pipeline]\nname = \"p\"\n[sources.db]\ntype = \"postgres\"\ntable = \"{t}\"\n{}\
             [sinks.back]\ntype = \"postgres\"\ninputs = [\"db\"]\ntable = \"{t}\"\n{}\
             [sinks.out]\ntype = \"jsonl\"\ninputs = [\"db\"]\npath = \"out.jsonl\"\n",
            keys("CANARY_PW"),
            keys("CANARY_PW")
        ),
    );
    let out = p
        .custos()
        .env("CANARY_PW", &canary)
        .env("CUSTOS_LOG", "trace")
        .args(["run", "p.toml", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert_eq!(db.one(&format!("SELECT count(*) FROM {t}")), "2");
    let runs = p
        .custos()
        .args(["runs", "list", "--json"])
        .output()
        .unwrap();
    // A wrong password: a clear error, naming the server and user, without the password.
    let wrong = format!("Wrong-{canary}");
    let bad = p
        .custos()
        .env("CANARY_PW", &wrong)
        .env("CUSTOS_LOG", "trace")
        .args(["run", "p.toml", "--json"])
        .output()
        .unwrap();
    let bad_text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!bad.status.success());
    assert!(
        bad_text.contains("password authentication failed") && bad_text.contains(&role),
        "{bad_text}"
    );
    let mut haystacks = vec![
        ("stdout".to_string(), stdout.into_bytes()),
        ("stderr".to_string(), stderr.into_bytes()),
        ("runs list".to_string(), runs.stdout),
        ("bad run".to_string(), bad_text.into_bytes()),
    ];
    for f in files(p.path()) {
        haystacks.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    for (what, bytes) in &haystacks {
        for needle in [canary.as_bytes(), wrong.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "the password appears in {what}"
            );
        }
    }
    db.exec(&format!("DROP TABLE {t}; DROP ROLE {role}"));
}

#[test]
fn unverified_connections_need_the_danger_switch_and_are_audited() {
    let Some(db) = Db::open("insecure") else {
        return;
    };
    let Some(plain_port) = env("CUSTOS_PG_PLAIN_PORT") else {
        return;
    };
    let p = Project::new();
    let pipeline = |danger: &str| {
        format!(
            "[pipeline]\nname = \"p\"\n[sources.db]\ntype = \"postgres\"\nquery = \"SELECT 1 AS one\"\n\
             host = \"127.0.0.1\"\nport = {plain_port}\ndbname = \"custos_test\"\nuser = \"custos\"\n\
             password = \"${{env:CUSTOS_PG_PASSWORD}}\"\nsslmode = \"disable\"\n\
             [sinks.out]\ntype = \"csv\"\ninputs = [\"db\"]\npath = \"out.csv\"\n{danger}"
        )
    };
    p.write("p.toml", pipeline(""));
    let (code, _, stderr) = p.run_as("tester", &["validate", "p.toml"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("sources.db.sslmode") && stderr.contains("allow_insecure_db"),
        "{stderr}"
    );
    p.write("p.toml", pipeline("[danger]\nallow_insecure_db = true\n"));
    let (code, summary, stderr) = p.run_json("p.toml");
    assert_eq!(code, 0, "{stderr}\n{summary:#}");
    assert!(stderr.contains("DANGER"), "{stderr}");
    assert_eq!(p.read("out.csv"), "one\n1\n");
    let audit: String = files(&p.path().join(".custos/audit"))
        .iter()
        .map(|f| String::from_utf8_lossy(&std::fs::read(f).unwrap()).to_string())
        .collect();
    assert!(audit.contains("danger_allow_insecure_db"), "{audit}");
    drop(db);
}
