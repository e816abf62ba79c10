//! PII discovery for custos: find personal data in free text and classify structured columns.
//!
//! A [`Detector`] looks for emails, phone numbers (NANP and international), US SSNs, payment
//! cards, IBANs, IPv4/IPv6 addresses, dates of birth, person names and street addresses (a
//! small CRF tagger, run only around candidate words), plus custom regex detectors from
//! configuration. All built-in detectors share one pass over the text (a byte-class scanner
//! that only stops at digits, `+`, `(`, `@`, capitalised words and hex words before `:`); the
//! custom detectors share one further pass through a single combined regex. Candidates are
//! validated by checksums (Luhn, IBAN mod 97), structural rules (SSN areas, NANP area codes,
//! per-country phone and IBAN tables), `std::net` parsing, and context words near the match.
//!
//! ```
//! use custos_detect::{Detector, DetectorConfig, PiiKind};
//!
//! let detector = Detector::new(DetectorConfig::default())?;
//! let text = "Call 718-574-5483 or mail jane.doe@example.org; order 1234567890 shipped.";
//! let kinds: Vec<PiiKind> = detector.detect(text).iter().map(|f| f.kind).collect();
//! assert_eq!(kinds, [PiiKind::Phone, PiiKind::Email]);
//! assert_eq!(detector.classify_value(" 123-45-6789 ").map(|c| c.0), Some(PiiKind::Ssn));
//! # Ok::<(), custos_detect::DetectError>(())
//! ```
//!
//! Column profiles ([`classify_column`]) combine the column name, whole-value classification
//! and embedded findings into a [`Recommendation`] that renders as a config action.

mod checksum;
mod column;
mod config;
mod context;
mod detector;
mod dict;
mod error;
pub mod eval;
mod kind;
mod ner;
mod scan;
mod tables;

pub use column::{
    ClassStat, ColumnProfile, FpeFormat, Granularity, KEY_FPE, KEY_JOINS, KEY_PII, KEY_TOKENS,
    Recommendation, classify_column, name_hint,
};
pub use config::{Checksum, CustomDetector, DetectorConfig};
pub use detector::{Detector, Finding};
pub use error::DetectError;
pub use kind::PiiKind;
