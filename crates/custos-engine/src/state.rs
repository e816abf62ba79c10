//! The embedded state store: one SQLite database under `.custos/` that records every run.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::EngineError;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id            TEXT PRIMARY KEY,
    pipeline      TEXT NOT NULL,
    config_path   TEXT NOT NULL,
    config_hash   TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    ended_at      TEXT,
    status        TEXT NOT NULL,
    error         TEXT,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    rows_read     INTEGER NOT NULL DEFAULT 0,
    rows_written  INTEGER NOT NULL DEFAULT 0,
    rows_quarantined INTEGER NOT NULL DEFAULT 0,
    rows_filtered INTEGER NOT NULL DEFAULT 0,
    invariant_ok  INTEGER,
    summary_json  TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE TABLE IF NOT EXISTS run_components (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    component   TEXT NOT NULL,
    section     TEXT NOT NULL,
    type        TEXT NOT NULL,
    rows_in     INTEGER NOT NULL,
    rows_out    INTEGER NOT NULL,
    quarantined INTEGER NOT NULL,
    filtered    INTEGER NOT NULL,
    added       INTEGER NOT NULL,
    PRIMARY KEY (run_id, component)
);
CREATE TABLE IF NOT EXISTS run_files (
    run_id    TEXT NOT NULL REFERENCES runs(id),
    role      TEXT NOT NULL,
    component TEXT NOT NULL,
    path      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    sha256    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS run_files_run ON run_files(run_id);
"#;

const VERSION: i32 = 1;

/// Row counts of one component in one run. For every component,
/// `rows_in + added = rows_out + quarantined + filtered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentCounts {
    /// Component name.
    pub name: String,
    /// `sources`, `transforms` or `sinks`.
    pub section: String,
    /// The component's `type`.
    pub r#type: String,
    /// Rows received (for sources: records read from files).
    pub rows_in: u64,
    /// Rows passed on (for sinks: rows written).
    pub rows_out: u64,
    /// Rows sent to quarantine.
    pub quarantined: u64,
    /// Rows removed by SQL (WHERE, aggregation, LIMIT, ...).
    pub filtered: u64,
    /// Rows added by SQL (joins, UNNEST, ...).
    pub added: u64,
}

/// A file read or written by a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `input`, `output` or `quarantine`.
    pub role: String,
    /// Component that read or wrote it.
    pub component: String,
    /// Absolute path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (UUID v7, sortable by time).
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Config file.
    pub config_path: String,
    /// SHA-256 of the config file.
    pub config_hash: String,
    /// Start, RFC 3339 UTC.
    pub started_at: String,
    /// End, RFC 3339 UTC.
    pub ended_at: Option<String>,
    /// `running`, `succeeded`, `failed`, `cancelled` or `killed`.
    pub status: String,
    /// Why it failed (no cell values or secrets).
    pub error: Option<String>,
    /// Process id of the run.
    pub pid: i64,
    /// Host name.
    pub host: String,
    /// Records read from all sources.
    pub rows_read: u64,
    /// Rows written by all sinks.
    pub rows_written: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Rows filtered by SQL.
    pub rows_filtered: u64,
    /// Whether the row-count invariant held for every component.
    pub invariant_ok: Option<bool>,
    /// Per-component counts.
    pub components: Vec<ComponentCounts>,
    /// Files read and written.
    pub files: Vec<FileRecord>,
}

/// The state store.
pub struct StateStore {
    conn: Connection,
    dir: PathBuf,
}

fn db_err(e: rusqlite::Error) -> EngineError {
    EngineError::State(e.to_string())
}

