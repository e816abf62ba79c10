//! Sources as DataFusion tables: discovery (files and schema) and the streaming readers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use custos_config::{SourceKind, single_byte};
use custos_core::{ColumnType, ORIGIN_COLUMN, Origin};
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use object_store::ObjectStore;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Sender;

use crate::ConnectorError;
use crate::csv::{Dialect, Field as CsvField, Piece, Splitter, field_bytes, split_fields};
use crate::files::{InputFile, read_chunks, resolve};
use crate::infer::Inferrer;
use crate::quarantine::{Quarantine, QuarantineRecord};
use crate::typed::{BatchBuilder, Cell, coerce, parse_bool};
pub use crate::typed::{parse_date, parse_timestamp};

/// The format-specific part of a source.
#[derive(Debug, Clone)]
pub enum Format {
    /// CSV with its dialect.
    Csv {
        /// Delimiter, quote, record limit.
        dialect: Dialect,
        /// Files start with a header line.
        header: bool,
        /// Cell texts read as NULL.
        null_values: Vec<String>,
    },
    /// JSON lines.
    Jsonl,
    /// Parquet.
    Parquet,
}

/// Everything needed to read a source: its files and schema, found by [`discover`].
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Index of the source in the pipeline (part of each row's provenance).
    pub index: u32,
    /// Component name.
    pub name: String,
    /// Format and options.
    pub format: Format,
    /// Files, in reading order.
    pub files: Vec<InputFile>,
    /// Output schema: the data columns followed by the provenance column.
    pub schema: SchemaRef,
    /// Types of the data columns (text formats).
    pub types: Vec<ColumnType>,
    /// Rows per batch.
    pub batch_size: usize,
}

impl SourceSpec {
    /// The data columns (without provenance).
    pub fn data_schema(&self) -> Schema {
        Schema::new(
            self.schema
                .fields()
                .iter()
                .filter(|f| f.name() != ORIGIN_COLUMN)
                .cloned()
                .collect::<Vec<_>>(),
        )
    }
}

/// Digest of one input or output file, recorded with the run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDigest {
    /// Absolute path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// Live counters of one source, read by progress bars and run records.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Data records seen (good and bad; headers and empty lines excluded).
    pub records: AtomicU64,
    /// Rows passed on.
    pub emitted: AtomicU64,
    /// Rows quarantined.
    pub quarantined: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Digests of files read completely.
    pub files: Mutex<Vec<FileDigest>>,
}

fn origin_field() -> Field {
    Field::new(ORIGIN_COLUMN, DataType::UInt64, false)
}

fn schema_with_origin(cols: &[(String, ColumnType)]) -> SchemaRef {
    let mut fields: Vec<Field> = cols
        .iter()
        .map(|(n, t)| Field::new(n, t.arrow(), true))
        .collect();
    fields.push(origin_field());
    Arc::new(Schema::new(fields))
}

