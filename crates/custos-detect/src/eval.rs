//! Precision, recall and F1 of a [`Detector`] against labelled text.
//!
//! The input is JSON Lines, one record per line:
//!
//! ```text
//! {"text": "call +44 20 7946 0958", "spans": [{"start": 5, "end": 21, "label": "PHONE_NUMBER"}]}
//! ```
//!
//! Offsets are Unicode code points (Python `str` offsets, as Presidio and `gen_data.py` write
//! them), `end` exclusive; `type` is accepted instead of `label`. Labels use Presidio's names
//! (see [`label_kind`]); labels this crate does not detect (`LOCATION`, `DATE_TIME`, ...) are
//! counted as ignored, and findings of kinds no label names (dates of birth, custom detectors)
//! are not scored. Blank lines are skipped.
//!
//! Each type is scored twice: *strict* (a finding counts only with exactly the labelled span)
//! and *overlap* (a finding counts when it overlaps a labelled span of the same type; a labelled
//! span counts as recalled when some finding of its type overlaps it).

use std::fmt::Write as _;
use std::io::BufRead;

use serde::{Deserialize, Serialize};

use crate::{DetectError, Detector, Finding, PiiKind};

/// The kinds scored, in report order: the six pattern kinds, then person and address.
const SCORED: [PiiKind; 8] = [
    PiiKind::Email,
    PiiKind::Phone,
    PiiKind::Ssn,
    PiiKind::Card,
    PiiKind::Iban,
    PiiKind::Ip,
    PiiKind::Person,
    PiiKind::Address,
];

/// The kind a truth label stands for: `Some(kind)` for a scored label, `None` for a label
/// that is ignored (known to Presidio but not detected here, or unknown).
pub fn label_kind(label: &str) -> Option<PiiKind> {
    Some(match label {
        "EMAIL_ADDRESS" | "EMAIL" => PiiKind::Email,
        "PHONE_NUMBER" | "PHONE" => PiiKind::Phone,
        "US_SSN" | "SSN" => PiiKind::Ssn,
        "CREDIT_CARD" | "CARD" => PiiKind::Card,
        "IBAN_CODE" | "IBAN" => PiiKind::Iban,
        "IP_ADDRESS" | "IP" => PiiKind::Ip,
        "PERSON" | "PER" | "NAME" => PiiKind::Person,
        "STREET_ADDRESS" | "ADDRESS" => PiiKind::Address,
        _ => return None,
    })
}

/// The Presidio label reported for a scored kind.
fn kind_label(kind: PiiKind) -> &'static str {
    match kind {
        PiiKind::Email => "EMAIL_ADDRESS",
        PiiKind::Phone => "PHONE_NUMBER",
        PiiKind::Ssn => "US_SSN",
        PiiKind::Card => "CREDIT_CARD",
        PiiKind::Iban => "IBAN_CODE",
        PiiKind::Ip => "IP_ADDRESS",
        PiiKind::Person => "PERSON",
        PiiKind::Address => "STREET_ADDRESS",
        _ => "OTHER",
    }
}

/// Precision, recall and F1 with the counts behind them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Prf {
    /// Findings that matched a labelled span.
    pub true_found: usize,
    /// Labelled spans that some finding matched.
    pub recalled: usize,
    /// `true_found / found` (1 when nothing was found).
    pub precision: f64,
    /// `recalled / truth` (1 when nothing was labelled).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

