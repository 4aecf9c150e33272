//! The `quill` catalog as DataFusion sees it, built per statement for one caller so that the
//! caller's rights apply while planning.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;

use super::system::{SYSTEM_SCHEMA, SystemSchema};
use super::table::PartitionTable;
use super::view::view_table;
use crate::authz::{self, Access};
use crate::engine::Database;
use crate::session::Caller;

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
