//! The `validate` transform: rules checked on every row; failing rows go to quarantine with
//! the rule and a reason that never holds the value, passing rows flow on.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use custos_config::{Bound, Rule};
use custos_connectors::quarantine::Quarantine;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Datum, RecordBatch, Scalar, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::cmp::{gt, lt};
use datafusion::arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::error::{DataFusionError, Result};
use regex::Regex;

use crate::exec::BatchOp;
use crate::reject::{Rejected, Rejector};

/// Counters of one validate step.
#[derive(Debug, Default)]
pub struct ValidateStats {
    /// Rows received.
    pub rows_in: AtomicU64,
    /// Rows quarantined.
    pub quarantined: AtomicU64,
}

#[derive(Debug, Clone)]
enum Cmp {
    Int(i64),
    Float(f64),
    Date(i32),
    Ts(i64),
    Text(String),
}

#[derive(Debug)]
struct Compiled {
    key: String,
    column: String,
    col: usize,
    not_null: bool,
    unique: Option<Mutex<HashSet<u128>>>,
    regex: Option<Regex>,
    min: Option<(Cmp, String)>,
    max: Option<(Cmp, String)>,
    one_of: Option<HashSet<String>>,
    min_length: Option<usize>,
    max_length: Option<usize>,
}

/// Rows that failed, per check.
#[derive(Debug, Clone, Copy)]
struct Failure {
    rule: usize,
    check: &'static str,
}

/// The validate operation over batches.
#[derive(Debug)]
pub struct ValidateOp {
    rules: Vec<Compiled>,
    stats: Arc<ValidateStats>,
    rejector: Rejector,
}

fn is_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_int(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

fn is_float(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
    )
}

