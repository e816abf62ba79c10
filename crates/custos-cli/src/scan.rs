//! `custos scan`: what personal data a file or a pipeline's sources hold, and how to protect it.

use std::path::Path;

use anyhow::{Result, bail};
use comfy_table::Table;
use custos_engine::scan::SourceScan;

/// A pipeline for one data file, so that scanning a file reuses the source readers.
fn file_pipeline(file: &Path) -> Result<(String, String)> {
    let abs = std::path::absolute(file)?;
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let kind = match ext.as_str() {
        "csv" | "tsv" | "txt" => "csv",
        "jsonl" | "ndjson" | "json" => "jsonl",
        "parquet" | "pq" => "parquet",
        _ => bail!(
            "cannot tell the format of {} from its extension; name a .csv, .jsonl or .parquet file, or a pipeline .toml",
            file.display()
        ),
    };
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("input");
    let mut name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "src_");
    }
    let path = abs.display().to_string();
    let toml = format!(
        "[pipeline]\nname = \"scan\"\n[sources.{name}]\ntype = \"{kind}\"\npath = {path:?}\n[sinks.unused]\ntype = \"csv\"\ninputs = [\"{name}\"]\npath = \"unused.csv\"\n"
    );
    Ok((name, toml))
}

/// Runs the scan and prints it; returns the exit code.
pub fn run(target: &Path, sample: usize, seed: u64, json: bool, suggest: bool) -> Result<u8> {
    let is_pipeline = target.extension().and_then(|e| e.to_str()) == Some("toml");
    let loaded = if is_pipeline {
        custos_config::load(target)?
    } else {
        let (_, toml) = file_pipeline(target)?;
        custos_config::load_str(Path::new("scan.toml"), &toml)
    };
    if loaded.diagnostics.has_errors() {
        eprint!("{}", loaded.diagnostics);
        return Ok(2);
    }
    let rt = crate::runtime()?;
    let scans = match rt.block_on(custos_engine::scan::scan(&loaded.config, sample, seed)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custos: scan failed: {e}");
            return Ok(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&scans)?);
    } else if suggest {
        print_suggestion(&scans);
    } else {
        print_table(&scans);
    }
    Ok(0)
}

fn print_table(scans: &[SourceScan]) {
    for s in scans {
        println!(
            "source \"{}\": {} rows read, {} sampled",
            s.source, s.rows, s.sampled
        );
        let mut t = Table::new();
        t.set_header(["column", "type", "PII found", "name hint", "recommended"]);
        for c in &s.columns {
            let p = &c.profile;
            let mut found: Vec<String> = p
                .classes
                .iter()
                .map(|k| {
                    format!(
                        "{} {:.0}% (conf {:.2})",
                        k.kind,
                        k.match_ratio * 100.0,
                        k.confidence
                    )
                })
                .collect();
            found.extend(p.embedded.iter().map(|k| {
                format!(
                    "{} in text {:.0}% (conf {:.2})",
                    k.kind,
                    k.match_ratio * 100.0,
                    k.confidence
                )
            }));
            t.add_row([
                c.name.clone(),
                c.data_type.clone(),
                if found.is_empty() {
                    "-".into()
                } else {
                    found.join("\n")
                },
                p.name_hint.map_or("-".into(), |k| k.to_string()),
                if p.recommended.action() == "keep" {
                    "keep".into()
                } else {
                    p.recommended.to_toml_action()
                },
            ]);
        }
        println!("{t}");
    }
}

fn print_suggestion(scans: &[SourceScan]) {
    for s in scans {
        let cols: Vec<_> = s
            .columns
            .iter()
            .filter(|c| c.profile.recommended.action() != "keep")
            .collect();
        if cols.is_empty() {
            println!("# source \"{}\": no personal data recognised", s.source);
            continue;
        }
        println!(
            "# Suggested by `custos scan` from {} sampled rows of \"{}\".",
            s.sampled, s.source
        );
        println!("[transforms.{}_protected]", s.source);
        println!("type = \"protect\"");
        println!("inputs = [\"{}\"]", s.source);
        for c in cols {
            let key = if c
                .name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            {
                c.name.clone()
            } else {
                format!("{:?}", c.name)
            };
            println!("columns.{key} = {}", c.profile.recommended.to_toml_action());
        }
        println!();
    }
}
