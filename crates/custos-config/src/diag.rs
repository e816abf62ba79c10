//! Diagnostics: every config problem carries the file, line, column and TOML key path.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The pipeline cannot run.
    Error,
    /// The pipeline runs, but probably not as meant.
    Warning,
}

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column (in characters), 0 when unknown.
    pub column: usize,
    /// TOML key path such as `transforms.clean.inputs[0]`; empty for file-level problems.
    pub key: String,
    /// What is wrong; never contains a secret or a cell value.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// Maps TOML key paths and byte offsets of one config file to lines and columns.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: PathBuf,
    text: String,
    /// (key path, span of the key, span of the value), in document order.
    keys: Vec<(String, Range<usize>, Range<usize>)>,
}

impl SourceMap {
    pub(crate) fn new(
        file: PathBuf,
        text: String,
        keys: Vec<(String, Range<usize>, Range<usize>)>,
    ) -> Self {
        Self { file, text, keys }
    }

    /// The config file this map describes.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// Byte span of the value at `key` (or of the longest known prefix of it).
    pub fn value_span(&self, key: &str) -> Option<Range<usize>> {
        self.lookup(key).map(|(_, v)| v)
    }

    /// Byte span of the key itself (where `key = ...` starts).
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.lookup(key).map(|(k, _)| k)
    }

    fn lookup(&self, key: &str) -> Option<(Range<usize>, Range<usize>)> {
        let mut k = key;
        loop {
            if let Some((_, ks, vs)) = self.keys.iter().find(|(p, _, _)| p == k) {
                return Some((ks.clone(), vs.clone()));
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }

    /// The deepest key path whose value span contains `span`.
    pub fn key_at(&self, span: &Range<usize>) -> Option<&str> {
        self.keys
            .iter()
            .filter(|(_, ks, vs)| {
                (vs.start <= span.start && span.end <= vs.end)
                    || (ks.start <= span.start && span.end <= ks.end)
            })
            .max_by_key(|(p, _, _)| p.len())
            .map(|(p, _, _)| p.as_str())
    }

    /// Builds an error diagnostic located at `key` (its value, or the key when `at_key`).
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        self.diag(Severity::Error, key, false, message.into())
    }

    /// Builds an error diagnostic located at the key name of `key` rather than its value.
    pub fn error_at_key(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        self.diag(Severity::Error, key, true, message.into())
    }

    /// Builds a warning diagnostic located at `key`.
    pub fn warning_at(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        self.diag(Severity::Warning, key, true, message.into())
    }

    /// Builds a diagnostic at an explicit byte offset.
    pub fn error_at_offset(&self, key: &str, offset: usize, message: String) -> Diagnostic {
        let (line, column) = self.line_col(offset);
        Diagnostic {
            severity: Severity::Error,
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message,
        }
    }

    fn diag(&self, severity: Severity, key: &str, at_key: bool, message: String) -> Diagnostic {
        let span = if at_key {
            self.key_span(key)
        } else {
            self.value_span(key)
        };
        let (line, column) = span.map_or((0, 0), |s| self.line_col(s.start));
        Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A list of diagnostics, errors and warnings, in the order found.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Adds one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Sorts by position so output reads top to bottom.
    pub fn sort(&mut self) {
        self.0.sort_by_key(|d| (d.line, d.column));
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}
