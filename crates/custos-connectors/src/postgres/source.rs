//! `type = "postgres"` sources: a table or query streamed with binary COPY into Arrow batches,
//! optionally split into key ranges read in parallel from one snapshot.
//!
//! Memory stays bounded: each reader decodes one batch at a time and hands it over a channel
//! of two batches. With `partitions = N`, N connections each read one range of the integer
//! `partition_column`, all inside the snapshot exported by a coordinating transaction (as
//! `pg_dump -j` does), so the ranges together are one consistent read of the table. When the
//! pipeline keeps row order, ranges are emitted one after the other (in key-range order);
//! otherwise batches are emitted as they arrive.

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use custos_config::PostgresSource;
use custos_core::{ORIGIN_COLUMN, Origin};
use datafusion::arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::copy::{Decoder, PgType, Rejected};
use super::{PgTarget, connect, quote_ident, quote_table};
use crate::ConnectorError;
use crate::quarantine::{Quarantine, QuarantineRecord};
use crate::source::{FileDigest, SourceStats};

/// A discovered PostgreSQL source: what to read, its columns, and the key ranges.
#[derive(Debug)]
pub struct PgSourceSpec {
    /// Index of the source in the pipeline (part of each row's provenance).
    pub index: u32,
    /// Component name.
    pub name: String,
    /// Where to connect (secrets resolved).
    pub target: PgTarget,
    /// `postgres://host:port/db`, for run records and quarantine entries.
    pub location: String,
    /// What is read: the table name or `query`, for messages.
    pub what: String,
    /// The `SELECT` the source reads.
    pub select: String,
    /// Columns and their server types.
    pub columns: Vec<(String, PgType)>,
    /// Output schema: the columns followed by the provenance column.
    pub schema: SchemaRef,
    /// One `WHERE` condition per parallel reader (empty: one reader, no condition).
    pub ranges: Vec<String>,
    /// Rows per batch.
    pub batch_size: usize,
    /// Emit ranges in order (the pipeline keeps row order).
    pub ordered: bool,
}

fn pg(describe: &str, message: String) -> ConnectorError {
    ConnectorError::Postgres {
        context: describe.to_string(),
        message,
    }
}

