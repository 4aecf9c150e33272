//! Planning a statement's query for a caller: the engine's planner with the provider layer's
//! catalog (the tables the caller may see, USER tables as the caller's partition).

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;

use crate::engine::{Database, QueryPlan};
use crate::error::Result;
use crate::provider::catalog::QuillCatalog;
use crate::session::Caller;

/// A DataFusion context for one statement of `caller`.
pub fn context(db: &Arc<Database>, caller: &Caller) -> SessionContext {
    let catalog = Arc::new(QuillCatalog::new(db.clone(), caller.clone()));
    db.planner.context(caller, catalog)
}

/// Plans `stmt` in `ctx` with its parameter values bound.
pub async fn plan_in(
    ctx: SessionContext,
    stmt: Statement,
    params: &[ScalarValue],
) -> Result<QueryPlan> {
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
        .await?;
    let plan = if params.is_empty() {
        plan
    } else {
        plan.with_param_values(params.to_vec())?
    };
    Ok(QueryPlan::new(ctx, plan))
}

/// Plans a query of `caller` with its parameter values bound.
pub async fn plan_query(
    db: &Arc<Database>,
    caller: &Caller,
    stmt: Statement,
    params: &[ScalarValue],
) -> Result<QueryPlan> {
    plan_in(context(db, caller), stmt, params).await
}

/// Runs a query of `caller` to completion (the rows a DML statement changes).
pub async fn query_batches(
    db: &Arc<Database>,
    caller: &Caller,
    stmt: Statement,
    params: &[ScalarValue],
) -> Result<Vec<RecordBatch>> {
    let plan = plan_query(db, caller, stmt, params).await?;
    db.planner.collect(&plan).await
}

/// Runs `stmt` over one in-memory table `table` holding `rows` (ON CONFLICT DO UPDATE).
pub async fn scratch_query(
    db: &Arc<Database>,
    caller: &Caller,
    table: &str,
    rows: RecordBatch,
    stmt: Statement,
    params: &[ScalarValue],
) -> Result<Vec<RecordBatch>> {
    let ctx = db.planner.scratch_context(caller, table, rows)?;
    let plan = plan_in(ctx, stmt, params).await?;
    db.planner.collect(&plan).await
}
