//! `type = "postgres"` sinks: binary COPY inside one transaction that the engine commits with
//! the run's other sinks, or rolls back.
//!
//! - `append` copies straight into the target table. The transaction alone makes this atomic:
//!   until COMMIT no other session sees a row, and a failure (constraint violation, lost
//!   connection, killed process) rolls every row back. A staging table would only double the
//!   server's work here.
//! - `overwrite` and `upsert` copy into a temporary staging table first, then apply it with
//!   one statement (`TRUNCATE` + `INSERT ... SELECT`, or `INSERT ... ON CONFLICT DO UPDATE`);
//!   a table referenced by foreign keys is emptied with `DELETE` instead.
//!   The target is locked only for that statement and the commit, not during the load.
//! - A table the sink creates (`create_table`) is loaded directly with `COPY ... FREEZE` for
//!   `append` and `overwrite`: no other session can see it before COMMIT.
//!
//! Every statement runs before the engine decides to commit, so constraint errors surface while
//! nothing is committed anywhere; the transaction then stays open until [`PgPending::commit`]
//! or [`PgPending::rollback`], exempt from the server's idle-in-transaction timeout.

use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use custos_config::{PgWriteMode, PostgresSink};
use datafusion::arrow::datatypes::Schema;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::{SinkExt, StreamExt};

use super::copy::{Encoder, PgType};
use super::{PgConnection, PgTarget, connect, quote_ident, quote_table};
use crate::ConnectorError;

/// Bytes of COPY data handed to the connection at a time.
const SEND_BYTES: usize = 1 << 20;

/// A finished load whose transaction is still open.
pub struct PgPending {
    /// Sink name.
    pub name: String,
    /// `postgres://host:port/db?table t`, for run records.
    pub location: String,
    /// Rows loaded.
    pub rows: u64,
    /// Bytes of COPY data sent.
    pub bytes: u64,
    conn: PgConnection,
    target: PgTarget,
}

impl std::fmt::Debug for PgPending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPending")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("rows", &self.rows)
            .finish()
    }
}

impl PgPending {
    /// Commits the load.
    pub async fn commit(self) -> Result<(), ConnectorError> {
        self.conn
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| ConnectorError::Postgres {
                context: format!(
                    "sink \"{}\": committing ({})",
                    self.name, self.conn.describe
                ),
                message: self.conn.error_message(&e, self.target.password.as_ref()),
            })
    }

    /// Rolls the load back (closing the connection does the same should this fail).
    pub async fn rollback(self) {
        let _ = self.conn.client.batch_execute("ROLLBACK").await;
    }
}

