//! The evaluation sets in `eval/` (made by `eval/make_eval.py`, independent of `gen_data.py`):
//! `dev.jsonl` is the one detectors are tuned on, `heldout.jsonl` is only measured. Both print
//! their tables (`-- --nocapture`) and fail when a score falls below its floor.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use custos_detect::eval::{EvalReport, evaluate};
use custos_detect::{Detector, DetectorConfig};

fn run(name: &str) -> EvalReport {
    if std::env::var_os("CUSTOS_EVAL_ONLY").is_some_and(|v| v != name) {
        return evaluate(
            &Detector::new(DetectorConfig::default()).unwrap(),
            &b""[..],
            name,
        )
        .unwrap();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("eval")
        .join(name);
    let file = File::open(&path).expect("eval set present");
    let det = Detector::new(DetectorConfig::default()).unwrap();
    let report = evaluate(&det, BufReader::new(file), name).unwrap();
    println!("{}", report.render_table());
    report
}

/// Fails with every score under its floor, not only the first.
fn check(report: &EvalReport, micro_f1: f64, type_recall: f64, entity_f1: f64) {
    let mut low = Vec::new();
    if report.pattern_micro.overlap.f1 < micro_f1 {
        low.push(format!(
            "pattern micro F1 {:.3}",
            report.pattern_micro.overlap.f1
        ));
    }
    for t in &report.types[..6] {
        if t.overlap.recall < type_recall {
            low.push(format!("{} recall {:.3}", t.label, t.overlap.recall));
        }
    }
    for label in ["PERSON", "STREET_ADDRESS"] {
        let t = report.get(label).unwrap();
        if t.overlap.f1 < entity_f1 {
            low.push(format!("{label} F1 {:.3}", t.overlap.f1));
        }
    }
    assert!(low.is_empty(), "below target: {low:?}");
}

#[test]
fn dev_set() {
    let r = run("dev.jsonl");
    assert_eq!(r.records, 1500);
    // Regression floors a little under what was measured (pattern micro F1 0.999; overlap F1
    // PERSON 0.978, STREET_ADDRESS 0.971).
    check(&r, 0.99, 0.98, 0.93);
}

#[test]
fn heldout_set() {
    let r = run("heldout.jsonl");
    assert_eq!(r.records, 1500);
    // Issue 19's targets are micro F1 >= 0.95 and recall >= 0.90 for the pattern types
    // (measured: 0.987, lowest recall 0.946 for phones) and F1 >= 0.70 for PERSON and
    // STREET_ADDRESS (measured overlap F1 0.959 and 0.922, strict 0.910 and 0.753); the names
    // and addresses floor sits a little under what was measured, well above the target.
    check(&r, 0.95, 0.90, 0.88);
}
