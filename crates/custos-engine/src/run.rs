//! Running a pipeline: plan, execute every sink concurrently into temporary files, enforce the
//! quarantine limits and the row-count invariant, commit all sinks or none, record the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use custos_config::{Loaded, SinkKind};
use custos_connectors::postgres::sink::PgPending;
use custos_connectors::quarantine::{Quarantine, create_private};
use custos_connectors::sink::{self, SinkOutput};
use datafusion::common::runtime::SpawnedTask;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
pub use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::plan::{Planned, plan};
use crate::state::{
    ComponentCounts, FileRecord, RunRecord, StateStore, create_private_dir, host_name,
};

/// The error text of a cancelled run.
const CANCELLED: &str = "cancelled";

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// State directory (`.custos`).
    pub state_dir: PathBuf,
    /// Asked once per column the pipeline decrypts, after planning and before anything is
    /// read; a refusal fails the run with [`RunFailure::Denied`]. Required: there is no
    /// "no check" value (a caller that really allows everything says so with its own type).
    pub authorizer: Arc<dyn RunAuthorizer>,
    /// Cancels the run: sinks are aborted and rolled back, nothing is committed.
    pub cancel: CancellationToken,
    /// The keystore of `state_dir`, already unlocked by the caller: used instead of unlocking
    /// it again (a transform naming another `keystore` still opens that one).
    pub keystore: Option<Arc<custos_keys::Keystore>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("state_dir", &self.state_dir)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("keystore", &self.keystore.is_some())
            .finish()
    }
}

/// Decides, for one run, whether it may decrypt a column and use a key. Implemented by whoever
/// signed the caller in (the CLI's session, the server's authorizer), so every decision is
/// recorded there.
#[async_trait::async_trait]
pub trait RunAuthorizer: Send + Sync {
    /// May the run decrypt `column` (the output column's name)? `Err` holds the reason shown
    /// to the user; it must not contain secrets or cell values.
    async fn decrypt_column(&self, column: &str) -> Result<(), String>;

    /// May the run protect data with key `key` by `operation` (`encrypt`, `tokenize`, `fpe`,
    /// ...)? `deterministic`: equal inputs give equal outputs, so whoever runs it on inputs of
    /// their choosing builds a codebook. Asked once per key and operation, after planning and
    /// before anything is read.
    async fn use_key(&self, key: &str, operation: &str, deterministic: bool) -> Result<(), String>;
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every sink was committed.
    Succeeded,
    /// Nothing was committed (see [`RunFailure`]).
    Failed,
    /// Cancelled before the commit; nothing was committed.
    Cancelled,
}

impl RunStatus {
    /// The status as stored in run records: `succeeded`, `failed`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunFailure {
    /// A decrypt the pipeline asks for was not authorized; nothing was read.
    Denied,
    /// Cancelled (Ctrl-C, a server shutdown or a cancel request).
    Cancelled,
    /// More rows were quarantined than `[pipeline] quarantine` allows.
    QuarantineLimit,
    /// The row-count invariant did not hold.
    Invariant,
    /// A source, transform or sink failed, or a commit failed.
    Error,
}

/// Live progress, polled by the CLI's progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Records read from all sources.
    pub rows_read: AtomicU64,
    /// Bytes read from all sources.
    pub bytes_read: AtomicU64,
    /// Total bytes of all input files (known once planning is done).
    pub bytes_total: AtomicU64,
    /// Rows written by all sinks.
    pub rows_written: AtomicU64,
}

/// A file written by a sink.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputFile {
    /// Sink name.
    pub sink: String,
    /// Path.
    pub path: PathBuf,
    /// Rows.
    pub rows: u64,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
}

