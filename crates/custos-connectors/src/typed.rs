//! Typed column builders and text-to-value coercion shared by the text sources.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use custos_core::ColumnType;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;

/// A parsed cell, before it is appended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell {
    Null,
    /// Text: the caller appends the field's own text.
    Text,
    I32(i32),
    I64(i64),
    F64(f64),
    Bool(bool),
    Date(i32),
    Ts(i64),
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("epoch"),
};

/// Parses `s` as a value of `ty`; the error says what was expected, never the value.
pub(crate) fn coerce(ty: ColumnType, s: &str) -> Result<Cell, &'static str> {
    // Text is kept as written (trimming it first cost ~1.5% of a CSV copy's CPU); the other
    // types allow spaces around the value.
    match ty {
        ColumnType::Utf8 => Ok(Cell::Text),
        ColumnType::Int32 => s
            .trim()
            .parse()
            .map(Cell::I32)
            .map_err(|_| "not a 32-bit integer"),
        ColumnType::Int64 => s
            .trim()
            .parse()
            .map(Cell::I64)
            .map_err(|_| "not a 64-bit integer"),
        ColumnType::Float64 => {
            let t = s.trim();
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() || t.eq_ignore_ascii_case("nan"))
                .map(Cell::F64)
                .ok_or("not a number")
        }
        ColumnType::Boolean => parse_bool(s.trim())
            .map(Cell::Bool)
            .ok_or("not a boolean (true/false)"),
        ColumnType::Date32 => parse_date(s.trim())
            .map(Cell::Date)
            .ok_or("not a date (YYYY-MM-DD)"),
        ColumnType::Timestamp => parse_timestamp(s.trim())
            .map(Cell::Ts)
            .ok_or("not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff] or RFC 3339)"),
    }
}

pub(crate) fn parse_bool(t: &str) -> Option<bool> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn parse_date(t: &str) -> Option<i32> {
    let b = t.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    // A fixed layout: parse the digits directly (chrono's format parser is the slow part of
    // reading date columns).
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let d = NaiveDate::from_ymd_opt(i32::try_from(num(0..4)?).ok()?, num(5..7)?, num(8..10)?)?;
    i32::try_from(d.signed_duration_since(EPOCH).num_days()).ok()
}

/// Microseconds since the epoch (UTC) of a timestamp.
pub fn parse_timestamp(t: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    None
}

enum Col {
    Utf8(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

/// Builds record batches of a source schema (user columns followed by the origin column).
pub(crate) struct BatchBuilder {
    schema: SchemaRef,
    cols: Vec<Col>,
    origin: UInt64Builder,
    rows: usize,
}

impl BatchBuilder {
    pub(crate) fn new(schema: SchemaRef, types: Vec<ColumnType>, capacity: usize) -> Self {
        let cols = types.iter().map(|t| new_col(*t, capacity)).collect();
        Self {
            schema,
            cols,
            origin: UInt64Builder::with_capacity(capacity),
            rows: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Appends one row whose cells were all coerced; `text(i)` gives column `i`'s text.
    pub(crate) fn append<'a>(
        &mut self,
        cells: &[Cell],
        origin: u64,
        mut text: impl FnMut(usize) -> &'a str,
    ) {
        for (i, (cell, col)) in cells.iter().zip(self.cols.iter_mut()).enumerate() {
            match (cell, col) {
                (Cell::Null, c) => append_null(c),
                (Cell::Text, Col::Utf8(b)) => b.append_value(text(i)),
                (Cell::I32(v), Col::I32(b)) => b.append_value(*v),
                (Cell::I64(v), Col::I64(b)) => b.append_value(*v),
                (Cell::F64(v), Col::F64(b)) => b.append_value(*v),
                (Cell::Bool(v), Col::Bool(b)) => b.append_value(*v),
                (Cell::Date(v), Col::Date(b)) => b.append_value(*v),
                (Cell::Ts(v), Col::Ts(b)) => b.append_value(*v),
                (_, c) => append_null(c), // unreachable: cells come from coerce() with this type
            }
        }
        self.origin.append_value(origin);
        self.rows += 1;
    }

    /// Finishes the pending rows into a batch and resets the builder.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len() + 1);
        for c in &mut self.cols {
            arrays.push(match c {
                Col::Utf8(b) => Arc::new(b.finish()),
                Col::I32(b) => Arc::new(b.finish()),
                Col::I64(b) => Arc::new(b.finish()),
                Col::F64(b) => Arc::new(b.finish()),
                Col::Bool(b) => Arc::new(b.finish()),
                Col::Date(b) => Arc::new(b.finish()),
                Col::Ts(b) => Arc::new(b.finish()),
            });
        }
        arrays.push(Arc::new(self.origin.finish()));
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

fn new_col(t: ColumnType, cap: usize) -> Col {
    match t {
        ColumnType::Utf8 => Col::Utf8(StringBuilder::with_capacity(cap, cap * 16)),
        ColumnType::Int32 => Col::I32(Int32Builder::with_capacity(cap)),
        ColumnType::Int64 => Col::I64(Int64Builder::with_capacity(cap)),
        ColumnType::Float64 => Col::F64(Float64Builder::with_capacity(cap)),
        ColumnType::Boolean => Col::Bool(BooleanBuilder::with_capacity(cap)),
        ColumnType::Date32 => Col::Date(Date32Builder::with_capacity(cap)),
        ColumnType::Timestamp => Col::Ts(TimestampMicrosecondBuilder::with_capacity(cap)),
    }
}

fn append_null(c: &mut Col) {
    match c {
        Col::Utf8(b) => b.append_null(),
        Col::I32(b) => b.append_null(),
        Col::I64(b) => b.append_null(),
        Col::F64(b) => b.append_null(),
        Col::Bool(b) => b.append_null(),
        Col::Date(b) => b.append_null(),
        Col::Ts(b) => b.append_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coercions() {
        assert!(matches!(
            coerce(ColumnType::Int64, " 42 "),
            Ok(Cell::I64(42))
        ));
        assert!(coerce(ColumnType::Int64, "4x2").is_err());
        assert!(matches!(
            coerce(ColumnType::Date32, "1970-01-02"),
            Ok(Cell::Date(1))
        ));
        assert!(coerce(ColumnType::Date32, "2021-02-30").is_err());
        assert!(matches!(
            coerce(ColumnType::Boolean, "TRUE"),
            Ok(Cell::Bool(true))
        ));
        assert!(matches!(
            coerce(ColumnType::Timestamp, "1970-01-01 00:00:01"),
            Ok(Cell::Ts(1_000_000))
        ));
        assert!(matches!(
            coerce(ColumnType::Timestamp, "1970-01-01T00:00:01Z"),
            Ok(Cell::Ts(1_000_000))
        ));
        assert!(coerce(ColumnType::Float64, "inf").is_err());
    }
}

#[cfg(test)]
mod date_tests {
    use super::parse_date;

    #[test]
    fn iso_dates_parse_and_impossible_ones_do_not() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-010",
            "+024-01-01",
            "2024/01/01",
            "2024-01-0a",
            "20240101",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
