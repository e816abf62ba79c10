//! Protection operations end to end: the `protect` transform and the SQL functions give the
//! same outputs, reversible operations round-trip, the PII gate blocks plaintext and the
//! danger switch lets it through.

use crate::Project;

const PASS: &str = "CANARY-PROTECT-PASS-51c2";

const INPUT: &str = "\
id,full_name,email,phone,ssn,card,iban,notes,birth_date,visit_date,salary,zip,internal_note
1,Morgan Bennett,morgan.bennett@orozco.info,718-574-5483,018-30-4986,4163453805803356,DE50344663795630945463,Customer read out 4163 4538 0580 3356 over the phone.,1999-09-25,2024-03-10,37336,88725,vip
2,Ada Lovelace,ada@example.org,(205) 452-1736,123-45-6789,5555555555554444,GB82WEST12345698765432,Mail ada@example.org or call +1-205-452-1736 after 5.,1815-12-10,2024-03-11,91000,02139,
3,Alan Turing,alan@example.org,212-555-0199,078-05-1120,378282246310005,NL91ABNA0417164300,no pii in this note,1912-06-23,2024-03-12,55000,10001,x
";

fn custos(p: &Project, args: &[&str]) -> (i32, String, String) {
    let out = p
        .custos()
        .env("CUSTOS_KEYSTORE_PASSPHRASE", PASS)
        .args(args)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(!o.contains(PASS) && !e.contains(PASS), "passphrase leaked");
    (out.status.code().unwrap(), o, e)
}

fn setup() -> Project {
    let p = Project::new();
    let ok = |args: &[&str]| {
        let (code, o, e) = custos(&p, args);
        assert_eq!(code, 0, "{args:?}: {o}{e}");
    };
    ok(&[
        "keys",
        "init",
        "--kdf-memory-mib",
        "8",
        "--kdf-iterations",
        "1",
    ]);
    ok(&["keys", "create", "pii-main", "--purpose", "aead"]);
    ok(&["keys", "create", "joins", "--purpose", "daead"]);
    ok(&["keys", "create", "fpe-main", "--purpose", "fpe"]);
    ok(&["keys", "create", "tokens", "--purpose", "hmac"]);
    p.write("in.csv", INPUT);
    p
}

/// Runs a pipeline that must succeed; returns its summary, checked for the row invariant.
fn run_ok(p: &Project, pipeline: &str) -> serde_json::Value {
    let (code, o, e) = custos(p, &["run", pipeline, "--json"]);
    assert_eq!(code, 0, "{e}");
    let summary: serde_json::Value = serde_json::from_str(&o).unwrap();
    crate::assert_invariant(&summary);
    summary
}

fn rows(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        // Simple CSV: quoted fields contain no quotes in these tests.
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                ',' if !quoted => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        out.push(fields);
    }
    out
}

const CONFIG_PROTECT: &str = r#"
[pipeline]
name = "protect-config"
[sources.people]
type = "csv"
path = "in.csv"
pii = ["full_name", "email", "phone", "ssn", "card", "iban", "birth_date"]
[transforms.safe]
type = "protect"
inputs = ["people"]
columns.email = { action = "encrypt", key = "pii-main" }
columns.full_name = { action = "encrypt_deterministic", key = "joins" }
columns.ssn = { action = "fpe", key = "fpe-main", format = "ssn" }
columns.card = { action = "tokenize", key = "tokens" }
columns.iban = { action = "fpe", key = "fpe-main", format = "alphanumeric" }
columns.phone = { action = "mask", keep_last = 4 }
columns.notes = { action = "redact", types = ["email", "phone", "ssn", "card", "iban", "ip"] }
columns.birth_date = { action = "generalize", to = "year" }
columns.visit_date = { action = "date_shift", max_days = 30, subject = "id", key = "tokens" }
columns.salary = { action = "generalize", bucket = 10000 }
columns.zip = { action = "generalize", zip_digits = 3 }
columns.internal_note = { action = "drop" }
[sinks.out]
type = "csv"
inputs = ["safe"]
path = "config.csv"
"#;

