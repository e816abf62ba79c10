//! Physical plan nodes custos adds to DataFusion plans.
//!
//! [`MapExec`] applies a [`BatchOp`] (count, validate) to every batch of its child and then
//! projects; [`TeeExec`] is one output of a component read by several consumers, fed by a
//! single execution of that component. Both are ordinary `ExecutionPlan`s, so a plan that uses
//! them can be displayed, optimized and, with a codec, shipped to Ballista executors.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream, execute_stream,
};
use futures::StreamExt;
use tokio::sync::mpsc;

/// A per-batch operation applied by [`MapExec`].
pub trait BatchOp: fmt::Debug + Send + Sync {
    /// Short name shown in plans.
    fn name(&self) -> &str;
    /// Transforms one batch; rows it drops must be accounted for by the op itself.
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch>;
    /// The schema of the batches [`BatchOp::apply`] returns for input batches of `input`.
    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        Ok(input.clone())
    }
    /// The op as a [`ConcurrentOp`], when its work on a batch depends on no other batch:
    /// [`MapExec`] then works on several batches at once and still emits them in order.
    fn concurrent(self: Arc<Self>) -> Option<Arc<dyn ConcurrentOp>> {
        None
    }
}

/// An op split into a part that may run on several batches at once and a part that runs in
/// input order (numbering rows, writing quarantine records), so the output and the quarantine
/// file are the same as with one batch at a time.
pub trait ConcurrentOp: Send + Sync {
    /// The work on one batch that needs nothing from other batches.
    fn prepare(&self, batch: RecordBatch) -> Result<Prepared>;
    /// Completes a prepared batch; called in input order.
    fn commit(&self, prepared: Prepared) -> Result<RecordBatch>;
}

/// One batch after [`ConcurrentOp::prepare`]: the input, the transformed batch (row for row
/// with the input) and the rows to reject.
pub struct Prepared {
    pub(crate) input: RecordBatch,
    pub(crate) output: RecordBatch,
    pub(crate) rejected: Vec<crate::reject::Rejected>,
}

/// Counts rows passing through.
#[derive(Debug, Default)]
pub struct Counter {
    /// Rows seen.
    pub rows: AtomicU64,
}

impl BatchOp for Counter {
    fn name(&self) -> &str {
        "count"
    }
    fn apply(&self, batch: RecordBatch) -> Result<RecordBatch> {
        self.rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        Ok(batch)
    }
}

fn properties(schema: SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

fn project_schema(schema: &SchemaRef, projection: Option<&Vec<usize>>) -> Result<SchemaRef> {
    Ok(match projection {
        Some(p) => Arc::new(schema.project(p)?),
        None => schema.clone(),
    })
}

/// Applies a [`BatchOp`] to its child's batches, then an optional projection.
#[derive(Debug)]
pub struct MapExec {
    input: Arc<dyn ExecutionPlan>,
    op: Arc<dyn BatchOp>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl MapExec {
    /// Wraps `input`; `projection` indexes the input's columns.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        op: Arc<dyn BatchOp>,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let schema = project_schema(&op.output_schema(&input.schema())?, projection.as_ref())?;
        let props = properties(
            schema.clone(),
            input.properties().partitioning.partition_count(),
        );
        Ok(Self {
            input,
            op,
            projection,
            schema,
            props,
        })
    }
}

impl DisplayAs for MapExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CustosMapExec: op={}", self.op.name())
    }
}

