//! The quarantine: rows that could not be read or failed a rule, kept with the reason.
//!
//! Records are JSON lines in a file created with mode 0600, because the `data` field holds
//! the rejected row itself (nothing is lost). The `reason` never holds a cell value, so it
//! can be shown in logs and summaries.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::ConnectorError;

/// One quarantined row.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineRecord {
    /// Component that rejected the row.
    pub component: String,
    /// Source file the row came from, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
    /// 1-based line (CSV, JSON lines) or row (Parquet) in that file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based position of the row in the rejecting component's input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// Rule or check that failed (`ragged_row`, `invalid_utf8`, `type`, `not_null`, ...).
    pub rule: String,
    /// Column concerned, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Why, without any cell value.
    pub reason: String,
    /// The rejected row: raw text for unreadable lines, an object for typed rows.
    pub data: serde_json::Value,
}

/// A thread-safe quarantine file, created on first use.
#[derive(Debug)]
pub struct Quarantine {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    writer: Option<BufWriter<File>>,
    counts: BTreeMap<String, u64>,
    error: Option<String>,
}

impl Quarantine {
    /// A quarantine that writes to `path` (created with mode 0600 on first record).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record.
    pub fn add(&self, rec: &QuarantineRecord) -> Result<(), ConnectorError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| ConnectorError::Io {
            context: "encoding quarantine record".into(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.writer.is_none() {
            let f = create_private(&self.path)?;
            g.writer = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        if let Some(w) = g.writer.as_mut()
            && let Err(source) = w.write_all(&line)
        {
            g.error = Some(source.to_string());
            return Err(ConnectorError::Io {
                context: format!("writing quarantine file {}", self.path.display()),
                source,
            });
        }
        *g.counts.entry(rec.component.clone()).or_default() += 1;
        Ok(())
    }

    /// Rows quarantined so far, per component.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .counts
            .clone()
    }

    /// Rows quarantined so far.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }

    /// Flushes and syncs the file; returns its path when anything was written.
    pub fn finish(&self) -> Result<Option<PathBuf>, ConnectorError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match g.writer.take() {
            None => Ok(None),
            Some(w) => {
                let f = w.into_inner().map_err(|e| ConnectorError::Io {
                    context: format!("flushing quarantine file {}", self.path.display()),
                    source: e.into_error(),
                })?;
                f.sync_all().map_err(|source| ConnectorError::Io {
                    context: format!("syncing quarantine file {}", self.path.display()),
                    source,
                })?;
                Ok(Some(self.path.clone()))
            }
        }
    }
}

/// Creates (or truncates) a file readable and writable by its owner only.
pub fn create_private(path: &Path) -> Result<File, ConnectorError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ConnectorError::Io {
            context: format!("creating directory {}", dir.display()),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| ConnectorError::Io {
            context: format!("creating {}", path.display()),
            source,
        })
}