fn bound(b: &Bound, dt: &DataType, today: chrono::NaiveDate) -> std::result::Result<Cmp, String> {
    let date_of = |s: &str| -> Option<i32> {
        if s.eq_ignore_ascii_case("today") {
            return Some((today - chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32);
        }
        custos_connectors_typed::parse_date(s)
    };
    match (b, dt) {
        (Bound::Int(i), dt) if is_int(dt) => Ok(Cmp::Int(*i)),
        (Bound::Int(i), dt) if is_float(dt) => Ok(Cmp::Float(*i as f64)),
        (Bound::Float(f), dt) if is_int(dt) || is_float(dt) => Ok(Cmp::Float(*f)),
        (Bound::Text(s), DataType::Date32) => date_of(s).map(Cmp::Date).ok_or_else(|| {
            "expected a date (YYYY-MM-DD) or \"today\" for a date column".to_string()
        }),
        (Bound::Text(s), DataType::Timestamp(_, _)) => {
            if s.eq_ignore_ascii_case("now") || s.eq_ignore_ascii_case("today") {
                let start = today
                    .and_hms_opt(0, 0, 0)
                    .map(|d| d.and_utc().timestamp_micros())
                    .unwrap_or(0);
                let v = if s.eq_ignore_ascii_case("now") {
                    chrono::Utc::now().timestamp_micros()
                } else {
                    start
                };
                return Ok(Cmp::Ts(v));
            }
            custos_connectors_typed::parse_timestamp(s)
                .or_else(|| {
                    custos_connectors_typed::parse_date(s).map(|d| i64::from(d) * 86_400_000_000)
                })
                .map(Cmp::Ts)
                .ok_or_else(|| {
                    "expected a timestamp, a date, \"today\" or \"now\" for a timestamp column"
                        .to_string()
                })
        }
        (Bound::Text(s), dt) if is_text(dt) => Ok(Cmp::Text(s.clone())),
        (b, dt) => Err(format!("bound {b} does not fit column type {dt}")),
    }
}

/// Re-exported parsing helpers shared with the text sources.
mod custos_connectors_typed {
    pub use custos_connectors::source::{parse_date, parse_timestamp};
}

impl ValidateOp {
    /// Compiles `rules` against the input schema; errors are `(key, message)` pairs with keys
    /// relative to the component (`rules[1].column`).
    #[allow(clippy::too_many_arguments)]
    pub fn compile(
        component: &str,
        rules: &[Rule],
        schema: &Schema,
        quarantine: Arc<Quarantine>,
        files: Arc<Vec<Vec<PathBuf>>>,
        stats: Arc<ValidateStats>,
        today: chrono::NaiveDate,
    ) -> std::result::Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        let names: Vec<&str> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !custos_core::is_reserved_column(n))
            .collect();
        for (i, r) in rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            let Some((col, field)) = schema
                .column_with_name(&r.column)
                .filter(|(_, f)| !custos_core::is_reserved_column(f.name()))
            else {
                let mut msg = format!("no column named \"{}\" in the input", r.column);
                if let Some(d) = custos_core::did_you_mean(&r.column, names.iter().copied()) {
                    msg.push_str(&format!("; did you mean \"{d}\"?"));
                } else {
                    msg.push_str(&format!(" (columns: {})", names.join(", ")));
                }
                errors.push((format!("{key}.column"), msg));
                continue;
            };
            let dt = field.data_type();
            let mut ok = true;
            let mut mk = |which: &str, b: &Option<Bound>| -> Option<(Cmp, String)> {
                let b = b.as_ref()?;
                match bound(b, dt, today) {
                    Ok(c) => {
                        let shown = match (&c, b) {
                            (Cmp::Date(_), Bound::Text(t)) if t.eq_ignore_ascii_case("today") => {
                                format!("today = {today}")
                            }
                            _ => b.to_string(),
                        };
                        Some((c, shown))
                    }
                    Err(e) => {
                        errors.push((format!("{key}.{which}"), e));
                        ok = false;
                        None
                    }
                }
            };
            let min = mk("min", &r.min);
            let max = mk("max", &r.max);
            for (set, what) in [
                (r.regex.is_some(), "regex"),
                (r.min_length.is_some(), "min_length"),
                (r.max_length.is_some(), "max_length"),
            ] {
                if set && !is_text(dt) {
                    errors.push((
                        format!("{key}.{what}"),
                        format!("`{what}` needs a text column; \"{}\" is {dt}", r.column),
                    ));
                    ok = false;
                }
            }
            let regex = match r.regex.as_deref().map(Regex::new) {
                Some(Ok(re)) => Some(re),
                Some(Err(_)) => {
                    errors.push((format!("{key}.regex"), "invalid regular expression".into()));
                    ok = false;
                    None
                }
                None => None,
            };
            if ok {
                out.push(Compiled {
                    key,
                    column: r.column.clone(),
                    col,
                    not_null: r.not_null,
                    unique: r.unique.then(|| Mutex::new(HashSet::new())),
                    regex,
                    min,
                    max,
                    one_of: r.one_of.as_ref().map(|v| v.iter().cloned().collect()),
                    min_length: r.min_length,
                    max_length: r.max_length,
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            rules: out,
            stats,
            rejector: Rejector::new(component, schema, quarantine, files),
        })
    }

    fn reason(&self, f: Failure) -> String {
        let r = &self.rules[f.rule];
        let c = &r.column;
        match f.check {
            "not_null" => format!("column \"{c}\" is null"),
            "unique" => format!("column \"{c}\" repeats a value seen earlier in this run"),
            "regex" => format!("column \"{c}\" does not match {}.regex", r.key),
            "min" => format!(
                "column \"{c}\" is below the minimum ({})",
                r.min.as_ref().map_or("", |m| m.1.as_str())
            ),
            "max" => format!(
                "column \"{c}\" is above the maximum ({})",
                r.max.as_ref().map_or("", |m| m.1.as_str())
            ),
            "one_of" => format!(
                "column \"{c}\" is not one of the allowed values of {}.one_of",
                r.key
            ),
            "min_length" => format!(
                "column \"{c}\" is shorter than {} characters",
                r.min_length.unwrap_or(0)
            ),
            _ => format!(
                "column \"{c}\" is longer than {} characters",
                r.max_length.unwrap_or(0)
            ),
        }
    }
}

fn scalar_mask(arr: &ArrayRef, c: &Cmp, below: bool) -> Result<BooleanArray> {
    let (left, right): (ArrayRef, ArrayRef) = match c {
        Cmp::Int(v) => (
            cast(arr, &DataType::Int64)?,
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![*v])),
        ),
        Cmp::Float(v) => (
            cast(arr, &DataType::Float64)?,
            Arc::new(datafusion::arrow::array::Float64Array::from(vec![*v])),
        ),
        Cmp::Date(v) => (
            cast(arr, &DataType::Date32)?,
            Arc::new(datafusion::arrow::array::Date32Array::from(vec![*v])),
        ),
        Cmp::Ts(v) => (
            cast(arr, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
            Arc::new(datafusion::arrow::array::TimestampMicrosecondArray::from(
                vec![*v],
            )),
        ),
        Cmp::Text(v) => (
            cast(arr, &DataType::Utf8)?,
            Arc::new(StringArray::from(vec![v.as_str()])),
        ),
    };
    let s = Scalar::new(right);
    let l: &dyn Datum = &left;
    Ok(if below { lt(l, &s)? } else { gt(l, &s)? })
}

