//! Every pipeline component is registered in the session as a [`ComponentTable`], which
//! counts the rows the component produces and makes sure it is executed exactly once: a
//! component read by several consumers is fed through a [`Tee`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::exec::{Counter, MapExec, Tee, TeeExec};

/// A component as a table: counted, executed once, fanned out when read by several consumers.
#[derive(Debug)]
pub struct ComponentTable {
    name: String,
    inner: Arc<dyn TableProvider>,
    counter: Arc<Counter>,
    consumers: usize,
    scans: AtomicUsize,
    tee: Option<Arc<Tee>>,
}

impl ComponentTable {
    /// Wraps `inner`, which `consumers` components read. When the consumers' paths meet again
    /// downstream (`reconverging`), the tee buffers without limit: back-pressure from one
    /// branch would otherwise stall the branch a join is waiting for.
    pub fn new(
        name: &str,
        inner: Arc<dyn TableProvider>,
        counter: Arc<Counter>,
        consumers: usize,
        reconverging: bool,
    ) -> Self {
        // Tokio channels allocate as they fill, so a huge capacity costs nothing up front.
        let capacity = if reconverging { usize::MAX >> 4 } else { 4 };
        let tee =
            (consumers > 1).then(|| Arc::new(Tee::new(name, inner.schema(), consumers, capacity)));
        Self {
            name: name.to_string(),
            inner,
            counter,
            consumers: consumers.max(1),
            scans: AtomicUsize::new(0),
            tee,
        }
    }
}

#[async_trait]
impl TableProvider for ComponentTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let index = self.scans.fetch_add(1, Ordering::SeqCst);
        if index >= self.consumers {
            return Err(DataFusionError::Plan(format!(
                "component \"{}\" is read more often than it has consumers; a query may name each input once (for a self-join, read the input through two transforms)",
                self.name
            )));
        }
        match &self.tee {
            None => {
                let plan = self.inner.scan(state, None, &[], None).await?;
                Ok(Arc::new(MapExec::try_new(
                    plan,
                    self.counter.clone(),
                    projection.cloned(),
                )?))
            }
            Some(tee) => {
                // Only the first consumer plans the component; the others share its output.
                if !tee.has_plan() {
                    let plan = self.inner.scan(state, None, &[], None).await?;
                    let counted: Arc<dyn ExecutionPlan> =
                        Arc::new(MapExec::try_new(plan, self.counter.clone(), None)?);
                    tee.set_plan_if_unset(|| Ok(counted))?;
                }
                Ok(Arc::new(TeeExec::try_new(
                    tee.clone(),
                    index,
                    projection.cloned(),
                )?))
            }
        }
    }
}
