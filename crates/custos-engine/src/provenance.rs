//! Carries the provenance column through row-preserving SQL.
//!
//! A `sql` transform such as `SELECT id, lower(email) AS email FROM raw WHERE ...` keeps one
//! output row per input row, so its rows can still name their source file and line. This
//! rewrite appends `_custos_origin` to every projection reached from the query's root through
//! row-preserving nodes (projection, filter, sort, limit, alias) when exactly one such column
//! is in scope. Aggregates, joins and DISTINCT are left alone: their rows have no single origin,
//! and later quarantine records fall back to the row's position.

use std::sync::Arc;

use custos_core::ORIGIN_COLUMN;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};

/// Rewrites `plan` so that row-preserving queries keep the provenance column.
pub fn carry_origin(plan: LogicalPlan) -> Result<LogicalPlan> {
    match plan {
        LogicalPlan::Projection(p) => {
            let input = carry_origin(Arc::unwrap_or_clone(p.input))?;
            let origins: Vec<_> = input
                .schema()
                .columns()
                .into_iter()
                .filter(|c| c.name == ORIGIN_COLUMN)
                .collect();
            let already = p.schema.fields().iter().any(|f| f.name() == ORIGIN_COLUMN);
            let mut expr = p.expr;
            if origins.len() == 1 && !already {
                expr.push(Expr::Column(origins[0].clone()));
            }
            Ok(LogicalPlan::Projection(Projection::try_new(
                expr,
                Arc::new(input),
            )?))
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_) => {
            let inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
            if inputs.len() != 1 {
                return Ok(plan);
            }
            let new_input = carry_origin(inputs.into_iter().next().expect("one input"))?;
            plan.with_new_exprs(plan.expressions(), vec![new_input])
        }
        other => Ok(other),
    }
}