/// Finds a source's files and schema (declared, read from Parquet metadata, or inferred from
/// a sample of the first file).
pub async fn discover(
    index: u32,
    name: &str,
    kind: &SourceKind,
    resolved: &Path,
    store: &Arc<dyn ObjectStore>,
    batch_size: usize,
) -> Result<SourceSpec, ConnectorError> {
    let Some(path) = kind.path() else {
        return Err(ConnectorError::BadPath {
            path: name.to_string(),
            reason: format!("a {} source reads no files", kind.type_name()),
        });
    };
    let files = resolve(store, path, resolved).await?;
    let first = &files[0];
    let (format, cols): (Format, Vec<(String, ColumnType)>) = match kind {
        SourceKind::Csv(c) => {
            let dialect = Dialect {
                delimiter: single_byte(&c.delimiter).unwrap_or(b','),
                quote: single_byte(&c.quote).unwrap_or(b'"'),
                max_record_bytes: c.max_record_bytes,
            };
            let sample = sample_csv(store, first, dialect, c.infer_rows + 1).await?;
            let header = if c.header {
                Some(
                    sample
                        .first()
                        .cloned()
                        .ok_or_else(|| ConnectorError::Layout {
                            file: first.path.clone(),
                            reason: "file is empty; expected a header line".into(),
                        })?,
                )
            } else {
                None
            };
            let cols = match (&c.schema, &header) {
                (Some(s), Some(h)) => {
                    check_header(&first.path, h, s.0.iter().map(|(n, _)| n.as_str()))?;
                    s.0.clone()
                }
                (Some(s), None) => s.0.clone(),
                (None, Some(h)) => {
                    check_header(&first.path, h, std::iter::empty())?;
                    let mut inf: Vec<Inferrer> = h.iter().map(|n| Inferrer::new(n)).collect();
                    for row in sample.iter().skip(1) {
                        if row.len() != h.len() {
                            continue;
                        }
                        for (i, v) in row.iter().enumerate() {
                            if !c.null_values.iter().any(|n| n == v) {
                                inf[i].observe(v);
                            }
                        }
                    }
                    h.iter()
                        .cloned()
                        .zip(inf.iter().map(Inferrer::finish))
                        .collect()
                }
                (None, None) => unreachable_schema(&first.path)?,
            };
            (
                Format::Csv {
                    dialect,
                    header: c.header,
                    null_values: c.null_values.clone(),
                },
                cols,
            )
        }
        SourceKind::Jsonl(j) => {
            let cols = match &j.schema {
                Some(s) => s.0.clone(),
                None => infer_jsonl(store, first, j.infer_rows).await?,
            };
            (Format::Jsonl, cols)
        }
        // Rejected above (no path); databases are read by `postgres::source`.
        SourceKind::Postgres(_) => {
            return Err(ConnectorError::BadPath {
                path: name.to_string(),
                reason: "a postgres source reads no files".into(),
            });
        }
        SourceKind::Parquet(_) => {
            let schema = parquet_schema(store, first).await?;
            if let Some(f) = schema
                .fields()
                .iter()
                .find(|f| custos_core::is_reserved_column(f.name()))
            {
                return Err(ConnectorError::Layout {
                    file: first.path.clone(),
                    reason: format!(
                        "column \"{}\" uses the reserved prefix \"{}\"",
                        f.name(),
                        custos_core::RESERVED_PREFIX
                    ),
                });
            }
            let mut fields: Vec<Field> =
                schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(origin_field());
            return Ok(SourceSpec {
                index,
                name: name.to_string(),
                format: Format::Parquet,
                files,
                schema: Arc::new(Schema::new(fields)),
                types: Vec::new(),
                batch_size,
            });
        }
    };
    Origin::file_base(
        index,
        u32::try_from(files.len().saturating_sub(1)).unwrap_or(u32::MAX),
    )
    .map_err(|e| ConnectorError::BadPath {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    Ok(SourceSpec {
        index,
        name: name.to_string(),
        format,
        files,
        schema: schema_with_origin(&cols),
        types: cols.iter().map(|(_, t)| *t).collect(),
        batch_size,
    })
}

fn unreachable_schema(file: &Path) -> Result<Vec<(String, ColumnType)>, ConnectorError> {
    Err(ConnectorError::Layout {
        file: file.to_path_buf(),
        reason: "a CSV source without a header needs a `schema`".into(),
    })
}

/// Checks a header: names present, unique, not reserved, and covering `declared` exactly
/// when a schema is declared.
fn check_header<'a>(
    file: &Path,
    header: &[String],
    declared: impl Iterator<Item = &'a str>,
) -> Result<(), ConnectorError> {
    let err = |reason: String| ConnectorError::Layout {
        file: file.to_path_buf(),
        reason,
    };
    for (i, h) in header.iter().enumerate() {
        if h.trim().is_empty() {
            return Err(err(format!(
                "header field {} is empty; every column needs a name",
                i + 1
            )));
        }
        if header[..i].contains(h) {
            return Err(err(format!("header names column \"{h}\" twice")));
        }
        if custos_core::is_reserved_column(h) {
            return Err(err(format!(
                "column \"{h}\" uses the reserved prefix \"{}\"",
                custos_core::RESERVED_PREFIX
            )));
        }
    }
    let declared: Vec<&str> = declared.collect();
    if declared.is_empty() {
        return Ok(());
    }
    let missing: Vec<&str> = declared
        .iter()
        .copied()
        .filter(|d| !header.iter().any(|h| h == d))
        .collect();
    let extra: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .filter(|h| !declared.contains(h))
        .collect();
    if !missing.is_empty() {
        let mut msg = format!(
            "declared schema column(s) {} not in the header",
            quote_list(&missing)
        );
        if let Some(d) = custos_core::did_you_mean(missing[0], header.iter().map(String::as_str)) {
            msg.push_str(&format!("; did you mean \"{d}\"?"));
        }
        return Err(err(msg));
    }
    if !extra.is_empty() {
        return Err(err(format!(
            "header column(s) {} are not in the declared schema; add them to `schema` (drop them later with a sql transform)",
            quote_list(&extra)
        )));
    }
    Ok(())
}

fn quote_list(v: &[&str]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn store_err(ctx: String) -> impl FnOnce(object_store::Error) -> ConnectorError {
    move |source| ConnectorError::Store {
        context: ctx,
        source,
    }
}

/// Reads up to `n` well-formed records of a CSV file as strings.
async fn sample_csv(
    store: &Arc<dyn ObjectStore>,
    file: &InputFile,
    d: Dialect,
    n: usize,
) -> Result<Vec<Vec<String>>, ConnectorError> {
    let mut stream = read_chunks(store, &file.location)
        .await
        .map_err(store_err(format!("reading {}", file.path.display())))?;
    let mut sp = Splitter::new(d);
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut scratch = Vec::new();
    while out.len() < n {
        match sp.next_piece() {
            Piece::NeedMore => match stream.next().await {
                Some(chunk) => {
                    sp.feed(&chunk.map_err(store_err(format!("reading {}", file.path.display())))?)
                }
                None => sp.finish(),
            },
            Piece::Done => break,
            Piece::Record { start, end, .. } => {
                let rec = &sp.buf()[start..end];
                if split_fields(rec, &d, &mut fields).is_err() {
                    continue;
                }
                let mut row = Vec::with_capacity(fields.len());
                let mut ok = true;
                for f in &fields {
                    match std::str::from_utf8(field_bytes(rec, *f, d.quote, &mut scratch)) {
                        Ok(s) => row.push(s.to_string()),
                        Err(_) => ok = false,
                    }
                }
                if ok {
                    out.push(row);
                } else if out.is_empty() {
                    return Err(ConnectorError::Layout {
                        file: file.path.clone(),
                        reason: "header is not valid UTF-8".into(),
                    });
                }
            }
            Piece::Unterminated { .. } | Piece::TooLong { .. } => {}
        }
    }
    Ok(out)
}

async fn infer_jsonl(
    store: &Arc<dyn ObjectStore>,
    file: &InputFile,
    n: usize,
) -> Result<Vec<(String, ColumnType)>, ConnectorError> {
    let mut stream = read_chunks(store, &file.location)
        .await
        .map_err(store_err(format!("reading {}", file.path.display())))?;
    let mut sp = Splitter::new(jsonl_dialect());
    let mut cols: Vec<(String, JsonKind)> = Vec::new();
    let mut seen = 0;
    while seen < n {
        match sp.next_piece() {
            Piece::NeedMore => match stream.next().await {
                Some(chunk) => {
                    sp.feed(&chunk.map_err(store_err(format!("reading {}", file.path.display())))?)
                }
                None => sp.finish(),
            },
            Piece::Done => break,
            Piece::Record { start, end, .. } => {
                let Ok(serde_json::Value::Object(m)) =
                    serde_json::from_slice::<serde_json::Value>(&sp.buf()[start..end])
                else {
                    continue;
                };
                seen += 1;
                for (k, v) in m {
                    let kind = JsonKind::of(&v);
                    match cols.iter_mut().find(|(n, _)| *n == k) {
                        Some((_, cur)) => *cur = cur.merge(kind),
                        None => cols.push((k, kind)),
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((k, _)) = cols
        .iter()
        .find(|(k, _)| custos_core::is_reserved_column(k))
    {
        return Err(ConnectorError::Layout {
            file: file.path.clone(),
            reason: format!(
                "key \"{k}\" uses the reserved prefix \"{}\"",
                custos_core::RESERVED_PREFIX
            ),
        });
    }
    if cols.is_empty() {
        return Err(ConnectorError::Layout {
            file: file.path.clone(),
            reason: "no JSON object found to infer a schema from; declare a `schema`".into(),
        });
    }
    Ok(cols
        .into_iter()
        .map(|(k, kind)| {
            let t = kind.column_type(&k);
            (k, t)
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonKind {
    Null,
    Int,
    Float,
    Bool,
    Text,
}

impl JsonKind {
    fn of(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(_) => Self::Bool,
            serde_json::Value::Number(n) if n.is_i64() => Self::Int,
            serde_json::Value::Number(_) => Self::Float,
            _ => Self::Text,
        }
    }
    fn merge(self, o: Self) -> Self {
        match (self, o) {
            (a, b) if a == b => a,
            (Self::Null, b) => b,
            (a, Self::Null) => a,
            (Self::Int, Self::Float) | (Self::Float, Self::Int) => Self::Float,
            _ => Self::Text,
        }
    }
    fn column_type(self, name: &str) -> ColumnType {
        match self {
            Self::Int if !crate::infer::identifier_name(name) => ColumnType::Int64,
            Self::Float if !crate::infer::identifier_name(name) => ColumnType::Float64,
            Self::Bool => ColumnType::Boolean,
            _ => ColumnType::Utf8,
        }
    }
}

fn jsonl_dialect() -> Dialect {
    // JSON text never holds a raw NUL byte, so NUL as "quote" keeps records one line each.
    Dialect {
        delimiter: b'\t',
        quote: 0,
        max_record_bytes: 64 << 20,
    }
}

async fn parquet_schema(
    store: &Arc<dyn ObjectStore>,
    file: &InputFile,
) -> Result<SchemaRef, ConnectorError> {
    let reader =
        parquet_reader(store, file, file.size).map_err(|source| ConnectorError::DataFusion {
            context: format!("opening {}", file.path.display()),
            source,
        })?;
    let b = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| ConnectorError::DataFusion {
            context: format!("reading Parquet metadata of {}", file.path.display()),
            source: DataFusionError::ParquetError(Box::new(e)),
        })?;
    Ok(b.schema().clone())
}

/// DataFusion's own Parquet reader over the object store.
fn parquet_reader(
    store: &Arc<dyn ObjectStore>,
    file: &InputFile,
    size: u64,
) -> DfResult<Box<dyn AsyncFileReader>> {
    let reader = DefaultParquetFileReaderFactory::new(store.clone()).create_reader(
        0,
        PartitionedFile::new(file.location.as_ref(), size),
        None,
        &ExecutionPlanMetricsSet::new(),
    )?;
    // `AsyncFileReader` already requires `Send`; the builder takes the plain boxed trait object.
    Ok(reader)
}

/// A source ready to be read: spec plus the run's quarantine and counters.
#[derive(Debug, Clone)]
pub struct SourceReader {
    spec: Arc<SourceSpec>,
    store: Arc<dyn ObjectStore>,
    quarantine: Arc<Quarantine>,
    stats: Arc<SourceStats>,
}

impl SourceReader {
    /// Wraps a discovered source for one run.
    pub fn new(
        spec: Arc<SourceSpec>,
        store: Arc<dyn ObjectStore>,
        quarantine: Arc<Quarantine>,
        stats: Arc<SourceStats>,
    ) -> Self {
        Self {
            spec,
            store,
            quarantine,
            stats,
        }
    }

    /// The source as a DataFusion table (one partition reading the files in order).
    pub fn into_table(self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = self.spec.schema.clone();
        Ok(Arc::new(StreamingTable::try_new(
            schema,
            vec![Arc::new(self)],
        )?))
    }

    async fn run(&self, tx: Sender<DfResult<RecordBatch>>) -> DfResult<()> {
        for (fi, file) in self.spec.files.iter().enumerate() {
            let base = Origin::file_base(self.spec.index, fi as u32)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let digest = match &self.spec.format {
                Format::Csv { .. } | Format::Jsonl => self.read_text(file, base, &tx).await?,
                Format::Parquet => self.read_parquet(file, base, &tx).await?,
            };
            match digest {
                Some(d) => self
                    .stats
                    .files
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(d),
                None => return Ok(()), // consumer went away
            }
        }
        Ok(())
    }

    /// Sends one unreadable record to quarantine; `at` is (line, row) in the file.
    fn quarantine(
        &self,
        file: &InputFile,
        at: (u64, u64),
        rule: &str,
        column: Option<&str>,
        reason: String,
        raw: &[u8],
    ) -> DfResult<()> {
        let data = match std::str::from_utf8(raw) {
            Ok(s) => json!({ "raw": s }),
            Err(_) => {
                json!({ "raw_base64": base64::engine::general_purpose::STANDARD.encode(raw) })
            }
        };
        self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
        self.quarantine.add(&QuarantineRecord {
            component: self.spec.name.clone(),
            source_file: Some(file.path.display().to_string()),
            line: Some(at.0),
            row: Some(at.1),
            rule: rule.to_string(),
            column: column.map(str::to_string),
            reason,
            data,
        })?;
        Ok(())
    }

    /// Reads one CSV or JSON lines file; returns its digest, or None when the consumer left.
    async fn read_text(
        &self,
        file: &InputFile,
        base: u64,
        tx: &Sender<DfResult<RecordBatch>>,
    ) -> DfResult<Option<FileDigest>> {
        let spec = &self.spec;
        let (dialect, header, nulls, is_csv) = match &spec.format {
            Format::Csv {
                dialect,
                header,
                null_values,
            } => (*dialect, *header, null_values.clone(), true),
            _ => (jsonl_dialect(), false, Vec::new(), false),
        };
        let names: Vec<String> = spec
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n != ORIGIN_COLUMN)
            .collect();
        let ncols = names.len();
        let mut stream = read_chunks(&self.store, &file.location)
            .await
            .map_err(read_err(file))?;
        let mut sp = Splitter::new(dialect);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut builder =
            BatchBuilder::new(spec.schema.clone(), spec.types.clone(), spec.batch_size);
        // For each schema column, the index of its field in the file's records.
        let mut map: Option<Vec<usize>> = if header && is_csv {
            None
        } else {
            Some((0..ncols).collect())
        };
        let mut width = ncols;
        let mut fields: Vec<CsvField> = Vec::new();
        let mut scratch = Vec::new();
        let mut cells: Vec<Cell> = Vec::with_capacity(ncols);
        let mut text = String::new();
        let mut spans: Vec<(usize, usize)> = vec![(0, 0); ncols];
        let mut row_no = 0u64;
        loop {
            let piece = sp.next_piece();
            match piece {
                Piece::NeedMore => match stream.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(read_err(file))?;
                        hasher.update(&chunk);
                        size += chunk.len() as u64;
                        self.stats
                            .bytes
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        sp.feed(&chunk);
                    }
                    None => sp.finish(),
                },
                Piece::Done => break,
                Piece::TooLong { line } => {
                    row_no += 1;
                    self.stats.records.fetch_add(1, Ordering::Relaxed);
                    self.quarantine(
                        file,
                        (line, row_no),
                        "record_too_long",
                        None,
                        format!(
                            "line longer than max_record_bytes ({} bytes); skipped",
                            dialect.max_record_bytes
                        ),
                        b"",
                    )?;
                }
                Piece::Unterminated { line, start, end } => {
                    row_no += 1;
                    self.stats.records.fetch_add(1, Ordering::Relaxed);
                    let raw = sp.buf()[start..end].to_vec();
                    let reason = if is_csv {
                        "quoted field opened on this line never closes; reading resumed on the next line".to_string()
                    } else {
                        "line holds a NUL byte or exceeds the record limit".to_string()
                    };
                    self.quarantine(
                        file,
                        (line, row_no),
                        "unterminated_quote",
                        None,
                        reason,
                        &raw,
                    )?;
                }
                Piece::Record { line, start, end } => {
                    let rec = &sp.buf()[start..end];
                    if map.is_none() {
                        // The header of this file: map it onto the source schema.
                        split_fields(rec, &dialect, &mut fields)
                            .map_err(|e| layout(file, format!("header line: {e}")))?;
                        let mut hdr = Vec::with_capacity(fields.len());
                        for f in &fields {
                            let s = std::str::from_utf8(field_bytes(
                                rec,
                                *f,
                                dialect.quote,
                                &mut scratch,
                            ))
                            .map_err(|_| layout(file, "header is not valid UTF-8".into()))?;
                            hdr.push(s.to_string());
                        }
                        check_header(&file.path, &hdr, names.iter().map(String::as_str))
                            .map_err(DataFusionError::from)?;
                        map = Some(
                            names
                                .iter()
                                .map(|n| hdr.iter().position(|h| h == n).unwrap_or(0))
                                .collect(),
                        );
                        width = hdr.len();
                        continue;
                    }
                    row_no += 1;
                    self.stats.records.fetch_add(1, Ordering::Relaxed);
                    let bad = if is_csv {
                        decode_csv_row(
                            rec,
                            &dialect,
                            width,
                            map.as_deref().unwrap_or(&[]),
                            &names,
                            &spec.types,
                            &nulls,
                            &mut fields,
                            &mut scratch,
                            &mut cells,
                            &mut text,
                            &mut spans,
                        )
                    } else {
                        decode_json_row(rec, &names, &spec.types, &mut cells, &mut text, &mut spans)
                    };
                    match bad {
                        Err((rule, column, reason)) => {
                            let raw = rec.to_vec();
                            self.quarantine(
                                file,
                                (line, row_no),
                                rule,
                                column.map(|c| names[c].as_str()),
                                reason,
                                &raw,
                            )?;
                        }
                        Ok(()) => {
                            builder.append(&cells, base + line, |i| &text[spans[i].0..spans[i].1]);
                            if builder.len() >= spec.batch_size
                                && !self.emit(&mut builder, tx).await?
                            {
                                return Ok(None);
                            }
                        }
                    }
                }
            }
        }
        if builder.len() > 0 && !self.emit(&mut builder, tx).await? {
            return Ok(None);
        }
        if map.is_none() {
            return Err(layout(file, "file is empty; expected a header line".into()));
        }
        Ok(Some(FileDigest {
            path: file.path.clone(),
            size,
            sha256: hex::encode(hasher.finalize()),
        }))
    }

    async fn emit(
        &self,
        b: &mut BatchBuilder,
        tx: &Sender<DfResult<RecordBatch>>,
    ) -> DfResult<bool> {
        let batch = b.finish()?;
        self.stats
            .emitted
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(tx.send(Ok(batch)).await.is_ok())
    }

    async fn read_parquet(
        &self,
        file: &InputFile,
        base: u64,
        tx: &Sender<DfResult<RecordBatch>>,
    ) -> DfResult<Option<FileDigest>> {
        let pq = |e: datafusion::parquet::errors::ParquetError| {
            DataFusionError::Context(
                format!("reading {}", file.path.display()),
                Box::new(DataFusionError::ParquetError(Box::new(e))),
            )
        };
        // Digest first: Parquet is read by ranges, so hash the file in one sequential pass.
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut s = read_chunks(&self.store, &file.location)
            .await
            .map_err(read_err(file))?;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(read_err(file))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let reader = parquet_reader(&self.store, file, size)?;
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(pq)?;
        let want = self.spec.data_schema();
        if builder.schema().fields() != want.fields() {
            return Err(layout(
                file,
                format!(
                    "schema differs from the first file of source \"{}\"",
                    self.spec.name
                ),
            ));
        }
        let mut stream = builder
            .with_batch_size(self.spec.batch_size)
            .build()
            .map_err(pq)?;
        let mut row = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(pq)?;
            let n = batch.num_rows() as u64;
            self.stats.records.fetch_add(n, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(batch.get_array_memory_size() as u64, Ordering::Relaxed);
            let origin: ArrayRef = Arc::new(UInt64Array::from_iter_values(
                (row + 1..=row + n).map(|r| base + r),
            ));
            row += n;
            let mut cols = batch.columns().to_vec();
            cols.push(origin);
            let out = RecordBatch::try_new(self.spec.schema.clone(), cols)?;
            self.stats.emitted.fetch_add(n, Ordering::Relaxed);
            if tx.send(Ok(out)).await.is_err() {
                return Ok(None);
            }
        }
        Ok(Some(FileDigest {
            path: file.path.clone(),
            size,
            sha256: hex::encode(hasher.finalize()),
        }))
    }
}

/// Maps a store error while reading `file` for the run's stream.
fn read_err(file: &InputFile) -> impl Fn(object_store::Error) -> DataFusionError + '_ {
    move |e| {
        DataFusionError::External(Box::new(store_err(format!(
            "reading {}",
            file.path.display()
        ))(e)))
    }
}

fn layout(file: &InputFile, reason: String) -> DataFusionError {
    ConnectorError::Layout {
        file: file.path.clone(),
        reason,
    }
    .into()
}

type RowError = (&'static str, Option<usize>, String);

/// Decodes one CSV record into `cells`, with text values copied into `text` at `spans`.
#[allow(clippy::too_many_arguments)]
fn decode_csv_row(
    rec: &[u8],
    d: &Dialect,
    width: usize,
    map: &[usize],
    names: &[String],
    types: &[ColumnType],
    nulls: &[String],
    fields: &mut Vec<CsvField>,
    scratch: &mut Vec<u8>,
    cells: &mut Vec<Cell>,
    text: &mut String,
    spans: &mut [(usize, usize)],
) -> Result<(), RowError> {
    split_fields(rec, d, fields).map_err(|e| ("malformed_quotes", None, e.to_string()))?;
    if fields.len() != width {
        return Err((
            "ragged_row",
            None,
            format!("expected {width} fields, found {}", fields.len()),
        ));
    }
    cells.clear();
    text.clear();
    // One UTF-8 check for the whole record instead of one per field: fields split at ASCII
    // delimiters and quotes, so slicing a valid record at them only needs the (constant-time)
    // char-boundary checks of `str::get`. Fields with doubled quotes, and every field of an
    // invalid record (to name the column), are checked on their own.
    let whole = std::str::from_utf8(rec).ok();
    for (c, &fi) in map.iter().enumerate() {
        let f = fields[fi];
        let sliced = match whole {
            Some(w) if !f.escaped => w.get(f.start..f.end),
            _ => None,
        };
        let s = match sliced {
            Some(s) => s,
            None => std::str::from_utf8(field_bytes(rec, f, d.quote, scratch)).map_err(|e| {
                (
                    "invalid_utf8",
                    Some(c),
                    format!(
                        "column \"{}\": invalid UTF-8 at byte {} of the field",
                        names[c],
                        e.valid_up_to()
                    ),
                )
            })?,
        };
        if nulls.iter().any(|n| n == s) {
            cells.push(Cell::Null);
            continue;
        }
        let cell = coerce(types[c], s)
            .map_err(|why| ("type", Some(c), format!("column \"{}\": {why}", names[c])))?;
        if matches!(cell, Cell::Text) {
            let a = text.len();
            text.push_str(s);
            spans[c] = (a, text.len());
        }
        cells.push(cell);
    }
    Ok(())
}

/// Decodes one JSON line into `cells`.
fn decode_json_row(
    rec: &[u8],
    names: &[String],
    types: &[ColumnType],
    cells: &mut Vec<Cell>,
    text: &mut String,
    spans: &mut [(usize, usize)],
) -> Result<(), RowError> {
    let v: serde_json::Value = serde_json::from_slice(rec).map_err(|e| {
        if e.classify() == serde_json::error::Category::Eof {
            (
                "invalid_json",
                None,
                "line ends inside a JSON value".to_string(),
            )
        } else {
            (
                "invalid_json",
                None,
                format!("invalid JSON at column {}", e.column()),
            )
        }
    })?;
    let serde_json::Value::Object(m) = v else {
        return Err((
            "invalid_json",
            None,
            "line is not a JSON object".to_string(),
        ));
    };
    cells.clear();
    text.clear();
    for (c, name) in names.iter().enumerate() {
        let ty = types[c];
        let val = m.get(name).unwrap_or(&serde_json::Value::Null);
        let err = |why: &str| ("type", Some(c), format!("column \"{name}\": {why}"));
        let cell = match (ty, val) {
            (_, serde_json::Value::Null) => Cell::Null,
            (ColumnType::Utf8, v) => {
                let a = text.len();
                match v {
                    serde_json::Value::String(s) => text.push_str(s),
                    other => text.push_str(&other.to_string()),
                }
                spans[c] = (a, text.len());
                Cell::Text
            }
            (ColumnType::Int64, serde_json::Value::Number(n)) => {
                Cell::I64(n.as_i64().ok_or_else(|| err("not a 64-bit integer"))?)
            }
            (ColumnType::Int32, serde_json::Value::Number(n)) => Cell::I32(
                n.as_i64()
                    .and_then(|i| i32::try_from(i).ok())
                    .ok_or_else(|| err("not a 32-bit integer"))?,
            ),
            (ColumnType::Float64, serde_json::Value::Number(n)) => {
                Cell::F64(n.as_f64().ok_or_else(|| err("not a number"))?)
            }
            (ColumnType::Boolean, serde_json::Value::Bool(b)) => Cell::Bool(*b),
            (ColumnType::Boolean, serde_json::Value::String(s)) => {
                Cell::Bool(parse_bool(s).ok_or_else(|| err("not a boolean"))?)
            }
            (ColumnType::Date32, serde_json::Value::String(s)) => {
                Cell::Date(parse_date(s).ok_or_else(|| err("not a date (YYYY-MM-DD)"))?)
            }
            (ColumnType::Timestamp, serde_json::Value::String(s)) => {
                Cell::Ts(parse_timestamp(s).ok_or_else(|| err("not a timestamp"))?)
            }
            (t, serde_json::Value::String(s)) => coerce(t, s).map_err(&err)?,
            (t, _) => {
                return Err(err(&format!(
                    "expected {t}, found a JSON {}",
                    json_kind_name(val)
                )));
            }
        };
        cells.push(cell);
    }
    Ok(())
}

fn json_kind_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

impl PartitionStream for SourceReader {
    fn schema(&self) -> &SchemaRef {
        &self.spec.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut b = RecordBatchReceiverStreamBuilder::new(self.spec.schema.clone(), 2);
        let tx = b.tx();
        let me = self.clone();
        b.spawn(async move { me.run(tx).await });
        b.build()
    }
}
