//! The custos pipeline configuration: a TOML file of named `sources`, `transforms` and `sinks`
//! wired into a DAG by their `inputs`.
//!
//! Loading has two phases, as in Vector: [`load`] parses the file and runs every *pure* check
//! (syntax, unknown keys, types, graph shape), collecting all problems with their file, line,
//! column and key path instead of stopping at the first. The engine adds the checks that need
//! data (schemas, SQL planning) and reports them the same way through [`Diagnostics`].

mod diag;
mod graph;
mod load;
mod model;
pub mod postgres;
mod protect;
pub mod secret;

pub use diag::{Diagnostic, Diagnostics, Severity, SourceMap};
pub use graph::Graph;
pub use load::{LoadError, Loaded, load, load_str};
pub use model::*;
pub use postgres::{PgConnectionConfig, PgWriteMode, PostgresSink, PostgresSource};
pub use protect::{ColumnAction, ColumnActions, DangerSection, DetectionSection, ProtectTransform};
