//! `custos init`: a small working project that shows validation and quarantine at work.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The example pipeline written by `custos init`.
pub const PIPELINE: &str = r#"# A custos pipeline: named sources, transforms and sinks wired by `inputs`.
# Check it with `custos validate pipeline.toml`, run it with `custos run pipeline.toml`,
# look at the data first with `custos scan data/customers.csv`.

[pipeline]
name = "customers"
description = "Check the customer export, protect every personal-data column, write Parquet."
# Fail the run if more than half of the rows end up in quarantine.
quarantine = { max_ratio = 0.5 }

[sources.raw]
type = "csv"
path = "data/customers.csv"
# Columns holding personal data: the PII gate refuses to write them unprotected.
pii = ["full_name", "email", "phone", "ssn", "credit_card", "iban", "date_of_birth", "notes"]

[transforms.checked]
type = "validate"
inputs = ["raw"]
rules = [
  { column = "id", not_null = true, unique = true },
  { column = "email", regex = '^[^@\s]+@[^@\s]+$' },
  { column = "date_of_birth", min = "1900-01-01", max = "today" },
]

# Keys live in the local encrypted keystore (.custos/keystore.ck); `custos init` creates them
# when CUSTOS_KEYSTORE_PASSPHRASE (or CUSTOS_KEYSTORE_PASSPHRASE_FILE) is set.
[transforms.safe]
type = "protect"
inputs = ["checked"]
columns.full_name = { action = "encrypt_deterministic", key = "joins" }   # joinable
columns.email = { action = "encrypt", key = "pii-main" }                   # AES-256-GCM
columns.phone = { action = "mask", keep_last = 4 }
columns.ssn = { action = "fpe", key = "fpe-main", format = "ssn" }         # still looks like an SSN
columns.credit_card = { action = "tokenize", key = "tokens" }
columns.iban = { action = "tokenize", key = "tokens" }
columns.date_of_birth = { action = "generalize", to = "year" }
columns.notes = { action = "redact" }                                      # <EMAIL>, <PHONE>, ...

[sinks.out]
type = "parquet"
inputs = ["safe"]
path = "out/customers.parquet"
"#;

/// A second pipeline that decrypts the protected output (for authorised use only).
pub const DECRYPT: &str = r#"# Decrypts what pipeline.toml protected. Writing plaintext PII needs the explicit [danger]
# switch below, which custos logs loudly.

[pipeline]
name = "customers-decrypt"

[sources.safe]
type = "parquet"
path = "out/customers.parquet"

[transforms.clear]
type = "protect"
inputs = ["safe"]
columns.full_name = { action = "decrypt_deterministic", key = "joins" }
columns.email = { action = "decrypt", key = "pii-main" }
columns.ssn = { action = "fpe_decrypt", key = "fpe-main", format = "ssn" }

[sinks.out]
type = "csv"
inputs = ["clear"]
path = "out/customers-decrypted.csv"

[danger]
allow_plaintext = ["out.full_name", "out.email", "out.ssn"]
"#;

