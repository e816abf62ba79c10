//! Throughput of the single-pass detector over the `notes` column of the synthetic PII set,
//! on one thread: the six kinds the redact benchmark uses, and every built-in kind.
//!
//! Run: `cargo bench -p custos-detect --bench detect`. It reads the first
//! `CUSTOS_BENCH_CELLS` (default 200000) notes of `CUSTOS_BENCH_CSV`, by default the 1M-row
//! file `bench/run.py` generates into `~/.cache/custos/bench-data`. Best of 3 runs each.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use custos_detect::{Detector, DetectorConfig, Finding, PiiKind};

fn main() {
    let path = std::env::var_os("CUSTOS_BENCH_CSV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME");
            PathBuf::from(home).join(".cache/custos/bench-data/pii_1m.csv")
        });
    let cells: usize = std::env::var("CUSTOS_BENCH_CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let Ok(mut rdr) = csv::Reader::from_path(&path) else {
        eprintln!(
            "no {}: generate it with bench/run.py (or set CUSTOS_BENCH_CSV)",
            path.display()
        );
        return;
    };
    let col = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "notes")
        .expect("a notes column");
    let notes: Vec<String> = rdr
        .records()
        .take(cells)
        .map(|r| r.unwrap()[col].to_owned())
        .collect();
    let bytes: usize = notes.iter().map(String::len).sum();
    println!(
        "{} notes, {:.1} MB, from {}",
        notes.len(),
        bytes as f64 / 1e6,
        path.display()
    );
    use PiiKind::{Card, Email, Iban, Ip, Phone, Ssn};
    let runs = [
        (
            "redact's six kinds",
            DetectorConfig::only(&[Email, Phone, Ssn, Card, Iban, Ip]),
        ),
        ("every built-in kind", DetectorConfig::default()),
    ];
    for (name, config) in runs {
        let det = Detector::new(config).unwrap();
        let mut out: Vec<Finding> = Vec::new();
        let mut best = f64::MAX;
        let mut found = 0;
        for _ in 0..3 {
            let t = Instant::now();
            found = 0;
            for n in &notes {
                det.detect_into(black_box(n), &mut out);
                found += out.len();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{name:<20} {:>9.0} cells/s {:>7.1} MB/s  ({found} findings, {best:.3} s)",
            notes.len() as f64 / best,
            bytes as f64 / 1e6 / best
        );
    }
}
