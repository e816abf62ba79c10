//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong while building a [`crate::Detector`] or naming a kind.
///
/// Messages never contain scanned text: only config names and patterns, which come from the
/// operator's configuration and not from the data being scanned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A custom detector's regular expression did not compile.
    #[error("custom detector \"{name}\": invalid pattern: {source}")]
    InvalidPattern {
        /// The custom detector's configured name.
        name: String,
        /// Why the regex crate refused the pattern.
        #[source]
        source: Box<regex::Error>,
    },
    /// A custom detector's name is empty, malformed, or already taken.
    #[error("custom detector \"{name}\": {reason}")]
    InvalidCustomName {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A score in the configuration is not a number in 0.0..=1.0.
    #[error("{field}: score must be a number between 0 and 1")]
    InvalidScore {
        /// Which config field holds the score (`min_score` or `custom.<name>.score`).
        field: String,
    },
    /// A context word of a custom detector is empty or only whitespace.
    #[error("custom detector \"{name}\": context words must not be empty")]
    EmptyContextWord {
        /// The custom detector's configured name.
        name: String,
    },
    /// Too many custom detectors for the kind index.
    #[error("too many custom detectors: {count} (at most {max})")]
    TooManyCustom {
        /// How many were configured.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The combined automaton of all patterns could not be built.
    #[error("building the combined {what} failed: {reason}")]
    Build {
        /// Which automaton (custom patterns or context words).
        what: &'static str,
        /// The underlying error, as text.
        reason: String,
    },
    /// A PII kind name that is neither built in nor a configured custom detector.
    #[error("unknown pii kind \"{name}\"; valid names: {valid}")]
    UnknownKind {
        /// The name that was asked for (a config value, never a cell value).
        name: String,
        /// The valid names, comma separated.
        valid: String,
    },
    /// A line of labelled evaluation input could not be read.
    #[error("{origin}: line {line}: read failed: {source}")]
    EvalRead {
        /// The input's name, as given to [`crate::eval::evaluate`].
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line of labelled evaluation input is not a valid record.
    #[error("{origin}: line {line}: {reason}")]
    EvalRecord {
        /// The input's name, as given to [`crate::eval::evaluate`].
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong, without quoting the text.
        reason: String,
    },
    /// The embedded name/address tagger model does not match its recorded SHA-256 or does not
    /// parse (a corrupted build, never the scanned data).
    #[error("tagger model {name}: {reason}")]
    Model {
        /// The model file's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
