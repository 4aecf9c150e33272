//! Planning a statement's query for a caller: the engine's planner with the provider layer's
//! catalog (the tables the caller may see, USER tables as the caller's partition).

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::Statement;

use crate::engine::{Database, QueryPlan, Tables};
use crate::error::Result;
use crate::provider::catalog::QuillCatalog;
use crate::session::Caller;

/// The tables `caller` sees: the `quill` catalog as the caller may read it.
pub fn tables(db: &Arc<Database>, caller: &Caller) -> Tables {
    Tables::Catalog {
        catalog: Arc::new(QuillCatalog::new(db.clone(), caller.clone())),
        default_schema: caller.namespace().unwrap_or_else(|| "public".into()),
    }
}

/// Plans a query of `caller` with its parameter values bound.
pub async fn plan_query(
    db: &Arc<Database>,
    caller: &Caller,
    stmt: Statement,
    params: &[ScalarValue],
) -> Result<QueryPlan> {
    db.planner
        .plan(caller, tables(db, caller), stmt, params)
        .await
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
    let scratch = MemTable::try_new(rows.schema(), vec![vec![rows]])?;
    let tables = Tables::One {
        name: table.to_string(),
        table: Arc::new(scratch),
    };
    let plan = db.planner.plan(caller, tables, stmt, params).await?;
    db.planner.collect(&plan).await
}
