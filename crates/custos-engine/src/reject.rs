//! Sending rejected rows to quarantine, shared by the transforms that reject rows.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use custos_connectors::quarantine::{Quarantine, QuarantineRecord};
use custos_core::{ORIGIN_COLUMN, Origin};
use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::error::{DataFusionError, Result};

/// One rejected row: its index in the batch, the rule, the column and a value-free reason.
pub(crate) struct Rejected {
    pub row: usize,
    pub rule: String,
    pub column: Option<String>,
    pub reason: String,
}

impl Rejected {
    /// The rejected rows of a batch from its per-row first failure `(column, reason)`.
    pub(crate) fn from_failures(failed: Vec<Option<(String, String)>>, rule: &str) -> Vec<Self> {
        failed
            .into_iter()
            .enumerate()
            .filter_map(|(row, f)| {
                let (column, reason) = f?;
                Some(Rejected {
                    row,
                    rule: rule.to_string(),
                    column: Some(column),
                    reason,
                })
            })
            .collect()
    }
}

/// Writes rejected rows of one component to the quarantine, naming the source file and line
/// when the rows still carry their provenance.
#[derive(Debug)]
pub(crate) struct Rejector {
    component: String,
    quarantine: Arc<Quarantine>,
    files: Arc<Vec<Vec<PathBuf>>>,
    origin: Option<usize>,
    data_cols: Vec<usize>,
}

impl Rejector {
    pub(crate) fn new(
        component: &str,
        schema: &Schema,
        quarantine: Arc<Quarantine>,
        files: Arc<Vec<Vec<PathBuf>>>,
    ) -> Self {
        Self {
            component: component.to_string(),
            quarantine,
            files,
            origin: schema.index_of(ORIGIN_COLUMN).ok(),
            data_cols: (0..schema.fields().len())
                .filter(|i| !custos_core::is_reserved_column(schema.field(*i).name()))
                .collect(),
        }
    }

    /// Quarantines the `rejected` rows of `input`, adds them to `counter`, and returns
    /// `output` (the transformed batch, row for row with `input`) without them.
    pub(crate) fn reject_and_drop(
        &self,
        input: &RecordBatch,
        output: RecordBatch,
        first_row: u64,
        counter: &AtomicU64,
        rejected: Vec<Rejected>,
    ) -> Result<RecordBatch> {
        if rejected.is_empty() {
            return Ok(output);
        }
        counter.fetch_add(rejected.len() as u64, Ordering::Relaxed);
        let mut keep = vec![true; output.num_rows()];
        for r in &rejected {
            keep[r.row] = false;
        }
        self.reject(input, first_row, rejected)?;
        Ok(filter_record_batch(&output, &BooleanArray::from(keep))?)
    }

    /// Quarantines `rejected` rows of `batch`, whose first row is input row `first_row + 1`.
    fn reject(&self, batch: &RecordBatch, first_row: u64, rejected: Vec<Rejected>) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        let idx = UInt32Array::from(rejected.iter().map(|r| r.row as u32).collect::<Vec<_>>());
        let rows = take_record_batch(&batch.project(&self.data_cols)?, &idx)?;
        let mut w = LineDelimitedWriter::new(Vec::new());
        w.write(&rows)?;
        w.finish()?;
        let json = w.into_inner();
        let origins = self.origin.and_then(|o| {
            batch
                .column(o)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .cloned()
        });
        for (line, r) in json
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .zip(rejected)
        {
            let (source_file, src_line) = match &origins {
                Some(o) if o.is_valid(r.row) => {
                    let org = Origin::decode(o.value(r.row));
                    let file = self
                        .files
                        .get(org.source as usize)
                        .and_then(|fs| fs.get(org.file as usize));
                    (
                        file.map(|p| p.display().to_string()),
                        file.map(|_| org.line),
                    )
                }
                _ => (None, None),
            };
            self.quarantine
                .add(&QuarantineRecord {
                    component: self.component.clone(),
                    source_file,
                    line: src_line,
                    row: Some(first_row + r.row as u64 + 1),
                    rule: r.rule,
                    column: r.column,
                    reason: r.reason,
                    data: serde_json::from_slice(line).unwrap_or(serde_json::Value::Null),
                })
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
        }
        Ok(())
    }
}