impl Prf {
    fn new(true_found: usize, found: usize, recalled: usize, truth: usize) -> Prf {
        let precision = ratio(true_found, found);
        let recall = ratio(recalled, truth);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Prf {
            true_found,
            recalled,
            precision,
            recall,
            f1,
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores of one type (or of a group of types, for the micro totals).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeScore {
    /// Presidio label (`PHONE_NUMBER`), or the group name for micro totals.
    pub label: String,
    /// Labelled spans.
    pub truth: usize,
    /// Findings reported.
    pub found: usize,
    /// Exact-span scores.
    pub strict: Prf,
    /// Overlapping-span scores.
    pub overlap: Prf,
}

/// Raw counts of one kind, kept while reading.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    truth: usize,
    found: usize,
    strict_found: usize,
    strict_recalled: usize,
    overlap_found: usize,
    overlap_recalled: usize,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.truth += o.truth;
        self.found += o.found;
        self.strict_found += o.strict_found;
        self.strict_recalled += o.strict_recalled;
        self.overlap_found += o.overlap_found;
        self.overlap_recalled += o.overlap_recalled;
    }

    fn score(&self, label: &str) -> TypeScore {
        TypeScore {
            label: label.to_owned(),
            truth: self.truth,
            found: self.found,
            strict: Prf::new(
                self.strict_found,
                self.found,
                self.strict_recalled,
                self.truth,
            ),
            overlap: Prf::new(
                self.overlap_found,
                self.found,
                self.overlap_recalled,
                self.truth,
            ),
        }
    }
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Where the records came from (the `origin` passed in).
    pub origin: String,
    /// Records read.
    pub records: usize,
    /// Labelled spans whose label is not scored.
    pub ignored_spans: usize,
    /// One row per scored type, in the order email, phone, ssn, card, iban, ip, person,
    /// address.
    pub types: Vec<TypeScore>,
    /// Micro totals over the six pattern types (email, phone, ssn, card, iban, ip).
    pub pattern_micro: TypeScore,
    /// Micro totals over PERSON and STREET_ADDRESS.
    pub entity_micro: TypeScore,
}

impl EvalReport {
    /// The row of one label (`"PHONE_NUMBER"`), if it is scored.
    pub fn get(&self, label: &str) -> Option<&TypeScore> {
        self.types.iter().find(|t| t.label == label)
    }

    /// A plain-text table: one line per type and the two micro totals.
    pub fn render_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} records from {}, {} ignored spans",
            self.records, self.origin, self.ignored_spans
        );
        let _ = writeln!(
            s,
            "{:<15} {:>6} {:>6}  {:>6} {:>6} {:>6}  {:>6} {:>6} {:>6}",
            "type", "truth", "found", "s.P", "s.R", "s.F1", "o.P", "o.R", "o.F1"
        );
        let row = |s: &mut String, t: &TypeScore| {
            let _ = writeln!(
                s,
                "{:<15} {:>6} {:>6}  {:>6.3} {:>6.3} {:>6.3}  {:>6.3} {:>6.3} {:>6.3}",
                t.label,
                t.truth,
                t.found,
                t.strict.precision,
                t.strict.recall,
                t.strict.f1,
                t.overlap.precision,
                t.overlap.recall,
                t.overlap.f1
            );
        };
        for t in &self.types {
            row(&mut s, t);
        }
        row(&mut s, &self.pattern_micro);
        row(&mut s, &self.entity_micro);
        s
    }
}

/// One labelled record as read.
#[derive(Debug, Deserialize)]
struct Record {
    text: String,
    #[serde(default)]
    spans: Vec<Span>,
}

#[derive(Debug, Deserialize)]
struct Span {
    start: usize,
    end: usize,
    #[serde(alias = "type")]
    label: String,
}