/// The example data (synthetic, from the benchmark generator): ten good rows plus a
/// duplicate id, a bad email and an SSN that can never be issued.
pub const CUSTOMERS_CSV: &str = r#"id,full_name,email,phone,ssn,credit_card,iban,date_of_birth,notes
1,Morgan Bennett,morgan_bennett2001@orozco-hansen.info,718-574-5483,018-30-4986,341665491210355,DE50344663795630945463,1999-09-25,Per improve whom capital participant. Through thank every picture city onto accept. Feeling decision policy at in American term why will. Customer read out 4163 4538 0580 3356 over the phone. Account NL14 WBRY 2144 0974 99 was credited. Meeting moved to 12:45 in room 578.
2,Stephanie Torres,stephanie.torres@wilkerson.com,409-427-8078,630-89-6746,4391908075165616,FR7605323526915956419069706,2003-03-08,Cover TV doctor receive. Describe smile religious teacher. Reached the client on +1-205-452-1736. Provided 806-74-2196 as identifier. Reference number 354828356 assigned. Please update bank details to IT85 T680 9098 172B C7RD 0SMA 2SL.
3,Patrick Nixon,patrick2708@sanchez-cooper.net,667-207-2439,293-14-9164,377355453269527,FR7607561366444278779558977,1940-09-07,South air similar various relate candidate bad consider. Learn edge hospital fly project room indicate challenge.
4,Debra George,debra.george@rogers.com,334-231-7418,050-10-5778,4853975921741677,ES3687177578081997905374,1974-08-16,Login from 2001:f68a::abb:3e13:7173 was flagged. Provided 683517898 as identifier. Him stock especially have morning herself message sort. Phone: +1-814-744-2034
5,Melinda Hudson,melinda.hudson@gordon-alexander.com,718-463-9617,539-25-6788,4165285281542373,ES2318078375402346320268,1974-10-22,Sea list trial voice wear represent behind manager cultural. Not value fact information suggest force key goal smile education six garden other near doctor current. Have eight sort however technology.
6,Kevin Green,kevin364@bond.com,813-201-3605,056-41-4056,5253037406095567,DE02136108677054614419,1972-03-26,Baby now or six hand only business read bit speak hospital. Provided 769-85-0614 as identifier. Seat education purpose hand seven become. The form listed 342 25 2683 in box 3. Mobile +49 30 66394566 is the best way to reach her. Explain stop get after together choose.
7,Mark Zamora,mark.zamora@long.com,952-725-0877,369-27-0604,4475030517889155,FR7674494775733778045224384,1968-04-29,Cause senior candidate include. Phone: 878.934.1934 Bit executive plan actually.
8,Jennifer Burnett,jburnett65@thompson.com,586-521-2159,168-56-0771,373961950238479,DE90411185185761358248,1953-02-08,Billion off our baby peace statement customer source. Customer wrote from jennifer5164@outlook.com Meeting moved to 14:30 in room 624. Left a voicemail at (319) 805-1776. Candidate official season late article prevent occur grow. Blocked 2001:9488:2b12::19de after repeated failures. Wrong kitchen analysis most picture plant maintain determine.
9,Rodney Ford,rford1@walters.com,713-218-7593,185-12-7037,5132370569029553,DE54008292209834464148,1961-01-26,Left a voicemail at 912-551-8077. Onto office outside when town road despite report. Seat free trip show. Production accept take poor network resource commercial me include.
10,Leah Armstrong,leah.armstrong@carney.com,430-284-5963,327-40-3429,4165038049027272,NL83UFKD4994769923,1997-11-17,IBAN: DE13 2714 3588 5022 3345 52 Remain skill rich pressure listen detail avoid phone chance up training. Good bit authority yeah drug scientist business car Mr different.
2,Duplicate Row,dup@example.org,212-555-0100,123-45-6789,4111111111111111,DE89370400440532013000,1980-01-01,duplicate id
11,No Email,not-an-email,212-555-0101,123-45-6780,4111111111111111,DE89370400440532013000,1981-02-03,bad email
12,Bad Ssn,bad.ssn@example.org,212-555-0102,666-12-3456,4111111111111111,DE89370400440532013000,1982-03-04,area 666 is never issued
"#;

/// The keys the example pipeline uses, with their purposes.
const KEYS: &[(&str, custos_keys::Purpose)] = &[
    ("pii-main", custos_keys::Purpose::Aead),
    ("joins", custos_keys::Purpose::Daead),
    ("fpe-main", custos_keys::Purpose::Fpe),
    ("tokens", custos_keys::Purpose::Hmac),
];

/// Creates the keystore (if absent) and the example's keys when a passphrase is given by
/// reference; returns whether it did.
async fn keys(state: &Path) -> Result<bool> {
    let Some(pass) = crate::access::passphrase() else {
        return Ok(false);
    };
    let path = custos_keys::keystore_path(state);
    let mut ks = if path.exists() {
        custos_keys::Keystore::open(&path, &pass)?
    } else {
        custos_keys::Keystore::init(&path, &pass, custos_keys::KdfParams::default())?
    };
    for (name, purpose) in KEYS {
        if ks.key(name).is_err() {
            ks.create(name, *purpose).await?;
        }
    }
    Ok(true)
}

/// Creates the example project in `dir` (unless `no_example`), the default policies, and, in a
/// project without users, the first admin.
pub fn init(
    dir: &Path,
    force: bool,
    no_example: bool,
    admin_token_file: Option<&Path>,
) -> Result<()> {
    let state = dir.join(".custos");
    crate::runtime()?.block_on(async {
        let project = crate::access::open(&state, None)
            .await
            .with_context(|| format!("opening the state directory {}", state.display()))?;
        let result = init_in(&project, dir, &state, force, no_example, admin_token_file).await;
        crate::access::close(&project, result.map(|()| 0)).await
    })?;
    Ok(())
}