impl BatchOp for ValidateOp {
    fn name(&self) -> &str {
        "validate"
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let first_row = self.stats.rows_in.fetch_add(n as u64, Ordering::Relaxed);
        let mut fail: Vec<Option<Failure>> = vec![None; n];
        let set = |mask: &BooleanArray,
                   fail: &mut Vec<Option<Failure>>,
                   rule: usize,
                   check: &'static str| {
            for (i, f) in fail.iter_mut().enumerate() {
                if f.is_none() && mask.is_valid(i) && mask.value(i) {
                    *f = Some(Failure { rule, check });
                }
            }
        };
        for (ri, r) in self.rules.iter().enumerate() {
            let arr = batch.column(r.col);
            if r.not_null && arr.null_count() > 0 {
                for (i, f) in fail.iter_mut().enumerate() {
                    if f.is_none() && arr.is_null(i) {
                        *f = Some(Failure {
                            rule: ri,
                            check: "not_null",
                        });
                    }
                }
            }
            if let Some((c, _)) = &r.min {
                set(&scalar_mask(arr, c, true)?, &mut fail, ri, "min");
            }
            if let Some((c, _)) = &r.max {
                set(&scalar_mask(arr, c, false)?, &mut fail, ri, "max");
            }
            if r.regex.is_some()
                || r.one_of.is_some()
                || r.min_length.is_some()
                || r.max_length.is_some()
            {
                let text = cast(arr, &DataType::Utf8)?;
                let text = text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| DataFusionError::Internal("utf8 cast".into()))?;
                for (i, f) in fail.iter_mut().enumerate() {
                    if f.is_some() || text.is_null(i) {
                        continue;
                    }
                    let v = text.value(i);
                    let check = if r.regex.as_ref().is_some_and(|re| !re.is_match(v)) {
                        Some("regex")
                    } else if r.one_of.as_ref().is_some_and(|s| !s.contains(v)) {
                        Some("one_of")
                    } else if r.min_length.is_some_and(|m| v.chars().count() < m) {
                        Some("min_length")
                    } else if r.max_length.is_some_and(|m| v.chars().count() > m) {
                        Some("max_length")
                    } else {
                        None
                    };
                    if let Some(check) = check {
                        *f = Some(Failure { rule: ri, check });
                    }
                }
            }
        }
        // Uniqueness last, so values of rows rejected by other checks are not remembered.
        let uniques: Vec<(usize, ArrayRef)> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.unique.is_some())
            .map(|(i, r)| Ok((i, cast(batch.column(r.col), &DataType::Utf8)?)))
            .collect::<Result<_>>()?;
        if !uniques.is_empty() {
            for (row, f) in fail.iter_mut().enumerate() {
                if f.is_some() {
                    continue;
                }
                let mut hashes = Vec::with_capacity(uniques.len());
                for (ri, arr) in &uniques {
                    let text = arr
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| DataFusionError::Internal("utf8 cast".into()))?;
                    if text.is_null(row) {
                        continue;
                    }
                    let h = xxhash_rust::xxh3::xxh3_128(text.value(row).as_bytes());
                    let seen = self.rules[*ri]
                        .unique
                        .as_ref()
                        .is_some_and(|s| s.lock().unwrap_or_else(|p| p.into_inner()).contains(&h));
                    if seen {
                        *f = Some(Failure {
                            rule: *ri,
                            check: "unique",
                        });
                        break;
                    }
                    hashes.push((*ri, h));
                }
                if f.is_none() {
                    for (ri, h) in hashes {
                        if let Some(s) = &self.rules[ri].unique {
                            s.lock().unwrap_or_else(|p| p.into_inner()).insert(h);
                        }
                    }
                }
            }
        }
        let rejected = fail
            .iter()
            .enumerate()
            .filter_map(|(row, f)| {
                let f = (*f)?;
                Some(Rejected {
                    row,
                    rule: f.check.to_string(),
                    column: Some(self.rules[f.rule].column.clone()),
                    reason: self.reason(f),
                })
            })
            .collect();
        self.rejector.reject_and_drop(
            &batch,
            batch.clone(),
            first_row,
            &self.stats.quarantined,
            rejected,
        )
    }
}
