//! Kernels over dates, timestamps and numbers: generalization to month or year, buckets, and
//! date shifting. Types are kept: a Date32 stays a Date32, text dates stay text.

use std::sync::Arc;

use chrono::{Datelike, Days, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Float64Type, Int64Type, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};

use crate::kernel::{KernelError, Output, map_text};

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
const DAY_SECONDS: i64 = 86_400;

fn truncate(d: NaiveDate, year: bool) -> NaiveDate {
    let month = if year { 1 } else { d.month() };
    NaiveDate::from_ymd_opt(d.year(), month, 1).unwrap_or(d)
}

fn days_to_date(days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        EPOCH.checked_add_days(Days::new(days as u64))
    } else {
        EPOCH.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

fn date_to_days(d: NaiveDate) -> i64 {
    (d - EPOCH).num_days()
}

/// Units per day of a timestamp unit.
fn per_day(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => DAY_SECONDS,
        TimeUnit::Millisecond => DAY_SECONDS * 1_000,
        TimeUnit::Microsecond => DAY_SECONDS * 1_000_000,
        TimeUnit::Nanosecond => DAY_SECONDS * 1_000_000_000,
    }
}

/// Applies `f(row, value)` to a primitive array, keeping nulls; `None` fails the row.
fn map_prim<T: ArrowPrimitiveType>(
    input: &ArrayRef,
    failure: &str,
    mut f: impl FnMut(usize, T::Native) -> Option<T::Native>,
) -> Output {
    let a = input.as_primitive::<T>();
    let mut failures = Vec::new();
    let out: PrimitiveArray<T> = (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                return None;
            }
            let r = f(i, a.value(i));
            if r.is_none() {
                failures.push((i, failure.to_string()));
            }
            r
        })
        .collect();
    let out = out.with_data_type(input.data_type().clone());
    Output {
        array: Arc::new(out),
        failures,
    }
}

/// Applies a day-level function to any date, timestamp or ISO-date text array.
fn map_days(
    input: &ArrayRef,
    what: &str,
    mut f: impl FnMut(usize, NaiveDate) -> Option<NaiveDate>,
) -> Result<Output, KernelError> {
    let fail = format!("{what} failed (date out of range)");
    Ok(match input.data_type().clone() {
        DataType::Date32 => map_prim::<Date32Type>(input, &fail, |i, d| {
            let date = days_to_date(i64::from(d))?;
            i32::try_from(date_to_days(f(i, date)?)).ok()
        }),
        DataType::Date64 => map_prim::<Date64Type>(input, &fail, |i, ms| {
            let day_ms = DAY_SECONDS * 1000;
            let (days, rest) = (ms.div_euclid(day_ms), ms.rem_euclid(day_ms));
            Some(date_to_days(f(i, days_to_date(days)?)?) * day_ms + rest)
        }),
        DataType::Timestamp(unit, _) => {
            let per = per_day(&unit);
            let g = |i: usize, v: i64, f: &mut dyn FnMut(usize, NaiveDate) -> Option<NaiveDate>| {
                let (days, rest) = (v.div_euclid(per), v.rem_euclid(per));
                date_to_days(f(i, days_to_date(days)?)?)
                    .checked_mul(per)?
                    .checked_add(rest)
            };
            match unit {
                TimeUnit::Second => {
                    map_prim::<TimestampSecondType>(input, &fail, |i, v| g(i, v, &mut f))
                }
                TimeUnit::Millisecond => {
                    map_prim::<TimestampMillisecondType>(input, &fail, |i, v| g(i, v, &mut f))
                }
                TimeUnit::Microsecond => {
                    map_prim::<TimestampMicrosecondType>(input, &fail, |i, v| g(i, v, &mut f))
                }
                TimeUnit::Nanosecond => {
                    map_prim::<TimestampNanosecondType>(input, &fail, |i, v| g(i, v, &mut f))
                }
            }
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let out = map_text(input, 0, |i, v, out| {
                let head = v.get(..10).ok_or("not an ISO date (YYYY-MM-DD)")?;
                let d = NaiveDate::parse_from_str(head, "%Y-%m-%d")
                    .map_err(|_| "not an ISO date (YYYY-MM-DD)")?;
                let d = f(i, d).ok_or(fail.as_str())?;
                out.push_str(&d.format("%Y-%m-%d").to_string());
                out.push_str(&v[10..]);
                Ok(())
            })?;
            Output {
                array: cast(&out.array, input.data_type())?,
                failures: out.failures,
            }
        }
        t => {
            return Err(KernelError::Type(format!(
                "{what} needs a date, timestamp or ISO date text column, found {t}"
            )));
        }
    })
}

/// Truncates dates to the first day of their year (`year`) or month. Timestamps become
/// midnight UTC of that day.
pub(crate) fn generalize(input: &ArrayRef, year: bool) -> Result<Output, KernelError> {
    let mut out = map_days(input, "generalize", |_, d| Some(truncate(d, year)))?;
    if let DataType::Timestamp(unit, _) = input.data_type() {
        // Drop the time of day too.
        let per = per_day(unit);
        let days = cast(&out.array, &DataType::Int64)?;
        let days: PrimitiveArray<Int64Type> = days
            .as_primitive::<Int64Type>()
            .unary(|v| v.div_euclid(per) * per);
        out.array = cast(&(Arc::new(days) as ArrayRef), input.data_type())?;
    }
    Ok(out)
}

/// Shifts each date by `offsets[row]` days; a null offset (null subject) fails the row.
pub(crate) fn shift(input: &ArrayRef, offsets: &[Option<i64>]) -> Result<Output, KernelError> {
    let mut null_subject = Vec::new();
    let mut out = map_days(input, "date_shift", |i, d| {
        match offsets.get(i).copied().flatten() {
            Some(o) if o >= 0 => d.checked_add_days(Days::new(o as u64)),
            Some(o) => d.checked_sub_days(Days::new(o.unsigned_abs())),
            None => {
                null_subject.push(i);
                Some(d)
            }
        }
    })?;
    if !null_subject.is_empty() {
        let keep: Vec<bool> = (0..out.array.len())
            .map(|i| !null_subject.contains(&i))
            .collect();
        out.array = datafusion::arrow::compute::nullif(
            &out.array,
            &datafusion::arrow::array::BooleanArray::from(
                keep.iter().map(|k| !k).collect::<Vec<_>>(),
            ),
        )?;
        out.failures.extend(
            null_subject
                .into_iter()
                .map(|i| (i, "date_shift subject is null".to_string())),
        );
    }
    Ok(out)
}

/// Rounds numbers down to a multiple of `bucket`, keeping the column type.
pub(crate) fn bucket(input: &ArrayRef, bucket: f64) -> Result<Output, KernelError> {
    let t = input.data_type().clone();
    let out: ArrayRef = if t.is_integer() {
        let b = bucket as i64;
        let v = cast(input, &DataType::Int64)?;
        let v: PrimitiveArray<Int64Type> =
            v.as_primitive::<Int64Type>().unary(|x| x.div_euclid(b) * b);
        cast(&(Arc::new(v) as ArrayRef), &t)?
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        let v = cast(input, &DataType::Float64)?;
        let v: PrimitiveArray<Float64Type> = v
            .as_primitive::<Float64Type>()
            .unary(|x| (x / bucket).floor() * bucket);
        cast(&(Arc::new(v) as ArrayRef), &t)?
    } else {
        return Err(KernelError::Type(format!(
            "generalize with bucket needs a numeric column, found {t}"
        )));
    };
    Ok(Output {
        array: out,
        failures: Vec::new(),
    })
}