impl ExecutionPlan for MapExec {
    fn name(&self) -> &str {
        "CustosMapExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let child = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("CustosMapExec needs one child".into()))?;
        Ok(Arc::new(MapExec::try_new(
            child,
            self.op.clone(),
            self.projection.clone(),
        )?))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let op = self.op.clone();
        let projection = self.projection.clone();
        let project = move |out: RecordBatch| match &projection {
            Some(p) => Ok(out.project(p)?),
            None => Ok(out),
        };
        let name = op.name().to_string();
        let Some(op) = op.clone().concurrent() else {
            let stream = input.map(move |b| project(op.apply(b?)?));
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                stream,
            )));
        };
        // Each batch is prepared on a task of its own, so up to `width` batches are worked on
        // at once on the runtime's threads; `buffered` yields them in input order, and the
        // commit (row numbers, quarantine) runs here, in that order.
        let width = std::thread::available_parallelism().map_or(2, |n| n.get());
        let worker = op.clone();
        let stream = input
            .map(move |b| {
                let op = worker.clone();
                let name = name.clone();
                async move {
                    let b = b?;
                    SpawnedTask::spawn(async move { op.prepare(b) })
                        .join()
                        .await
                        .map_err(|e| {
                            // Not the panic's message: it could quote a value.
                            let how = if e.is_panic() {
                                "panicked"
                            } else {
                                "was cancelled"
                            };
                            DataFusionError::Execution(format!("the {name} task {how}"))
                        })?
                }
            })
            .buffered(width)
            .map(move |p| project(op.commit(p?)?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// One consumer's channel of a [`Tee`].
type BatchReceiver = mpsc::Receiver<Result<RecordBatch>>;

/// The shared producer side of a fan-out: runs the component's plan once and hands every
/// batch to each consumer's bounded channel.
#[derive(Debug)]
pub struct Tee {
    name: String,
    schema: SchemaRef,
    state: Mutex<TeeState>,
}

#[derive(Debug)]
struct TeeState {
    plan: Option<Arc<dyn ExecutionPlan>>,
    senders: Vec<Option<mpsc::Sender<Result<RecordBatch>>>>,
    receivers: Vec<Option<mpsc::Receiver<Result<RecordBatch>>>>,
    task: Option<Arc<SpawnedTask<()>>>,
}

impl Tee {
    /// A tee of component `name` with `outputs` consumers, buffering up to `capacity`
    /// batches per consumer before the producer waits for the slowest one.
    pub fn new(name: &str, schema: SchemaRef, outputs: usize, capacity: usize) -> Self {
        let (senders, receivers) = (0..outputs)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                (Some(tx), Some(rx))
            })
            .unzip();
        Self {
            name: name.to_string(),
            schema,
            state: Mutex::new(TeeState {
                plan: None,
                senders,
                receivers,
                task: None,
            }),
        }
    }

    /// Sets the plan that produces the component's rows (first consumer's scan).
    pub fn set_plan_if_unset(
        &self,
        plan: impl FnOnce() -> Result<Arc<dyn ExecutionPlan>>,
    ) -> Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.plan.is_none() {
            s.plan = Some(plan()?);
        }
        Ok(())
    }

    /// Whether the producing plan is set.
    pub fn has_plan(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .plan
            .is_some()
    }

    fn take_receiver(
        &self,
        index: usize,
        ctx: Arc<TaskContext>,
    ) -> Result<(BatchReceiver, Arc<SpawnedTask<()>>)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rx = s
            .receivers
            .get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "component \"{}\" output {index} was read twice",
                    self.name
                ))
            })?;
        if s.task.is_none() {
            let plan = s.plan.clone().ok_or_else(|| {
                DataFusionError::Internal(format!("tee of \"{}\" has no plan", self.name))
            })?;
            let senders: Vec<_> = s.senders.iter_mut().map(Option::take).collect();
            let task = SpawnedTask::spawn(async move {
                let mut senders = senders;
                let mut stream = match execute_stream(plan, ctx) {
                    Ok(s) => s,
                    Err(e) => {
                        let msg = e.to_string();
                        for tx in senders.iter().flatten() {
                            let _ = tx.send(Err(DataFusionError::Execution(msg.clone()))).await;
                        }
                        return;
                    }
                };
                while let Some(item) = stream.next().await {
                    let failed = item.is_err();
                    let shared = item.map_err(|e| e.to_string());
                    for slot in senders.iter_mut() {
                        let Some(tx) = slot else { continue };
                        let msg = match &shared {
                            Ok(b) => Ok(b.clone()),
                            Err(m) => Err(DataFusionError::Execution(m.clone())),
                        };
                        if tx.send(msg).await.is_err() {
                            *slot = None; // that consumer stopped reading (e.g. LIMIT)
                        }
                    }
                    if failed || senders.iter().all(Option::is_none) {
                        return;
                    }
                }
            });
            s.task = Some(Arc::new(task));
        }
        let task = s
            .task
            .clone()
            .ok_or_else(|| DataFusionError::Internal("tee task missing".into()))?;
        Ok((rx, task))
    }
}

/// One consumer's view of a [`Tee`].
#[derive(Debug)]
pub struct TeeExec {
    tee: Arc<Tee>,
    index: usize,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl TeeExec {
    /// Output `index` of `tee`, projected.
    pub fn try_new(tee: Arc<Tee>, index: usize, projection: Option<Vec<usize>>) -> Result<Self> {
        let schema = project_schema(&tee.schema, projection.as_ref())?;
        Ok(Self {
            props: properties(schema.clone(), 1),
            tee,
            index,
            projection,
            schema,
        })
    }
}

impl DisplayAs for TeeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "CustosTeeExec: component={}, output={}",
            self.tee.name, self.index
        )
    }
}

impl ExecutionPlan for TeeExec {
    fn name(&self) -> &str {
        "CustosTeeExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }
    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (rx, task) = self.tee.take_receiver(self.index, context)?;
        let projection = self.projection.clone();
        let stream = futures::stream::unfold((rx, task), |(mut rx, task)| async move {
            rx.recv().await.map(|item| (item, (rx, task)))
        })
        .map(move |item| {
            let b = item?;
            match &projection {
                Some(p) => Ok(b.project(p)?),
                None => Ok(b),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}
