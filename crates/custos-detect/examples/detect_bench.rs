//! Single-thread throughput of `Detector::detect_into` over the `notes` column.
//!
//! ```text
//! CUSTOS_PII_DATA=/path/to/dir cargo run --release --example detect_bench
//! ```
//! Reads `pii_100k.csv` from that directory, holds the notes in memory, runs detection over all
//! of them three times and prints the best run's rows/s and MB/s.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use custos_detect::{Detector, DetectorConfig, Finding};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::var_os("CUSTOS_PII_DATA")
        .map(PathBuf::from)
        .ok_or("set CUSTOS_PII_DATA to the directory holding pii_100k.csv")?;
    let mut rdr = csv::Reader::from_path(dir.join("pii_100k.csv"))?;
    let col = rdr
        .headers()?
        .iter()
        .position(|h| h == "notes")
        .ok_or("no notes column")?;
    let mut notes = Vec::new();
    for rec in rdr.records() {
        notes.push(rec?.get(col).unwrap_or_default().to_owned());
    }
    let bytes: usize = notes.iter().map(String::len).sum();
    let detector = Detector::new(DetectorConfig::default())?;
    let mut out: Vec<Finding> = Vec::new();
    let mut best = f64::INFINITY;
    let mut found = 0usize;
    for run in 1..=3 {
        found = 0;
        let t = Instant::now();
        for n in &notes {
            detector.detect_into(n, &mut out);
            found += out.len();
        }
        let secs = t.elapsed().as_secs_f64();
        println!("run {run}: {secs:.3} s");
        best = best.min(secs);
    }
    println!(
        "{} notes, {:.1} MB, {found} findings; best run {:.3} s: {:.0} rows/s, {:.1} MB/s (1 thread)",
        notes.len(),
        bytes as f64 / 1e6,
        best,
        notes.len() as f64 / best,
        bytes as f64 / 1e6 / best
    );
    Ok(())
}