/// Connects, describes the table or query, maps every column to an Arrow type (an unsupported
/// type is an error naming the column) and computes the key ranges of a partitioned read.
#[allow(clippy::too_many_arguments)]
pub async fn discover(
    index: u32,
    name: &str,
    cfg: &PostgresSource,
    base: &Path,
    allow_insecure: bool,
    batch_size: usize,
    ordered: bool,
) -> Result<PgSourceSpec, ConnectorError> {
    let component = format!("sources.{name}");
    let target = PgTarget::from_config(&cfg.connection(), base, &component, allow_insecure)?;
    let conn = connect(&target).await?;
    let password = target.password.as_ref();
    let (select, what) = match (&cfg.table, &cfg.query) {
        (Some(t), _) => {
            let q = quote_table(t)
                .ok_or_else(|| pg(&component, "`table` must be `name` or `schema.name`".into()))?;
            (format!("SELECT * FROM {q}"), format!("table {t}"))
        }
        // The query is wrapped in `COPY (...)` and subqueries: a trailing `;` is dropped, and
        // the wrappers close on a new line so a trailing `-- comment` cannot swallow them.
        (None, Some(q)) => (
            q.trim().trim_end_matches(';').trim_end().to_string(),
            "query".to_string(),
        ),
        (None, None) => return Err(pg(&component, "needs a `table` or a `query`".into())),
    };
    let stmt = conn.client.prepare(&select).await.map_err(|e| {
        pg(
            &format!("{} ({what})", conn.describe),
            conn.error_message(&e, password),
        )
    })?;
    let mut columns = Vec::new();
    let mut problems = Vec::new();
    for c in stmt.columns() {
        if columns
            .iter()
            .any(|(n, _): &(String, PgType)| n == c.name())
        {
            problems.push(format!(
                "column \"{}\" appears twice; give it an alias in the query",
                c.name()
            ));
            continue;
        }
        if custos_core::is_reserved_column(c.name()) {
            problems.push(format!(
                "column \"{}\" uses the reserved prefix \"{}\"",
                c.name(),
                custos_core::RESERVED_PREFIX
            ));
            continue;
        }
        match PgType::from_pg(c.type_(), c.type_modifier()) {
            Ok(t) => columns.push((c.name().to_string(), t)),
            Err(m) => problems.push(format!("column \"{}\": {m}", c.name())),
        }
    }
    if columns.is_empty() && problems.is_empty() {
        problems.push("returns no columns".into());
    }
    if !problems.is_empty() {
        return Err(pg(
            &format!("{} ({what})", conn.describe),
            problems.join("; "),
        ));
    }
    let ranges = match (&cfg.partition_column, cfg.partitions) {
        (Some(k), n) if n > 1 => {
            match columns.iter().find(|(c, _)| c == k).map(|(_, t)| t) {
                Some(PgType::Int2 | PgType::Int4 | PgType::Int8) => {}
                Some(t) => {
                    return Err(pg(
                        &format!("{component}.partition_column"),
                        format!(
                            "column \"{k}\" is {}; partitioned reads split an integer column",
                            t.sql_name()
                        ),
                    ));
                }
                None => {
                    return Err(pg(
                        &format!("{component}.partition_column"),
                        format!("column \"{k}\" is not in the {what}"),
                    ));
                }
            }
            let key = quote_ident(k);
            let row = conn
                .client
                .query_one(
                    &format!(
                        "SELECT min({key})::int8, max({key})::int8 FROM ({select}\n) AS custos_q"
                    ),
                    &[],
                )
                .await
                .map_err(|e| pg(&conn.describe, conn.error_message(&e, password)))?;
            let (lo, hi): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
            match (lo, hi) {
                (Some(lo), Some(hi)) => split_ranges(&key, lo, hi, n),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|(n, t)| Field::new(n, t.arrow(), true))
        .collect();
    fields.push(Field::new(ORIGIN_COLUMN, DataType::UInt64, false));
    Ok(PgSourceSpec {
        index,
        name: name.to_string(),
        location: conn.location.clone(),
        target,
        what,
        select,
        columns,
        schema: Arc::new(Schema::new(fields)),
        ranges,
        batch_size,
        ordered,
    })
}

impl PgSourceSpec {
    /// For sampling (`custos scan`): reads about three times `rows` rows of a large table
    /// (`TABLESAMPLE SYSTEM`, seeded) instead of all of it. A table whose planner estimate is
    /// unknown or under three times `rows`, and a `query` source, are still read whole.
    pub async fn sample_table(
        &mut self,
        table: &str,
        rows: usize,
        seed: u64,
    ) -> Result<(), ConnectorError> {
        let Some(q) = quote_table(table) else {
            return Ok(());
        };
        let conn = connect(&self.target).await?;
        let estimate: f64 = conn
            .client
            .query_one(
                "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::text::regclass",
                &[&q],
            )
            .await
            .map_err(|e| {
                pg(
                    &conn.describe,
                    conn.error_message(&e, self.target.password.as_ref()),
                )
            })?
            .get(0);
        let want = 3.0 * rows.max(1) as f64;
        if estimate > want {
            let percent = (100.0 * want / estimate).max(0.000_001);
            // REPEATABLE takes a float seed; keep it exact.
            let repeat = (seed % (1 << 52)) as f64;
            self.select =
                format!("SELECT * FROM {q} TABLESAMPLE SYSTEM ({percent}) REPEATABLE ({repeat})");
        }
        Ok(())
    }

    /// What each reader reads, for provenance (`postgres://host:port/db (table t, range 2)`),
    /// indexed like the provenance column's file number.
    pub fn labels(&self) -> Vec<String> {
        (0..self.ranges.len().max(1))
            .map(|p| self.label(p))
            .collect()
    }

    /// What reader `part` reads (see [`Self::labels`]).
    fn label(&self, part: usize) -> String {
        if self.ranges.is_empty() {
            format!("{} ({})", self.location, self.what)
        } else {
            format!("{} ({}, range {})", self.location, self.what, part + 1)
        }
    }
}

/// `n` conditions covering every value of `key` (and NULL): the first and last ranges are
/// open-ended, so rows outside `[lo, hi]` (written after the bounds were read) are not missed.
fn split_ranges(key: &str, lo: i64, hi: i64, n: usize) -> Vec<String> {
    let span = i128::from(hi) - i128::from(lo) + 1;
    let n = (n as i128).min(span).max(1);
    if n == 1 {
        return Vec::new();
    }
    let step = (span + n - 1) / n;
    let bounds: Vec<i128> = (1..n).map(|i| i128::from(lo) + i * step).collect();
    let mut out = Vec::with_capacity(bounds.len() + 1);
    out.push(format!("{key} < {} OR {key} IS NULL", bounds[0]));
    for w in bounds.windows(2) {
        out.push(format!("{key} >= {} AND {key} < {}", w[0], w[1]));
    }
    out.push(format!("{key} >= {}", bounds[bounds.len() - 1]));
    out
}

/// A discovered source ready to be read in one run.
#[derive(Debug, Clone)]
pub struct PgSourceReader {
    spec: Arc<PgSourceSpec>,
    quarantine: Arc<Quarantine>,
    stats: Arc<SourceStats>,
}

fn df(e: ConnectorError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl PgSourceReader {
    /// Wraps a discovered source for one run.
    pub fn new(
        spec: Arc<PgSourceSpec>,
        quarantine: Arc<Quarantine>,
        stats: Arc<SourceStats>,
    ) -> Self {
        Self {
            spec,
            quarantine,
            stats,
        }
    }

    /// The source as a DataFusion table (one output partition).
    pub fn into_table(self) -> DfResult<Arc<dyn TableProvider>> {
        let schema = self.spec.schema.clone();
        Ok(Arc::new(StreamingTable::try_new(
            schema,
            vec![Arc::new(self)],
        )?))
    }

    async fn run(&self, tx: mpsc::Sender<DfResult<RecordBatch>>) -> DfResult<()> {
        let spec = &self.spec;
        if spec.ranges.is_empty() {
            let sql = format!("COPY ({}\n) TO STDOUT (FORMAT binary)", spec.select);
            return self.read(0, sql, None, tx).await;
        }
        // One snapshot for every range: the coordinator's transaction stays open until all
        // readers are done.
        let coordinator = connect(&spec.target).await.map_err(df)?;
        let pw = spec.target.password.as_ref();
        let snapshot: String = async {
            coordinator
                .client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await?;
            coordinator
                .client
                .query_one("SELECT pg_export_snapshot()", &[])
                .await
                .map(|r| r.get(0))
        }
        .await
        .map_err(|e| df(pg(&coordinator.describe, coordinator.error_message(&e, pw))))?;
        let mut receivers = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, cond) in spec.ranges.iter().enumerate() {
            let (ptx, prx) = mpsc::channel(2);
            receivers.push(prx);
            let sql = format!(
                "COPY (SELECT * FROM ({}\n) AS custos_q WHERE {cond}) TO STDOUT (FORMAT binary)",
                spec.select
            );
            let me = self.clone();
            let snap = snapshot.clone();
            tasks.spawn(async move {
                let r = me.read(i as u32, sql, Some(snap), ptx.clone()).await;
                if let Err(e) = r {
                    let _ = ptx.send(Err(e)).await;
                }
            });
        }
        let forward = async {
            if spec.ordered {
                for mut rx in receivers {
                    while let Some(b) = rx.recv().await {
                        if tx.send(b).await.is_err() {
                            return;
                        }
                    }
                }
            } else {
                let streams = receivers.into_iter().map(|rx| {
                    futures::stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
                    )
                    .boxed()
                });
                let mut all = futures::stream::select_all(streams);
                while let Some(b) = all.next().await {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
            }
        };
        forward.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        drop(coordinator);
        Ok(())
    }

    /// Reads one COPY statement (one range) into batches with provenance.
    async fn read(
        &self,
        part: u32,
        sql: String,
        snapshot: Option<String>,
        tx: mpsc::Sender<DfResult<RecordBatch>>,
    ) -> DfResult<()> {
        let spec = &self.spec;
        let conn = connect(&spec.target).await.map_err(df)?;
        let pw = spec.target.password.as_ref();
        let fail = |e: tokio_postgres::Error| {
            df(pg(
                &format!("{} ({})", conn.describe, spec.what),
                conn.error_message(&e, pw),
            ))
        };
        if let Some(s) = snapshot {
            conn.client
                .batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                    s.replace('\'', "''")
                ))
                .await
                .map_err(fail)?;
        }
        let stream = conn.client.copy_out(sql.as_str()).await.map_err(fail)?;
        let mut stream = pin!(stream);
        let base =
            Origin::file_base(spec.index, part).map_err(|e| df(pg(&spec.name, e.to_string())))?;
        let mut decoder = Decoder::new(spec.columns.clone(), spec.batch_size);
        let mut batches = Vec::new();
        let mut rejected = Vec::new();
        let mut skip: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
        let mut next_row = 1u64;
        let mut bytes = 0u64;
        let malformed = |e: super::copy::CopyError| {
            df(pg(
                &format!("{} ({})", conn.describe, spec.what),
                e.to_string(),
            ))
        };
        let mut done = false;
        while !done {
            match stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(fail)?;
                    bytes += chunk.len() as u64;
                    self.stats
                        .bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    decoder
                        .push(&chunk, &mut batches, &mut rejected)
                        .map_err(malformed)?;
                }
                None => {
                    if let Some(b) = decoder.finish(&mut rejected).map_err(malformed)? {
                        batches.push(b);
                    }
                    done = true;
                }
            }
            for r in rejected.drain(..) {
                skip.push_back(r.row);
                self.reject(part, r)?;
            }
            for b in batches.drain(..) {
                let n = b.num_rows();
                let mut origins = Vec::with_capacity(n);
                while origins.len() < n {
                    if skip.front() == Some(&next_row) {
                        skip.pop_front();
                    } else {
                        origins.push(base + next_row);
                    }
                    next_row += 1;
                }
                let mut cols = b.columns().to_vec();
                cols.push(Arc::new(UInt64Array::from(origins)) as ArrayRef);
                let out = RecordBatch::try_new(spec.schema.clone(), cols)?;
                self.stats.emitted.fetch_add(n as u64, Ordering::Relaxed);
                self.stats.records.fetch_add(n as u64, Ordering::Relaxed);
                if tx.send(Ok(out)).await.is_err() {
                    return Ok(());
                }
            }
        }
        let label = spec.label(part as usize);
        self.stats
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(FileDigest {
                path: PathBuf::from(label),
                size: bytes,
                sha256: String::new(),
            });
        Ok(())
    }

    fn reject(&self, part: u32, r: Rejected) -> DfResult<()> {
        let spec = &self.spec;
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        self.stats.quarantined.fetch_add(1, Ordering::Relaxed);
        let label = spec.label(part as usize);
        self.quarantine
            .add(&QuarantineRecord {
                component: spec.name.clone(),
                source_file: Some(label),
                line: Some(r.row),
                row: None,
                rule: "type".into(),
                column: Some(r.column),
                reason: r.reason,
                data: r.data,
            })
            .map_err(df)
    }
}

impl PartitionStream for PgSourceReader {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_key() {
        assert!(split_ranges("k", 5, 5, 4).is_empty());
        let r = split_ranges("k", 1, 10, 3);
        assert_eq!(r, ["k < 5 OR k IS NULL", "k >= 5 AND k < 9", "k >= 9"]);
        let r = split_ranges("k", i64::MIN, i64::MAX, 2);
        assert_eq!(r.len(), 2);
        assert_eq!(split_ranges("k", 1, 2, 8).len(), 2);
    }
}
