//! `custos init`: a small working project that shows validation and quarantine at work.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The example pipeline written by `custos init`.
pub const PIPELINE: &str = r#"# A custos pipeline: named sources, transforms and sinks wired by `inputs`.
# Check it with `custos validate pipeline.toml`, run it with `custos run pipeline.toml`.

[pipeline]
name = "customers"
description = "Clean the customer export, check every row, write Parquet."
# Fail the run if more than half of the rows end up in quarantine.
quarantine = { max_ratio = 0.5 }

[sources.raw]
type = "csv"
path = "data/customers.csv"
# Declared types; leave `schema` out to infer them (identifiers such as ZIP codes stay text).
schema = { id = "int64", name = "utf8", email = "utf8", zip = "utf8", signup = "date32" }

[transforms.clean]
type = "sql"
inputs = ["raw"]
query = "SELECT id, name, lower(trim(email)) AS email, zip, signup FROM raw"

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

/// The example data: good rows plus one of each kind of bad row.
pub const CUSTOMERS_CSV: &str = "id,name,email,zip,signup
1,Ada Lovelace,Ada@Example.org ,02134,2015-03-01
2,Alan Turing,alan@example.org,10001,2016-07-14
3,Grace Hopper,grace@example.org,94105,2018-11-30
4,\"Hopper, Jr.\",junior@example.org,00501,2019-01-02
5,Edsger Dijkstra,edsger-at-example.org,60601,2020-05-05
2,Alan Duplicate,dup@example.org,10001,2021-01-01
6,Barbara Liskov,barbara@example.org,02139,1999-12-31
7,Ken Thompson,ken@example.org,07030
8x,Dennis Ritchie,dmr@example.org,07974,2011-10-12
9,Margaret Hamilton,margaret@example.org,02215,2016-11-22
";

/// Creates the example project in `dir`.
pub fn init(dir: &Path, force: bool) -> Result<()> {
    std::fs::create_dir_all(dir.join("data"))
        .with_context(|| format!("creating {}", dir.join("data").display()))?;
    let files = [
        ("pipeline.toml", PIPELINE),
        ("data/customers.csv", CUSTOMERS_CSV),
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
    let state = dir.join(".custos");
    custos_engine::StateStore::open(&state)
        .with_context(|| format!("creating the state store in {}", state.display()))?;
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, ".custos/\nout/\n")
            .with_context(|| format!("writing {}", gitignore.display()))?;
    }
    println!("created an example custos project in {}", dir.display());
    println!("  pipeline.toml        the pipeline: csv -> sql -> validate -> parquet");
    println!("  data/customers.csv   sample data with a few bad rows");
    println!("  .custos/             run records and quarantine files (mode 0700)");
    println!();
    println!("next:");
    println!("  custos validate pipeline.toml");
    println!("  custos run pipeline.toml");
    println!("  custos runs list");
    Ok(())
}
