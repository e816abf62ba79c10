//! Row provenance.
//!
//! Every source adds a hidden `_custos_origin` column (UInt64) that packs the source index,
//! the file index within that source and the 1-based line (CSV, JSON lines) or row (Parquet)
//! number. It travels through row-preserving SQL (projections, filters, sorts) so that a row
//! rejected by a later `validate` step is reported with its source file and line. Sinks never
//! write it.

/// Name of the provenance column.
pub const ORIGIN_COLUMN: &str = "_custos_origin";

const LINE_BITS: u32 = 40;
const FILE_BITS: u32 = 16;
const SOURCE_BITS: u32 = 8;

/// Where a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the source component in the pipeline (declaration order).
    pub source: u32,
    /// Index of the file within that source's file list.
    pub file: u32,
    /// 1-based line (text formats) or row (Parquet) number within the file.
    pub line: u64,
}

/// A pipeline too large to track provenance for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// More sources than the provenance encoding holds.
    #[error("more than {} sources in one pipeline", 1u64 << SOURCE_BITS)]
    TooManySources,
    /// More files in one source than the provenance encoding holds.
    #[error("more than {} files in one source", 1u64 << FILE_BITS)]
    TooManyFiles,
    /// A file with more lines than the provenance encoding holds.
    #[error("more than {} lines in one file", 1u64 << LINE_BITS)]
    TooManyLines,
}

impl Origin {
    /// Packs the origin into the u64 stored in the provenance column.
    pub fn encode(self) -> Result<u64, OriginError> {
        if u64::from(self.source) >= 1 << SOURCE_BITS {
            return Err(OriginError::TooManySources);
        }
        if u64::from(self.file) >= 1 << FILE_BITS {
            return Err(OriginError::TooManyFiles);
        }
        if self.line >= 1 << LINE_BITS {
            return Err(OriginError::TooManyLines);
        }
        Ok((u64::from(self.source) << (FILE_BITS + LINE_BITS))
            | (u64::from(self.file) << LINE_BITS)
            | self.line)
    }

    /// The base value for a file; add the line number to it.
    pub fn file_base(source: u32, file: u32) -> Result<u64, OriginError> {
        Origin {
            source,
            file,
            line: 0,
        }
        .encode()
    }

    /// Unpacks a value of the provenance column.
    pub fn decode(v: u64) -> Self {
        Origin {
            source: (v >> (FILE_BITS + LINE_BITS)) as u32,
            file: ((v >> LINE_BITS) & ((1 << FILE_BITS) - 1)) as u32,
            line: v & ((1 << LINE_BITS) - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let o = Origin {
            source: 3,
            file: 700,
            line: 123_456_789,
        };
        assert_eq!(Origin::decode(o.encode().unwrap()), o);
        assert_eq!(
            Origin::file_base(1, 2).unwrap() + 5,
            Origin {
                source: 1,
                file: 2,
                line: 5
            }
            .encode()
            .unwrap()
        );
        assert_eq!(
            Origin {
                source: 256,
                file: 0,
                line: 1
            }
            .encode(),
            Err(OriginError::TooManySources)
        );
        assert_eq!(
            Origin {
                source: 0,
                file: 1 << 16,
                line: 1
            }
            .encode(),
            Err(OriginError::TooManyFiles)
        );
    }
}