/// What a run did: printed by `custos run` and stored as the run's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// How the run ended.
    pub status: RunStatus,
    /// The kind of failure, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<RunFailure>,
    /// Why the run failed.
    pub error: Option<String>,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Records read from all sources.
    pub rows_read: u64,
    /// Rows written by all sinks.
    pub rows_written: u64,
    /// Rows quarantined.
    pub rows_quarantined: u64,
    /// Rows removed by SQL.
    pub rows_filtered: u64,
    /// Rows added by SQL.
    pub rows_added: u64,
    /// Whether `in + added = out + quarantined + filtered` held for every component.
    pub invariant_ok: bool,
    /// Quarantine file, when rows were quarantined.
    pub quarantine_file: Option<PathBuf>,
    /// Per-component counts, in graph order.
    pub components: Vec<ComponentCounts>,
    /// Files written.
    pub outputs: Vec<OutputFile>,
    /// Files read.
    pub inputs: Vec<FileRecord>,
}

/// The result of [`run`]: the summary, whether or not the run succeeded.
#[derive(Debug)]
pub enum RunOutcome {
    /// The pipeline ran (check `summary.status`).
    Ran(Box<RunSummary>),
    /// The config is invalid; nothing ran.
    Invalid(custos_config::Diagnostics),
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Runs a loaded pipeline. Returns `Invalid` when the config (or a schema, or SQL) is wrong.
pub async fn run(
    loaded: &Loaded,
    opts: &RunOptions,
    progress: Arc<Progress>,
) -> Result<RunOutcome, EngineError> {
    let config = &loaded.config;
    if loaded.diagnostics.has_errors() {
        return Ok(RunOutcome::Invalid(loaded.diagnostics.clone()));
    }
    let mut store = StateStore::open(&opts.state_dir)?;
    store.reap_dead_runs()?;
    let run_id = uuid::Uuid::now_v7().to_string();
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let run_dir = opts.state_dir.join("runs").join(&run_id);
    create_private_dir(&run_dir)?;
    let mut record = RunRecord {
        id: run_id.clone(),
        pipeline: config.pipeline.name.clone(),
        config_path: custos_connectors::files::absolute(&config.file)
            .unwrap_or(config.file.clone())
            .display()
            .to_string(),
        config_hash: config.hash.clone(),
        started_at: started.to_rfc3339(),
        ended_at: None,
        status: "running".into(),
        error: None,
        pid: i64::from(std::process::id()),
        host: host_name(),
        rows_read: 0,
        rows_written: 0,
        rows_quarantined: 0,
        rows_filtered: 0,
        invariant_ok: None,
        components: Vec::new(),
        files: Vec::new(),
    };
    store.start_run(&record)?;

    let quarantine = Arc::new(Quarantine::new(run_dir.join("quarantine.jsonl")));
    let mut diags = loaded.diagnostics.clone();
    let Some(planned) = plan(
        config,
        &loaded.map,
        &opts.state_dir,
        opts.keystore.as_deref(),
        quarantine.clone(),
        &mut diags,
    )
    .await
    else {
        diags.sort();
        record.status = "failed".into();
        record.error = Some(format!("invalid config: {} error(s)", diags.error_count()));
        record.ended_at = Some(chrono::Utc::now().to_rfc3339());
        store.finish_run(&record, "{}")?;
        return Ok(RunOutcome::Invalid(diags));
    };
    let total: u64 = planned.sources.iter().map(|(_, _, size)| size).sum();
    progress.bytes_total.store(total, Ordering::Relaxed);

    // Temporaries of killed runs are removed; those of runs still going (and this one) stay.
    let running = store.running_ids()?;
    for s in &config.sinks {
        let Some(path) = s.kind.path() else { continue };
        let target = config.resolve(path);
        for stale in sink::remove_stale(&target, &running) {
            tracing::info!(path = %stale.display(), "removed a temporary file left by an earlier run");
        }
    }

    let mut denied = None;
    for column in &planned.decrypts {
        if let Err(e) = opts.authorizer.decrypt_column(column).await {
            denied = Some(e);
            break;
        }
    }
    if denied.is_none() {
        for u in &planned.key_uses {
            if let Err(e) = opts
                .authorizer
                .use_key(&u.key, u.operation, u.deterministic)
                .await
            {
                denied = Some(e);
                break;
            }
        }
    }
    let denied_run = denied.is_some();
    let result = match denied {
        Some(e) => Err(e),
        None => {
            execute(
                loaded,
                &planned,
                &run_id,
                quarantine.clone(),
                progress.clone(),
                &opts.cancel,
            )
            .await
        }
    };
    let quarantine_file = quarantine
        .finish()
        .map_err(|e| EngineError::Io(e.to_string()))?;
    let written_rows: Vec<(String, u64)> = match &result {
        Ok(outs) => outs
            .iter()
            .map(|o| (o.name().to_string(), o.rows()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let (mut components, inputs) = counts(loaded, &planned, &quarantine, &written_rows);
    let invariant_ok = result.is_err()
        || components
            .iter()
            .all(|c| c.rows_in + c.added == c.rows_out + c.quarantined + c.filtered);
    let rows_read: u64 = components
        .iter()
        .filter(|c| c.section == "sources")
        .map(|c| c.rows_in)
        .sum();
    let rows_quarantined = quarantine.total();
    let rows_filtered: u64 = components.iter().map(|c| c.filtered).sum();
    let rows_added: u64 = components.iter().map(|c| c.added).sum();

    let mut error: Option<String> = None;
    let mut status = RunStatus::Succeeded;
    let mut failure = None;
    let mut outputs: Vec<Written> = Vec::new();
    match result {
        Err(e) => {
            let (st, kind) = if denied_run {
                (RunStatus::Failed, RunFailure::Denied)
            } else if e == CANCELLED {
                (RunStatus::Cancelled, RunFailure::Cancelled)
            } else {
                (RunStatus::Failed, RunFailure::Error)
            };
            status = st;
            failure = Some(kind);
            error = Some(e);
        }
        Ok(outs) => outputs = outs,
    }
    if error.is_none() {
        let ratio = if rows_read == 0 {
            0.0
        } else {
            rows_quarantined as f64 / rows_read as f64
        };
        let q = &config.pipeline.quarantine;
        if let Some(max) = q.max_ratio
            && ratio > max
        {
            failure = Some(RunFailure::QuarantineLimit);
            error = Some(format!(
                "{rows_quarantined} of {rows_read} rows quarantined ({:.2}%), above pipeline.quarantine.max_ratio ({:.2}%)",
                ratio * 100.0,
                max * 100.0
            ));
        } else if let Some(max) = q.max_rows
            && rows_quarantined > max
        {
            failure = Some(RunFailure::QuarantineLimit);
            error = Some(format!(
                "{rows_quarantined} rows quarantined, above pipeline.quarantine.max_rows ({max})"
            ));
        } else if !invariant_ok {
            let bad: Vec<String> = components
                .iter()
                .filter(|c| c.rows_in + c.added != c.rows_out + c.quarantined + c.filtered)
                .map(|c| {
                    format!(
                        "{} (in {} + added {} != out {} + quarantined {} + filtered {})",
                        c.name, c.rows_in, c.added, c.rows_out, c.quarantined, c.filtered
                    )
                })
                .collect();
            failure = Some(RunFailure::Invariant);
            error = Some(format!("row-count invariant broken: {}", bad.join("; ")));
        }
        if error.is_some() {
            status = RunStatus::Failed;
        }
    }
    // Files first (their previous versions kept), then the databases; a database that fails
    // to commit puts the files back. Databases committed before that one stay committed.
    let (files_out, dbs): (Vec<SinkOutput>, Vec<PgPending>) = split(outputs);
    let mut written: Vec<OutputFile> = Vec::new();
    if error.is_none() {
        match sink::commit(&planned.store, &files_out, &run_id).await {
            Err(e) => {
                error = Some(crate::redact_values(&e.to_string()));
                status = RunStatus::Failed;
                failure = Some(RunFailure::Error);
                for d in dbs {
                    d.rollback().await;
                }
            }
            Ok(committed) => {
                let mut db_written = Vec::new();
                let mut dbs = dbs.into_iter();
                while let Some(d) = dbs.next() {
                    let (name, location, rows, bytes) =
                        (d.name.clone(), d.location.clone(), d.rows, d.bytes);
                    match d.commit().await {
                        Ok(()) => db_written.push(OutputFile {
                            sink: name,
                            path: PathBuf::from(location),
                            rows,
                            size: bytes,
                            sha256: String::new(),
                        }),
                        Err(e) => {
                            error = Some(crate::redact_values(&e.to_string()));
                            status = RunStatus::Failed;
                            failure = Some(RunFailure::Error);
                            if !db_written.is_empty() {
                                tracing::error!(
                                    committed = ?db_written.iter().map(|o: &OutputFile| o.sink.clone()).collect::<Vec<_>>(),
                                    "a database sink failed to commit after others had committed"
                                );
                            }
                            for rest in dbs.by_ref() {
                                rest.rollback().await;
                            }
                        }
                    }
                }
                if status == RunStatus::Succeeded {
                    committed.finish().await;
                    written.extend(files_out.iter().map(|o| OutputFile {
                        sink: o.name.clone(),
                        path: o.target.clone(),
                        rows: o.rows,
                        size: o.size,
                        sha256: o.sha256.clone(),
                    }));
                    written.extend(db_written);
                } else {
                    committed.rollback().await;
                }
            }
        }
    } else {
        sink::abort(&planned.store, &files_out).await;
        for d in dbs {
            d.rollback().await;
        }
    }

    let mut files = inputs.clone();
    let mut quarantine_out = quarantine_file.clone();
    if let Some(q) = &quarantine_file {
        if let Some(dest) = &config.pipeline.quarantine.path {
            let dest = config.resolve(dest);
            match copy_private(q, &dest, &run_id) {
                Ok(()) => quarantine_out = Some(dest),
                Err(e) => {
                    error.get_or_insert(format!("copying quarantine to {}: {e}", dest.display()));
                    status = RunStatus::Failed;
                    failure.get_or_insert(RunFailure::Error);
                }
            }
        }
        if let Some(qp) = &quarantine_out
            && let Ok((size, sha256)) = sha256_file(qp)
        {
            files.push(FileRecord {
                role: "quarantine".into(),
                component: String::new(),
                path: qp.clone(),
                size,
                sha256,
            });
        }
    }
    for o in &written {
        files.push(FileRecord {
            role: "output".into(),
            component: o.sink.clone(),
            path: o.path.clone(),
            size: o.size,
            sha256: o.sha256.clone(),
        });
    }
    if status != RunStatus::Succeeded {
        // Nothing was committed: sinks count no written rows.
        for c in components.iter_mut().filter(|c| c.section == "sinks") {
            c.rows_out = 0;
        }
    }
    let summary = RunSummary {
        run_id: run_id.clone(),
        pipeline: config.pipeline.name.clone(),
        status,
        failure,
        error: error.clone(),
        started_at: record.started_at.clone(),
        duration_ms: clock.elapsed().as_millis() as u64,
        rows_read,
        rows_written: written.iter().map(|o| o.rows).sum(),
        rows_quarantined,
        rows_filtered,
        rows_added,
        invariant_ok,
        quarantine_file: quarantine_out,
        components: components.clone(),
        outputs: written,
        inputs,
    };
    record.status = status.to_string();
    record.error = error;
    record.ended_at = Some(chrono::Utc::now().to_rfc3339());
    record.rows_read = summary.rows_read;
    record.rows_written = summary.rows_written;
    record.rows_quarantined = rows_quarantined;
    record.rows_filtered = rows_filtered;
    record.invariant_ok = Some(invariant_ok);
    record.components = components;
    record.files = files;
    let json = serde_json::to_string(&summary).map_err(|e| EngineError::Io(e.to_string()))?;
    store.finish_run(&record, &json)?;
    Ok(RunOutcome::Ran(Box::new(summary)))
}

/// A sink's finished, uncommitted output.
enum Written {
    /// A temporary file, renamed onto the target at commit.
    File(SinkOutput),
    /// A database load whose transaction is open.
    Db(Box<PgPending>),
}

impl Written {
    fn name(&self) -> &str {
        match self {
            Self::File(o) => &o.name,
            Self::Db(d) => &d.name,
        }
    }

    fn rows(&self) -> u64 {
        match self {
            Self::File(o) => o.rows,
            Self::Db(d) => d.rows,
        }
    }
}

fn split(outputs: Vec<Written>) -> (Vec<SinkOutput>, Vec<PgPending>) {
    let mut files = Vec::new();
    let mut dbs = Vec::new();
    for o in outputs {
        match o {
            Written::File(f) => files.push(f),
            Written::Db(d) => dbs.push(*d),
        }
    }
    (files, dbs)
}

/// Executes every sink concurrently: files into temporaries, databases inside open
/// transactions. Cancelled by Ctrl-C.
async fn execute(
    loaded: &Loaded,
    planned: &Planned,
    run_id: &str,
    quarantine: Arc<Quarantine>,
    progress: Arc<Progress>,
    cancel: &CancellationToken,
) -> Result<Vec<Written>, String> {
    let config = &loaded.config;
    let mut tasks = Vec::new();
    let mut temps = Vec::new();
    let detector = Arc::new(
        custos_detect::Detector::new(config.detection.detector_config())
            .map_err(|e| format!("PII detector: {e}"))?,
    );
    for s in &config.sinks {
        let df = planned
            .ctx
            .table(s.inputs[0].as_str())
            .await
            .map_err(|e| crate::redact_values(&e.strip_backtrace()))?;
        let stream = df
            .execute_stream()
            .await
            .map_err(|e| crate::redact_values(&e.strip_backtrace()))?;
        let stream = crate::gate::guard(config, &s.name, detector.clone(), stream);
        let rows = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let rows_c = rows.clone();
        let watcher = SpawnedTask::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                p.rows_written
                    .fetch_max(rows_c.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        });
        let name = s.name.clone();
        let task = match &s.kind {
            SinkKind::Postgres(pg) => {
                let (pg, base, insecure) = (
                    pg.clone(),
                    config.base_dir.clone(),
                    config.danger.allow_insecure_db,
                );
                SpawnedTask::spawn(async move {
                    custos_connectors::postgres::sink::write(
                        &name, &pg, &base, insecure, stream, rows,
                    )
                    .await
                    .map(|d| Written::Db(Box::new(d)))
                })
            }
            kind => {
                let target = config.resolve(kind.path().unwrap_or_default());
                let absolute =
                    custos_connectors::files::absolute(&target).unwrap_or(target.clone());
                temps.push(SinkOutput {
                    name: s.name.clone(),
                    target: absolute.clone(),
                    tmp: sink::temp_path(&absolute, run_id),
                    rows: 0,
                    size: 0,
                    sha256: String::new(),
                });
                let (kind, run_id, store) =
                    (kind.clone(), run_id.to_string(), planned.store.clone());
                SpawnedTask::spawn(async move {
                    sink::write(&name, &kind, &target, &run_id, &store, stream, rows)
                        .await
                        .map(Written::File)
                })
            }
        };
        tasks.push((task, watcher));
    }
    let sources: Vec<_> = planned
        .sources
        .iter()
        .map(|(_, st, _)| st.clone())
        .collect();
    let p = progress.clone();
    let ticker = SpawnedTask::spawn(async move {
        loop {
            p.rows_read.store(
                sources
                    .iter()
                    .map(|s| s.records.load(Ordering::Relaxed))
                    .sum(),
                Ordering::Relaxed,
            );
            p.bytes_read.store(
                sources
                    .iter()
                    .map(|s| s.bytes.load(Ordering::Relaxed))
                    .sum(),
                Ordering::Relaxed,
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let all = async {
        let mut outs = Vec::new();
        let mut first_err: Option<String> = None;
        for (t, w) in tasks {
            let r = t.join().await;
            drop(w);
            match r {
                Ok(Ok(o)) => outs.push(o),
                Ok(Err(e)) => {
                    first_err.get_or_insert(crate::gate::unwrap_message(&crate::redact_values(
                        &e.to_string(),
                    )));
                }
                Err(e) => {
                    first_err.get_or_insert(format!("sink task failed: {e}"));
                }
            }
        }
        (outs, first_err)
    };
    // Dropping the sink tasks (cancel) closes their connections: the server rolls back.
    let result = tokio::select! {
        r = all => r,
        _ = cancel.cancelled() => {
            sink::abort(&planned.store, &temps).await;
            drop(ticker);
            let _ = quarantine.finish();
            return Err(CANCELLED.into());
        }
    };
    drop(ticker);
    let (outs, err) = result;
    if let Some(e) = err {
        sink::abort(&planned.store, &temps).await;
        for o in outs {
            if let Written::Db(d) = o {
                d.rollback().await;
            }
        }
        return Err(e);
    }
    let written: u64 = outs.iter().map(Written::rows).sum();
    progress.rows_written.store(written, Ordering::Relaxed);
    Ok(outs)
}

/// Per-component counts and input digests after execution.
fn counts(
    loaded: &Loaded,
    planned: &Planned,
    quarantine: &Quarantine,
    written: &[(String, u64)],
) -> (Vec<ComponentCounts>, Vec<FileRecord>) {
    let config = &loaded.config;
    let qcounts = quarantine.counts();
    let out_of = |name: &str| {
        planned
            .counters
            .get(name)
            .map_or(0, |c| c.rows.load(Ordering::Relaxed))
    };
    let mut comps = Vec::new();
    let mut inputs = Vec::new();
    for (name, st, _) in &planned.sources {
        let kind = config
            .sources
            .iter()
            .find(|s| &s.name == name)
            .map_or("", |s| s.kind.type_name());
        let records = st.records.load(Ordering::Relaxed);
        let emitted = st.emitted.load(Ordering::Relaxed);
        // The source's own count, cross-checked against what the quarantine file received.
        let q = st
            .quarantined
            .load(Ordering::Relaxed)
            .max(qcounts.get(name).copied().unwrap_or(0));
        // Rows emitted but not consumed (a LIMIT downstream) count as filtered.
        let out = out_of(name);
        comps.push(ComponentCounts {
            name: name.clone(),
            section: "sources".into(),
            r#type: kind.into(),
            rows_in: records,
            rows_out: out,
            quarantined: q,
            filtered: emitted.saturating_sub(out),
            added: 0,
        });
        for d in st.files.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            inputs.push(FileRecord {
                role: "input".into(),
                component: name.clone(),
                path: d.path.clone(),
                size: d.size,
                sha256: d.sha256.clone(),
            });
        }
    }
    for name in &planned.graph.order {
        let Some(t) = config.transforms.iter().find(|t| &t.name == name) else {
            continue;
        };
        let rows_in: u64 = t.inputs.iter().map(|i| out_of(i)).sum();
        let out = out_of(name);
        let (q, filtered, added) = match planned.validates.get(name) {
            Some(v) => {
                let q = v.quarantined.load(Ordering::Relaxed);
                let seen = v.rows_in.load(Ordering::Relaxed);
                // Rows validated but not consumed downstream (LIMIT) count as filtered.
                (
                    q,
                    seen.saturating_sub(q).saturating_sub(out) + rows_in.saturating_sub(seen),
                    0,
                )
            }
            None => (0, rows_in.saturating_sub(out), out.saturating_sub(rows_in)),
        };
        comps.push(ComponentCounts {
            name: name.clone(),
            section: "transforms".into(),
            r#type: t.kind.type_name().into(),
            rows_in,
            rows_out: out,
            quarantined: q,
            filtered,
            added,
        });
    }
    for s in &config.sinks {
        let rows_in = out_of(&s.inputs[0]);
        let rows_out = written
            .iter()
            .find(|(n, _)| n == &s.name)
            .map_or(0, |(_, r)| *r);
        comps.push(ComponentCounts {
            name: s.name.clone(),
            section: "sinks".into(),
            r#type: s.kind.type_name().into(),
            rows_in,
            rows_out,
            quarantined: 0,
            filtered: 0,
            added: 0,
        });
    }
    (comps, inputs)
}

fn copy_private(src: &Path, dest: &Path, run_id: &str) -> std::io::Result<()> {
    let tmp = sink::temp_path(dest, run_id);
    let mut out = create_private(&tmp).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut inp = std::fs::File::open(src)?;
    std::io::copy(&mut inp, &mut out)?;
    out.sync_all()?;
    std::fs::rename(&tmp, dest)
}
