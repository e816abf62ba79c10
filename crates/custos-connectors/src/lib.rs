//! custos sources and sinks.
//!
//! Sources read local files (CSV, JSON lines, Parquet) through DataFusion's `object_store`
//! layer and become DataFusion tables ([`source::SourceTable`]) whose rows carry a provenance
//! column. Rows that cannot be read (ragged CSV lines, invalid UTF-8, values that do not
//! coerce to the column type, malformed JSON) go to the run's [`quarantine::Quarantine`]
//! instead of failing the run. Sinks write to a temporary object beside their target and are
//! committed by rename ([`sink`]). [`postgres`] opens PostgreSQL connections over verified TLS.

pub mod csv;
mod error;
pub mod files;
pub mod infer;
pub mod parquet_writer;
pub mod postgres;
pub mod quarantine;
pub mod sink;
pub mod source;
mod typed;

pub use typed::{parse_date, parse_timestamp};

pub use error::ConnectorError;
