//! A view as DataFusion reads it: its stored query planned anew for the reader, through the
//! reader's own catalog, so the reader's rights apply to every table under it and USER tables
//! show the reader's rows. Nothing is planned with the rights of the view's creator.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::logical_expr::{LogicalPlanBuilder, col};

use super::catalog::QuillCatalog;
use crate::catalog::ViewDef;
use crate::engine::{Database, Tables};
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::sql::parser::{self, Command};

/// How many views deep one query may reach: a chain deeper than this is a view that reaches
/// itself (OR REPLACE can close a loop), refused instead of recursing forever.
pub const MAX_VIEW_NESTING: usize = 16;

/// The view `def` for `caller`, read from a query already `depth` views deep.
pub async fn view_table(
    db: &Arc<Database>,
    caller: &Caller,
    def: &ViewDef,
    depth: usize,
) -> Result<Arc<dyn TableProvider>> {
    if depth >= MAX_VIEW_NESTING {
        return Err(Error::InvalidArgument(format!(
            "view {} reaches more than {MAX_VIEW_NESTING} views deep: does it refer to itself \
             through another view?",
            def.qualified()
        )));
    }
    let Command::Query(stmt) = parser::parse(&def.query, &db.limits.text)? else {
        return Err(Error::Internal(format!(
            "view {} holds no query",
            def.qualified()
        )));
    };
    let tables = Tables::Catalog {
        catalog: Arc::new(QuillCatalog::nested(db.clone(), caller.clone(), depth + 1)),
        default_schema: def.default_namespace.clone(),
    };
    let plan = db.planner.plan(caller, tables, *stmt, &[]).await?;
    let mut plan = plan.logical_plan().clone();
    if !def.columns.is_empty() {
        plan = rename(plan, &def.columns)
            .map_err(|e| Error::InvalidArgument(format!("view {}: {e}", def.qualified())))?;
    }
    Ok(Arc::new(ViewTable::new(plan, Some(def.definition()))))
}

/// `plan` with its columns named `names`, in order.
pub fn rename(
    plan: datafusion::logical_expr::LogicalPlan,
    names: &[String],
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let fields = plan.schema().columns();
    if fields.len() != names.len() {
        return Err(Error::InvalidArgument(format!(
            "{} column names given for a query of {} columns",
            names.len(),
            fields.len()
        )));
    }
    let exprs = fields
        .into_iter()
        .zip(names)
        .map(|(c, name)| col(c).alias(name));
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}