const SQL_PROTECT: &str = r#"
[pipeline]
name = "protect-sql"
[sources.people]
type = "csv"
path = "in.csv"
pii = ["full_name", "email", "phone", "ssn", "card", "iban", "birth_date"]
[transforms.safe]
type = "sql"
inputs = ["people"]
query = """
SELECT id,
       encrypt_deterministic(full_name, 'joins') AS full_name,
       encrypt(email, 'pii-main') AS email,
       mask(phone, 0, 4) AS phone,
       fpe(ssn, 'fpe-main', 'ssn') AS ssn,
       tokenize(card, 'tokens') AS card,
       fpe(iban, 'fpe-main', 'alphanumeric') AS iban,
       redact_pii(notes) AS notes,
       generalize(birth_date, 'year') AS birth_date,
       date_shift(visit_date, id, 'tokens', 30) AS visit_date,
       generalize_bucket(salary, 10000) AS salary,
       generalize_zip(zip, 3) AS zip
FROM people
"""
[sinks.out]
type = "csv"
inputs = ["safe"]
path = "sql.csv"
"#;

#[test]
fn config_and_sql_give_the_same_outputs_and_everything_reverses() {
    let p = setup();
    p.write("config.toml", CONFIG_PROTECT);
    p.write("sql.toml", SQL_PROTECT);
    let (code, o, e) = custos(&p, &["run", "config.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    let (code, o, e) = custos(&p, &["run", "sql.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    let a = rows(&p.read("config.csv"));
    let b = rows(&p.read("sql.csv"));
    let input = rows(INPUT);
    assert_eq!(a[0], b[0], "same columns, in the same order");
    assert_eq!(
        a[0],
        [
            "id",
            "full_name",
            "email",
            "phone",
            "ssn",
            "card",
            "iban",
            "notes",
            "birth_date",
            "visit_date",
            "salary",
            "zip"
        ]
    );
    let col = |h: &[String], n: &str| h.iter().position(|c| c == n).unwrap();
    let h = &a[0];
    for (ra, rb) in a[1..].iter().zip(&b[1..]) {
        for name in h {
            if name == "email" {
                // Randomized: both are ciphertexts, never equal, never the plaintext.
                assert!(ra[col(h, name)].starts_with("cx1."));
                assert!(rb[col(h, name)].starts_with("cx1."));
                assert_ne!(ra[col(h, name)], rb[col(h, name)]);
            } else {
                assert_eq!(ra[col(h, name)], rb[col(h, name)], "column {name}");
            }
        }
    }
    let r1 = &a[1];
    assert!(r1[col(h, "full_name")].starts_with("cs1."));
    assert_eq!(r1[col(h, "phone")], "***-***-5483");
    assert_eq!(r1[col(h, "birth_date")], "1999-01-01");
    assert_eq!(r1[col(h, "salary")], "30000");
    assert_eq!(r1[col(h, "zip")], "887**");
    assert_eq!(
        r1[col(h, "notes")],
        "Customer read out <CARD> over the phone."
    );
    assert_eq!(
        a[2][col(h, "notes")],
        "Mail <EMAIL> or call <PHONE> after 5."
    );
    assert_eq!(a[3][col(h, "zip")], "100**");
    // FPE keeps the format and changes the value; tokens are 32 hex characters.
    let ssn = &r1[col(h, "ssn")];
    assert_eq!(ssn.len(), 11);
    assert_eq!(&ssn[3..4], "-");
    assert_ne!(ssn, &input[1][4]);
    assert_eq!(r1[col(h, "card")].len(), 32);
    let iban = &r1[col(h, "iban")];
    assert_eq!(iban.len(), input[1][6].len());
    assert_ne!(iban, &input[1][6]);
    // Date shift: within 30 days, the same for the same subject in both runs.
    let shifted = chrono::NaiveDate::parse_from_str(&r1[col(h, "visit_date")], "%Y-%m-%d").unwrap();
    let orig = chrono::NaiveDate::parse_from_str("2024-03-10", "%Y-%m-%d").unwrap();
    assert!((shifted - orig).num_days().abs() <= 30);
    // Equal plaintexts give equal SIV ciphertexts (joinable).
    assert_ne!(a[1][col(h, "full_name")], a[2][col(h, "full_name")]);

    // Decrypt the config output back, with the plaintext explicitly allowed.
    p.write(
        "back.toml",
        r#"
[pipeline]
name = "back"
[sources.safe]
type = "csv"
path = "config.csv"
[transforms.clear]
type = "protect"
inputs = ["safe"]
columns.email = { action = "decrypt", key = "pii-main" }
columns.full_name = { action = "decrypt_deterministic", key = "joins" }
columns.ssn = { action = "fpe_decrypt", key = "fpe-main", format = "ssn" }
columns.iban = { action = "fpe_decrypt", key = "fpe-main", format = "alphanumeric" }
[sinks.out]
type = "csv"
inputs = ["clear"]
path = "back.csv"
[danger]
allow_plaintext = ["out.email", "out.full_name", "out.ssn", "out.iban"]
"#,
    );
    let (code, o, e) = custos(&p, &["run", "back.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    let back = rows(&p.read("back.csv"));
    let hb = &back[0];
    for (r, orig) in back[1..].iter().zip(&input[1..]) {
        for (name, i) in [("full_name", 1), ("email", 2), ("ssn", 4), ("iban", 6)] {
            assert_eq!(r[col(hb, name)], orig[i], "column {name}");
        }
    }
    // The SQL functions decrypt too.
    p.write(
        "back_sql.toml",
        r#"
[pipeline]
name = "back-sql"
[sources.safe]
type = "csv"
path = "sql.csv"
[transforms.clear]
type = "sql"
inputs = ["safe"]
query = "SELECT decrypt(email, 'pii-main') AS email, decrypt_deterministic(full_name, 'joins') AS full_name, fpe_decrypt(ssn, 'fpe-main', 'ssn') AS ssn FROM safe"
[sinks.out]
type = "csv"
inputs = ["clear"]
path = "back_sql.csv"
[danger]
allow_plaintext = ["out.*"]
"#,
    );
    let (code, o, e) = custos(&p, &["run", "back_sql.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    let back = rows(&p.read("back_sql.csv"));
    for (r, orig) in back[1..].iter().zip(&input[1..]) {
        assert_eq!((&r[0], &r[1], &r[2]), (&orig[2], &orig[1], &orig[4]));
    }
}

#[test]
fn the_gate_blocks_plaintext_pii_and_the_danger_switch_lets_it_pass() {
    let p = setup();
    let pipeline = |name: &str, extra: &str, danger: &str| {
        format!(
            r#"
[pipeline]
name = "{name}"
[sources.people]
type = "csv"
path = "in.csv"
{extra}
[transforms.some]
type = "sql"
inputs = ["people"]
query = "SELECT id, lower(email) AS contact, salary FROM people"
[sinks.out]
type = "csv"
inputs = ["some"]
path = "{name}.csv"
{danger}
"#
        )
    };
    // Found by scanning: the renamed, lower-cased email column.
    p.write("scan.toml", pipeline("scan", "", ""));
    let (code, o, e) = custos(&p, &["run", "scan.toml"]);
    assert_eq!(code, 1, "{o}{e}");
    assert!(
        e.contains("sink \"out\": column \"contact\" carries unprotected PII (email)"),
        "{e}"
    );
    assert!(!p.path().join("scan.csv").exists(), "nothing committed");
    assert!(!e.contains("ada@example.org"), "{e}");

    // Declared: refused when planning, so `custos validate` reports it too.
    p.write(
        "declared.toml",
        pipeline("declared", "pii = [\"salary\"]", ""),
    );
    let (code, o, e) = custos(&p, &["validate", "declared.toml"]);
    assert_eq!(code, 2, "{o}{e}");
    assert!(
        format!("{o}{e}").contains("column \"salary\" carries unprotected PII (declared)"),
        "{o}{e}"
    );

    // The danger switch passes, loudly.
    p.write(
        "allowed.toml",
        pipeline(
            "allowed",
            "pii = [\"salary\"]",
            "[danger]\nallow_plaintext = [\"out.contact\", \"out.salary\"]",
        ),
    );
    let (code, o, e) = custos(&p, &["run", "allowed.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    assert!(e.contains("DANGER"), "{e}");
    assert!(p.read("allowed.csv").contains("ada@example.org"));
}

#[test]
fn rows_a_kernel_cannot_protect_go_to_quarantine_without_their_values() {
    let p = setup();
    p.write(
        "bad.csv",
        "id,ssn\n1,018-30-4986\n2,666-12-3456\n3,\n4,not-an-ssn-9\n",
    );
    p.write(
        "fpe.toml",
        r#"
[pipeline]
name = "fpe"
[sources.people]
type = "csv"
path = "bad.csv"
[transforms.safe]
type = "protect"
inputs = ["people"]
columns.ssn = { action = "fpe", key = "fpe-main", format = "ssn" }
[sinks.out]
type = "csv"
inputs = ["safe"]
path = "out.csv"
"#,
    );
    let summary = run_ok(&p, "fpe.toml");
    let q = p.quarantine(&summary);
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q[0]["line"], 3);
    assert_eq!(q[0]["rule"], "protect");
    assert_eq!(q[0]["column"], "ssn");
    let reason = q[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("column \"ssn\": fpe failed:"),
        "{reason}"
    );
    assert!(!reason.contains("666"), "{reason}");
    let text = p.read("out.csv");
    assert_eq!(
        text.lines().count(),
        3,
        "header, row 1 and the null row: {text}"
    );

    // A key of the wrong purpose, and an unknown key, are config errors naming the column.
    p.write(
        "wrong.toml",
        r#"
[pipeline]
name = "wrong"
[sources.people]
type = "csv"
path = "bad.csv"
[transforms.safe]
type = "protect"
inputs = ["people"]
columns.ssn = { action = "encrypt", key = "tokens" }
columns.id = { action = "tokenize", key = "token" }
[sinks.out]
type = "csv"
inputs = ["safe"]
path = "out.csv"
"#,
    );
    let (code, o, e) = custos(&p, &["validate", "wrong.toml"]);
    assert_eq!(code, 2, "{o}{e}");
    let all = format!("{o}{e}");
    assert!(
        all.contains("key \"tokens\" has purpose hmac; encrypt needs a key of purpose aead"),
        "{all}"
    );
    assert!(
        all.contains("no key named \"token\" in the keystore; did you mean \"tokens\"?"),
        "{all}"
    );
}

#[test]
fn many_small_batches_keep_their_order_and_quarantine_order() {
    // The protect transform works on several batches at once; rows and quarantine records
    // must still come out in input order, with the right row numbers.
    let p = setup();
    let mut csv = String::from("id,name,ssn\n");
    let mut bad = Vec::new();
    for i in 1..=3000u32 {
        let ssn = if i % 7 == 0 {
            bad.push(i);
            format!("666-{:02}-{:04}", 1 + i % 98, 1 + i % 9998)
        } else {
            format!("{:03}-{:02}-{:04}", 100 + i % 500, 1 + i % 98, 1 + i % 9998)
        };
        csv.push_str(&format!("{i},Name Number{i},{ssn}\n"));
    }
    p.write("many.csv", &csv);
    p.write(
        "many.toml",
        r#"
[pipeline]
name = "many"
batch_size = 16
[sources.people]
type = "csv"
path = "many.csv"
[transforms.safe]
type = "protect"
inputs = ["people"]
columns.ssn = { action = "fpe", key = "fpe-main", format = "ssn" }
columns.name = { action = "mask", keep_last = 2 }
[sinks.out]
type = "csv"
inputs = ["safe"]
path = "out.csv"
"#,
    );
    let summary = run_ok(&p, "many.toml");
    let text = p.read("out.csv");
    let ids: Vec<u32> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let want: Vec<u32> = (1..=3000).filter(|i| i % 7 != 0).collect();
    assert_eq!(ids, want, "rows out of order or lost");
    for l in text.lines().skip(1) {
        let f: Vec<&str> = l.split(',').collect();
        let id = f[0];
        assert!(f[1].ends_with(&id[id.len().saturating_sub(2)..]) || id.len() < 2);
        assert!(f[1].starts_with('*'), "{l}");
        assert_eq!(f[2].len(), 11, "{l}");
    }
    let q = p.quarantine(&summary);
    let rows: Vec<u64> = q.iter().map(|r| r["row"].as_u64().unwrap()).collect();
    let lines: Vec<u64> = q.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    let want_rows: Vec<u64> = bad.iter().map(|&i| u64::from(i)).collect();
    assert_eq!(
        rows, want_rows,
        "quarantine rows out of order or misnumbered"
    );
    let want_lines: Vec<u64> = bad.iter().map(|&i| u64::from(i) + 1).collect();
    assert_eq!(lines, want_lines);
}

#[test]
fn custom_detectors_from_config_redact_in_config_and_sql() {
    let p = setup();
    p.write(
        "staff.csv",
        "id,notes\n1,Employee EMP-123456 mailed ada@example.org today\n2,nothing here\n",
    );
    let pipeline = |name: &str, detection: &str| {
        format!(
            r#"
[pipeline]
name = "{name}"
[detection]
{detection}
[sources.staff]
type = "csv"
path = "staff.csv"
[transforms.safe]
type = "protect"
inputs = ["staff"]
columns.notes = {{ action = "redact", types = ["employee_id", "email"] }}
[transforms.sql]
type = "sql"
inputs = ["staff"]
query = "SELECT id, redact_pii(notes, 'employee_id,email') AS notes FROM staff"
[sinks.out]
type = "csv"
inputs = ["safe"]
path = "{name}.csv"
[sinks.sql_out]
type = "csv"
inputs = ["sql"]
path = "{name}_sql.csv"
"#
        )
    };
    p.write(
        "custom.toml",
        pipeline(
            "custom",
            r#"custom = [{ name = "employee_id", pattern = 'EMP-\d{6}', context = ["employee"], score = 0.9 }]"#,
        ),
    );
    let (code, o, e) = custos(&p, &["run", "custom.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    let out = p.read("custom.csv");
    assert!(
        out.contains("1,Employee <EMPLOYEE_ID> mailed <EMAIL> today"),
        "{out}"
    );
    let out = p.read("custom_sql.csv");
    assert!(
        out.contains("1,Employee <EMPLOYEE_ID> mailed <EMAIL> today"),
        "{out}"
    );

    // Redacting only some types leaves the others in the clear: the gate still catches them.
    p.write(
        "partial.toml",
        pipeline(
            "partial",
            r#"custom = [{ name = "employee_id", pattern = 'EMP-\d{6}', context = ["employee"], score = 0.9 }]"#,
        )
        .replace("'employee_id,email'", "'employee_id'"),
    );
    let (code, o, e) = custos(&p, &["run", "partial.toml"]);
    assert_eq!(code, 1, "{o}{e}");
    assert!(
        e.contains("sink \"sql_out\": column \"notes\" carries unprotected PII (email)"),
        "{e}"
    );

    // A bad pattern, and an unknown type name, are config errors.
    p.write(
        "bad.toml",
        pipeline(
            "bad",
            r#"custom = [{ name = "employee_id", pattern = 'EMP-(\d{6}', score = 0.9 }]"#,
        ),
    );
    let (code, o, e) = custos(&p, &["validate", "bad.toml"]);
    assert_eq!(code, 2, "{o}{e}");
    let all = format!("{o}{e}");
    assert!(all.contains("detection.custom"), "{all}");
    assert!(all.contains("unknown PII type \"employee_id\""), "{all}");
}

#[test]
fn mask_variants_and_keyed_redaction_match_between_config_and_sql() {
    let p = setup();
    p.write(
        "m.csv",
        "id,email,ssn,notes\n1,ada.lovelace@example.org,123-45-6789,call 718-574-5483 now\n2,,078-05-1120,\n",
    );
    p.write(
        "m.toml",
        r#"
[pipeline]
name = "mask"
[sources.m]
type = "csv"
path = "m.csv"
[transforms.cfg]
type = "protect"
inputs = ["m"]
columns.email = { action = "mask", email = true }
columns.ssn = { action = "mask", pattern = "***-**-####" }
columns.notes = { action = "redact", types = ["phone"], with = "token", key = "tokens" }
[transforms.sql]
type = "sql"
inputs = ["m"]
query = "SELECT id, mask_email(email) AS email, mask_pattern(ssn, '***-**-####') AS ssn, notes FROM m"
[transforms.sql_tok]
type = "protect"
inputs = ["sql"]
columns.notes = { action = "redact", types = ["phone"], with = "token", key = "tokens" }
[transforms.enc]
type = "protect"
inputs = ["m"]
columns.notes = { action = "redact", types = ["phone"], with = "encrypt", key = "pii-main" }
columns.email = { action = "drop" }
columns.ssn = { action = "drop" }
[sinks.a]
type = "csv"
inputs = ["cfg"]
path = "a.csv"
[sinks.b]
type = "csv"
inputs = ["sql_tok"]
path = "b.csv"
[sinks.c]
type = "csv"
inputs = ["enc"]
path = "c.csv"
"#,
    );
    let (code, o, e) = custos(&p, &["run", "m.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    let a = p.read("a.csv");
    assert_eq!(a, p.read("b.csv"), "config and SQL agree");
    let r = rows(&a);
    assert_eq!(r[1][1], "a***********@example.org");
    assert_eq!(r[1][2], "***-**-6789");
    assert!(r[1][3].starts_with("call <PHONE:") && r[1][3].ends_with("> now"));
    assert_eq!(r[2][1], "", "nulls stay null");
    // The encrypted span decrypts back with the SQL function.
    let c = rows(&p.read("c.csv"));
    let ct = c[1][1]
        .trim_start_matches("call ")
        .trim_end_matches(" now")
        .to_string();
    assert!(ct.starts_with("cx1."), "{ct}");
    p.write("ct.csv", format!("id,notes\n1,{ct}\n"));
    p.write(
        "dec.toml",
        r#"
[pipeline]
name = "dec"
[sources.ct]
type = "csv"
path = "ct.csv"
[transforms.d]
type = "sql"
inputs = ["ct"]
query = "SELECT decrypt(notes, 'pii-main') AS notes FROM ct"
[sinks.out]
type = "csv"
inputs = ["d"]
path = "dec.csv"
[danger]
allow_plaintext = ["out.notes"]
"#,
    );
    let (code, o, e) = custos(&p, &["run", "dec.toml"]);
    assert_eq!(code, 0, "{o}{e}");
    assert_eq!(p.read("dec.csv"), "notes\n718-574-5483\n");
}

#[test]
fn the_state_dir_flag_also_picks_the_keystore() {
    let p = setup();
    // The state directory lives elsewhere and nothing points at it but the flag.
    std::fs::rename(p.path().join(".custos"), p.path().join("state")).unwrap();
    p.write(
        "p.toml",
        "[pipeline]\nname = \"p\"\n[sources.raw]\ntype = \"csv\"\npath = \"in.csv\"\n\
         [transforms.safe]\ntype = \"protect\"\ninputs = [\"raw\"]\n\
         columns.email = { action = \"encrypt\", key = \"pii-main\" }\n\
         [sinks.out]\ntype = \"csv\"\ninputs = [\"safe\"]\npath = \"out.csv\"\n\
         [danger]\nallow_plaintext = [\"out.*\"]\n",
    );
    let state = p.path().join("state");
    let out = p
        .custos()
        .env_remove("CUSTOS_STATE_DIR")
        .env("CUSTOS_KEYSTORE_PASSPHRASE", PASS)
        .env("CUSTOS_TOKEN_FILE", state.join("tester.token"))
        .args(["--state-dir", state.to_str().unwrap(), "run", "p.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(p.read("out.csv").contains("cx1."), "{}", p.read("out.csv"));
    assert!(!p.path().join(".custos").exists());

    // One Argon2id unlock serves the data keys and the audit checkpoint.
    let checkpoints = || {
        std::fs::read_to_string(state.join("audit/checkpoints.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = checkpoints();
    let out = p
        .custos()
        .env_remove("CUSTOS_STATE_DIR")
        .env("CUSTOS_KEYSTORE_PASSPHRASE", PASS)
        .env("CUSTOS_TOKEN_FILE", state.join("tester.token"))
        .env("CUSTOS_LOG", "debug")
        .args(["--state-dir", state.to_str().unwrap(), "run", "p.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("keystore unlocked").count(), 1, "{stderr}");
    assert_eq!(
        checkpoints(),
        before + 1,
        "the run's audit checkpoint was not signed"
    );
    // The same for `keys` commands.
    let out = p
        .custos_as("admin")
        .env_remove("CUSTOS_STATE_DIR")
        .env("CUSTOS_KEYSTORE_PASSPHRASE", PASS)
        .env("CUSTOS_TOKEN_FILE", state.join("admin.token"))
        .env("CUSTOS_LOG", "debug")
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["keys", "create", "extra", "--purpose", "hmac"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("keystore unlocked").count(), 1, "{stderr}");
    assert_eq!(checkpoints(), before + 2);
}

#[test]
fn ciphertext_and_token_columns_are_written_without_compression_or_statistics() {
    use datafusion::parquet::basic::Compression;
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

    let p = setup();
    for (name, text, out) in [
        ("config", CONFIG_PROTECT, "config.csv"),
        ("sql", SQL_PROTECT, "sql.csv"),
    ] {
        let pq = format!("{name}.parquet");
        let text = text
            .replace("type = \"csv\"\ninputs", "type = \"parquet\"\ninputs")
            .replace(out, &pq);
        p.write(&format!("{name}-pq.toml"), text);
        run_ok(&p, &format!("{name}-pq.toml"));
        let file = std::fs::File::open(p.path().join(&pq)).unwrap();
        let reader = SerializedFileReader::new(file).unwrap();
        let rg = reader.metadata().row_group(0);
        let column = |c: &str| {
            (0..rg.num_columns())
                .map(|i| rg.column(i))
                .find(|m| m.column_path().string() == c)
                .unwrap_or_else(|| panic!("{name}: no column {c}"))
        };
        // Random-looking values: nothing to compress, no min/max worth keeping.
        for c in ["email", "full_name", "card"] {
            let m = column(c);
            assert_eq!(m.compression(), Compression::UNCOMPRESSED, "{name}: {c}");
            assert!(m.statistics().is_none(), "{name}: {c} has statistics");
        }
        // Everything else keeps the default codec and its statistics.
        for c in ["id", "notes", "phone", "ssn", "zip"] {
            let m = column(c);
            assert!(
                matches!(m.compression(), Compression::ZSTD(_)),
                "{name}: {c} is {:?}",
                m.compression()
            );
            assert!(m.statistics().is_some(), "{name}: {c} has no statistics");
        }
    }
}
