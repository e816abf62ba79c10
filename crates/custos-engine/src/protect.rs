//! The `protect` transform: runs one protection kernel per configured column over every
//! batch. Rows a kernel cannot handle (an invalid SSN for `fpe`, a ciphertext of another key
//! for `decrypt`) go to quarantine with the column and a value-free reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use custos_config::{ColumnAction, ColumnActions};
use custos_connectors::quarantine::Quarantine;
use custos_transforms::udf::UdfEnv;
use custos_transforms::{Kernel, PII_META, PROTECTED_META};
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};

use crate::exec::{BatchOp, ConcurrentOp, Prepared};
use crate::reject::{Rejected, Rejector};
use crate::validate::ValidateStats;

struct Step {
    input: usize,
    column: String,
    kernel: Arc<Kernel>,
    subject: Option<usize>,
}

/// The protect operation over batches.
pub struct ProtectOp {
    component: String,
    steps: Vec<Step>,
    /// Input column index of each output column.
    keep: Vec<usize>,
    schema: SchemaRef,
    stats: Arc<ValidateStats>,
    rejector: Rejector,
}

impl std::fmt::Debug for ProtectOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectOp")
            .field("component", &self.component)
            .field(
                "columns",
                &self.steps.iter().map(|s| &s.column).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn missing(schema: &Schema, c: &str) -> String {
    let names = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|n| !custos_core::is_reserved_column(n));
    let mut m = format!("no column named \"{c}\" in the input");
    if let Some(d) = custos_core::did_you_mean(c, names) {
        m.push_str(&format!("; did you mean \"{d}\"?"));
    }
    m
}

impl ProtectOp {
    /// Builds the kernels against the input schema; errors are `(key, message)` pairs.
    pub fn compile(
        component: &str,
        columns: &ColumnActions,
        schema: &Schema,
        env: &UdfEnv,
        quarantine: Arc<Quarantine>,
        files: Arc<Vec<Vec<PathBuf>>>,
        stats: Arc<ValidateStats>,
    ) -> std::result::Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut steps = Vec::new();
        let mut dropped = Vec::new();
        let mut out_fields: HashMap<usize, Field> = HashMap::new();
        for (col, action) in &columns.0 {
            let key = format!("columns.{col}");
            let Some((idx, field)) = schema.column_with_name(col) else {
                errors.push((key, missing(schema, col)));
                continue;
            };
            if custos_core::is_reserved_column(col) {
                errors.push((key, format!("column \"{col}\" is reserved")));
                continue;
            }
            if *action == ColumnAction::Drop {
                dropped.push(idx);
                continue;
            }
            let subject = match action {
                ColumnAction::DateShift { subject, .. } => match schema.index_of(subject) {
                    Ok(i) => Some(i),
                    Err(_) => {
                        errors.push((format!("{key}.subject"), missing(schema, subject)));
                        continue;
                    }
                },
                _ => None,
            };
            let kernel = match env.kernel(action, col) {
                Ok(k) => k,
                Err(e) => {
                    errors.push((key, e.to_string()));
                    continue;
                }
            };
            match kernel.output_type(field.data_type()) {
                Ok(t) => {
                    let mut meta = field.metadata().clone();
                    if kernel.reveals() {
                        meta.remove(PROTECTED_META);
                        meta.insert(PII_META.into(), "decrypted".into());
                    } else {
                        meta.remove(PII_META);
                        meta.insert(PROTECTED_META.into(), kernel.action().into());
                    }
                    out_fields.insert(idx, Field::new(col, t, true).with_metadata(meta));
                }
                Err(e) => {
                    errors.push((format!("{key}.action"), format!("column \"{col}\": {e}")));
                    continue;
                }
            }
            steps.push(Step {
                input: idx,
                column: col.clone(),
                kernel,
                subject,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !dropped.contains(i))
            .collect();
        let fields: Vec<Field> = keep
            .iter()
            .map(|i| {
                out_fields
                    .remove(i)
                    .unwrap_or_else(|| schema.field(*i).clone())
            })
            .collect();
        Ok(Self {
            component: component.to_string(),
            steps,
            keep,
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            stats,
            rejector: Rejector::new(component, schema, quarantine, files),
        })
    }
}

impl BatchOp for ProtectOp {
    fn name(&self) -> &str {
        "protect"
    }

    fn output_schema(&self, _input: &SchemaRef) -> Result<SchemaRef> {
        Ok(self.schema.clone())
    }

    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.commit(self.prepare(batch)?)
    }

    fn concurrent(self: Arc<Self>) -> Option<Arc<dyn ConcurrentOp>> {
        Some(self)
    }
}

impl ConcurrentOp for ProtectOp {
    fn prepare(&self, batch: RecordBatch) -> Result<Prepared> {
        let n = batch.num_rows();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        let mut failed: Vec<Option<(String, String)>> = vec![None; n];
        for s in &self.steps {
            let subject = s.subject.map(|i| batch.column(i).clone());
            let out = s
                .kernel
                .apply(batch.column(s.input), subject.as_ref())
                .map_err(|e| {
                    DataFusionError::Execution(format!(
                        "transform \"{}\": column \"{}\": {e}",
                        self.component, s.column
                    ))
                })?;
            for (row, reason) in out.failures {
                if failed[row].is_none() {
                    failed[row] = Some((
                        s.column.clone(),
                        format!(
                            "column \"{}\": {} failed: {reason}",
                            s.column,
                            s.kernel.action()
                        ),
                    ));
                }
            }
            columns[s.input] = out.array;
        }
        let kept: Vec<ArrayRef> = self.keep.iter().map(|i| columns[*i].clone()).collect();
        Ok(Prepared {
            output: RecordBatch::try_new(self.schema.clone(), kept)?,
            rejected: Rejected::from_failures(failed, "protect"),
            input: batch,
        })
    }

    fn commit(&self, p: Prepared) -> Result<RecordBatch> {
        let n = p.input.num_rows() as u64;
        let first_row = self.stats.rows_in.fetch_add(n, Ordering::Relaxed);
        self.rejector.reject_and_drop(
            &p.input,
            p.output,
            first_row,
            &self.stats.quarantined,
            p.rejected,
        )
    }
}
