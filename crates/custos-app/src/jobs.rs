//! Pipeline runs as jobs: queued behind a limit of concurrent runs, each on its own thread
//! and runtime (a run's CPU work never stalls request handling), with live progress, a
//! cancellation token, and a watch channel that tells waiters when the job ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use custos_engine::{CancellationToken, Progress, RunSummary};
use serde::Serialize;
use tokio::sync::watch;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Waiting for a free run slot.
    Queued,
    /// Running.
    Running,
    /// Every sink was committed.
    Succeeded,
    /// Nothing was committed.
    Failed,
    /// Cancelled; nothing was committed.
    Cancelled,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// A snapshot of a run's progress.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProgressInfo {
    /// Records read from all sources.
    pub rows_read: u64,
    /// Bytes read from all sources.
    pub bytes_read: u64,
    /// Total bytes of the inputs (known once planned).
    pub bytes_total: u64,
    /// Rows written by all sinks (not yet committed while running).
    pub rows_written: u64,
}

/// What a client sees of a job.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// The registered pipeline.
    pub pipeline: String,
    /// The registered version that ran.
    pub pipeline_version: i64,
    /// Who started it.
    pub principal: String,
    /// Where it is.
    pub status: JobStatus,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// Live progress.
    pub progress: ProgressInfo,
    /// The engine's run id, once it ran.
    pub run_id: Option<String>,
    /// Why it failed or was cancelled (no values or secrets).
    pub error: Option<String>,
    /// The run's summary, once it ended.
    pub summary: Option<Box<RunSummary>>,
}

pub(crate) struct JobState {
    pub(crate) status: JobStatus,
    pub(crate) run_id: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) summary: Option<Box<RunSummary>>,
}

/// One job.
pub struct Job {
    pub(crate) id: String,
    pub(crate) pipeline: String,
    pub(crate) pipeline_version: i64,
    pub(crate) principal: String,
    pub(crate) created_at: String,
    pub(crate) cancel: CancellationToken,
    pub(crate) progress: Arc<Progress>,
    pub(crate) state: Mutex<JobState>,
    pub(crate) done: watch::Sender<bool>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("id", &self.id).finish()
    }
}

impl Job {
    pub(crate) fn new(pipeline: &str, version: i64, principal: &str) -> Arc<Self> {
        Arc::new(Self {
            id: uuid::Uuid::now_v7().to_string(),
            pipeline: pipeline.to_string(),
            pipeline_version: version,
            principal: principal.to_string(),
            created_at: chrono::Utc::now().to_rfc3339(),
            cancel: CancellationToken::new(),
            progress: Arc::new(Progress::default()),
            state: Mutex::new(JobState {
                status: JobStatus::Queued,
                run_id: None,
                error: None,
                summary: None,
            }),
            done: watch::channel(false).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The job's pipeline.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Its status now.
    pub fn status(&self) -> JobStatus {
        self.lock().status
    }

    pub(crate) fn set_running(&self) -> bool {
        let mut s = self.lock();
        if s.status != JobStatus::Queued {
            return false;
        }
        s.status = JobStatus::Running;
        true
    }

    pub(crate) fn finish(
        &self,
        status: JobStatus,
        error: Option<String>,
        summary: Option<Box<RunSummary>>,
    ) {
        {
            let mut s = self.lock();
            s.status = status;
            s.run_id = summary.as_ref().map(|x| x.run_id.clone());
            s.error = error;
            s.summary = summary;
        }
        self.done.send_replace(true);
    }

    /// A snapshot for clients.
    pub fn info(&self) -> JobInfo {
        let s = self.lock();
        let p = &self.progress;
        JobInfo {
            id: self.id.clone(),
            pipeline: self.pipeline.clone(),
            pipeline_version: self.pipeline_version,
            principal: self.principal.clone(),
            status: s.status,
            created_at: self.created_at.clone(),
            progress: ProgressInfo {
                rows_read: p.rows_read.load(Ordering::Relaxed),
                bytes_read: p.bytes_read.load(Ordering::Relaxed),
                bytes_total: p.bytes_total.load(Ordering::Relaxed),
                rows_written: p.rows_written.load(Ordering::Relaxed),
            },
            run_id: s.run_id.clone(),
            error: s.error.clone(),
            summary: s.summary.clone(),
        }
    }

    /// Waits until the job has ended.
    pub async fn wait(&self) {
        let mut rx = self.done.subscribe();
        // An error means the sender is gone, which only happens with the job itself.
        let _ = rx.wait_for(|d| *d).await;
    }

    /// A receiver that turns `true` when the job ends.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.done.subscribe()
    }
}

/// Most finished jobs remembered (run records stay in the state store for good).
const KEEP_FINISHED: usize = 1000;

/// The project's jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    map: Mutex<HashMap<String, Arc<Job>>>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, job: Arc<Job>) {
        let mut m = self.lock();
        let finished: Vec<(String, String)> = m
            .values()
            .filter(|j| j.status().is_final())
            .map(|j| (j.created_at.clone(), j.id.clone()))
            .collect();
        if finished.len() >= KEEP_FINISHED {
            let mut finished = finished;
            finished.sort();
            for (_, id) in finished.iter().take(finished.len() + 1 - KEEP_FINISHED) {
                m.remove(id);
            }
        }
        m.insert(job.id.clone(), job);
    }

    /// One job by id.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.lock().get(id).cloned()
    }

    /// Every job remembered, newest first.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<Arc<Job>> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| b.id.cmp(&a.id));
        v
    }
}
