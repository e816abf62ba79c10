//! Detector configuration: which kinds run, the reporting threshold, custom detectors.

use serde::{Deserialize, Serialize};

use crate::PiiKind;

/// What a [`crate::Detector`] looks for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// Built-in kinds to run (default: all of them). Custom detectors always run.
    pub enabled: Vec<PiiKind>,
    /// Findings scoring below this are dropped (default 0.5).
    pub min_score: f32,
    /// Extra detectors defined by a regular expression.
    pub custom: Vec<CustomDetector>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            enabled: PiiKind::BUILTIN.to_vec(),
            min_score: 0.5,
            custom: Vec::new(),
        }
    }
}

impl DetectorConfig {
    /// A config running only the given built-in kinds, with the default threshold.
    pub fn only(kinds: &[PiiKind]) -> Self {
        DetectorConfig {
            enabled: kinds.to_vec(),
            ..DetectorConfig::default()
        }
    }
}

/// A detector defined in configuration by a regular expression.
///
/// A match scores `score`; a context word within the same sentence (40 bytes before or 24
/// after, case-insensitive, whole-word start) raises it by 0.2, capped at 1. When a checksum is
/// set, matches that fail it are dropped.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomDetector {
    /// Kind name reported for matches: lowercase ASCII letters, digits and `_`, not a built-in name.
    pub name: String,
    /// Regular expression (Rust `regex` syntax) a match must satisfy.
    pub pattern: String,
    /// Checksum over the match's characters, if any.
    #[serde(default)]
    pub checksum: Option<Checksum>,
    /// Words that, near a match, raise its score.
    #[serde(default)]
    pub context: Vec<String>,
    /// Score of a match without context, 0.0..=1.0.
    pub score: f32,
}

/// Checksums a custom detector may require of its matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    /// Luhn (mod 10) over the digits of the match; other characters are ignored.
    Luhn,
    /// ISO 7064 mod 97-10 as used by IBAN: the first four alphanumerics move to the end,
    /// letters count as 10..35, and the number must leave remainder 1. Spaces are ignored.
    Mod97,
}