async fn init_in(
    project: &custos_app::Project,
    dir: &Path,
    state: &Path,
    force: bool,
    no_example: bool,
    admin_token_file: Option<&Path>,
) -> Result<()> {
    let first = !project.has_users()?;
    if !no_example {
        // A new project gets the example's keys; in one with users, creating keys needs a
        // signed-in user allowed to manage them.
        let may_create_keys = first
            || (std::env::var_os("CUSTOS_TOKEN").is_some()
                || std::env::var_os("CUSTOS_TOKEN_FILE").is_some())
                && match crate::access::sign_in(project).await {
                    Ok(who) => project
                        .authorizer()
                        .authorize(
                            &who,
                            custos_policy::Action::ManageKeys,
                            &custos_policy::Resource::Key { name: "*".into() },
                        )
                        .await
                        .is_ok(),
                    Err(_) => false,
                };
        let made_keys = example(dir, force, state, may_create_keys).await?;
        if made_keys {
            project.reload_keystore().await?;
        }
    }
    let policies = dir.join("policies");
    if !policies.exists() {
        std::fs::create_dir_all(&policies)
            .with_context(|| format!("creating {}", policies.display()))?;
        let p = policies.join("default.cedar");
        std::fs::write(&p, custos_policy::DEFAULT_POLICIES)
            .with_context(|| format!("writing {}", p.display()))?;
        println!("  policies/default.cedar  who may do what (Cedar); default deny");
    }
    // Whoever runs init is the first admin: the token is their own.
    match project.bootstrap_admin("admin").await? {
        Some(issued) => {
            println!();
            println!("created the first user \"admin\" (role security_admin).");
            crate::admin::hand_out(&issued.token, "admin", admin_token_file)?;
            println!("use it with CUSTOS_TOKEN (or CUSTOS_TOKEN_FILE) to add users:");
            println!("  custos users add NAME --role data_engineer");
        }
        None => {
            println!("users exist already: manage them with `custos users` (no admin created)")
        }
    }
    Ok(())
}

/// Writes the example files and, in a new project, its keys; returns whether it made keys.
async fn example(dir: &Path, force: bool, state: &Path, may_create_keys: bool) -> Result<bool> {
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.join("data").display()))?;
    let files = [
        ("pipeline.toml", PIPELINE),
        ("data/customers.csv", CUSTOMERS_CSV),
        ("decrypt.toml", DECRYPT),
    ];
    for (name, _) in &files {
        let p = dir.join(name);
        if p.exists() && !force {
            bail!(
                "{} already exists; use --force to overwrite the example files",
                p.display()
            );
        }
    }
    for (name, text) in &files {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    custos_engine::StateStore::open(state)
        .with_context(|| format!("creating the state store in {}", state.display()))?;
    let keys_ready = may_create_keys && keys(state).await.context("creating the example keys")?;
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, ".custos/\nout/\n")
            .with_context(|| format!("writing {}", gitignore.display()))?;
    }
    println!("created an example custos project in {}", dir.display());
    println!("  pipeline.toml        csv -> validate -> protect -> parquet");
    println!("  decrypt.toml         decrypts the protected output (needs the keys)");
    println!("  data/customers.csv   synthetic customers with a few bad rows");
    println!("  .custos/             run records, quarantine files, keystore (mode 0700)");
    if keys_ready {
        println!("  keys                 pii-main, joins, fpe-main, tokens in .custos/keystore.ck");
    } else {
        println!();
        println!("the pipeline needs keys: set CUSTOS_KEYSTORE_PASSPHRASE (or");
        println!(
            "CUSTOS_KEYSTORE_PASSPHRASE_FILE) and run `custos init --force` again to create them"
        );
        println!("(signed in as a user allowed to manage keys, once users exist)");
    }
    println!();
    println!("next:");
    println!("  custos scan data/customers.csv");
    println!("  custos validate pipeline.toml");
    println!("  custos run pipeline.toml");
    println!("  custos runs list");
    Ok(keys_ready)
}
