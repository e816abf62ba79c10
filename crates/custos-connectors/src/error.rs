use std::path::PathBuf;

/// Errors from sources and sinks. Messages name files and columns, never cell values.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// A path or glob matched no file.
    #[error("{path}: no file matches")]
    NoFiles {
        /// The path as configured.
        path: String,
    },
    /// A path that cannot be read by this build.
    #[error("{path}: {reason}")]
    BadPath {
        /// The path as configured.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file whose layout does not fit the source (header, schema).
    #[error("{file}: {reason}")]
    Layout {
        /// The file.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Object store I/O.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The cause.
        source: object_store::Error,
    },
    /// Local I/O.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A PostgreSQL connection or statement failed.
    #[error("{context}: {message}")]
    Postgres {
        /// The server, database and user (never the password).
        context: String,
        /// What went wrong.
        message: String,
    },
    /// Arrow, Parquet or DataFusion error.
    #[error("{context}: {source}")]
    DataFusion {
        /// What was being done.
        context: String,
        /// The cause.
        source: datafusion::error::DataFusionError,
    },
}

impl From<ConnectorError> for datafusion::error::DataFusionError {
    fn from(e: ConnectorError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(e))
    }
}
