//! `custos keys` end to end, with canary values that must never appear in any output.

use base64::Engine as _;

use crate::Project;

const CANARY_PASS: &str = "CANARY-PASSPHRASE-7f3a9c";

fn keys(p: &Project, args: &[&str]) -> (i32, String, String) {
    let out = p
        .custos()
        .env("CUSTOS_KEYSTORE_PASSPHRASE", CANARY_PASS)
        .arg("keys")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn key_lifecycle_through_the_cli_never_prints_secrets() {
    let p = Project::new();
    let mut all = String::new();
    let mut run = |args: &[&str], want: i32| -> String {
        let (code, out, err) = keys(&p, args);
        all.push_str(&out);
        all.push_str(&err);
        assert_eq!(code, want, "{args:?}: {out}{err}");
        out
    };
    run(
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
        0,
    );
    // A second init is refused as invalid, like creating a key that exists.
    run(
        &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"],
        2,
    );
    run(&["create", "pii-main", "--purpose", "aead"], 0);
    run(&["create", "tokens", "--purpose", "hmac"], 0);
    run(&["create", "joins", "--purpose", "daead"], 0);
    assert_eq!(
        run(&["rotate", "pii-main"], 0),
        "key \"pii-main\": version 2 is now primary\n"
    );
    run(&["rotate", "pii-main"], 0);
    run(&["disable", "pii-main", "1"], 0);
    run(&["enable", "pii-main", "1"], 0);
    run(&["set-min-version", "pii-main", "2"], 0);
    run(&["destroy", "pii-main", "3", "--yes"], 2); // the primary
    run(&["destroy", "pii-main", "1"], 2); // no confirmation on a non-terminal
    run(&["destroy", "pii-main", "1", "--yes"], 0);
    let list = run(&["list", "--json"], 0);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    // The keystore also holds the audit log's checkpoint key.
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[..2], ["custos-audit", "pii-main"]);
    let k = &v[1];
    assert_eq!(k["name"], "pii-main");
    assert_eq!(k["primary"], 3);
    assert_eq!(k["min_version"], 2);
    let states: Vec<&str> = k["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["destroyed", "decrypt-only", "active"]);
    assert!(k["versions"][0].get("wrapped").is_none());
    let show = run(&["show", "pii-main"], 0);
    assert!(
        show.contains("destroyed") && show.contains("decrypt-only"),
        "{show}"
    );
    run(&["list"], 0);
    run(&["show", "nope"], 2); // not found, as from a server

    // Wrong passphrase: a clear error, and still no canary.
    let out = p
        .custos()
        .env("CUSTOS_KEYSTORE_PASSPHRASE", "wrong")
        .args(["keys", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("wrong passphrase, or the file was modified"),
        "{err}"
    );
    // No passphrase at all.
    let out = p
        .custos()
        .env_remove("CUSTOS_KEYSTORE_PASSPHRASE")
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no keystore passphrase"));

    // Canaries: the passphrase and every key's material are absent from all output.
    assert!(!all.contains(CANARY_PASS), "passphrase leaked");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ks = custos_keys::Keystore::open(
        &p.path().join(".custos/keystore.ck"),
        &custos_keys::Passphrase::new(CANARY_PASS.into()),
    )
    .unwrap();
    for (name, purpose) in [
        ("pii-main", custos_keys::Purpose::Aead),
        ("tokens", custos_keys::Purpose::Hmac),
        ("joins", custos_keys::Purpose::Daead),
    ] {
        let (_, _, key) = rt.block_on(ks.encryption_key(name, purpose)).unwrap();
        let hex: String = key.expose().iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.expose());
        assert!(
            !all.contains(&hex) && !all.contains(&b64),
            "material of {name} leaked"
        );
        let file = std::fs::read(p.path().join(".custos/keystore.ck")).unwrap();
        assert!(
            !file.windows(key.len()).any(|w| w == key.expose()),
            "plaintext key in file"
        );
    }
}

#[test]
fn passphrase_file_reference_and_permission_warning() {
    let p = Project::new();
    let pf = p.write("secret/pass.txt", format!("{CANARY_PASS}\n"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pf, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let out = p
        .custos()
        .env_remove("CUSTOS_KEYSTORE_PASSPHRASE")
        .env("CUSTOS_KEYSTORE_PASSPHRASE_FILE", &pf)
        .args([
            "keys",
            "init",
            "--kdf-memory-mib",
            "8",
            "--kdf-iterations",
            "1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("is readable by group or others; chmod 600 it"),
        "{err}"
    );
    // The same passphrase given directly opens it.
    let (code, _, err) = keys(&p, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains(CANARY_PASS));
}

#[test]
fn rewrap_moves_old_ciphertexts_to_the_primary_and_shredding_makes_them_unreadable() {
    use custos_crypto::CellEncryptor;
    use custos_crypto::aead::{self, AeadDecryptor, AeadEncryptor};
    use custos_crypto::siv::{self, SivCipher};
    use custos_keys::{Keystore, Passphrase, Purpose};

    let p = Project::new();
    assert_eq!(
        keys(
            &p,
            &["init", "--kdf-memory-mib", "8", "--kdf-iterations", "1"]
        )
        .0,
        0
    );
    assert_eq!(keys(&p, &["create", "pii-main", "--purpose", "aead"]).0, 0);
    assert_eq!(keys(&p, &["create", "joins", "--purpose", "daead"]).0, 0);
    let ks_path = p.path().join(".custos/keystore.ck");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let open = || Keystore::open(&ks_path, &Passphrase::new(CANARY_PASS.into())).unwrap();

    // Cells written under version 1 of both keys, bound to their columns.
    let ks = open();
    let (aid, av, akey) = rt
        .block_on(ks.encryption_key("pii-main", Purpose::Aead))
        .unwrap();
    let (sid, sv, skey) = rt
        .block_on(ks.encryption_key("joins", Purpose::Daead))
        .unwrap();
    let mut enc = AeadEncryptor::new(aid, av, &akey).unwrap();
    let mut det = SivCipher::new(sid, sv, &skey).unwrap();
    let mut csv = String::from("id,email,cust\n");
    let emails = ["ada@example.org", "alan@example.org", "ada@example.org"];
    for (i, e) in emails.iter().enumerate() {
        let (mut a, mut s, mut scratch) = (String::new(), String::new(), Vec::new());
        enc.encrypt_text_into(e, b"email", &mut scratch, &mut a)
            .unwrap();
        det.encrypt_text_into(&format!("cust-{}", i % 2), b"cust", &mut scratch, &mut s)
            .unwrap();
        csv.push_str(&format!("{i},{a},{s}\n"));
    }
    csv.push_str("3,plaintext@example.org,\n");
    p.write("in.csv", &csv);
    p.write(
        "rewrap.toml",
        r#"[pipeline]
name = "rewrap"
[sources.old]
type = "csv"
path = "in.csv"
[transforms.fresh]
type = "rewrap"
inputs = ["old"]
columns = ["email", "cust"]
[sinks.out]
type = "csv"
inputs = ["fresh"]
path = "out.csv"
"#,
    );
    assert_eq!(keys(&p, &["rotate", "pii-main"]).0, 0);
    assert_eq!(keys(&p, &["rotate", "joins"]).0, 0);
    let out = p
        .custos()
        .env("CUSTOS_KEYSTORE_PASSPHRASE", CANARY_PASS)
        .args(["run", "rewrap.toml", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    crate::assert_invariant(&summary);
    let q = p.quarantine(&summary);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["rule"], "rewrap");
    assert_eq!(q[0]["line"], 5);
    assert_eq!(
        q[0]["reason"],
        "column \"email\": not a custos ciphertext (expected a cx1. or cs1. value)"
    );

    let ks = open();
    let (_, _, akey2) = rt
        .block_on(ks.encryption_key("pii-main", Purpose::Aead))
        .unwrap();
    let (sid2, sv2, skey2) = rt
        .block_on(ks.encryption_key("joins", Purpose::Daead))
        .unwrap();
    let text = p.read("out.csv");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3);
    let mut siv2 = SivCipher::new(sid2, sv2, &skey2).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let a = aead::decode(r[1]).unwrap();
        assert_eq!(aead::header_of(&a).unwrap().version, 2);
        assert_eq!(
            AeadDecryptor::new()
                .decrypt_text(r[1], &akey2, b"email")
                .unwrap(),
            emails[i]
        );
        assert_eq!(
            siv::header_of(&siv::decode(r[2]).unwrap()).unwrap().version,
            2
        );
        assert_eq!(
            siv2.decrypt_text(r[2], b"cust").unwrap(),
            format!("cust-{}", i % 2)
        );
    }
    assert_eq!(
        rows[0][2], rows[2][2],
        "deterministic cells stay joinable after rewrap"
    );

    // Crypto-shredding: once version 1 is destroyed, the old file can no longer be read.
    assert_eq!(keys(&p, &["destroy", "pii-main", "1", "--yes"]).0, 0);
    let out = p
        .custos()
        .env("CUSTOS_KEYSTORE_PASSPHRASE", CANARY_PASS)
        .args(["run", "rewrap.toml", "--json"])
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let q = p.quarantine(&summary);
    assert_eq!(q.len(), 4);
    assert_eq!(
        q[0]["reason"],
        "column \"email\": key \"pii-main\" version 1 was destroyed"
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(CANARY_PASS));
}