/// Runs `detector` over every record of `input` (labelled JSON Lines, see the module docs)
/// and scores its findings; `origin` names the input in errors and in the report.
pub fn evaluate(
    detector: &Detector,
    input: impl BufRead,
    origin: &str,
) -> Result<EvalReport, DetectError> {
    let mut counts = [Counts::default(); SCORED.len()];
    let mut records = 0;
    let mut ignored_spans = 0;
    let mut findings: Vec<Finding> = Vec::new();
    let mut truth: Vec<(usize, usize, usize)> = Vec::new();
    let mut offsets: Vec<usize> = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line_no = n + 1;
        let line = line.map_err(|source| DetectError::EvalRead {
            origin: origin.to_owned(),
            line: line_no,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| DetectError::EvalRecord {
            origin: origin.to_owned(),
            line: line_no,
            reason,
        };
        // serde_json's messages may quote the offending value: keep only where and what kind.
        let rec: Record = serde_json::from_str(&line).map_err(|e| {
            bad(format!(
                "not a labelled record ({:?} error at column {})",
                e.classify(),
                e.column()
            ))
        })?;
        records += 1;
        offsets.clear();
        offsets.extend(rec.text.char_indices().map(|(b, _)| b));
        offsets.push(rec.text.len());
        truth.clear();
        for (k, sp) in rec.spans.iter().enumerate() {
            let Some(kind) = label_kind(&sp.label) else {
                ignored_spans += 1;
                continue;
            };
            if sp.start >= sp.end || sp.end >= offsets.len() {
                return Err(bad(format!(
                    "span {k}: {}..{} is empty or outside the text ({} code points)",
                    sp.start,
                    sp.end,
                    offsets.len() - 1
                )));
            }
            let slot = SCORED.iter().position(|&s| s == kind).unwrap_or(0);
            truth.push((slot, offsets[sp.start], offsets[sp.end]));
        }
        detector.detect_into(&rec.text, &mut findings);
        for &(slot, _, _) in &truth {
            counts[slot].truth += 1;
        }
        for f in &findings {
            let Some(slot) = SCORED.iter().position(|&s| s == f.kind) else {
                continue;
            };
            let c = &mut counts[slot];
            c.found += 1;
            let same = truth.iter().filter(|t| t.0 == slot);
            if same.clone().any(|t| t.1 == f.start && t.2 == f.end) {
                c.strict_found += 1;
            }
            if same.into_iter().any(|t| t.1 < f.end && f.start < t.2) {
                c.overlap_found += 1;
            }
        }
        for &(slot, s, e) in &truth {
            let kind = SCORED[slot];
            let same = findings.iter().filter(|f| f.kind == kind);
            if same.clone().any(|f| f.start == s && f.end == e) {
                counts[slot].strict_recalled += 1;
            }
            if same.into_iter().any(|f| f.start < e && s < f.end) {
                counts[slot].overlap_recalled += 1;
            }
        }
    }
    let types = SCORED
        .iter()
        .zip(&counts)
        .map(|(&k, c)| c.score(kind_label(k)))
        .collect();
    let mut pattern = Counts::default();
    let mut entity = Counts::default();
    for (k, c) in SCORED.iter().zip(&counts) {
        if PiiKind::PATTERN.contains(k) {
            pattern.add(c);
        } else {
            entity.add(c);
        }
    }
    Ok(EvalReport {
        origin: origin.to_owned(),
        records,
        ignored_spans,
        types,
        pattern_micro: pattern.score("pattern (micro)"),
        entity_micro: entity.score("entity (micro)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DetectorConfig;

    fn det() -> Detector {
        Detector::new(DetectorConfig::default()).unwrap()
    }

    #[test]
    fn scores_strict_and_overlap() {
        // "Ünïcode" makes code point and byte offsets differ.
        let input = concat!(
            r#"{"text": "Ünïcode: mail jane.doe@example.org now", "spans": [{"start": 14, "end": 34, "label": "EMAIL_ADDRESS"}]}"#,
            "\n\n",
            r#"{"text": "SSN 123-45-6789 in Paris", "spans": [{"start": 4, "end": 14, "type": "US_SSN"}, {"start": 19, "end": 24, "label": "LOCATION"}]}"#,
            "\n"
        );
        let r = evaluate(&det(), input.as_bytes(), "mem").unwrap();
        assert_eq!(r.records, 2);
        assert_eq!(r.ignored_spans, 1);
        let email = r.get("EMAIL_ADDRESS").unwrap();
        assert_eq!((email.truth, email.found), (1, 1));
        assert_eq!(email.strict.f1, 1.0);
        // The SSN label is one character short: overlap counts it, strict does not.
        let ssn = r.get("US_SSN").unwrap();
        assert_eq!(ssn.strict.recall, 0.0);
        assert_eq!(ssn.overlap.f1, 1.0);
        assert_eq!(r.pattern_micro.truth, 2);
        assert!(r.render_table().contains("US_SSN"));
    }

    #[test]
    fn bad_lines_name_origin_and_line() {
        let input = "{\"text\": \"a\", \"spans\": []}\n{\"text\": 5}\n";
        let err = evaluate(&det(), input.as_bytes(), "truth.jsonl")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("truth.jsonl") && err.contains("line 2"),
            "{err}"
        );
        let input = r#"{"text": "abc", "spans": [{"start": 1, "end": 9, "label": "PERSON"}]}"#;
        let err = evaluate(&det(), input.as_bytes(), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("outside"), "{err}");
    }
}