impl StateStore {
    /// Opens (creating if needed) the store in `dir` (normally `.custos`).
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        create_private_dir(dir)?;
        let conn = Connection::open(dir.join("state.db")).map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        let v: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err)?;
        if v > VERSION {
            return Err(EngineError::State(format!(
                "state store {} has schema version {v}, newer than this custos ({VERSION}); upgrade custos",
                dir.display()
            )));
        }
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        conn.pragma_update(None, "user_version", VERSION)
            .map_err(db_err)?;
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the start of a run.
    pub fn start_run(&self, r: &RunRecord) -> Result<(), EngineError> {
        self.conn
            .execute(
                "INSERT INTO runs (id, pipeline, config_path, config_hash, started_at, status, pid, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![r.id, r.pipeline, r.config_path, r.config_hash, r.started_at, r.status, r.pid, r.host],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// Records the end of a run with its counts and files, in one transaction.
    pub fn finish_run(&mut self, r: &RunRecord, summary_json: &str) -> Result<(), EngineError> {
        let tx = self.conn.transaction().map_err(db_err)?;
        tx.execute(
            "UPDATE runs SET ended_at = ?2, status = ?3, error = ?4, rows_read = ?5, rows_written = ?6, rows_quarantined = ?7, rows_filtered = ?8, invariant_ok = ?9, summary_json = ?10 WHERE id = ?1",
            params![
                r.id,
                r.ended_at,
                r.status,
                r.error,
                r.rows_read as i64,
                r.rows_written as i64,
                r.rows_quarantined as i64,
                r.rows_filtered as i64,
                r.invariant_ok,
                summary_json
            ],
        )
        .map_err(db_err)?;
        for c in &r.components {
            tx.execute(
                "INSERT OR REPLACE INTO run_components VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.id,
                    c.name,
                    c.section,
                    c.r#type,
                    c.rows_in as i64,
                    c.rows_out as i64,
                    c.quarantined as i64,
                    c.filtered as i64,
                    c.added as i64
                ],
            )
            .map_err(db_err)?;
        }
        for f in &r.files {
            tx.execute(
                "INSERT INTO run_files VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    r.id,
                    f.role,
                    f.component,
                    f.path.display().to_string(),
                    f.size as i64,
                    f.sha256
                ],
            )
            .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Marks runs still `running` whose process is gone as `killed`; returns their ids.
    pub fn reap_dead_runs(&self) -> Result<Vec<String>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid, host FROM runs WHERE status = 'running'")
            .map_err(db_err)?;
        let rows: Vec<(String, i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let me = host_name();
        let mut dead = Vec::new();
        for (id, pid, host) in rows {
            if host == me && !Path::new(&format!("/proc/{pid}")).exists() {
                self.conn
                    .execute(
                        "UPDATE runs SET status = 'killed', error = 'process ended without finishing the run', ended_at = ?2 WHERE id = ?1",
                        params![id, chrono::Utc::now().to_rfc3339()],
                    )
                    .map_err(db_err)?;
                dead.push(id);
            }
        }
        Ok(dead)
    }

    /// Ids of runs currently marked `running`.
    pub fn running_ids(&self) -> Result<Vec<String>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM runs WHERE status = 'running'")
            .map_err(db_err)?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .map_err(db_err)?
            .collect::<Result<Vec<String>, _>>()
            .map_err(db_err)?;
        Ok(ids)
    }

    /// The most recent runs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<RunRecord>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1")
            .map_err(db_err)?;
        let ids = stmt
            .query_map([limit as i64], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        ids.iter()
            .filter_map(|id| self.get(id).transpose())
            .collect()
    }

    /// One run by id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<Option<RunRecord>, EngineError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM runs WHERE id LIKE ?1 || '%'")
            .map_err(db_err)?;
        let ids = stmt
            .query_map([id], |r| r.get::<_, String>(0))
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        let id = match ids.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            _ => {
                return Err(EngineError::State(format!(
                    "run id prefix \"{id}\" matches {} runs; give more characters",
                    ids.len()
                )));
            }
        };
        let run = self
            .conn
            .query_row(
                "SELECT id, pipeline, config_path, config_hash, started_at, ended_at, status, error, pid, host, rows_read, rows_written, rows_quarantined, rows_filtered, invariant_ok FROM runs WHERE id = ?1",
                [&id],
                |r| {
                    Ok(RunRecord {
                        id: r.get(0)?,
                        pipeline: r.get(1)?,
                        config_path: r.get(2)?,
                        config_hash: r.get(3)?,
                        started_at: r.get(4)?,
                        ended_at: r.get(5)?,
                        status: r.get(6)?,
                        error: r.get(7)?,
                        pid: r.get(8)?,
                        host: r.get(9)?,
                        rows_read: r.get::<_, i64>(10)? as u64,
                        rows_written: r.get::<_, i64>(11)? as u64,
                        rows_quarantined: r.get::<_, i64>(12)? as u64,
                        rows_filtered: r.get::<_, i64>(13)? as u64,
                        invariant_ok: r.get(14)?,
                        components: Vec::new(),
                        files: Vec::new(),
                    })
                },
            )
            .optional()
            .map_err(db_err)?;
        let Some(mut run) = run else { return Ok(None) };
        let mut stmt = self
            .conn
            .prepare("SELECT component, section, type, rows_in, rows_out, quarantined, filtered, added FROM run_components WHERE run_id = ?1 ORDER BY rowid")
            .map_err(db_err)?;
        run.components = stmt
            .query_map([&id], |r| {
                Ok(ComponentCounts {
                    name: r.get(0)?,
                    section: r.get(1)?,
                    r#type: r.get(2)?,
                    rows_in: r.get::<_, i64>(3)? as u64,
                    rows_out: r.get::<_, i64>(4)? as u64,
                    quarantined: r.get::<_, i64>(5)? as u64,
                    filtered: r.get::<_, i64>(6)? as u64,
                    added: r.get::<_, i64>(7)? as u64,
                })
            })
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let mut stmt = self
            .conn
            .prepare("SELECT role, component, path, size, sha256 FROM run_files WHERE run_id = ?1 ORDER BY rowid")
            .map_err(db_err)?;
        run.files = stmt
            .query_map([&id], |r| {
                Ok(FileRecord {
                    role: r.get(0)?,
                    component: r.get(1)?,
                    path: PathBuf::from(r.get::<_, String>(2)?),
                    size: r.get::<_, i64>(3)? as u64,
                    sha256: r.get(4)?,
                })
            })
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        Ok(Some(run))
    }
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| EngineError::Io(format!("creating {}: {e}", dir.display())))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    Ok(())
}