/// Loads the stream into the sink's table inside a transaction left open for the engine to
/// commit. `rows` is updated as batches are sent.
pub async fn write(
    name: &str,
    cfg: &PostgresSink,
    base: &Path,
    allow_insecure: bool,
    stream: SendableRecordBatchStream,
    rows: Arc<AtomicU64>,
) -> Result<PgPending, ConnectorError> {
    let component = format!("sinks.{name}");
    let target = PgTarget::from_config(&cfg.connection(), base, &component, allow_insecure)?;
    let conn = connect(&target).await?;
    let pw = target.password.as_ref();
    let table = quote_table(&cfg.table).ok_or_else(|| ConnectorError::Postgres {
        context: format!("{component}.table"),
        message: "`table` must be `name` or `schema.name`".into(),
    })?;
    let ctx = format!("sink \"{name}\": {} (table {})", conn.describe, cfg.table);
    let err = |message: String| ConnectorError::Postgres {
        context: ctx.clone(),
        message,
    };
    let db = |e: tokio_postgres::Error| err(conn.error_message(&e, pw));

    let input = stream.schema();
    let cols: Vec<usize> = input
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !custos_core::is_reserved_column(f.name()))
        .map(|(i, _)| i)
        .collect();
    let schema = Arc::new(input.project(&cols).map_err(|e| err(e.to_string()))?);
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    for k in &cfg.key {
        if !names.contains(k) {
            return Err(err(format!(
                "key column \"{k}\" is not in the sink's input"
            )));
        }
    }
    for c in cfg.column_types.keys() {
        if !names.contains(c) {
            return Err(err(format!(
                "column_types names \"{c}\", which is not in the sink's input"
            )));
        }
    }

    // The transaction then waits, idle, for the run's other sinks before the engine commits
    // it. A server's `idle_in_transaction_session_timeout` (set against forgotten sessions)
    // would end the session during that wait and fail a run whose every write succeeded, so
    // this transaction opts out; it still ends with the run: commit, rollback, or the
    // connection closing when the process does.
    conn.client
        .batch_execute("BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0")
        .await
        .map_err(db)?;
    let exists: Option<String> = conn
        .client
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .await
        .map_err(db)?
        .get(0);
    if exists.is_none() {
        if !cfg.create_table {
            return Err(err(
                "the table does not exist; create it, or set create_table = true".into(),
            ));
        }
        conn.client
            .batch_execute(&create_table(&table, &schema, cfg).map_err(err)?)
            .await
            .map_err(db)?;
        tracing::info!(sink = name, table = %cfg.table, "created the table");
    }

    // The target's column types decide the binary encoding of each input column.
    let described = conn
        .client
        .prepare(&format!("SELECT * FROM {table} LIMIT 0"))
        .await
        .map_err(db)?;
    let mut targets = Vec::with_capacity(names.len());
    let mut server_types = Vec::with_capacity(names.len());
    for n in &names {
        let c = described
            .columns()
            .iter()
            .find(|c| c.name() == n)
            .ok_or_else(|| err(format!("column \"{n}\" is not in the table")))?;
        let t = PgType::from_pg(c.type_(), c.type_modifier())
            .map_err(|m| err(format!("column \"{n}\": {m}")))?;
        targets.push((n.clone(), t));
        server_types.push(c.type_().clone());
    }
    // Arrays must name the column's own element type (varchar, enums, domains), not text.
    let mut encoder = Encoder::new(&schema, targets)
        .map_err(|e| err(e.to_string()))?
        .with_element_types(&server_types);

    let list = names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ");
    // A table this transaction created is invisible to everyone else until COMMIT: appending or
    // overwriting copies straight into it, and FREEZE writes its rows already frozen (no
    // hint-bit writes or freezing vacuum on the first reads afterwards).
    let created = exists.is_none();
    let direct = cfg.mode == PgWriteMode::Append || (created && cfg.mode == PgWriteMode::Overwrite);
    let dest = if direct {
        table.clone()
    } else {
        conn.client
            .batch_execute(&format!(
                "CREATE TEMP TABLE custos_stage (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
            ))
            .await
            .map_err(db)?;
        "custos_stage".to_string()
    };
    let copy = conn
        .client
        .copy_in::<_, bytes::Bytes>(&format!(
            "COPY {dest} ({list}) FROM STDIN (FORMAT binary{})",
            if created && direct { ", FREEZE" } else { "" }
        ))
        .await
        .map_err(db)?;
    let mut copy = pin!(copy);
    let mut buf = BytesMut::with_capacity(SEND_BYTES + (SEND_BYTES >> 2));
    encoder.header(&mut buf);
    let mut sent_rows = 0u64;
    let mut bytes = 0u64;
    let mut stream = crate::sink::decoupled(stream);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| ConnectorError::DataFusion {
            context: format!("sink \"{name}\""),
            source: e,
        })?;
        let batch = batch.project(&cols).map_err(|e| err(e.to_string()))?;
        encoder
            .encode(&batch, &mut buf)
            .map_err(|e| err(e.to_string()))?;
        sent_rows += batch.num_rows() as u64;
        if buf.len() >= SEND_BYTES {
            bytes += buf.len() as u64;
            copy.send(buf.split().freeze()).await.map_err(db)?;
        }
        rows.store(sent_rows, Ordering::Relaxed);
    }
    encoder.trailer(&mut buf);
    bytes += buf.len() as u64;
    copy.send(buf.split().freeze()).await.map_err(db)?;
    let copied = copy.as_mut().finish().await.map_err(db)?;
    if copied != sent_rows {
        return Err(err(format!(
            "the server loaded {copied} rows of the {sent_rows} sent"
        )));
    }

    match cfg.mode {
        _ if direct => {}
        // Always direct.
        PgWriteMode::Append => {}
        PgWriteMode::Overwrite => {
            // TRUNCATE is refused for a table other tables reference by a foreign key, even
            // when no row refers to it: such tables are emptied with DELETE, whose checks then
            // stop the run only if rows really do refer to the old contents.
            let referenced = conn
                .client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint \
                     WHERE contype = 'f' AND confrelid = $1::text::regclass)",
                    &[&table],
                )
                .await
                .map_err(db)?
                .get::<_, bool>(0);
            let empty = if referenced {
                "DELETE FROM"
            } else {
                "TRUNCATE"
            };
            conn.client
                .batch_execute(&format!(
                    "{empty} {table}; INSERT INTO {table} ({list}) SELECT {list} FROM custos_stage"
                ))
                .await
                .map_err(db)?;
        }
        PgWriteMode::Upsert => {
            let keys = cfg
                .key
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", ");
            let set: Vec<String> = names
                .iter()
                .filter(|n| !cfg.key.contains(n))
                .map(|n| format!("{0} = EXCLUDED.{0}", quote_ident(n)))
                .collect();
            let action = if set.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", set.join(", "))
            };
            conn.client
                .batch_execute(&format!(
                    "INSERT INTO {table} ({list}) SELECT {list} FROM custos_stage ON CONFLICT ({keys}) {action}"
                ))
                .await
                .map_err(db)?;
        }
    }
    Ok(PgPending {
        name: name.to_string(),
        location: format!("{}?table {}", conn.location, cfg.table),
        rows: sent_rows,
        bytes,
        conn,
        target,
    })
}

/// `CREATE TABLE` for the sink's input: types from `column_types`, else from Arrow; the
/// upsert key becomes the primary key.
fn create_table(table: &str, schema: &Schema, cfg: &PostgresSink) -> Result<String, String> {
    let mut defs = Vec::new();
    for f in schema.fields() {
        let ty = match cfg.column_types.get(f.name()) {
            Some(t) => t.trim().to_string(),
            None => PgType::for_arrow(f.data_type())
                .map_err(|m| format!("column \"{}\": {m}", f.name()))?
                .sql_name(),
        };
        defs.push(format!("{} {ty}", quote_ident(f.name())));
    }
    if cfg.mode == PgWriteMode::Upsert {
        defs.push(format!(
            "PRIMARY KEY ({})",
            cfg.key
                .iter()
                .map(|k| quote_ident(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(format!("CREATE TABLE {table} ({})", defs.join(", ")))
}
