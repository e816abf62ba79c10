//! Shared types for custos: the column types a pipeline can declare, the provenance column
//! that lets quarantine records name the source file and line of a row, and small helpers.
//!
//! This crate does no I/O; every other custos crate depends on it.

pub mod origin;
pub mod types;

pub use origin::{ORIGIN_COLUMN, Origin, OriginError};
pub use types::{ColumnType, ColumnTypeError};

/// Prefix reserved for columns that custos adds to a stream (provenance and the like).
/// User columns may not start with it; sinks never write such columns.
pub const RESERVED_PREFIX: &str = "_custos_";

/// Field metadata key set on every column a protection operation produced (value: the
/// operation, e.g. `encrypt`).
pub const PROTECTED_META: &str = "custos.protected";
/// Field metadata key on columns known to hold personal data (value: the class).
pub const PII_META: &str = "custos.pii";

/// Whether a protected column's values look random (ciphertexts, tokens), so that compressing
/// them only costs time.
pub fn incompressible(metadata: &std::collections::HashMap<String, String>) -> bool {
    matches!(
        metadata.get(PROTECTED_META).map(String::as_str),
        Some("encrypt" | "encrypt_deterministic" | "tokenize")
    )
}

/// True when `name` is a column custos manages itself.
pub fn is_reserved_column(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// The closest candidate to `name` among `candidates`, for "did you mean" hints.
///
/// Only returns a candidate that is plausibly a typo: at most a third of the name differs.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = levenshtein(name, c);
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal-string-alignment distance: edits, with a swap of two neighbours counting as one.
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(did_you_mean("rwa", ["raw", "clean"]), Some("raw"));
        assert_eq!(did_you_mean("emial", ["id", "email"]), Some("email"));
        assert_eq!(did_you_mean("claen", ["raw", "clean"]), Some("clean"));
        assert_eq!(
            did_you_mean("compresion", ["path", "compression"]),
            Some("compression")
        );
        assert_eq!(did_you_mean("zzzzzz", ["raw", "clean"]), None);
        assert_eq!(did_you_mean("ab", ["xy"]), None);
    }

    #[test]
    fn reserved_prefix() {
        assert!(is_reserved_column("_custos_origin"));
        assert!(!is_reserved_column("custos"));
    }
}
