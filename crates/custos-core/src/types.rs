//! Column types that a pipeline can declare in a `schema` table, and their Arrow mapping.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// A column type as written in pipeline configs (`int64`, `utf8`, `date32`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text (`utf8`, `string`, `text`).
    Utf8,
    /// 32-bit signed integer (`int32`).
    Int32,
    /// 64-bit signed integer (`int64`, `bigint`).
    Int64,
    /// 64-bit float (`float64`, `double`).
    Float64,
    /// Boolean (`boolean`, `bool`).
    Boolean,
    /// Calendar date, `YYYY-MM-DD` (`date32`, `date`).
    Date32,
    /// Timestamp with microsecond precision, no time zone (`timestamp`).
    Timestamp,
}

/// A type name that custos does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown column type \"{name}\"; expected one of {}", ColumnType::NAMES.join(", "))]
pub struct ColumnTypeError {
    /// The name as written.
    pub name: String,
}

impl ColumnType {
    /// Canonical names accepted in configs.
    pub const NAMES: &'static [&'static str] = &[
        "utf8",
        "int32",
        "int64",
        "float64",
        "boolean",
        "date32",
        "timestamp",
    ];

    /// Parses a config type name (case-insensitive, with common aliases).
    pub fn parse(name: &str) -> Result<Self, ColumnTypeError> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "utf8" | "string" | "str" | "text" | "varchar" => Self::Utf8,
            "int32" | "int" | "integer" => Self::Int32,
            "int64" | "bigint" | "long" => Self::Int64,
            "float64" | "double" | "float" => Self::Float64,
            "boolean" | "bool" => Self::Boolean,
            "date32" | "date" => Self::Date32,
            "timestamp" | "datetime" => Self::Timestamp,
            _ => {
                return Err(ColumnTypeError {
                    name: name.to_string(),
                });
            }
        })
    }

    /// The canonical config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "utf8",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Boolean => "boolean",
            Self::Date32 => "date32",
            Self::Timestamp => "timestamp",
        }
    }

    /// The Arrow type columns of this type have.
    pub fn arrow(self) -> DataType {
        match self {
            Self::Utf8 => DataType::Utf8,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Date32 => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The config type for an Arrow type, if custos can declare it.
    pub fn from_arrow(dt: &DataType) -> Option<Self> {
        Some(match dt {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Utf8,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::Float64 => Self::Float64,
            DataType::Boolean => Self::Boolean,
            DataType::Date32 => Self::Date32,
            DataType::Timestamp(_, _) => Self::Timestamp,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_rejects_unknown() {
        assert_eq!(ColumnType::parse("Int64").unwrap(), ColumnType::Int64);
        assert_eq!(ColumnType::parse("string").unwrap(), ColumnType::Utf8);
        let err = ColumnType::parse("int65").unwrap_err();
        assert!(err.to_string().starts_with("unknown column type \"int65\""));
        for n in ColumnType::NAMES {
            assert_eq!(ColumnType::parse(n).unwrap().name(), *n);
        }
    }
}
