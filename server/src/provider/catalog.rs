//! The `quill` catalog as DataFusion sees it, built per statement for one caller so that the
//! caller's rights apply while planning.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;

use super::system::{SYSTEM_SCHEMA, SystemSchema};
use super::table::PartitionTable;
use crate::authz::{self, Access};
use crate::engine::Database;
use crate::session::Caller;
use datafusion::catalog::view::ViewTable;
use datafusion::logical_expr::{LogicalPlanBuilder, col};

use crate::catalog::ViewDef;
use crate::engine::Tables;
use crate::error::{Error, Result};
use crate::sql::parser::{self, Command};

/// The catalog for one caller.
#[derive(Debug)]
pub struct QuillCatalog {
    db: Arc<Database>,
    caller: Caller,
    /// How many views deep the query being planned is.
    view_depth: usize,
}

impl QuillCatalog {
    /// The catalog as `caller` sees it.
    pub fn new(db: Arc<Database>, caller: Caller) -> Self {
        Self::nested(db, caller, 0)
    }

    /// The catalog of a view's query, `view_depth` views deep.
    pub fn nested(db: Arc<Database>, caller: Caller, view_depth: usize) -> Self {
        Self {
            db,
            caller,
            view_depth,
        }
    }
}

impl CatalogProvider for QuillCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.db.schema_names(&self.caller)
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::new(SystemSchema::new(
                self.db.clone(),
                self.caller.clone(),
            )));
        }
        // A role that could be refused an existing table gets the same refusal for a missing
        // namespace, so it cannot probe which exist (`authz::missing_table`).
        let hidden = self.caller.role < crate::session::Role::Service;
        (hidden || self.db.catalog.has_namespace(name)).then(|| {
            Arc::new(NamespaceSchema {
                db: self.db.clone(),
                caller: self.caller.clone(),
                namespace: name.to_string(),
                view_depth: self.view_depth,
            }) as Arc<dyn SchemaProvider>
        })
    }
}

/// One namespace.
#[derive(Debug)]
struct NamespaceSchema {
    db: Arc<Database>,
    caller: Caller,
    namespace: String,
    view_depth: usize,
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn table_names(&self) -> Vec<String> {
        let catalog = &self.db.catalog;
        let tables = catalog
            .tables(Some(&self.namespace))
            .into_iter()
            .filter(|t| authz::can_read(self.caller.role, t))
            .map(|t| t.name.clone());
        let views = catalog
            .views(Some(&self.namespace))
            .into_iter()
            .map(|v| v.name.clone());
        tables.chain(views).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let external = |e: crate::error::Error| DataFusionError::External(Box::new(e));
        if let Some(view) = self.db.catalog.view(&self.namespace, name) {
            let table = view_table(&self.db, &self.caller, &view, self.view_depth)
                .await
                .map_err(|e| {
                    external(e).context(format!("view {} cannot be read", view.qualified()))
                })?;
            return Ok(Some(table));
        }
        let Some(def) = self.db.catalog.table(&self.namespace, name) else {
            if self.caller.role < crate::session::Role::Service {
                let name = format!("{}.{name}", self.namespace);
                return Err(external(authz::missing_table(
                    self.caller.role,
                    Access::Read,
                    &name,
                    "",
                )));
            }
            return Ok(None);
        };
        authz::require_table(self.caller.role, &def, Access::Read).map_err(external)?;
        let partition = self
            .db
            .partition_of(&def, &self.caller)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let table = PartitionTable::new(def, &self.db, &partition)?;
        // A transaction's own reads see its pending changes.
        let table = match self.caller.transaction() {
            Some(t) => {
                let overlay = t.overlay(table.partition());
                table.with_overlay(overlay)
            }
            None => table,
        };
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.catalog.table(&self.namespace, name).is_some()
            || self.db.catalog.view(&self.namespace, name).is_some()
    }
}

// Views: the stored query planned anew for the reader, through the reader's own catalog, so
// the reader's rights apply to every table under it and USER tables show the reader's rows.
// Nothing is planned with the rights of the view's creator.

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
