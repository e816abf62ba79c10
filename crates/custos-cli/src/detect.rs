//! `custos detect`: run the PII detectors outside a pipeline, e.g. to score them on a corpus.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use custos_detect::{Detector, DetectorConfig, PiiKind};

use crate::EXIT_INVALID;

#[derive(Debug, Subcommand)]
pub enum DetectCommand {
    /// Score the detectors on labelled text: per-type strict and overlap precision, recall
    /// and F1.
    ///
    /// TRUTH is JSON Lines, one `{"text": "...", "spans": [{"start": 5, "end": 21, "label":
    /// "PHONE_NUMBER"}]}` per line, offsets in Unicode code points (as Python and Presidio
    /// count them), end exclusive; `-` reads standard input. Labels use Presidio's names
    /// (EMAIL_ADDRESS, PHONE_NUMBER, US_SSN, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, PERSON,
    /// STREET_ADDRESS); other labels are counted as ignored. Exit code 2 when a record is
    /// malformed or missing (the message names the file and line), or when --min-f1 is not met.
    Eval {
        /// Labelled JSON Lines file, or `-` for standard input.
        truth: PathBuf,
        /// Use the `[detection]` settings (enabled kinds, threshold, custom detectors) of
        /// this pipeline instead of the defaults.
        #[arg(long, value_name = "FILE")]
        pipeline: Option<PathBuf>,
        /// Run only these built-in detectors (comma-separated: email,phone,ssn,card,iban,
        /// ip,date_of_birth,person,address) [default: all].
        #[arg(long, value_name = "KINDS", value_delimiter = ',')]
        only: Vec<PiiKind>,
        /// Report findings scoring at least this (0.0..=1.0) [default: the pipeline's or 0.5].
        #[arg(long, value_name = "SCORE")]
        min_score: Option<f32>,
        /// Fail (exit code 2) when the pattern-type overlap micro F1 is below this, for CI.
        #[arg(long, value_name = "F1")]
        min_f1: Option<f64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

impl DetectCommand {
    /// The file the command reads, for authorization and audit.
    pub fn dataset(&self) -> String {
        match self {
            DetectCommand::Eval { truth, .. } => truth.display().to_string(),
        }
    }
}

/// Runs a `custos detect` command; returns the exit code.
pub fn run(command: &DetectCommand) -> Result<u8> {
    match command {
        DetectCommand::Eval {
            truth,
            pipeline,
            only,
            min_score,
            min_f1,
            json,
        } => {
            let Some(mut config) = detector_config(pipeline.as_deref(), *min_score)? else {
                return Ok(EXIT_INVALID);
            };
            if !only.is_empty() {
                config.enabled.clone_from(only);
            }
            let detector = match Detector::new(config) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("custos: {e}");
                    return Ok(EXIT_INVALID);
                }
            };
            let (reader, origin): (Box<dyn BufRead>, String) = if truth == Path::new("-") {
                (Box::new(std::io::stdin().lock()), "standard input".into())
            } else {
                match File::open(truth) {
                    Ok(f) => (Box::new(BufReader::new(f)), truth.display().to_string()),
                    Err(e) => {
                        eprintln!(
                            "custos: cannot open the truth file {}: {e}",
                            truth.display()
                        );
                        return Ok(EXIT_INVALID);
                    }
                }
            };
            let report = match custos_detect::eval::evaluate(&detector, reader, &origin) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("custos: {e}");
                    return Ok(EXIT_INVALID);
                }
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render_table());
            }
            if let Some(min) = min_f1 {
                let f1 = report.pattern_micro.overlap.f1;
                if f1 < *min {
                    eprintln!(
                        "custos: pattern overlap micro F1 {f1:.3} is below --min-f1 {min:.3}"
                    );
                    return Ok(EXIT_INVALID);
                }
            }
            Ok(0)
        }
    }
}

/// The detector settings: the pipeline's `[detection]` table or the defaults, with the
/// threshold overridden. `None` when the pipeline is invalid (its diagnostics are printed).
fn detector_config(
    pipeline: Option<&Path>,
    min_score: Option<f32>,
) -> Result<Option<DetectorConfig>> {
    let mut config = match pipeline {
        None => DetectorConfig::default(),
        Some(file) => {
            let loaded = custos_config::load(file)?;
            if loaded.diagnostics.has_errors() {
                eprint!("{}", loaded.diagnostics);
                return Ok(None);
            }
            loaded.config.detection.detector_config()
        }
    };
    if let Some(s) = min_score {
        if !(0.0..=1.0).contains(&s) {
            eprintln!("custos: --min-score must be between 0 and 1, got {s}");
            return Ok(None);
        }
        config.min_score = s;
    }
    Ok(Some(config))
}
