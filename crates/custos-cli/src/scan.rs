//! `custos scan`: what personal data a file or a pipeline's sources hold, and how to protect it.

use anyhow::Result;
use comfy_table::Table;
use custos_engine::scan::SourceScan;

/// Prints scans as JSON, a suggested `protect` transform, or a table (local and server mode
/// alike).
pub(crate) fn print(scans: &[SourceScan], json: bool, suggest: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&scans)?);
    } else if suggest {
        print_suggestion(scans);
    } else {
        print_table(scans);
    }
    Ok(())
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
