//! PostgreSQL's binary COPY format, decoded straight into Arrow arrays and encoded straight from
//! them: no per-row `ToSql`/`FromSql` objects.
//!
//! The stream is `PGCOPY\n\xff\r\n\0`, an i32 flags word, an i32 header-extension length (and
//! that many bytes), then one tuple per row: an i16 field count (-1 ends the stream) and per
//! field an i32 length (-1 is NULL) followed by the value in the type's binary send format,
//! big-endian throughout.
//!
//! Reading never rounds: a value Arrow cannot hold exactly (a numeric NaN or infinity, more
//! fractional digits than the column's scale, an infinite date or timestamp, a two-dimensional
//! array) rejects its row, which is reported as a [`Rejected`] and left out of the batches.
//! A stream that breaks the format is a fatal [`CopyError::Malformed`].

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::builder::NullBufferBuilder;
use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryBuilder, BooleanArray, BooleanBuilder,
    Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, ListArray, RecordBatch, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, new_empty_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type, Field, FieldRef,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema, SchemaRef,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use tokio_postgres::types::{Kind, Type};

/// The hint appended to "not supported" messages about server column types.
const CAST_HINT: &str = "cast it in a query (e.g. col::text)";

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;

/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The stream signature.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Numeric sign words.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Powers of ten that fit an i128 (10^0 ..= 10^38).
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// A PostgreSQL column type custos reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// `boolean`.
    Bool,
    /// `smallint`.
    Int2,
    /// `integer`.
    Int4,
    /// `bigint`.
    Int8,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `numeric(precision, scale)`; an unconstrained `numeric` reads as (38, 10).
    Numeric {
        /// Total digits (1-38).
        precision: u8,
        /// Digits after the point.
        scale: i8,
        /// Declared with a precision (false: unconstrained `numeric`).
        constrained: bool,
    },
    /// `text`, `varchar(n)`, `char(n)`, `name`, `citext` and enum types: UTF-8 on the wire.
    Text,
    /// `json` (text on the wire).
    Json,
    /// `jsonb` (a version byte, 1, then text).
    Jsonb,
    /// `uuid` (16 bytes; read as its hyphenated lowercase text).
    Uuid,
    /// `bytea`.
    Bytea,
    /// `date`.
    Date,
    /// `time` (without time zone).
    Time,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz`.
    Timestamptz,
    /// A one-dimensional array of one of the scalar types above.
    Array(Box<PgType>),
}

impl PgType {
    /// The custos type for a server column type and its type modifier (`atttypmod`), or the
    /// server's type name when custos does not read it.
    ///
    /// Domains read as their base type. An array column's type modifier is its element's.
    pub fn from_pg(ty: &Type, typmod: i32) -> Result<PgType, String> {
        match ty.kind() {
            Kind::Array(elem) => match Self::scalar_from_pg(elem, typmod)? {
                Some(t) => Ok(PgType::Array(Box::new(t))),
                None => Err(unsupported(&format!("{}[]", elem.name()))),
            },
            Kind::Domain(base) => Self::from_pg(base, typmod),
            _ => Self::scalar_from_pg(ty, typmod)?.ok_or_else(|| unsupported(ty.name())),
        }
    }

    /// A scalar type: `Ok(None)` when unsupported, `Err` for a specific refusal.
    fn scalar_from_pg(ty: &Type, typmod: i32) -> Result<Option<PgType>, String> {
        Ok(Some(match *ty {
            Type::BOOL => PgType::Bool,
            Type::INT2 => PgType::Int2,
            Type::INT4 => PgType::Int4,
            Type::INT8 => PgType::Int8,
            Type::FLOAT4 => PgType::Float4,
            Type::FLOAT8 => PgType::Float8,
            Type::NUMERIC => numeric_from_typmod(typmod)?,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => PgType::Text,
            Type::JSON => PgType::Json,
            Type::JSONB => PgType::Jsonb,
            Type::UUID => PgType::Uuid,
            Type::BYTEA => PgType::Bytea,
            Type::DATE => PgType::Date,
            Type::TIME => PgType::Time,
            Type::TIMESTAMP => PgType::Timestamp,
            Type::TIMESTAMPTZ => PgType::Timestamptz,
            _ => match ty.kind() {
                Kind::Enum(_) => PgType::Text,
                Kind::Simple if ty.name() == "citext" => PgType::Text,
                Kind::Domain(base) => return Self::scalar_from_pg(base, typmod),
                _ => return Ok(None),
            },
        }))
    }

    /// The Arrow type a read produces.
    pub fn arrow(&self) -> DataType {
        match self {
            PgType::Bool => DataType::Boolean,
            PgType::Int2 => DataType::Int16,
            PgType::Int4 => DataType::Int32,
            PgType::Int8 => DataType::Int64,
            PgType::Float4 => DataType::Float32,
            PgType::Float8 => DataType::Float64,
            PgType::Numeric {
                precision, scale, ..
            } => DataType::Decimal128(*precision, *scale),
            PgType::Text | PgType::Json | PgType::Jsonb | PgType::Uuid => DataType::Utf8,
            PgType::Bytea => DataType::Binary,
            PgType::Date => DataType::Date32,
            PgType::Time => DataType::Time64(TimeUnit::Microsecond),
            PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            PgType::Array(t) => DataType::List(Arc::new(Field::new("item", t.arrow(), true))),
        }
    }

    /// The SQL type name (for messages and `CREATE TABLE`), e.g. `numeric(12,2)`, `text[]`.
    pub fn sql_name(&self) -> String {
        match self {
            PgType::Numeric {
                precision,
                scale,
                constrained: true,
            } => format!("numeric({precision},{scale})"),
            PgType::Array(t) => format!("{}[]", t.sql_name()),
            t => t.scalar_name().to_string(),
        }
    }

    /// The name of a type without parameters.
    fn scalar_name(&self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric { .. } => "numeric",
            PgType::Text => "text",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::Uuid => "uuid",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Time => "time",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Array(_) => "array",
        }
    }

    /// The built-in server type written for this type (`text` for every textual type, so an
    /// array written to a `varchar[]` or enum-array column is refused by the server as "wrong
    /// element type"; write such columns through `text[]`).
    pub fn pg_type(&self) -> Type {
        match self {
            PgType::Bool => Type::BOOL,
            PgType::Int2 => Type::INT2,
            PgType::Int4 => Type::INT4,
            PgType::Int8 => Type::INT8,
            PgType::Float4 => Type::FLOAT4,
            PgType::Float8 => Type::FLOAT8,
            PgType::Numeric { .. } => Type::NUMERIC,
            PgType::Text => Type::TEXT,
            PgType::Json => Type::JSON,
            PgType::Jsonb => Type::JSONB,
            PgType::Uuid => Type::UUID,
            PgType::Bytea => Type::BYTEA,
            PgType::Date => Type::DATE,
            PgType::Time => Type::TIME,
            PgType::Timestamp => Type::TIMESTAMP,
            PgType::Timestamptz => Type::TIMESTAMPTZ,
            PgType::Array(t) => match **t {
                PgType::Bool => Type::BOOL_ARRAY,
                PgType::Int2 => Type::INT2_ARRAY,
                PgType::Int4 => Type::INT4_ARRAY,
                PgType::Int8 => Type::INT8_ARRAY,
                PgType::Float4 => Type::FLOAT4_ARRAY,
                PgType::Float8 => Type::FLOAT8_ARRAY,
                PgType::Numeric { .. } => Type::NUMERIC_ARRAY,
                PgType::Text => Type::TEXT_ARRAY,
                PgType::Json => Type::JSON_ARRAY,
                PgType::Jsonb => Type::JSONB_ARRAY,
                PgType::Uuid => Type::UUID_ARRAY,
                PgType::Bytea => Type::BYTEA_ARRAY,
                PgType::Date => Type::DATE_ARRAY,
                PgType::Time => Type::TIME_ARRAY,
                PgType::Timestamp => Type::TIMESTAMP_ARRAY,
                PgType::Timestamptz => Type::TIMESTAMPTZ_ARRAY,
                // Never built by `from_pg`/`for_arrow`; the encoder refuses it.
                PgType::Array(_) => Type::ANYARRAY,
            },
        }
    }

    /// The column type custos creates for an Arrow type (`create_table`), or a message naming
    /// the Arrow type when it has none.
    pub fn for_arrow(dt: &DataType) -> Result<PgType, String> {
        let none = || format!("Arrow type {dt} has no PostgreSQL column type");
        Ok(match dt {
            DataType::Boolean => PgType::Bool,
            DataType::Int8 | DataType::Int16 => PgType::Int2,
            DataType::Int32 | DataType::UInt8 | DataType::UInt16 => PgType::Int4,
            DataType::Int64 | DataType::UInt32 => PgType::Int8,
            DataType::UInt64 => PgType::Numeric {
                precision: 20,
                scale: 0,
                constrained: true,
            },
            DataType::Float16 | DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Decimal128(p, s) if *s >= 0 => PgType::Numeric {
                precision: *p,
                scale: *s,
                constrained: true,
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => PgType::Text,
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => PgType::Bytea,
            DataType::Date32 | DataType::Date64 => PgType::Date,
            DataType::Time32(_) | DataType::Time64(_) => PgType::Time,
            DataType::Timestamp(_, None) => PgType::Timestamp,
            DataType::Timestamp(_, Some(_)) => PgType::Timestamptz,
            DataType::Dictionary(_, values) => PgType::for_arrow(values)?,
            DataType::List(f) | DataType::LargeList(f) => match PgType::for_arrow(f.data_type()) {
                Ok(PgType::Array(_)) | Err(_) => return Err(none()),
                Ok(t) => PgType::Array(Box::new(t)),
            },
            _ => return Err(none()),
        })
    }
}

/// "type X is not supported; cast it ...".
fn unsupported(name: &str) -> String {
    format!("type {name} is not supported; {CAST_HINT}")
}

/// `numeric` with its type modifier (`((precision << 16) | (scale & 0x7ff)) + 4`; the scale is
/// an 11-bit signed field since PostgreSQL 15, and non-negative below it).
fn numeric_from_typmod(typmod: i32) -> Result<PgType, String> {
    if typmod < 4 {
        return Ok(PgType::Numeric {
            precision: 38,
            scale: 10,
            constrained: false,
        });
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    let name = format!("numeric({precision},{scale})");
    if precision > 38 {
        return Err(format!(
            "{name}: precision above 38 is not supported; {CAST_HINT}"
        ));
    }
    if scale < 0 {
        return Err(format!(
            "{name}: a negative scale is not supported; {CAST_HINT}"
        ));
    }
    if scale > precision {
        return Err(format!(
            "{name}: a scale above the precision is not supported; {CAST_HINT}"
        ));
    }
    match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(precision), Ok(scale)) if precision > 0 => Ok(PgType::Numeric {
            precision,
            scale,
            constrained: true,
        }),
        _ => Err(format!("{name}: invalid type modifier")),
    }
}

/// A row the decoder could not turn into Arrow values (e.g. a numeric NaN, an infinite date, a
/// two-dimensional array). The row is left out of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// 1-based row number in the COPY stream.
    pub row: u64,
    /// The column whose value failed.
    pub column: String,
    /// Why, without the value.
    pub reason: String,
    /// The row's raw fields: column name -> base64 of the binary value, or null.
    pub data: serde_json::Value,
}

/// Errors that stop a COPY stream: a malformed stream, or (writing) a value the target column
/// cannot hold. Never contains a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The stream is not valid binary COPY data (bad signature, truncated, wrong field count).
    #[error("malformed binary COPY stream: {0}")]
    Malformed(String),
    /// A value that cannot be written to its target column.
    #[error("row {row}, column \"{column}\": {reason}")]
    Value {
        /// 1-based row number within the encoder's input.
        row: u64,
        /// Column name.
        column: String,
        /// Why, without the value.
        reason: String,
    },
    /// An Arrow column that cannot be written to its target column type.
    #[error("column \"{column}\": {reason}")]
    Type {
        /// Column name.
        column: String,
        /// Why.
        reason: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Why one value could not be decoded.
enum Fail {
    /// The stream breaks the format: fatal.
    Malformed(String),
    /// The value is valid but Arrow cannot hold it exactly: the row is rejected.
    Reject(String),
}

/// Reads a big-endian integer of N bytes at `at`, or `None` past the end.
fn be<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn be_i16(buf: &[u8], at: usize) -> Option<i16> {
    be::<2>(buf, at).map(i16::from_be_bytes)
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    be::<2>(buf, at).map(u16::from_be_bytes)
}

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    be::<4>(buf, at).map(i32::from_be_bytes)
}

/// A fixed-width value of exactly N bytes.
fn exact<const N: usize>(v: &[u8], ty: &str) -> Result<[u8; N], Fail> {
    v.try_into().map_err(|_| {
        Fail::Malformed(format!(
            "a {ty} value must be {N} bytes long, not {}",
            v.len()
        ))
    })
}

fn utf8(v: &[u8]) -> Result<&str, Fail> {
    std::str::from_utf8(v).map_err(|_| Fail::Reject("text is not valid UTF-8".into()))
}

/// The Arrow builder of one column (or of an array's elements).
#[derive(Debug)]
enum Builder {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Numeric {
        b: Decimal128Builder,
        precision: u8,
        scale: i8,
        constrained: bool,
    },
    /// text and json.
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    List {
        /// Offsets so far, starting with 0.
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        values: Box<Builder>,
        field: FieldRef,
    },
}

impl Builder {
    /// A builder for `cap` values; variable-width values get room for `data` bytes (at least
    /// 8 a value), so a batch like the previous one fills without reallocating.
    fn new(ty: &PgType, cap: usize, data: usize) -> Self {
        let data = cap.saturating_mul(8).max(data);
        match ty {
            PgType::Bool => Self::Bool(BooleanBuilder::with_capacity(cap)),
            PgType::Int2 => Self::Int2(Int16Builder::with_capacity(cap)),
            PgType::Int4 => Self::Int4(Int32Builder::with_capacity(cap)),
            PgType::Int8 => Self::Int8(Int64Builder::with_capacity(cap)),
            PgType::Float4 => Self::Float4(Float32Builder::with_capacity(cap)),
            PgType::Float8 => Self::Float8(Float64Builder::with_capacity(cap)),
            PgType::Numeric {
                precision,
                scale,
                constrained,
            } => Self::Numeric {
                b: Decimal128Builder::with_capacity(cap).with_data_type(ty.arrow()),
                precision: (*precision).clamp(1, 38),
                scale: *scale,
                constrained: *constrained,
            },
            PgType::Text | PgType::Json => Self::Text(StringBuilder::with_capacity(cap, data)),
            PgType::Jsonb => Self::Jsonb(StringBuilder::with_capacity(cap, data)),
            PgType::Uuid => Self::Uuid(StringBuilder::with_capacity(cap, cap * 36)),
            PgType::Bytea => Self::Bytea(BinaryBuilder::with_capacity(cap, data)),
            PgType::Date => Self::Date(Date32Builder::with_capacity(cap)),
            PgType::Time => Self::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            PgType::Timestamp | PgType::Timestamptz => Self::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(cap).with_data_type(ty.arrow()),
            ),
            PgType::Array(elem) => {
                let mut offsets = Vec::with_capacity(cap + 1);
                offsets.push(0);
                Self::List {
                    offsets,
                    nulls: NullBufferBuilder::new(cap),
                    values: Box::new(Builder::new(elem, cap.saturating_mul(4), 0)),
                    field: Arc::new(Field::new("item", elem.arrow(), true)),
                }
            }
        }
    }

    /// Bytes of variable-width values held (0 for fixed-width types).
    fn data_len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) => b.values_slice().len(),
            Self::Bytea(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Bool(b) => b.len(),
            Self::Int2(b) => b.len(),
            Self::Int4(b) => b.len(),
            Self::Int8(b) => b.len(),
            Self::Float4(b) => b.len(),
            Self::Float8(b) => b.len(),
            Self::Numeric { b, .. } => b.len(),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) => b.len(),
            Self::Bytea(b) => b.len(),
            Self::Date(b) => b.len(),
            Self::Time(b) => b.len(),
            Self::Timestamp(b) => b.len(),
            Self::List { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    fn append_null(&mut self) -> Result<(), Fail> {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int2(b) => b.append_null(),
            Self::Int4(b) => b.append_null(),
            Self::Int8(b) => b.append_null(),
            Self::Float4(b) => b.append_null(),
            Self::Float8(b) => b.append_null(),
            Self::Numeric { b, .. } => b.append_null(),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) => b.append_null(),
            Self::Bytea(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::List {
                offsets,
                nulls,
                values,
                ..
            } => {
                // Elements of a rejected array may precede this; they end up under the null.
                offsets.push(list_offset(values.len())?);
                nulls.append_null();
            }
        }
        Ok(())
    }

    /// Appends one non-null value. On error nothing is appended at this level (an array's
    /// elements may have been, which a following null covers).
    fn push(&mut self, v: &[u8]) -> Result<(), Fail> {
        match self {
            Self::Bool(b) => b.append_value(exact::<1>(v, "boolean")?[0] != 0),
            Self::Int2(b) => b.append_value(i16::from_be_bytes(exact(v, "smallint")?)),
            Self::Int4(b) => b.append_value(i32::from_be_bytes(exact(v, "integer")?)),
            Self::Int8(b) => b.append_value(i64::from_be_bytes(exact(v, "bigint")?)),
            Self::Float4(b) => b.append_value(f32::from_be_bytes(exact(v, "real")?)),
            Self::Float8(b) => b.append_value(f64::from_be_bytes(exact(v, "double precision")?)),
            Self::Numeric {
                b,
                precision,
                scale,
                constrained,
            } => b.append_value(decode_numeric(v, *precision, *scale, *constrained)?),
            Self::Text(b) => b.append_value(utf8(v)?),
            Self::Jsonb(b) => match v.split_first() {
                Some((1, text)) => b.append_value(utf8(text)?),
                Some(_) => return Err(Fail::Reject("unsupported jsonb format version".into())),
                None => return Err(Fail::Malformed("a jsonb value is empty".into())),
            },
            Self::Uuid(b) => {
                let bytes = exact::<16>(v, "uuid")?;
                let mut buf = [0u8; 36];
                b.append_value(
                    uuid::Uuid::from_bytes(bytes)
                        .hyphenated()
                        .encode_lower(&mut buf),
                );
            }
            Self::Bytea(b) => b.append_value(v),
            Self::Date(b) => {
                let d = i32::from_be_bytes(exact(v, "date")?);
                if d == i32::MAX || d == i32::MIN {
                    return Err(Fail::Reject("infinite dates are not supported".into()));
                }
                let d = d
                    .checked_add(PG_EPOCH_DAYS)
                    .ok_or_else(|| Fail::Reject("date out of range".into()))?;
                b.append_value(d);
            }
            Self::Time(b) => b.append_value(i64::from_be_bytes(exact(v, "time")?)),
            Self::Timestamp(b) => {
                let t = i64::from_be_bytes(exact(v, "timestamp")?);
                if t == i64::MAX || t == i64::MIN {
                    return Err(Fail::Reject("infinite timestamps are not supported".into()));
                }
                let t = t
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or_else(|| Fail::Reject("timestamp out of range".into()))?;
                b.append_value(t);
            }
            Self::List {
                offsets,
                nulls,
                values,
                ..
            } => {
                decode_array(v, values)?;
                offsets.push(list_offset(values.len())?);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, CopyError> {
        Ok(match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int2(b) => Arc::new(b.finish()),
            Self::Int4(b) => Arc::new(b.finish()),
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Float4(b) => Arc::new(b.finish()),
            Self::Float8(b) => Arc::new(b.finish()),
            Self::Numeric { b, .. } => Arc::new(b.finish()),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) => Arc::new(b.finish()),
            Self::Bytea(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::List {
                offsets,
                nulls,
                values,
                field,
            } => {
                let offs = std::mem::replace(offsets, vec![0]);
                // Offsets only ever grow from 0, so they are valid.
                let offs = OffsetBuffer::new(ScalarBuffer::from(offs));
                let list =
                    ListArray::try_new(field.clone(), offs, values.finish()?, nulls.finish())
                        .map_err(|e| {
                            CopyError::Malformed(format!("cannot build a list array: {e}"))
                        })?;
                Arc::new(list)
            }
        })
    }
}

fn list_offset(len: usize) -> Result<i32, Fail> {
    i32::try_from(len).map_err(|_| Fail::Malformed("too many array elements in one batch".into()))
}

/// Decodes a binary array value (ndim, has-nulls flag, element oid, per dimension size and
/// lower bound, then the elements) into the element builder. The lower bound is not kept.
fn decode_array(v: &[u8], values: &mut Builder) -> Result<(), Fail> {
    let bad = |what: &str| Fail::Malformed(format!("bad array value: {what}"));
    let ndim = be_i32(v, 0).ok_or_else(|| bad("truncated header"))?;
    let flags = be_i32(v, 4).ok_or_else(|| bad("truncated header"))?;
    if flags != 0 && flags != 1 {
        return Err(bad("invalid flags"));
    }
    if ndim == 0 {
        return if v.len() == 12 {
            Ok(())
        } else {
            Err(bad("trailing bytes"))
        };
    }
    if ndim < 0 {
        return Err(bad("negative number of dimensions"));
    }
    if ndim > 1 {
        return Err(Fail::Reject(
            "multi-dimensional arrays are not supported".into(),
        ));
    }
    let size = be_i32(v, 12).ok_or_else(|| bad("truncated header"))?;
    let size = usize::try_from(size).map_err(|_| bad("negative size"))?;
    if be_i32(v, 16).is_none() {
        return Err(bad("truncated header"));
    }
    let mut p = 20;
    if size > (v.len() - p) / 4 {
        return Err(bad("more elements than bytes"));
    }
    for _ in 0..size {
        let len = be_i32(v, p).ok_or_else(|| bad("truncated element"))?;
        p += 4;
        if len == -1 {
            values.append_null()?;
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad("negative element length"))?;
        let end = p + len;
        let elem = v.get(p..end).ok_or_else(|| bad("truncated element"))?;
        values.push(elem)?;
        p = end;
    }
    if p != v.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(())
}

/// A numeric in its binary form (ndigits, weight, sign, dscale, then base-10000 digits) as an
/// integer at `scale`, or a rejection when that would lose digits or exceed `precision`.
fn decode_numeric(v: &[u8], precision: u8, scale: i8, constrained: bool) -> Result<i128, Fail> {
    let bad = |what: &str| Fail::Malformed(format!("bad numeric value: {what}"));
    let (Some(ndigits), Some(weight), Some(sign)) = (be_i16(v, 0), be_i16(v, 2), be_u16(v, 4))
    else {
        return Err(bad("truncated header"));
    };
    let ndigits = usize::try_from(ndigits).map_err(|_| bad("negative digit count"))?;
    if v.len() != 8 + 2 * ndigits {
        return Err(bad("length does not match the digit count"));
    }
    match sign {
        NUMERIC_POS | NUMERIC_NEG => {}
        NUMERIC_NAN => return Err(Fail::Reject("numeric NaN is not supported".into())),
        NUMERIC_PINF | NUMERIC_NINF => {
            return Err(Fail::Reject("numeric infinity is not supported".into()));
        }
        _ => return Err(bad("invalid sign")),
    }
    let target = || {
        if constrained {
            format!("numeric({precision},{scale})")
        } else {
            "unconstrained numeric (read as numeric(38,10))".to_string()
        }
    };
    let too_big = || Fail::Reject(format!("value out of range for {}", target()));
    let mut acc: i128 = 0;
    for i in 0..ndigits {
        let d = be_i16(v, 8 + 2 * i).ok_or_else(|| bad("truncated digits"))?;
        if !(0..10_000).contains(&d) {
            return Err(bad("invalid digit"));
        }
        if d == 0 {
            continue;
        }
        // The power of ten this digit's last decimal digit lands on, at the target scale.
        let e = 4 * (i32::from(weight) - i as i32) + i32::from(scale);
        let d = i128::from(d);
        if e >= 0 {
            let p = usize::try_from(e)
                .ok()
                .and_then(|e| POW10.get(e))
                .ok_or_else(too_big)?;
            acc = d
                .checked_mul(*p)
                .and_then(|t| acc.checked_add(t))
                .ok_or_else(too_big)?;
        } else {
            let lost = || {
                Fail::Reject(format!(
                    "value has more digits after the point than {} holds",
                    target()
                ))
            };
            let div = match -e {
                1 => 10,
                2 => 100,
                3 => 1000,
                _ => return Err(lost()),
            };
            if d % div != 0 {
                return Err(lost());
            }
            acc += d / div;
        }
    }
    if acc >= POW10[usize::from(precision.min(38))] {
        return Err(too_big());
    }
    Ok(if sign == NUMERIC_NEG { -acc } else { acc })
}

/// What a complete or incomplete unit of the stream needs.
enum Need {
    /// The unit is complete and this long.
    Complete(usize),
    /// At least this many more bytes are needed.
    More(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
    Failed,
}

/// Measures the header at the start of `buf`.
fn measure_header(buf: &[u8]) -> Result<Need, CopyError> {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] != SIGNATURE[..n] {
        return Err(CopyError::Malformed("bad signature".into()));
    }
    let (Some(flags), Some(ext)) = (be_i32(buf, 11), be_i32(buf, 15)) else {
        return Ok(Need::More(19 - buf.len()));
    };
    if flags & (1 << 16) != 0 {
        return Err(CopyError::Malformed(
            "OIDs in the stream are not supported".into(),
        ));
    }
    if flags & 0xffff != 0 {
        return Err(CopyError::Malformed("unknown critical header flags".into()));
    }
    let ext = usize::try_from(ext)
        .map_err(|_| CopyError::Malformed("negative header extension length".into()))?;
    let total = 19 + ext;
    Ok(if buf.len() >= total {
        Need::Complete(total)
    } else {
        Need::More(total - buf.len())
    })
}

/// Measures the tuple (or trailer) at the start of `buf`, recording each field's start and
/// length (-1 for NULL) in `fields`. `row` is the 1-based number of the tuple.
fn measure_row(
    buf: &[u8],
    ncols: usize,
    fields: &mut Vec<(usize, i32)>,
    row: u64,
) -> Result<Need, CopyError> {
    fields.clear();
    let Some(count) = be_i16(buf, 0) else {
        return Ok(Need::More(2 - buf.len()));
    };
    if count == -1 {
        return Ok(Need::Complete(2));
    }
    if usize::try_from(count).ok() != Some(ncols) {
        return Err(CopyError::Malformed(format!(
            "row {row} has {count} fields, expected {ncols}"
        )));
    }
    let mut p = 2;
    for _ in 0..ncols {
        let Some(len) = be_i32(buf, p) else {
            return Ok(Need::More(p + 4 - buf.len()));
        };
        p += 4;
        if len == -1 {
            fields.push((p, -1));
            continue;
        }
        let n = usize::try_from(len)
            .map_err(|_| CopyError::Malformed(format!("row {row} has a negative field length")))?;
        let end = p + n;
        if buf.len() < end {
            return Ok(Need::More(end - buf.len()));
        }
        fields.push((p, len));
        p = end;
    }
    Ok(Need::Complete(p))
}

/// Measures the next unit of the stream in state `state`; `row` is the 1-based number of the
/// next tuple.
fn measure(
    state: State,
    ncols: usize,
    fields: &mut Vec<(usize, i32)>,
    row: u64,
    buf: &[u8],
) -> Result<Need, CopyError> {
    match state {
        State::Header => measure_header(buf),
        State::Rows => measure_row(buf, ncols, fields, row),
        State::Done => Err(CopyError::Malformed(
            "data after the end-of-data marker".into(),
        )),
        State::Failed => Err(CopyError::Malformed("the stream already failed".into())),
    }
}

/// Decodes a binary COPY stream (fed in arbitrary chunks) into record batches.
///
/// Every `batch_size` rows decoded make one batch, from which rejected rows are then left out:
/// a batch holds at most `batch_size` rows (fewer when rows were rejected; a batch left empty
/// is not emitted), so memory stays bounded whatever the share of rejected rows. Rejected rows
/// are reported by the `push` call that decodes them. After an error the decoder refuses
/// further input.
#[derive(Debug)]
pub struct Decoder {
    schema: SchemaRef,
    names: Vec<String>,
    types: Vec<PgType>,
    builders: Vec<Builder>,
    batch_size: usize,
    state: State,
    /// The unfinished unit (header or row) when one straddles chunks; empty otherwise.
    carry: Vec<u8>,
    /// Start and length of each field of the row being decoded.
    fields: Vec<(usize, i32)>,
    rows: u64,
    /// Rows in the builders, rejected ones included.
    batch_rows: usize,
    /// Indexes (in the builders) of the rejected rows.
    rejected_rows: Vec<usize>,
}

impl Decoder {
    /// A decoder for the given columns, producing batches of `batch_size` rows (at least 1).
    pub fn new(columns: Vec<(String, PgType)>, batch_size: usize) -> Self {
        let batch_size = batch_size.max(1);
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, ty)| Field::new(name, ty.arrow(), true))
            .collect();
        let (names, types): (Vec<String>, Vec<PgType>) = columns.into_iter().unzip();
        let cap = batch_size.min(1 << 16);
        Self {
            schema: Arc::new(Schema::new(fields)),
            builders: types.iter().map(|t| Builder::new(t, cap, 0)).collect(),
            fields: Vec::with_capacity(names.len()),
            names,
            types,
            batch_size,
            state: State::Header,
            carry: Vec::new(),
            rows: 0,
            batch_rows: 0,
            rejected_rows: Vec::new(),
        }
    }

    /// The schema of the batches (nullable fields, in column order).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Feeds the next chunk. Appends every batch completed so far to `out` (one per
    /// `batch_size` rows decoded, minus the rejected ones; never an empty batch), and the rows
    /// left out to `rejected`.
    /// A malformed stream is an error, after which the decoder refuses further input.
    pub fn push(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<RecordBatch>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), CopyError> {
        if self.state == State::Failed {
            return Err(CopyError::Malformed("the stream already failed".into()));
        }
        let r = self.push_inner(chunk, out, rejected);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn push_inner(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<RecordBatch>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), CopyError> {
        let mut input = chunk;
        // Finish the unit left over from earlier chunks. Each step takes at least the bytes
        // known to be missing and at least as many as are held already, so a unit spread over
        // many small chunks is re-measured a logarithmic number of times, and at most about one
        // unit's worth of the following bytes is copied along (handled here too).
        while !self.carry.is_empty() {
            let ncols = self.names.len();
            match measure(
                self.state,
                ncols,
                &mut self.fields,
                self.rows + 1,
                &self.carry,
            )? {
                Need::Complete(n) => {
                    let carry = std::mem::take(&mut self.carry);
                    let r = self.unit(&carry[..n], out, rejected);
                    self.carry = carry;
                    self.carry.drain(..n);
                    r?;
                }
                Need::More(k) => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let take = k.max(self.carry.len()).min(input.len());
                    self.carry.extend_from_slice(&input[..take]);
                    input = &input[take..];
                }
            }
        }
        // The common path: whole units straight from the chunk.
        while !input.is_empty() {
            let ncols = self.names.len();
            match measure(self.state, ncols, &mut self.fields, self.rows + 1, input)? {
                Need::Complete(n) => {
                    self.unit(&input[..n], out, rejected)?;
                    input = &input[n..];
                }
                Need::More(_) => {
                    self.carry.extend_from_slice(input);
                    input = &[];
                }
            }
        }
        Ok(())
    }

    /// Handles one complete unit (measured just before, so `self.fields` describes a row).
    fn unit(
        &mut self,
        buf: &[u8],
        out: &mut Vec<RecordBatch>,
        rejected: &mut Vec<Rejected>,
    ) -> Result<(), CopyError> {
        match self.state {
            State::Header => self.state = State::Rows,
            State::Rows if be_i16(buf, 0) == Some(-1) => self.state = State::Done,
            State::Rows => {
                self.row(buf, rejected)?;
                if self.batch_rows >= self.batch_size {
                    let batch = self.flush(true)?;
                    if batch.num_rows() > 0 {
                        out.push(batch);
                    }
                }
            }
            State::Done | State::Failed => {}
        }
        Ok(())
    }

    /// Decodes one row into the builders.
    fn row(&mut self, buf: &[u8], rejected: &mut Vec<Rejected>) -> Result<(), CopyError> {
        self.rows += 1;
        let mut failed: Option<(usize, String)> = None;
        for (c, (&(start, len), b)) in self.fields.iter().zip(&mut self.builders).enumerate() {
            let r = match usize::try_from(len) {
                Ok(len) => match b.push(&buf[start..start + len]) {
                    Err(Fail::Reject(reason)) => {
                        if failed.is_none() {
                            failed = Some((c, reason));
                        }
                        b.append_null()
                    }
                    r => r,
                },
                Err(_) => b.append_null(),
            };
            if let Err(Fail::Malformed(m) | Fail::Reject(m)) = r {
                let column = self.names.get(c).map_or("", String::as_str);
                return Err(CopyError::Malformed(format!(
                    "row {}, column \"{column}\": {m}",
                    self.rows
                )));
            }
        }
        if let Some((c, reason)) = failed {
            self.rejected_rows.push(self.batch_rows);
            let data = self
                .names
                .iter()
                .zip(&self.fields)
                .map(|(name, &(start, len))| {
                    let v = match usize::try_from(len) {
                        Ok(len) => {
                            serde_json::Value::String(BASE64.encode(&buf[start..start + len]))
                        }
                        Err(_) => serde_json::Value::Null,
                    };
                    (name.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>();
            rejected.push(Rejected {
                row: self.rows,
                column: self.names.get(c).cloned().unwrap_or_default(),
                reason,
                data: serde_json::Value::Object(data),
            });
        }
        self.batch_rows += 1;
        Ok(())
    }

    /// Turns the builders into a batch without the rejected rows; `more` prepares builders for
    /// another full batch.
    fn flush(&mut self, more: bool) -> Result<RecordBatch, CopyError> {
        let cap = if more {
            self.batch_size.min(1 << 16)
        } else {
            0
        };
        let columns = self
            .builders
            .iter_mut()
            .zip(&self.types)
            .map(|(b, ty)| {
                let data = if more {
                    b.data_len() + b.data_len() / 8
                } else {
                    0
                };
                std::mem::replace(b, Builder::new(ty, cap, data)).finish()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let internal = |e: datafusion::arrow::error::ArrowError| {
            CopyError::Malformed(format!("cannot build a batch: {e}"))
        };
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(internal)?;
        let batch = if self.rejected_rows.is_empty() {
            batch
        } else {
            let mut keep = vec![true; self.batch_rows];
            for &r in &self.rejected_rows {
                if let Some(k) = keep.get_mut(r) {
                    *k = false;
                }
            }
            filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(internal)?
        };
        self.batch_rows = 0;
        self.rejected_rows.clear();
        Ok(batch)
    }

    /// Ends the stream: checks that the trailer was seen and nothing is left over, and returns
    /// the last, partial batch (if any rows remain).
    ///
    /// Rejected rows are all reported by `push`; `rejected` is kept for symmetry.
    pub fn finish(
        &mut self,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<RecordBatch>, CopyError> {
        let _ = rejected;
        match self.state {
            State::Done => {}
            State::Failed => {
                return Err(CopyError::Malformed("the stream already failed".into()));
            }
            State::Header | State::Rows => {
                self.state = State::Failed;
                return Err(CopyError::Malformed(if self.carry.is_empty() {
                    "the stream ended before its end-of-data marker".into()
                } else {
                    "the stream ended in the middle of a row".into()
                }));
            }
        }
        if self.batch_rows == 0 {
            return Ok(None);
        }
        let batch = self.flush(false)?;
        Ok((batch.num_rows() > 0).then_some(batch))
    }

    /// Rows decoded so far (rejected ones included).
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// "value out of range for smallint".
fn out_of_range(name: &str) -> String {
    format!("value out of range for {name}")
}

/// The type an Arrow array is written as: dictionary and run-end encodings are unpacked to
/// their values and `Float16` widened, so the writers see few physical layouts.
fn normal_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Dictionary(_, v) => normal_type(v),
        DataType::RunEndEncoded(_, v) => normal_type(v.data_type()),
        DataType::Float16 => DataType::Float32,
        DataType::List(f) => DataType::List(normal_field(f)),
        DataType::LargeList(f) => DataType::LargeList(normal_field(f)),
        other => other.clone(),
    }
}

fn normal_field(f: &FieldRef) -> FieldRef {
    let t = normal_type(f.data_type());
    if &t == f.data_type() {
        f.clone()
    } else {
        Arc::new(f.as_ref().clone().with_data_type(t))
    }
}

/// The array in its [`normal_type`] (a cast only when the type differs).
fn normalize(a: &ArrayRef) -> Result<ArrayRef, String> {
    let t = normal_type(a.data_type());
    if &t == a.data_type() {
        Ok(a.clone())
    } else {
        cast(a, &t).map_err(|e| format!("cannot convert the Arrow array to {t}: {e}"))
    }
}

/// The values of a primitive array.
fn prim<T: ArrowPrimitiveType>(a: &dyn Array) -> Result<&[T::Native], String> {
    match a.as_primitive_opt::<T>() {
        Some(p) => Ok(p.values()),
        None => Err(format!("unexpected array layout for {}", a.data_type())),
    }
}

fn layout(a: &dyn Array) -> String {
    format!("unexpected array layout for {}", a.data_type())
}

/// Integer arrays of every width and signedness.
enum Ints<'a> {
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
}

impl<'a> Ints<'a> {
    fn new(a: &'a dyn Array) -> Result<Self, String> {
        Ok(match a.data_type() {
            DataType::Int8 => Self::I8(prim::<Int8Type>(a)?),
            DataType::Int16 => Self::I16(prim::<Int16Type>(a)?),
            DataType::Int32 => Self::I32(prim::<Int32Type>(a)?),
            DataType::Int64 => Self::I64(prim::<Int64Type>(a)?),
            DataType::UInt8 => Self::U8(prim::<UInt8Type>(a)?),
            DataType::UInt16 => Self::U16(prim::<UInt16Type>(a)?),
            DataType::UInt32 => Self::U32(prim::<UInt32Type>(a)?),
            DataType::UInt64 => Self::U64(prim::<UInt64Type>(a)?),
            _ => return Err(layout(a)),
        })
    }

    #[inline]
    fn get(&self, i: usize) -> i128 {
        match self {
            Self::I8(v) => v[i].into(),
            Self::I16(v) => v[i].into(),
            Self::I32(v) => v[i].into(),
            Self::I64(v) => v[i].into(),
            Self::U8(v) => v[i].into(),
            Self::U16(v) => v[i].into(),
            Self::U32(v) => v[i].into(),
            Self::U64(v) => v[i].into(),
        }
    }
}

/// Float arrays (`Float16` is widened by [`normalize`]).
enum Floats<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> Floats<'a> {
    fn new(a: &'a dyn Array) -> Result<Self, String> {
        Ok(match a.data_type() {
            DataType::Float32 => Self::F32(prim::<Float32Type>(a)?),
            DataType::Float64 => Self::F64(prim::<Float64Type>(a)?),
            _ => return Err(layout(a)),
        })
    }
}

/// String arrays of every layout.
enum Strs<'a> {
    Utf8(&'a datafusion::arrow::array::StringArray),
    Large(&'a datafusion::arrow::array::LargeStringArray),
    View(&'a datafusion::arrow::array::StringViewArray),
}

impl<'a> Strs<'a> {
    fn new(a: &'a dyn Array) -> Result<Self, String> {
        let s = match a.data_type() {
            DataType::Utf8 => a.as_string_opt::<i32>().map(Self::Utf8),
            DataType::LargeUtf8 => a.as_string_opt::<i64>().map(Self::Large),
            DataType::Utf8View => a.as_string_view_opt().map(Self::View),
            _ => None,
        };
        s.ok_or_else(|| layout(a))
    }

    #[inline]
    fn get(&self, i: usize) -> &'a str {
        match self {
            Self::Utf8(a) => a.value(i),
            Self::Large(a) => a.value(i),
            Self::View(a) => a.value(i),
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Self::Utf8(a) => a.value_data().len(),
            Self::Large(a) => a.value_data().len(),
            Self::View(a) => a.len() * 16,
        }
    }
}

/// Binary arrays of every layout.
enum Bins<'a> {
    Bin(&'a datafusion::arrow::array::BinaryArray),
    Large(&'a datafusion::arrow::array::LargeBinaryArray),
    View(&'a datafusion::arrow::array::BinaryViewArray),
    Fixed(&'a datafusion::arrow::array::FixedSizeBinaryArray),
}

impl<'a> Bins<'a> {
    fn new(a: &'a dyn Array) -> Result<Self, String> {
        let b = match a.data_type() {
            DataType::Binary => a.as_binary_opt::<i32>().map(Self::Bin),
            DataType::LargeBinary => a.as_binary_opt::<i64>().map(Self::Large),
            DataType::BinaryView => a.as_binary_view_opt().map(Self::View),
            DataType::FixedSizeBinary(_) => a.as_fixed_size_binary_opt().map(Self::Fixed),
            _ => None,
        };
        b.ok_or_else(|| layout(a))
    }

    #[inline]
    fn get(&self, i: usize) -> &'a [u8] {
        match self {
            Self::Bin(a) => a.value(i),
            Self::Large(a) => a.value(i),
            Self::View(a) => a.value(i),
            Self::Fixed(a) => a.value(i),
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Self::Bin(a) => a.value_data().len(),
            Self::Large(a) => a.value_data().len(),
            Self::View(a) => a.len() * 16,
            Self::Fixed(a) => a.value_data().len(),
        }
    }
}

/// List offsets of either width.
enum Offsets<'a> {
    I32(&'a [i32]),
    I64(&'a [i64]),
}

impl Offsets<'_> {
    /// How many elements all the lists hold together.
    fn span(&self) -> usize {
        let (first, last) = match self {
            Self::I32(o) => (
                o.first().map_or(0, |x| i64::from(*x)),
                o.last().map_or(0, |x| i64::from(*x)),
            ),
            Self::I64(o) => (
                o.first().copied().unwrap_or(0),
                o.last().copied().unwrap_or(0),
            ),
        };
        usize::try_from(last - first).unwrap_or(0)
    }

    /// The element range of list `i` (offsets are non-negative and ascending in valid arrays).
    #[inline]
    fn range(&self, i: usize) -> (usize, usize) {
        let (a, b) = match self {
            Self::I32(o) => (i64::from(o[i]), i64::from(o[i + 1])),
            Self::I64(o) => (o[i], o[i + 1]),
        };
        (
            usize::try_from(a).unwrap_or(0),
            usize::try_from(b).unwrap_or(0),
        )
    }
}

/// How one Arrow column is written to its target type.
enum Op<'a> {
    Bool(&'a BooleanArray),
    Int2(Ints<'a>),
    Int4(Ints<'a>),
    Int8(Ints<'a>),
    IntFloat4(Ints<'a>),
    IntFloat8(Ints<'a>),
    /// Integers to numeric, with the target's (precision, scale) when constrained.
    IntNumeric(Ints<'a>, Option<(u8, i8)>),
    Float4(Floats<'a>),
    Float8(Floats<'a>),
    /// Decimal128 values at a scale to numeric, with the target's (precision, scale).
    DecNumeric(&'a [i128], i8, Option<(u8, i8)>),
    DecFloat8(&'a [i128], i8),
    /// UTF-8 bytes as they are: text, json, bytea.
    Text(Strs<'a>),
    Jsonb(Strs<'a>),
    Uuid(Strs<'a>),
    /// Bytes as they are: bytea, and uuid from `FixedSizeBinary(16)`.
    Bytes(Bins<'a>),
    Date32(&'a [i32]),
    Date64(&'a [i64]),
    Timestamp(&'a [i64], TimeUnit),
    Time32(&'a [i32], TimeUnit),
    Time64(&'a [i64], TimeUnit),
    List {
        offsets: Offsets<'a>,
        elem: Box<Writer<'a>>,
        oid: u32,
    },
}

/// A column's writer: its null mask and how its values are written.
struct Writer<'a> {
    nulls: Option<&'a NullBuffer>,
    op: Op<'a>,
}

impl<'a> Writer<'a> {
    /// The writer of array `a` to a column of type `target`, or why there is none.
    fn new(a: &'a dyn Array, target: &PgType) -> Result<Self, String> {
        use DataType as D;
        let dt = a.data_type();
        let numeric_target = |p: &u8, s: &i8, c: &bool| c.then_some((*p, *s));
        let op = match (dt, target) {
            (D::Boolean, PgType::Bool) => Op::Bool(a.as_boolean_opt().ok_or_else(|| layout(a))?),
            (d, PgType::Int2) if d.is_integer() => Op::Int2(Ints::new(a)?),
            (d, PgType::Int4) if d.is_integer() => Op::Int4(Ints::new(a)?),
            (d, PgType::Int8) if d.is_integer() => Op::Int8(Ints::new(a)?),
            (d, PgType::Float4) if d.is_integer() => Op::IntFloat4(Ints::new(a)?),
            (d, PgType::Float8) if d.is_integer() => Op::IntFloat8(Ints::new(a)?),
            (
                d,
                PgType::Numeric {
                    precision,
                    scale,
                    constrained,
                },
            ) if d.is_integer() => {
                Op::IntNumeric(Ints::new(a)?, numeric_target(precision, scale, constrained))
            }
            (D::Float32 | D::Float64, PgType::Float4) => Op::Float4(Floats::new(a)?),
            (D::Float32 | D::Float64, PgType::Float8) => Op::Float8(Floats::new(a)?),
            (
                D::Decimal128(_, s),
                PgType::Numeric {
                    precision,
                    scale,
                    constrained,
                },
            ) => Op::DecNumeric(
                prim::<Decimal128Type>(a)?,
                *s,
                numeric_target(precision, scale, constrained),
            ),
            (D::Decimal128(_, s), PgType::Float8) => Op::DecFloat8(prim::<Decimal128Type>(a)?, *s),
            (D::Utf8 | D::LargeUtf8 | D::Utf8View, PgType::Text | PgType::Json | PgType::Bytea) => {
                Op::Text(Strs::new(a)?)
            }
            (D::Utf8 | D::LargeUtf8 | D::Utf8View, PgType::Jsonb) => Op::Jsonb(Strs::new(a)?),
            (D::Utf8 | D::LargeUtf8 | D::Utf8View, PgType::Uuid) => Op::Uuid(Strs::new(a)?),
            (D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_), PgType::Bytea)
            | (D::FixedSizeBinary(16), PgType::Uuid) => Op::Bytes(Bins::new(a)?),
            (D::Date32, PgType::Date) => Op::Date32(prim::<Date32Type>(a)?),
            (D::Date64, PgType::Date) => Op::Date64(prim::<Date64Type>(a)?),
            (D::Timestamp(unit, _), PgType::Timestamp | PgType::Timestamptz) => {
                let v = match unit {
                    TimeUnit::Second => prim::<TimestampSecondType>(a)?,
                    TimeUnit::Millisecond => prim::<TimestampMillisecondType>(a)?,
                    TimeUnit::Microsecond => prim::<TimestampMicrosecondType>(a)?,
                    TimeUnit::Nanosecond => prim::<TimestampNanosecondType>(a)?,
                };
                Op::Timestamp(v, *unit)
            }
            (D::Time32(unit), PgType::Time) => {
                let v = match unit {
                    TimeUnit::Second => prim::<Time32SecondType>(a)?,
                    TimeUnit::Millisecond => prim::<Time32MillisecondType>(a)?,
                    _ => return Err(layout(a)),
                };
                Op::Time32(v, *unit)
            }
            (D::Time64(unit), PgType::Time) => {
                let v = match unit {
                    TimeUnit::Microsecond => prim::<Time64MicrosecondType>(a)?,
                    TimeUnit::Nanosecond => prim::<Time64NanosecondType>(a)?,
                    _ => return Err(layout(a)),
                };
                Op::Time64(v, *unit)
            }
            (D::List(_) | D::LargeList(_), PgType::Array(elem)) => {
                if matches!(**elem, PgType::Array(_)) {
                    return Err("nested arrays are not supported".into());
                }
                let (offsets, values) = match dt {
                    D::List(_) => {
                        let l = a.as_list_opt::<i32>().ok_or_else(|| layout(a))?;
                        (Offsets::I32(l.value_offsets()), l.values())
                    }
                    _ => {
                        let l = a.as_list_opt::<i64>().ok_or_else(|| layout(a))?;
                        (Offsets::I64(l.value_offsets()), l.values())
                    }
                };
                let elem_writer = Writer::new(values.as_ref(), elem)
                    .map_err(|e| format!("{} elements: {e}", target.sql_name()))?;
                Op::List {
                    offsets,
                    elem: Box::new(elem_writer),
                    oid: elem.pg_type().oid(),
                }
            }
            _ => {
                return Err(format!(
                    "cannot write Arrow type {dt} to a column of type {}",
                    target.sql_name()
                ));
            }
        };
        Ok(Self {
            nulls: a.nulls(),
            op,
        })
    }

    #[inline]
    fn is_null(&self, i: usize) -> bool {
        self.nulls.is_some_and(|n| n.is_null(i))
    }

    /// Roughly the bytes `rows` values take (length words included), to reserve once.
    fn size_hint(&self, rows: usize) -> usize {
        let fixed = |n: usize| rows * (4 + n);
        match &self.op {
            Op::Bool(_) => fixed(1),
            Op::Int2(_) => fixed(2),
            Op::Int4(_) | Op::IntFloat4(_) | Op::Float4(_) | Op::Date32(_) | Op::Date64(_) => {
                fixed(4)
            }
            Op::Int8(_)
            | Op::IntFloat8(_)
            | Op::Float8(_)
            | Op::DecFloat8(..)
            | Op::Timestamp(..)
            | Op::Time32(..)
            | Op::Time64(..) => fixed(8),
            Op::IntNumeric(..) | Op::DecNumeric(..) => fixed(20),
            Op::Uuid(_) => fixed(16),
            Op::Text(s) | Op::Jsonb(s) => fixed(1) + s.data_len(),
            Op::Bytes(b) => fixed(0) + b.data_len(),
            Op::List { offsets, elem, .. } => fixed(20) + elem.size_hint(offsets.span()),
        }
    }

    /// Writes value `i` with its length word (-1 for NULL), or says why it cannot be written.
    fn write(&self, i: usize, out: &mut BytesMut) -> Result<(), String> {
        if self.is_null(i) {
            out.put_i32(-1);
            return Ok(());
        }
        match &self.op {
            Op::Bool(a) => {
                out.put_i32(1);
                out.put_u8(u8::from(a.value(i)));
            }
            Op::Int2(v) => {
                let x = i16::try_from(v.get(i)).map_err(|_| out_of_range("smallint"))?;
                out.put_i32(2);
                out.put_i16(x);
            }
            Op::Int4(v) => {
                let x = i32::try_from(v.get(i)).map_err(|_| out_of_range("integer"))?;
                out.put_i32(4);
                out.put_i32(x);
            }
            Op::Int8(v) => {
                let x = i64::try_from(v.get(i)).map_err(|_| out_of_range("bigint"))?;
                out.put_i32(8);
                out.put_i64(x);
            }
            Op::IntFloat4(v) => {
                out.put_i32(4);
                out.put_f32(v.get(i) as f32);
            }
            Op::IntFloat8(v) => {
                out.put_i32(8);
                out.put_f64(v.get(i) as f64);
            }
            Op::IntNumeric(v, target) => put_numeric_checked(out, v.get(i), 0, *target)?,
            Op::Float4(v) => {
                let x = match v {
                    Floats::F32(v) => v[i],
                    Floats::F64(v) => {
                        let x = v[i] as f32;
                        if x.is_infinite() && v[i].is_finite() {
                            return Err(out_of_range("real"));
                        }
                        x
                    }
                };
                out.put_i32(4);
                out.put_f32(x);
            }
            Op::Float8(v) => {
                out.put_i32(8);
                out.put_f64(match v {
                    Floats::F32(v) => f64::from(v[i]),
                    Floats::F64(v) => v[i],
                });
            }
            Op::DecNumeric(v, scale, target) => put_numeric_checked(out, v[i], *scale, *target)?,
            Op::DecFloat8(v, scale) => {
                let x = v[i] as f64;
                let x = if *scale >= 0 {
                    x / 10f64.powi(i32::from(*scale))
                } else {
                    x * 10f64.powi(-i32::from(*scale))
                };
                out.put_i32(8);
                out.put_f64(x);
            }
            Op::Text(s) => put_bytes(out, s.get(i).as_bytes())?,
            Op::Jsonb(s) => {
                let b = s.get(i).as_bytes();
                out.put_i32(len32(b.len() + 1)?);
                out.put_u8(1);
                out.put_slice(b);
            }
            Op::Uuid(s) => {
                let u =
                    uuid::Uuid::try_parse(s.get(i)).map_err(|_| "invalid uuid text".to_string())?;
                out.put_i32(16);
                out.put_slice(u.as_bytes());
            }
            Op::Bytes(b) => put_bytes(out, b.get(i))?,
            Op::Date32(v) => put_date(out, i64::from(v[i]))?,
            Op::Date64(v) => put_date(out, v[i].div_euclid(86_400_000))?,
            Op::Timestamp(v, unit) => {
                let t = to_micros(v[i], *unit)
                    .and_then(|t| t.checked_sub(PG_EPOCH_MICROS))
                    // i64::MIN and MAX mean -infinity and infinity on the server.
                    .filter(|t| *t != i64::MIN && *t != i64::MAX)
                    .ok_or_else(|| out_of_range("timestamp"))?;
                out.put_i32(8);
                out.put_i64(t);
            }
            Op::Time32(v, unit) => {
                let t = to_micros(i64::from(v[i]), *unit).ok_or_else(|| out_of_range("time"))?;
                out.put_i32(8);
                out.put_i64(t);
            }
            Op::Time64(v, unit) => {
                let t = to_micros(v[i], *unit).ok_or_else(|| out_of_range("time"))?;
                out.put_i32(8);
                out.put_i64(t);
            }
            Op::List { offsets, elem, oid } => {
                let (start, end) = offsets.range(i);
                let at = out.len();
                out.put_i32(0); // the length, patched below
                if start >= end {
                    // An empty array has no dimensions.
                    out.put_i32(0);
                    out.put_i32(0);
                    out.put_u32(*oid);
                } else {
                    out.put_i32(1);
                    let flag_at = out.len();
                    out.put_i32(0); // the has-nulls flag, patched below
                    out.put_u32(*oid);
                    out.put_i32(len32(end - start)?);
                    out.put_i32(1);
                    let mut has_nulls = false;
                    for j in start..end {
                        has_nulls |= elem.is_null(j);
                        elem.write(j, out)?;
                    }
                    if has_nulls {
                        out[flag_at..flag_at + 4].copy_from_slice(&1i32.to_be_bytes());
                    }
                }
                let len = len32(out.len() - at - 4)?;
                out[at..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        }
        Ok(())
    }
}

/// A length as the i32 the format holds.
fn len32(n: usize) -> Result<i32, String> {
    i32::try_from(n).map_err(|_| "value larger than 2 GiB".to_string())
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) -> Result<(), String> {
    out.put_i32(len32(b.len())?);
    out.put_slice(b);
    Ok(())
}

/// A date given in days since 1970-01-01.
fn put_date(out: &mut BytesMut, days: i64) -> Result<(), String> {
    let d = i32::try_from(days - i64::from(PG_EPOCH_DAYS))
        .ok()
        // i32::MIN and MAX mean -infinity and infinity on the server.
        .filter(|d| *d != i32::MIN && *d != i32::MAX)
        .ok_or_else(|| out_of_range("date"))?;
    out.put_i32(4);
    out.put_i32(d);
    Ok(())
}

/// A time or timestamp in `unit` as microseconds; nanoseconds are floored (toward negative
/// infinity) to whole microseconds, the server's resolution.
fn to_micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    }
}

/// Writes `v * 10^-scale` as a numeric after checking that a constrained target
/// `(precision, scale)` holds it exactly (the server would round extra fractional digits).
fn put_numeric_checked(
    out: &mut BytesMut,
    v: i128,
    scale: i8,
    target: Option<(u8, i8)>,
) -> Result<(), String> {
    if let Some((p, ts)) = target {
        let (s, ts32) = (i32::from(scale), i32::from(ts));
        if s > ts32 {
            let exact = match usize::try_from(s - ts32).ok().and_then(|k| POW10.get(k)) {
                Some(d) => v % d == 0,
                None => v == 0,
            };
            if !exact {
                return Err(format!(
                    "value has more digits after the point than numeric({p},{ts}) holds"
                ));
            }
        }
        // |v| * 10^-s < 10^(p - ts)  <=>  |v| < 10^(p - ts + s)
        let e = i32::from(p) - ts32 + s;
        let fits = match usize::try_from(e) {
            Ok(0) | Err(_) => v == 0,
            Ok(e) => POW10
                .get(e)
                .is_none_or(|lim| v.unsigned_abs() < lim.unsigned_abs()),
        };
        if !fits {
            return Err(format!("value out of range for numeric({p},{ts})"));
        }
    }
    put_numeric(out, v, scale);
    Ok(())
}

/// Writes `v * 10^-scale` in numeric's binary form: base-10000 digits aligned on the decimal
/// point, most significant first, trailing zero digits left out; dscale is the scale (0 when
/// negative).
fn put_numeric(out: &mut BytesMut, v: i128, scale: i8) {
    let s = i32::from(scale);
    // Zeros to append so that the scale becomes a multiple of 4 (aligning the digit groups).
    let pad = (4 - s.rem_euclid(4)) % 4;
    let aligned = s + pad;
    // Groups, least significant first; u128 holds at most 39 decimal digits -> 11 groups.
    let mut groups = [0i16; 12];
    let mut n = 0;
    let mut m = v.unsigned_abs();
    let mut first = pad != 0;
    while m != 0 && n < groups.len() {
        let (div, mul) = if first {
            (10u64.pow((4 - pad) as u32), 10u64.pow(pad as u32))
        } else {
            (10_000, 1)
        };
        first = false;
        let (q, r) = match u64::try_from(m) {
            Ok(m64) => (u128::from(m64 / div), m64 % div),
            Err(_) => (m / u128::from(div), (m % u128::from(div)) as u64),
        };
        groups[n] = (r * mul) as i16;
        n += 1;
        m = q;
    }
    let low = groups[..n].iter().take_while(|g| **g == 0).count();
    let ndigits = n - low;
    let weight = if ndigits == 0 {
        0
    } else {
        n as i32 - 1 - aligned / 4
    };
    let sign = if v < 0 && ndigits > 0 {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    out.put_i32(8 + 2 * ndigits as i32);
    out.put_i16(ndigits as i16);
    out.put_i16(weight as i16);
    out.put_u16(sign);
    out.put_u16(s.max(0) as u16);
    for g in groups[low..n].iter().rev() {
        out.put_i16(*g);
    }
}

/// Encodes record batches as a binary COPY stream for target columns of known types.
///
/// Writes: boolean from Boolean; smallint/integer/bigint from any integer type (range-checked
/// per value); real/double precision from integers, floats and (double only) Decimal128;
/// numeric from integers and Decimal128 (refusing values a constrained column would round or
/// overflow); text/json/jsonb/bytea/uuid from strings; bytea from binary; uuid from
/// `FixedSizeBinary(16)`; date from Date32/Date64; timestamp/timestamptz from any Timestamp
/// (nanoseconds floored to microseconds; the zone only labels the UTC instant); time from
/// Time32/Time64; arrays from List/LargeList of any of these. Dictionary and run-end encoded
/// arrays are unpacked first.
///
/// Array elements are labelled with the built-in type of [`PgType::pg_type`] (`text` for every
/// textual type), which the server must match exactly: for `varchar[]`, `char[]`, enum or
/// domain arrays call [`Encoder::with_element_types`].
#[derive(Debug)]
pub struct Encoder {
    targets: Vec<(String, PgType)>,
    /// Per column, the element type OID written for an array column instead of the default.
    element_oids: Vec<Option<u32>>,
    /// Rows written by earlier `encode` calls.
    rows: u64,
}

impl Encoder {
    /// An encoder writing each column of `schema` to the target column of the same index in
    /// `targets`. Fails, naming the column, when an Arrow type cannot be written to its
    /// target type.
    pub fn new(schema: &Schema, targets: Vec<(String, PgType)>) -> Result<Self, CopyError> {
        check_width(schema.fields().len(), &targets, |i| {
            schema.fields().get(i).map(|f| f.name().clone())
        })?;
        for (field, (name, ty)) in schema.fields().iter().zip(&targets) {
            let empty = new_empty_array(&normal_type(field.data_type()));
            Writer::new(empty.as_ref(), ty).map_err(|reason| CopyError::Type {
                column: name.clone(),
                reason,
            })?;
        }
        Ok(Self {
            element_oids: vec![None; targets.len()],
            targets,
            rows: 0,
        })
    }

    /// Labels array elements with the element type of the target table's column types (one
    /// per column, as the server reports them), so that arrays of `varchar`, `char`, enums and
    /// domains are accepted; entries that are not arrays are ignored.
    pub fn with_element_types(mut self, types: &[Type]) -> Self {
        for (oid, ty) in self.element_oids.iter_mut().zip(types) {
            if let Kind::Array(elem) = ty.kind() {
                *oid = Some(elem.oid());
            }
        }
        self
    }

    /// Writes the stream header.
    pub fn header(&self, out: &mut BytesMut) {
        out.put_slice(SIGNATURE);
        out.put_i32(0); // flags
        out.put_i32(0); // header extension length
    }

    /// Appends the batch's rows. Row numbers in errors continue across batches. On error
    /// nothing of the batch is left in `out`.
    pub fn encode(&mut self, batch: &RecordBatch, out: &mut BytesMut) -> Result<(), CopyError> {
        let start = out.len();
        let r = self.encode_rows(batch, out);
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    fn encode_rows(&mut self, batch: &RecordBatch, out: &mut BytesMut) -> Result<(), CopyError> {
        let schema = batch.schema();
        check_width(batch.num_columns(), &self.targets, |i| {
            schema.fields().get(i).map(|f| f.name().clone())
        })?;
        let type_error = |name: &String, reason| CopyError::Type {
            column: name.clone(),
            reason,
        };
        let arrays = batch
            .columns()
            .iter()
            .zip(&self.targets)
            .map(|(a, (name, _))| normalize(a).map_err(|e| type_error(name, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut writers = arrays
            .iter()
            .zip(&self.targets)
            .map(|(a, (name, ty))| Writer::new(a.as_ref(), ty).map_err(|e| type_error(name, e)))
            .collect::<Result<Vec<_>, _>>()?;
        for (w, custom) in writers.iter_mut().zip(&self.element_oids) {
            if let (Op::List { oid, .. }, Some(custom)) = (&mut w.op, custom) {
                *oid = *custom;
            }
        }
        let ncols = i16::try_from(writers.len()).map_err(|_| CopyError::Type {
            column: String::new(),
            reason: "too many columns".into(),
        })?;
        let rows = batch.num_rows();
        let hint: usize = writers.iter().map(|w| w.size_hint(rows)).sum();
        out.reserve(hint + 2 * rows);
        for i in 0..rows {
            out.put_i16(ncols);
            for (w, (name, _)) in writers.iter().zip(&self.targets) {
                if let Err(reason) = w.write(i, out) {
                    return Err(CopyError::Value {
                        row: self.rows + i as u64 + 1,
                        column: name.clone(),
                        reason,
                    });
                }
            }
        }
        self.rows += rows as u64;
        Ok(())
    }

    /// Writes the trailer (field count -1).
    pub fn trailer(&self, out: &mut BytesMut) {
        out.put_i16(-1);
    }
}

/// Checks that an input of `n` columns matches the targets; `input_name` names input column i.
fn check_width(
    n: usize,
    targets: &[(String, PgType)],
    input_name: impl Fn(usize) -> Option<String>,
) -> Result<(), CopyError> {
    if n == targets.len() {
        return Ok(());
    }
    let first = n.min(targets.len());
    let column = targets
        .get(first)
        .map(|(name, _)| name.clone())
        .or_else(|| input_name(first))
        .unwrap_or_default();
    Err(CopyError::Type {
        column,
        reason: format!(
            "the input has {n} columns but {} target columns are given",
            targets.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use datafusion::arrow::array::{
        BinaryArray, Date32Array, Decimal128Array, DictionaryArray, FixedSizeBinaryArray,
        Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, ListBuilder, StringArray,
        Time64MicrosecondArray, TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array,
    };
    use datafusion::arrow::compute::concat_batches;

    use super::*;

    fn numeric(precision: u8, scale: i8) -> PgType {
        PgType::Numeric {
            precision,
            scale,
            constrained: true,
        }
    }

    fn batch_of(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap()
    }

    /// A batch with a column of every type (NULLs and edge values included) and its targets.
    fn every_type() -> (RecordBatch, Vec<(String, PgType)>) {
        let mut ints = ListBuilder::new(Int32Builder::new());
        ints.append_value([Some(1), None, Some(3)]);
        ints.append_value([]);
        ints.append_null();
        ints.append_value([Some(i32::MIN)]);
        let mut texts = ListBuilder::new(StringBuilder::new());
        texts.append_value([Some("x"), Some(""), None]);
        texts.append_value(Vec::<Option<&str>>::new());
        texts.append_null();
        texts.append_value([Some("with \"quote\", {brace}")]);
        let big = POW10[38] - 1;
        let cols: Vec<(&str, ArrayRef, PgType)> = vec![
            (
                "b",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    Some(true),
                ])),
                PgType::Bool,
            ),
            (
                "i2",
                Arc::new(Int16Array::from(vec![
                    Some(i16::MIN),
                    Some(i16::MAX),
                    None,
                    Some(0),
                ])),
                PgType::Int2,
            ),
            (
                "i4",
                Arc::new(Int32Array::from(vec![
                    Some(i32::MIN),
                    Some(i32::MAX),
                    None,
                    Some(-1),
                ])),
                PgType::Int4,
            ),
            (
                "i8",
                Arc::new(Int64Array::from(vec![
                    Some(i64::MIN),
                    Some(i64::MAX),
                    None,
                    Some(7),
                ])),
                PgType::Int8,
            ),
            (
                "f4",
                Arc::new(Float32Array::from(vec![
                    Some(1.5),
                    Some(f32::INFINITY),
                    None,
                    Some(f32::MIN_POSITIVE),
                ])),
                PgType::Float4,
            ),
            (
                "f8",
                Arc::new(Float64Array::from(vec![
                    Some(-2.25e300),
                    Some(f64::NEG_INFINITY),
                    None,
                    Some(0.1),
                ])),
                PgType::Float8,
            ),
            (
                "n",
                Arc::new(
                    Decimal128Array::from(vec![Some(-123_456_789_012), Some(0), None, Some(1)])
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
                numeric(12, 2),
            ),
            (
                "nu",
                Arc::new(
                    Decimal128Array::from(vec![Some(big), Some(-1), None, Some(-big)])
                        .with_precision_and_scale(38, 10)
                        .unwrap(),
                ),
                PgType::Numeric {
                    precision: 38,
                    scale: 10,
                    constrained: false,
                },
            ),
            (
                "t",
                Arc::new(StringArray::from(vec![
                    Some("héllo ✓"),
                    Some(""),
                    None,
                    Some("x"),
                ])),
                PgType::Text,
            ),
            (
                "j",
                Arc::new(StringArray::from(vec![
                    Some(r#"{"a": [1, 2]}"#),
                    Some("[]"),
                    None,
                    Some("null"),
                ])),
                PgType::Json,
            ),
            (
                "jb",
                Arc::new(StringArray::from(vec![
                    Some(r#"{"b": {"c": null}}"#),
                    Some("\"ü\""),
                    None,
                    Some("1"),
                ])),
                PgType::Jsonb,
            ),
            (
                "u",
                Arc::new(StringArray::from(vec![
                    Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                    Some("00000000-0000-0000-0000-000000000000"),
                    None,
                    Some("ffffffff-ffff-ffff-ffff-ffffffffffff"),
                ])),
                PgType::Uuid,
            ),
            (
                "by",
                Arc::new(BinaryArray::from(vec![
                    Some(&[0u8, 255, 16][..]),
                    Some(&[][..]),
                    None,
                    Some(&[1][..]),
                ])),
                PgType::Bytea,
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![
                    Some(0),
                    Some(-719_162),
                    None,
                    Some(2_932_896),
                ])),
                PgType::Date,
            ),
            (
                "tm",
                Arc::new(Time64MicrosecondArray::from(vec![
                    Some(0),
                    Some(86_399_999_999),
                    None,
                    Some(1),
                ])),
                PgType::Time,
            ),
            (
                "ts",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(0),
                    Some(-1),
                    None,
                    Some(253_402_300_799_999_999),
                ])),
                PgType::Timestamp,
            ),
            (
                "tz",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(PG_EPOCH_MICROS),
                        Some(-62_135_596_800_000_000),
                        None,
                        Some(1),
                    ])
                    .with_timezone("UTC"),
                ),
                PgType::Timestamptz,
            ),
            (
                "ai",
                Arc::new(ints.finish()),
                PgType::Array(Box::new(PgType::Int4)),
            ),
            (
                "at",
                Arc::new(texts.finish()),
                PgType::Array(Box::new(PgType::Text)),
            ),
        ];
        let targets = cols
            .iter()
            .map(|(n, _, t)| (n.to_string(), t.clone()))
            .collect();
        let batch = batch_of(cols.into_iter().map(|(n, a, _)| (n, a)).collect());
        (batch, targets)
    }

    fn encode_all(batches: &[RecordBatch], targets: &[(String, PgType)]) -> Vec<u8> {
        let mut enc = Encoder::new(&batches[0].schema(), targets.to_vec()).unwrap();
        let mut out = BytesMut::new();
        enc.header(&mut out);
        for b in batches {
            enc.encode(b, &mut out).unwrap();
        }
        enc.trailer(&mut out);
        out.to_vec()
    }

    type Decoded = (Vec<RecordBatch>, Vec<Rejected>, u64);

    fn decode<'a>(
        targets: &[(String, PgType)],
        chunks: impl IntoIterator<Item = &'a [u8]>,
        batch_size: usize,
    ) -> Result<Decoded, CopyError> {
        let mut dec = Decoder::new(targets.to_vec(), batch_size);
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        for c in chunks {
            dec.push(c, &mut out, &mut rejected)?;
        }
        out.extend(dec.finish(&mut rejected)?);
        Ok((out, rejected, dec.rows()))
    }

    fn assert_same(got: &[RecordBatch], want: &RecordBatch) {
        let got = concat_batches(&want.schema(), got).unwrap();
        assert_eq!(got.schema(), want.schema());
        assert_eq!(got.num_rows(), want.num_rows());
        for (i, f) in want.schema().fields().iter().enumerate() {
            assert_eq!(
                got.column(i).to_data(),
                want.column(i).to_data(),
                "column {}",
                f.name()
            );
        }
    }

    #[test]
    fn every_type_round_trips_whatever_the_chunking() {
        let (batch, targets) = every_type();
        let bytes = encode_all(std::slice::from_ref(&batch), &targets);

        let (out, rejected, rows) = decode(&targets, [&bytes[..]], 3).unwrap();
        assert!(rejected.is_empty());
        assert_eq!(rows, 4);
        assert_eq!(
            out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
            [3, 1]
        );
        assert_same(&out, &batch);

        for k in 0..=bytes.len() {
            let (out, rejected, _) = decode(&targets, [&bytes[..k], &bytes[k..]], 3).unwrap();
            assert!(rejected.is_empty());
            assert_same(&out, &batch);
        }
        let (out, _, _) = decode(&targets, bytes.chunks(1), 1).unwrap();
        assert_eq!(out.len(), 4);
        assert_same(&out, &batch);
        for size in 2..9 {
            let (out, _, _) = decode(&targets, bytes.chunks(size), 2).unwrap();
            assert_same(&out, &batch);
        }
    }

    #[test]
    fn several_batches_encode_as_one_stream() {
        let (batch, targets) = every_type();
        let bytes = encode_all(&[batch.clone(), batch.slice(1, 2)], &targets);
        let (out, _, rows) = decode(&targets, [&bytes[..]], 100).unwrap();
        assert_eq!(rows, 6);
        let want = concat_batches(&batch.schema(), &[batch.clone(), batch.slice(1, 2)]).unwrap();
        assert_same(&out, &want);
    }

    /// The binary numeric form of `v * 10^-scale`.
    fn numeric_bytes(v: i128, scale: i8) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_numeric(&mut out, v, scale);
        out[4..].to_vec()
    }

    /// A numeric's binary form from its parts.
    fn numeric_raw(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_i16(digits.len() as i16);
        out.put_i16(weight);
        out.put_u16(sign);
        out.put_u16(dscale);
        for d in digits {
            out.put_i16(*d);
        }
        out.to_vec()
    }

    fn read_numeric(bytes: &[u8], precision: u8, scale: i8) -> Result<i128, String> {
        decode_numeric(bytes, precision, scale, true).map_err(|e| match e {
            Fail::Malformed(m) => format!("malformed: {m}"),
            Fail::Reject(m) => m,
        })
    }

    #[test]
    fn numeric_binary_form() {
        assert_eq!(
            numeric_bytes(12_345_678, 3),
            numeric_raw(1, NUMERIC_POS, 3, &[1, 2345, 6780])
        );
        assert_eq!(numeric_bytes(1, 4), numeric_raw(-1, NUMERIC_POS, 4, &[1]));
        assert_eq!(
            numeric_bytes(99_999_999, 4),
            numeric_raw(0, NUMERIC_POS, 4, &[9999, 9999])
        );
        assert_eq!(numeric_bytes(0, 2), numeric_raw(0, NUMERIC_POS, 2, &[]));
        assert_eq!(numeric_bytes(-1, 0), numeric_raw(0, NUMERIC_NEG, 0, &[1]));
        assert_eq!(
            numeric_bytes(10_000, 0),
            numeric_raw(1, NUMERIC_POS, 0, &[1])
        );
        assert_eq!(numeric_bytes(5, -2), numeric_raw(0, NUMERIC_POS, 0, &[500]));
        assert_eq!(
            numeric_bytes(1, 5),
            numeric_raw(-2, NUMERIC_POS, 5, &[1000])
        );
        let big = POW10[38] - 1;
        assert_eq!(
            numeric_bytes(big, 0),
            numeric_raw(
                9,
                NUMERIC_POS,
                0,
                &[99, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999]
            )
        );
    }

    #[test]
    fn numeric_edge_values_round_trip() {
        let big = POW10[38] - 1;
        let cases: &[(u8, i8, &[i128])] = &[
            (
                38,
                0,
                &[
                    0,
                    1,
                    -1,
                    big,
                    -big,
                    POW10[37],
                    12_345_678_901_234_567_890_123,
                ],
            ),
            (38, 10, &[0, 1, -5, big, -big, 15_000_000_000]),
            (38, 38, &[1, big, -big]),
            (
                12,
                2,
                &[1, -1, 100, 999_999_999_999, -999_999_999_999, 10_000],
            ),
            (8, 4, &[1, 99_999_999, -10_000, 10]),
            (5, 3, &[12_345, -1]),
            (2, 2, &[99, -99]),
            (20, 0, &[u64::MAX as i128, -(i64::MAX as i128)]),
        ];
        for (p, s, values) in cases {
            for v in *values {
                let got = read_numeric(&numeric_bytes(*v, *s), *p, *s);
                assert_eq!(got, Ok(*v), "{v} at ({p},{s})");
            }
            let array = Decimal128Array::from(values.to_vec())
                .with_precision_and_scale(*p, *s)
                .unwrap();
            let batch = batch_of(vec![("n", Arc::new(array))]);
            let targets = vec![("n".to_string(), numeric(*p, *s))];
            let bytes = encode_all(std::slice::from_ref(&batch), &targets);
            let (out, rejected, _) = decode(&targets, [&bytes[..]], 100).unwrap();
            assert!(rejected.is_empty());
            assert_same(&out, &batch);
        }
    }

    #[test]
    fn numeric_reads_pad_the_scale_and_never_round() {
        // 1.5 at scale 10, 10000 at scale 2, 0.00001 at scale 5.
        let one_and_half = numeric_raw(0, NUMERIC_POS, 1, &[1, 5000]);
        assert_eq!(read_numeric(&one_and_half, 38, 10), Ok(15_000_000_000));
        assert_eq!(read_numeric(&one_and_half, 2, 1), Ok(15));
        let ten_thousand = numeric_raw(1, NUMERIC_POS, 0, &[1]);
        assert_eq!(read_numeric(&ten_thousand, 12, 2), Ok(1_000_000));
        let tiny = numeric_raw(-2, NUMERIC_NEG, 5, &[1000]);
        assert_eq!(read_numeric(&tiny, 10, 5), Ok(-1));
        // Lost digits and overflow reject.
        let e = read_numeric(&tiny, 10, 4).unwrap_err();
        assert!(e.contains("more digits after the point"), "{e}");
        assert!(read_numeric(&one_and_half, 5, 0).is_err());
        let e = read_numeric(&ten_thousand, 4, 0).unwrap_err();
        assert!(e.contains("out of range for numeric(4,0)"), "{e}");
        let e28 = numeric_raw(7, NUMERIC_POS, 0, &[1]);
        assert!(read_numeric(&e28, 38, 10).is_err());
        assert_eq!(read_numeric(&e28, 38, 0), Ok(POW10[28]));
        // Special values and broken forms.
        for sign in [NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF] {
            let e = read_numeric(&numeric_raw(0, sign, 0, &[]), 10, 2).unwrap_err();
            assert!(e.contains("not supported"), "{e}");
        }
        assert!(
            read_numeric(&numeric_raw(0, 0x1234, 0, &[]), 10, 2)
                .unwrap_err()
                .starts_with("malformed")
        );
        assert!(
            read_numeric(&numeric_raw(0, NUMERIC_POS, 0, &[10_000]), 10, 2)
                .unwrap_err()
                .starts_with("malformed")
        );
        assert!(
            read_numeric(&numeric_raw(0, NUMERIC_POS, 0, &[1])[..9], 10, 2)
                .unwrap_err()
                .starts_with("malformed")
        );
    }

    /// A raw stream of the given rows (fields as raw bytes or NULL).
    fn raw_stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_slice(SIGNATURE);
        out.put_i32(0);
        out.put_i32(0);
        for row in rows {
            out.put_i16(row.len() as i16);
            for f in row {
                match f {
                    Some(b) => {
                        out.put_i32(b.len() as i32);
                        out.put_slice(b);
                    }
                    None => out.put_i32(-1),
                }
            }
        }
        out.put_i16(-1);
        out.to_vec()
    }

    fn int4(v: i32) -> Option<Vec<u8>> {
        Some(v.to_be_bytes().to_vec())
    }

    #[test]
    fn rows_with_values_arrow_cannot_hold_are_rejected() {
        let nan = numeric_raw(0, NUMERIC_NAN, 0, &[]);
        let mut two_d = BytesMut::new();
        for x in [2, 0, 23, 1, 1, 1, 1, 4, 9] {
            two_d.put_i32(x);
        }
        let mut empty = BytesMut::new();
        for x in [0, 0, 23] {
            empty.put_i32(x);
        }
        let targets = vec![
            ("id".to_string(), PgType::Int4),
            ("n".to_string(), numeric(10, 2)),
            ("d".to_string(), PgType::Date),
            ("a".to_string(), PgType::Array(Box::new(PgType::Int4))),
        ];
        let stream = raw_stream(&[
            vec![
                int4(1),
                Some(numeric_bytes(150, 2)),
                int4(0),
                Some(empty.to_vec()),
            ],
            vec![int4(2), Some(nan.clone()), int4(0), None],
            vec![int4(3), None, int4(i32::MAX), None],
            vec![int4(4), None, None, Some(two_d.to_vec())],
            vec![int4(5), None, int4(i32::MIN), None],
            vec![int4(6), None, None, Some(empty.to_vec())],
        ]);
        for batch_size in [1, 2, 100] {
            let mut dec = Decoder::new(targets.clone(), batch_size);
            let (mut out, mut rejected) = (Vec::new(), Vec::new());
            dec.push(&stream, &mut out, &mut rejected).unwrap();
            // Batches are counted before rejection; emptied ones are not emitted.
            let sizes: Vec<usize> = out.iter().map(RecordBatch::num_rows).collect();
            let want: &[usize] = if batch_size == 100 { &[] } else { &[1, 1] };
            assert_eq!(sizes, want, "batch size {batch_size}");
            out.extend(dec.finish(&mut rejected).unwrap());
            assert!(
                out.iter()
                    .all(|b| b.num_rows() <= batch_size && b.num_rows() > 0)
            );
            assert_eq!(dec.rows(), 6);
            let all = concat_batches(&dec.schema(), &out).unwrap();
            let ids = all.column(0).as_primitive::<Int32Type>();
            assert_eq!(ids.values().as_ref(), [1, 6]);
            assert_eq!(all.column(1).as_primitive::<Decimal128Type>().value(0), 150);
            let lists = all.column(3).as_list::<i32>();
            assert_eq!(lists.value_length(0), 0);
            assert_eq!(lists.value_length(1), 0);
            assert!(lists.is_valid(0));

            let got: Vec<_> = rejected
                .iter()
                .map(|r| (r.row, r.column.as_str()))
                .collect();
            assert_eq!(got, [(2, "n"), (3, "d"), (4, "a"), (5, "d")]);
            assert!(rejected[0].reason.contains("NaN"), "{}", rejected[0].reason);
            assert!(rejected[1].reason.contains("infinite"));
            assert!(rejected[2].reason.contains("multi-dimensional"));
            assert_eq!(
                rejected[0].data,
                serde_json::json!({
                    "id": BASE64.encode(2i32.to_be_bytes()),
                    "n": BASE64.encode(&nan),
                    "d": "AAAAAA==",
                    "a": null,
                })
            );
            assert_eq!(rejected[0].data["n"], "AAAAAMAAAAA=");
        }
    }

    #[test]
    fn a_rejected_array_element_rejects_the_row() {
        let targets = vec![("a".to_string(), PgType::Array(Box::new(PgType::Date)))];
        let array = |days: &[i32]| {
            let mut b = BytesMut::new();
            for x in [1, 0, 1082, days.len() as i32, 1] {
                b.put_i32(x);
            }
            for d in days {
                b.put_i32(4);
                b.put_i32(*d);
            }
            Some(b.to_vec())
        };
        let stream = raw_stream(&[
            vec![array(&[1, 2])],
            vec![array(&[3, i32::MAX, 4])],
            vec![array(&[5])],
        ]);
        let (out, rejected, _) = decode(&targets, [&stream[..]], 10).unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].row, 2);
        let lists = out[0].column(0).as_list::<i32>();
        assert_eq!(lists.len(), 2);
        let first = lists.value(0);
        assert_eq!(
            first.as_primitive::<Date32Type>().values().as_ref(),
            [PG_EPOCH_DAYS + 1, PG_EPOCH_DAYS + 2]
        );
        let second = lists.value(1);
        assert_eq!(
            second.as_primitive::<Date32Type>().values().as_ref(),
            [PG_EPOCH_DAYS + 5]
        );
    }

    fn malformed(targets: &[(String, PgType)], chunks: &[&[u8]]) -> String {
        match decode(targets, chunks.iter().copied(), 10) {
            Err(CopyError::Malformed(m)) => m,
            other => panic!("expected a malformed stream, got {other:?}"),
        }
    }

    #[test]
    fn malformed_streams_are_fatal() {
        let targets = vec![("id".to_string(), PgType::Int4)];
        let good = raw_stream(&[vec![int4(1)], vec![None]]);
        assert!(decode(&targets, [&good[..]], 10).is_ok());

        let mut bad = good.clone();
        bad[3] = b'X';
        assert!(malformed(&targets, &[&bad]).contains("signature"));
        // Detected as soon as the signature's bytes arrive.
        let mut dec = Decoder::new(targets.clone(), 10);
        let (mut out, mut rej) = (Vec::new(), Vec::new());
        assert!(dec.push(b"PGX", &mut out, &mut rej).is_err());
        assert!(dec.push(&good, &mut out, &mut rej).is_err());

        for cut in 1..good.len() {
            let m = malformed(&targets, &[&good[..cut]]);
            assert!(m.contains("ended"), "{m}");
        }
        let m = malformed(&targets, &[&good, b"\0"]);
        assert!(m.contains("after the end-of-data marker"), "{m}");

        let two = raw_stream(&[vec![int4(1), int4(2)]]);
        assert!(malformed(&targets, &[&two]).contains("2 fields, expected 1"));
        let short = raw_stream(&[vec![Some(vec![0, 1])]]);
        let m = malformed(&targets, &[&short]);
        assert!(m.contains("row 1") && m.contains("4 bytes"), "{m}");
        let mut negative = raw_stream(&[vec![None]]);
        negative[19 + 2..19 + 6].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(malformed(&targets, &[&negative]).contains("negative field length"));
        let mut oids = good.clone();
        oids[12] = 1; // bit 16 of the flags word
        assert!(malformed(&targets, &[&oids]).contains("OIDs"));
    }

    #[test]
    fn an_empty_batch_writes_no_rows() {
        let (batch, targets) = every_type();
        let empty = batch.slice(0, 0);
        let bytes = encode_all(std::slice::from_ref(&empty), &targets);
        assert_eq!(bytes.len(), 19 + 2);
        let (out, _, rows) = decode(&targets, [&bytes[..]], 10).unwrap();
        assert!(out.is_empty());
        assert_eq!(rows, 0);
    }

    #[test]
    fn array_elements_can_carry_the_target_element_type() {
        let mut b = ListBuilder::new(StringBuilder::new());
        b.append_value([Some("x")]);
        let batch = batch_of(vec![("a", Arc::new(b.finish()))]);
        let targets = vec![("a".to_string(), PgType::Array(Box::new(PgType::Text)))];
        let oid_of = |enc: &mut Encoder| {
            let mut out = BytesMut::new();
            enc.encode(&batch, &mut out).unwrap();
            // field count, field length, ndim, flags, then the element oid
            u32::from_be_bytes(out[14..18].try_into().unwrap())
        };
        let mut enc = Encoder::new(&batch.schema(), targets.clone()).unwrap();
        assert_eq!(oid_of(&mut enc), Type::TEXT.oid());
        let mut enc = Encoder::new(&batch.schema(), targets)
            .unwrap()
            .with_element_types(&[Type::VARCHAR_ARRAY]);
        assert_eq!(oid_of(&mut enc), Type::VARCHAR.oid());
    }

    #[test]
    fn an_out_of_range_value_names_row_and_column_but_not_the_value() {
        let targets = vec![("x".to_string(), PgType::Int2)];
        let first = batch_of(vec![("x", Arc::new(Int32Array::from(vec![1, 2, -32768])))]);
        let second = batch_of(vec![("x", Arc::new(Int32Array::from(vec![3, 40_000])))]);
        let mut enc = Encoder::new(&first.schema(), targets).unwrap();
        let mut out = BytesMut::new();
        enc.header(&mut out);
        enc.encode(&first, &mut out).unwrap();
        let len = out.len();
        let e = enc.encode(&second, &mut out).unwrap_err();
        assert_eq!(
            e,
            CopyError::Value {
                row: 5,
                column: "x".into(),
                reason: "value out of range for smallint".into()
            }
        );
        assert!(!e.to_string().contains("40000"));
        assert_eq!(out.len(), len, "no partial rows are left behind");
    }

    #[test]
    fn unwritable_types_are_refused_up_front() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]);
        let e = Encoder::new(
            &schema,
            vec![
                ("id".to_string(), PgType::Int4),
                ("name".to_string(), PgType::Int4),
            ],
        )
        .unwrap_err();
        let CopyError::Type { column, reason } = e else {
            panic!("{e:?}")
        };
        assert_eq!(column, "name");
        assert!(
            reason.contains("Utf8") && reason.contains("integer"),
            "{reason}"
        );
        assert!(Encoder::new(&schema, vec![("id".to_string(), PgType::Int4)]).is_err());
        let bad = [
            (
                DataType::Float64,
                PgType::Numeric {
                    precision: 10,
                    scale: 2,
                    constrained: true,
                },
            ),
            (DataType::Boolean, PgType::Int4),
            (DataType::Int32, PgType::Text),
            (DataType::FixedSizeBinary(8), PgType::Uuid),
            (DataType::Date32, PgType::Timestamp),
        ];
        for (dt, target) in bad {
            let schema = Schema::new(vec![Field::new("c", dt, true)]);
            assert!(Encoder::new(&schema, vec![("c".into(), target)]).is_err());
        }
    }

    /// Encodes one column to `target` and decodes it back.
    fn through(array: ArrayRef, target: PgType) -> Result<ArrayRef, CopyError> {
        let batch = batch_of(vec![("c", array)]);
        let targets = vec![("c".to_string(), target)];
        let mut enc = Encoder::new(&batch.schema(), targets.clone())?;
        let mut out = BytesMut::new();
        enc.header(&mut out);
        enc.encode(&batch, &mut out)?;
        enc.trailer(&mut out);
        let (batches, rejected, _) = decode(&targets, [&out[..]], 100)?;
        assert!(rejected.is_empty());
        Ok(concat_batches(&batches[0].schema(), &batches)
            .unwrap()
            .column(0)
            .clone())
    }

    #[test]
    fn conversions_on_write() {
        // Nanoseconds floor to microseconds.
        let ns = TimestampNanosecondArray::from(vec![-1, 1_999, 0]).with_timezone("+02:00");
        let got = through(Arc::new(ns), PgType::Timestamptz).unwrap();
        assert_eq!(
            got.as_primitive::<TimestampMicrosecondType>()
                .values()
                .as_ref(),
            [-1, 1, 0]
        );
        // Dictionaries are unpacked.
        let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
        let got = through(Arc::new(dict), PgType::Text).unwrap();
        assert_eq!(
            got.as_string::<i32>().iter().collect::<Vec<_>>(),
            [Some("a"), Some("b"), Some("a")]
        );
        // uuid from 32 hex digits and from 16 bytes.
        let u = StringArray::from(vec!["A0EEBC999C0B4EF8BB6D6BB9BD380A11"]);
        let got = through(Arc::new(u), PgType::Uuid).unwrap();
        assert_eq!(
            got.as_string::<i32>().value(0),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        let fixed = FixedSizeBinaryArray::try_from_iter([[0xabu8; 16]].into_iter()).unwrap();
        let got = through(Arc::new(fixed), PgType::Uuid).unwrap();
        assert_eq!(
            got.as_string::<i32>().value(0),
            "abababab-abab-abab-abab-abababababab"
        );
        let bad = StringArray::from(vec!["not-a-uuid"]);
        assert!(matches!(
            through(Arc::new(bad), PgType::Uuid),
            Err(CopyError::Value { row: 1, .. })
        ));
        // u64 to numeric(20,0); integers into a constrained numeric are range-checked.
        let u = UInt64Array::from(vec![u64::MAX, 0]);
        let got = through(Arc::new(u), numeric(20, 0)).unwrap();
        assert_eq!(
            got.as_primitive::<Decimal128Type>().value(0),
            i128::from(u64::MAX)
        );
        let e = through(Arc::new(Int32Array::from(vec![99, 100])), numeric(4, 2)).unwrap_err();
        assert!(matches!(e, CopyError::Value { row: 2, .. }), "{e:?}");
        // A decimal with more fractional digits than the target holds is refused, not rounded.
        let d = Decimal128Array::from(vec![12_300, 12_345])
            .with_precision_and_scale(10, 4)
            .unwrap();
        let e = through(Arc::new(d), numeric(12, 2)).unwrap_err();
        assert!(matches!(e, CopyError::Value { row: 2, .. }), "{e:?}");
        // Decimals and integers to floats; a double too large for real.
        let d = Decimal128Array::from(vec![-125])
            .with_precision_and_scale(5, 2)
            .unwrap();
        let got = through(Arc::new(d), PgType::Float8).unwrap();
        assert_eq!(got.as_primitive::<Float64Type>().value(0), -1.25);
        let got = through(Arc::new(Int64Array::from(vec![3])), PgType::Float4).unwrap();
        assert_eq!(got.as_primitive::<Float32Type>().value(0), 3.0);
        let e = through(Arc::new(Float64Array::from(vec![1e300])), PgType::Float4).unwrap_err();
        assert!(e.to_string().contains("out of range for real"), "{e}");
        // Strings to bytea and jsonb.
        let s = StringArray::from(vec!["ü"]);
        let got = through(Arc::new(s), PgType::Bytea).unwrap();
        assert_eq!(got.as_binary::<i32>().value(0), "ü".as_bytes());
    }

    #[test]
    fn server_types_map_to_arrow() {
        let typmod = |p: i32, s: i32| ((p << 16) | (s & 0x7ff)) + 4;
        assert_eq!(PgType::from_pg(&Type::INT4, -1), Ok(PgType::Int4));
        assert_eq!(PgType::from_pg(&Type::BPCHAR, 9), Ok(PgType::Text));
        assert_eq!(
            PgType::from_pg(&Type::NUMERIC, typmod(12, 2)),
            Ok(numeric(12, 2))
        );
        assert_eq!(
            PgType::from_pg(&Type::NUMERIC, -1),
            Ok(PgType::Numeric {
                precision: 38,
                scale: 10,
                constrained: false
            })
        );
        assert_eq!(
            PgType::from_pg(&Type::NUMERIC, typmod(50, 2)),
            Err(
                "numeric(50,2): precision above 38 is not supported; cast it in a query (e.g. \
                 col::text)"
                    .into()
            )
        );
        assert!(PgType::from_pg(&Type::NUMERIC, typmod(5, -2)).is_err());
        assert!(PgType::from_pg(&Type::NUMERIC, typmod(2, 5)).is_err());
        assert_eq!(
            PgType::from_pg(&Type::INTERVAL, -1),
            Err("type interval is not supported; cast it in a query (e.g. col::text)".into())
        );
        assert_eq!(
            PgType::from_pg(&Type::INT4_ARRAY, -1),
            Ok(PgType::Array(Box::new(PgType::Int4)))
        );
        assert_eq!(
            PgType::from_pg(&Type::NUMERIC_ARRAY, typmod(12, 2)),
            Ok(PgType::Array(Box::new(numeric(12, 2))))
        );
        assert!(
            PgType::from_pg(&Type::INTERVAL_ARRAY, -1)
                .unwrap_err()
                .starts_with("type interval[] is not supported")
        );
        let mood = Type::new("mood".into(), 90_000, Kind::Enum(vec![]), "public".into());
        assert_eq!(PgType::from_pg(&mood, -1), Ok(PgType::Text));
        let citext = Type::new("citext".into(), 90_001, Kind::Simple, "public".into());
        assert_eq!(PgType::from_pg(&citext, -1), Ok(PgType::Text));
        let other = Type::new("hstore".into(), 90_002, Kind::Simple, "public".into());
        assert!(PgType::from_pg(&other, -1).unwrap_err().contains("hstore"));

        assert_eq!(numeric(12, 2).sql_name(), "numeric(12,2)");
        assert_eq!(
            PgType::from_pg(&Type::NUMERIC, -1).unwrap().sql_name(),
            "numeric"
        );
        assert_eq!(PgType::Array(Box::new(PgType::Text)).sql_name(), "text[]");
        assert_eq!(PgType::Float8.sql_name(), "double precision");
        assert_eq!(
            PgType::Array(Box::new(PgType::Int4)).pg_type(),
            Type::INT4_ARRAY
        );
        assert_eq!(
            PgType::Timestamptz.arrow(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }

    #[test]
    fn arrow_types_map_to_server_types() {
        let cases = [
            (DataType::Int8, PgType::Int2),
            (DataType::UInt16, PgType::Int4),
            (DataType::UInt32, PgType::Int8),
            (DataType::UInt64, numeric(20, 0)),
            (DataType::Float16, PgType::Float4),
            (DataType::Decimal128(12, 2), numeric(12, 2)),
            (DataType::Utf8View, PgType::Text),
            (DataType::FixedSizeBinary(16), PgType::Bytea),
            (DataType::Date64, PgType::Date),
            (DataType::Time32(TimeUnit::Second), PgType::Time),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                PgType::Timestamp,
            ),
            (
                DataType::Timestamp(TimeUnit::Second, Some("Europe/Paris".into())),
                PgType::Timestamptz,
            ),
            (
                DataType::new_large_list(DataType::Utf8, true),
                PgType::Array(Box::new(PgType::Text)),
            ),
            (
                DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
                PgType::Text,
            ),
        ];
        for (dt, want) in cases {
            assert_eq!(PgType::for_arrow(&dt), Ok(want.clone()), "{dt}");
            // Whatever custos creates, it can write.
            let schema = Schema::new(vec![Field::new("c", dt.clone(), true)]);
            assert!(
                Encoder::new(&schema, vec![("c".into(), want)]).is_ok(),
                "{dt}"
            );
        }
        for dt in [
            DataType::Decimal128(10, -2),
            DataType::Null,
            DataType::Duration(TimeUnit::Second),
            DataType::new_list(DataType::new_list(DataType::Int32, true), true),
        ] {
            let e = PgType::for_arrow(&dt).unwrap_err();
            assert!(e.ends_with("has no PostgreSQL column type"), "{e}");
        }
    }
}
