//! `custos scan`: samples every column of a pipeline's sources and classifies it with the PII
//! detectors, recommending a protection per column.
//!
//! Sampling is a seeded reservoir over all rows, so the same file and seed give the same
//! report, and a large file is read once with bounded memory (`sample` rows kept).

use std::sync::Arc;

use custos_config::PipelineConfig;
use custos_connectors::files::local_store;
use custos_connectors::quarantine::Quarantine;
use custos_connectors::source::{SourceReader, SourceStats, discover};
use custos_detect::{ColumnProfile, Detector, classify_column};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// The scan of one source.
#[derive(Debug, Serialize, Deserialize)]
pub struct SourceScan {
    /// Source name.
    pub source: String,
    /// Rows read.
    pub rows: u64,
    /// Rows sampled.
    pub sampled: usize,
    /// One entry per column, in schema order.
    pub columns: Vec<ColumnScan>,
}

/// The scan of one column.
#[derive(Debug, Serialize, Deserialize)]
pub struct ColumnScan {
    /// Column name.
    pub name: String,
    /// Arrow type as read.
    pub data_type: String,
    /// What the detectors found.
    pub profile: ColumnProfile,
}

/// SplitMix64: a small seeded generator for sampling (not for anything secret).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Scans every source of `config`, keeping `sample` rows per source chosen with `seed`.
pub async fn scan(
    config: &PipelineConfig,
    sample: usize,
    seed: u64,
) -> Result<Vec<SourceScan>, String> {
    let detector = Detector::new(config.detection.detector_config()).map_err(|e| e.to_string())?;
    let store = local_store();
    let quarantine = Arc::new(Quarantine::new(
        std::env::temp_dir().join("custos-check-unused.jsonl"),
    ));
    let mut out = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        let failed = |e: &dyn std::fmt::Display| format!("source \"{}\": {e}", s.name);
        let table = match &s.kind {
            custos_config::SourceKind::Postgres(pg) => {
                let spec = custos_connectors::postgres::source::discover(
                    i as u32,
                    &s.name,
                    pg,
                    &config.base_dir,
                    config.danger.allow_insecure_db,
                    8192,
                    true,
                )
                .await
                .map_err(|e| failed(&e))?;
                let mut spec = spec;
                if let Some(t) = &pg.table {
                    // A large table is sampled by the server rather than read whole.
                    spec.sample_table(t, sample, seed)
                        .await
                        .map_err(|e| failed(&e))?;
                }
                custos_connectors::postgres::source::PgSourceReader::new(
                    Arc::new(spec),
                    quarantine.clone(),
                    Arc::new(SourceStats::default()),
                )
                .into_table()
                .map_err(|e| failed(&e))?
            }
            kind => {
                let resolved = config.resolve(kind.path().unwrap_or_default());
                let spec = discover(i as u32, &s.name, kind, &resolved, &store, 8192)
                    .await
                    .map_err(|e| failed(&e))?;
                SourceReader::new(
                    Arc::new(spec),
                    store.clone(),
                    quarantine.clone(),
                    Arc::new(SourceStats::default()),
                )
                .into_table()
                .map_err(|e| failed(&e))?
            }
        };
        let ctx = SessionContext::new();
        ctx.register_table(s.name.as_str(), table)
            .map_err(|e| e.to_string())?;
        let df = ctx
            .table(s.name.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let schema = df.schema().as_arrow().clone();
        let cols: Vec<usize> = (0..schema.fields().len())
            .filter(|c| !custos_core::is_reserved_column(schema.field(*c).name()))
            .collect();
        let mut reservoir: Vec<Vec<Option<String>>> = Vec::with_capacity(sample.min(1 << 16));
        let mut rng = SplitMix(seed);
        let mut seen: u64 = 0;
        let mut stream = df
            .execute_stream()
            .await
            .map_err(|e| crate::redact_values(&e.strip_backtrace()))?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| crate::redact_values(&e.strip_backtrace()))?;
            let text: Vec<StringArray> = cols
                .iter()
                .map(|c| {
                    cast(batch.column(*c), &DataType::Utf8)
                        .ok()
                        .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
                        .unwrap_or_else(|| StringArray::new_null(batch.num_rows()))
                })
                .collect();
            for row in 0..batch.num_rows() {
                let slot = if (seen as usize) < sample {
                    Some(reservoir.len())
                } else {
                    let j = rng.next() % (seen + 1);
                    (j < sample as u64).then_some(j as usize)
                };
                seen += 1;
                let Some(slot) = slot else { continue };
                let values: Vec<Option<String>> = text
                    .iter()
                    .map(|a| (!a.is_null(row)).then(|| a.value(row).to_string()))
                    .collect();
                if slot == reservoir.len() {
                    reservoir.push(values);
                } else {
                    reservoir[slot] = values;
                }
            }
        }
        let columns = cols
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let f = schema.field(*c);
                ColumnScan {
                    name: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    profile: classify_column(
                        &detector,
                        f.name(),
                        reservoir.iter().map(|r| r[k].as_deref()),
                    ),
                }
            })
            .collect();
        out.push(SourceScan {
            source: s.name.clone(),
            rows: seen,
            sampled: reservoir.len(),
            columns,
        });
    }
    Ok(out)
}
