//! Type inference from a sample of values.
//!
//! Identifiers are strings: a column whose values have leading zeros (`007`, ZIP `02134`),
//! more than 15 digits (card numbers), a leading `+` (E.164 phones), or whose name says it
//! holds identifiers (phone, zip, ssn, card, iban, account, ...) is never made numeric. Declare
//! a `schema` to be sure of every column's type.

use custos_core::ColumnType;

use crate::typed::{parse_date, parse_timestamp};

/// Words that mark identifier columns when a word of the column name starts with them.
const PREFIX_HINTS: &[&str] = &[
    "phone", "mobile", "tel", "fax", "zip", "postal", "postcode", "ssn", "card", "iban", "account",
    "acct", "routing", "passport", "licen", "swift", "msisdn", "imei",
];
/// Words that mark identifier columns when they are a whole word of the column name.
const WORD_HINTS: &[&str] = &[
    "pan", "pin", "tin", "nin", "ein", "npi", "vat", "code", "sku", "ean", "upc", "isbn", "bic",
    "plz", "social", "ccn", "cc", "nhs",
];

/// True when a column's name says it holds identifiers (phone, zip, ssn, card, ...).
pub fn identifier_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .any(|w| WORD_HINTS.contains(&w) || PREFIX_HINTS.iter().any(|h| w.starts_with(h)))
}

/// Running inference over the values of one column.
#[derive(Debug, Clone)]
pub struct Inferrer {
    name_is_identifier: bool,
    int: bool,
    float: bool,
    boolean: bool,
    date: bool,
    timestamp: bool,
    seen: usize,
}

impl Inferrer {
    /// Starts inference for column `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name_is_identifier: identifier_name(name),
            int: true,
            float: true,
            boolean: true,
            date: true,
            timestamp: true,
            seen: 0,
        }
    }

    /// Looks at one non-null value.
    pub fn observe(&mut self, v: &str) {
        let t = v.trim();
        self.seen += 1;
        if self.int && !integer_like(t) {
            self.int = false;
        }
        if self.float && !(integer_like(t) || float_like(t)) {
            self.float = false;
        }
        if self.boolean && !matches!(t.to_ascii_lowercase().as_str(), "true" | "false") {
            self.boolean = false;
        }
        if self.date && parse_date(t).is_none() {
            self.date = false;
        }
        if self.timestamp && (t.len() <= 10 || parse_timestamp(t).is_none()) {
            self.timestamp = false;
        }
    }

    /// The inferred type.
    pub fn finish(&self) -> ColumnType {
        if self.seen == 0 || self.name_is_identifier {
            return ColumnType::Utf8;
        }
        if self.int {
            ColumnType::Int64
        } else if self.float {
            ColumnType::Float64
        } else if self.boolean {
            ColumnType::Boolean
        } else if self.date {
            ColumnType::Date32
        } else if self.timestamp {
            ColumnType::Timestamp
        } else {
            ColumnType::Utf8
        }
    }
}

/// An integer that is a quantity, not an identifier: no leading zero, no `+`, at most 15 digits.
fn integer_like(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty()
        && digits.len() <= 15
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

/// A decimal or exponent number (integers are handled by [`integer_like`]).
fn float_like(t: &str) -> bool {
    let body = t.strip_prefix('-').unwrap_or(t);
    if !body.contains(['.', 'e', 'E']) {
        return false;
    }
    if body.is_empty()
        || !body
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        return false;
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return false;
    }
    let int_part = body.split(['.', 'e', 'E']).next().unwrap_or("");
    // Leading zeros mark codes ("007.5" is not a quantity); "0.5" is fine.
    if int_part.len() > 1 && int_part.starts_with('0') {
        return false;
    }
    body.parse::<f64>().is_ok_and(f64::is_finite)
        && body.bytes().filter(|b| b.is_ascii_digit()).count() <= 17
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(name: &str, vals: &[&str]) -> ColumnType {
        let mut i = Inferrer::new(name);
        for v in vals {
            i.observe(v);
        }
        i.finish()
    }

    #[test]
    fn identifiers_stay_strings() {
        assert_eq!(infer("id", &["1", "2", "30"]), ColumnType::Int64);
        assert_eq!(infer("id", &["1", "007"]), ColumnType::Utf8);
        assert_eq!(infer("zip", &["90210", "10001"]), ColumnType::Utf8);
        assert_eq!(infer("postal_code", &["90210"]), ColumnType::Utf8);
        assert_eq!(infer("home_phone", &["5551234567"]), ColumnType::Utf8);
        assert_eq!(infer("x", &["4111111111111111"]), ColumnType::Utf8);
        assert_eq!(
            infer("credit_card", &["4111111111111111"]),
            ColumnType::Utf8
        );
        assert_eq!(infer("x", &["+14155550100"]), ColumnType::Utf8);
        assert_eq!(infer("ssn", &["123456789"]), ColumnType::Utf8);
        assert_eq!(infer("tel", &["12"]), ColumnType::Utf8);
        assert_eq!(infer("hotel_rooms", &["12"]), ColumnType::Int64);
        assert_eq!(infer("spin_rate", &["12"]), ColumnType::Int64);
    }

    #[test]
    fn other_types() {
        assert_eq!(
            infer("salary", &["1200.50", "-3", "1e3"]),
            ColumnType::Float64
        );
        assert_eq!(infer("ok", &["true", "FALSE"]), ColumnType::Boolean);
        assert_eq!(
            infer("d", &["2024-01-31", "1999-12-31"]),
            ColumnType::Date32
        );
        assert_eq!(
            infer("ts", &["2024-01-31 10:00:00", "2024-01-31T10:00:00Z"]),
            ColumnType::Timestamp
        );
        assert_eq!(infer("d", &["2024-01-31", "soon"]), ColumnType::Utf8);
        assert_eq!(infer("empty", &[]), ColumnType::Utf8);
    }
}
