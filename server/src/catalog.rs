//! The catalog: namespaces, tables and views, persisted in the hot store and cached in memory.

/// Catalog records and their encoding.
mod store;

/// Namespaces, tables, columns and their options.
pub mod model;
/// The naming rules.
pub mod names;
/// Storages: where cold files go.
pub mod storages;
/// SQL column types.
pub mod types;
/// GetXdbcTypeInfo rows.
pub mod xdbc;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use quilldb_storage::hot::{HotStore, WriteRequest};
use quilldb_storage::keys::PartitionKey;

pub use model::{
    AccessLevel, ColumnDef, DefaultExpr, FlushPolicy, NamespaceDef, TABLE_TYPE_METADATA, TableDef,
    TableType, ViewDef, now_millis,
};
pub use storages::{DEFAULT_STORAGE, ObjectAccess, Storage, StorageDef, Storages};

/// The namespace of the system tables.
pub const SYSTEM_SCHEMA: &str = "system";

use crate::error::{Error, Result};

#[derive(Default)]
struct State {
    namespaces: BTreeMap<String, NamespaceDef>,
    tables: BTreeMap<(String, String), Arc<TableDef>>,
    views: BTreeMap<(String, String), Arc<ViewDef>>,
    next_table_id: u64,
}

impl State {
    fn key(namespace: &str, name: &str) -> (String, String) {
        (namespace.to_string(), name.to_string())
    }

    /// The error of a name a table or view already holds.
    fn taken(&self, namespace: &str, name: &str) -> Option<Error> {
        let key = Self::key(namespace, name);
        if self.tables.contains_key(&key) {
            Some(Error::AlreadyExists(format!(
                "table {namespace}.{name} already exists"
            )))
        } else if self.views.contains_key(&key) {
            Some(Error::AlreadyExists(format!(
                "view {namespace}.{name} already exists"
            )))
        } else {
            None
        }
    }
}

/// Write access to the state; the generation moves on when it ends, while the lock is held.
struct StateWrite<'a> {
    guard: parking_lot::RwLockWriteGuard<'a, State>,
    generation: &'a std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for StateWrite<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateWrite<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateWrite<'_> {
    fn drop(&mut self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What a DROP statement drops.
#[derive(Debug, Clone, Copy)]
enum Dropping {
    Table,
    View,
}

/// The catalog. DDL is serialized by an async lock so the cache and the disk agree.
pub struct Catalog {
    hot: Arc<HotStore>,
    state: RwLock<State>,
    ddl: tokio::sync::Mutex<()>,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").finish_non_exhaustive()
    }
}

impl Catalog {
    /// Loads the catalog from the hot store.
    pub fn load(hot: Arc<HotStore>) -> Result<Self> {
        let mut state = State {
            next_table_id: 1,
            ..Default::default()
        };
        for (_, v) in hot.scan_meta(store::NS_PREFIX.as_bytes())? {
            let ns = store::decode_namespace(&v)?;
            state.namespaces.insert(ns.name.clone(), ns);
        }
        for (_, v) in hot.scan_meta(store::TABLE_PREFIX.as_bytes())? {
            let t = store::decode_table(&v)?;
            state.next_table_id = state.next_table_id.max(t.id + 1);
            state
                .tables
                .insert((t.namespace.clone(), t.name.clone()), Arc::new(t));
        }
        for (_, v) in hot.scan_meta(store::VIEW_PREFIX.as_bytes())? {
            let view = store::decode_view(&v)?;
            state
                .views
                .insert(State::key(&view.namespace, &view.name), Arc::new(view));
        }
        if let Some(v) = hot.get_meta(store::NEXT_TABLE_ID.as_bytes())? {
            let arr: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| Error::Internal("corrupt next table id".into()))?;
            state.next_table_id = state.next_table_id.max(u64::from_be_bytes(arr));
        }
        tracing::info!(
            namespaces = state.namespaces.len(),
            tables = state.tables.len(),
            views = state.views.len(),
            "catalog loaded"
        );
        Ok(Self {
            hot,
            state: RwLock::new(state),
            ddl: tokio::sync::Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Changes with every DDL: prepared plans made under another generation are replanned.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn write_state(&self) -> StateWrite<'_> {
        StateWrite {
            guard: self.state.write(),
            generation: &self.generation,
        }
    }

    /// Every namespace.
    pub fn namespaces(&self) -> Vec<NamespaceDef> {
        self.state.read().namespaces.values().cloned().collect()
    }

    /// Whether a namespace exists.
    pub fn has_namespace(&self, name: &str) -> bool {
        self.state.read().namespaces.contains_key(name)
    }

    /// Tables, optionally of one namespace, by namespace and name.
    pub fn tables(&self, namespace: Option<&str>) -> Vec<Arc<TableDef>> {
        self.state
            .read()
            .tables
            .values()
            .filter(|t| namespace.is_none_or(|ns| t.namespace == ns))
            .cloned()
            .collect()
    }

    /// A table by its internal id.
    pub fn table_by_id(&self, id: u64) -> Option<Arc<TableDef>> {
        self.state
            .read()
            .tables
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    /// The DDL lock: storages and ALTER TABLE take it too, so DDL never interleaves.
    pub async fn ddl_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ddl.lock().await
    }

    /// One table.
    pub fn table(&self, namespace: &str, name: &str) -> Option<Arc<TableDef>> {
        self.state
            .read()
            .tables
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Views, optionally of one namespace, by namespace and name.
    pub fn views(&self, namespace: Option<&str>) -> Vec<Arc<ViewDef>> {
        self.state
            .read()
            .views
            .values()
            .filter(|v| namespace.is_none_or(|ns| v.namespace == ns))
            .cloned()
            .collect()
    }

    /// One view.
    pub fn view(&self, namespace: &str, name: &str) -> Option<Arc<ViewDef>> {
        self.state
            .read()
            .views
            .get(&State::key(namespace, name))
            .cloned()
    }

    /// Creates a view, or replaces one with `or_replace`; the creation time is set here. A
    /// table of the name is never replaced.
    pub async fn create_view(&self, mut def: ViewDef, or_replace: bool) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        if !self.has_namespace(&def.namespace) {
            return Err(Error::NotFound(format!(
                "namespace {} does not exist",
                def.namespace
            )));
        }
        let exists = self.view(&def.namespace, &def.name).is_some();
        if let Some(e) = self.state.read().taken(&def.namespace, &def.name)
            && !(or_replace && exists)
        {
            return Err(e);
        }
        def.created_at = now_millis();
        self.hot
            .write(WriteRequest {
                meta: vec![(
                    store::view_key(&def.namespace, &def.name),
                    Some(store::encode_view(&def)),
                )],
                ..Default::default()
            })
            .await?;
        self.write_state()
            .views
            .insert(State::key(&def.namespace, &def.name), Arc::new(def));
        Ok(())
    }

    /// Drops a view; `Ok(false)` if it did not exist and `if_exists` was given.
    pub async fn drop_view(&self, namespace: &str, name: &str, if_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if self.view(namespace, name).is_none() {
            self.nothing_to_drop(namespace, name, Dropping::View, if_exists)?;
            return Ok(false);
        }
        self.hot
            .write(WriteRequest {
                meta: vec![(store::view_key(namespace, name), None)],
                ..Default::default()
            })
            .await?;
        self.write_state()
            .views
            .remove(&State::key(namespace, name));
        Ok(true)
    }

    /// DROP of a name that holds no `dropping`: fine with IF EXISTS, unless the name holds the
    /// other kind, whose DROP statement the error names.
    fn nothing_to_drop(
        &self,
        namespace: &str,
        name: &str,
        dropping: Dropping,
        if_exists: bool,
    ) -> Result<()> {
        let (this, other, is_other) = match dropping {
            Dropping::Table => ("table", "view", self.view(namespace, name).is_some()),
            Dropping::View => ("view", "table", self.table(namespace, name).is_some()),
        };
        if is_other {
            Err(Error::InvalidArgument(format!(
                "{namespace}.{name} is a {other}, not a {this}: use DROP {}",
                other.to_uppercase()
            )))
        } else if if_exists {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "{this} {namespace}.{name} does not exist"
            )))
        }
    }

    /// Creates a namespace; `Ok(false)` if it existed and `if_not_exists` was given.
    pub async fn create_namespace(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        let _ddl = self.ddl.lock().await;
        if self.has_namespace(name) {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(Error::AlreadyExists(format!(
                    "namespace {name} already exists"
                )))
            };
        }
        let ns = NamespaceDef {
            name: name.to_string(),
            created_at: now_millis(),
        };
        self.hot
            .write(WriteRequest {
                meta: vec![(store::ns_key(name), Some(store::encode_namespace(&ns)))],
                ..Default::default()
            })
            .await?;
        self.write_state().namespaces.insert(name.to_string(), ns);
        Ok(true)
    }

    /// Drops a namespace with every table in it and all their rows, in one atomic write.
    pub async fn drop_namespace(&self, name: &str, if_exists: bool) -> Result<Vec<Arc<TableDef>>> {
        let _ddl = self.ddl.lock().await;
        if !self.has_namespace(name) {
            return if if_exists {
                Ok(Vec::new())
            } else {
                Err(Error::NotFound(format!("namespace {name} does not exist")))
            };
        }
        let tables = self.tables(Some(name));
        let mut req = WriteRequest {
            meta: vec![(store::ns_key(name), None)],
            ..Default::default()
        };
        for t in &tables {
            req.meta.push((store::table_key(t.id), None));
            req.drop_prefixes.push(PartitionKey::table_prefix(t.id));
        }
        for v in self.views(Some(name)) {
            req.meta
                .push((store::view_key(&v.namespace, &v.name), None));
        }
        self.hot.write(req).await?;
        let mut state = self.write_state();
        state.namespaces.remove(name);
        state.tables.retain(|(ns, _), _| ns != name);
        state.views.retain(|(ns, _), _| ns != name);
        Ok(tables)
    }

    /// Creates a table; `Ok(None)` if it existed and `if_not_exists` was given. The id and the
    /// creation time of `def` are assigned here.
    pub async fn create_table(
        &self,
        mut def: TableDef,
        if_not_exists: bool,
    ) -> Result<Option<Arc<TableDef>>> {
        let _ddl = self.ddl.lock().await;
        if !self.has_namespace(&def.namespace) {
            return Err(Error::NotFound(format!(
                "namespace {} does not exist",
                def.namespace
            )));
        }
        if let Some(e) = self.state.read().taken(&def.namespace, &def.name) {
            // IF NOT EXISTS is for a table of the name; a view of the name is an error.
            return if if_not_exists && self.table(&def.namespace, &def.name).is_some() {
                Ok(None)
            } else {
                Err(e)
            };
        }
        let id = self.state.read().next_table_id;
        def.id = id;
        def.created_at = now_millis();
        self.hot
            .write(WriteRequest {
                meta: vec![
                    (store::table_key(id), Some(store::encode_table(&def))),
                    (
                        store::NEXT_TABLE_ID.as_bytes().to_vec(),
                        Some((id + 1).to_be_bytes().to_vec()),
                    ),
                ],
                ..Default::default()
            })
            .await?;
        let def = Arc::new(def);
        let mut state = self.write_state();
        state.next_table_id = id + 1;
        state
            .tables
            .insert((def.namespace.clone(), def.name.clone()), def.clone());
        Ok(Some(def))
    }

    /// ALTER TABLE: `change` makes the new definition from the current one, under the DDL lock;
    /// the new version is persisted, then replaces the old one in one step.
    pub async fn alter_table(
        &self,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&TableDef) -> Result<TableDef>,
    ) -> Result<Arc<TableDef>> {
        let _ddl = self.ddl.lock().await;
        let Some(current) = self.table(namespace, name) else {
            return Err(Error::NotFound(format!(
                "table {namespace}.{name} does not exist"
            )));
        };
        let mut def = change(&current)?;
        def.id = current.id;
        def.created_at = current.created_at;
        def.schema_version = current.schema_version + 1;
        self.replace_table(def).await
    }

    /// Persists a changed definition of an existing table and makes it the current one (the
    /// caller holds the DDL lock).
    async fn replace_table(&self, def: TableDef) -> Result<Arc<TableDef>> {
        self.hot
            .write(WriteRequest {
                meta: vec![(store::table_key(def.id), Some(store::encode_table(&def)))],
                ..Default::default()
            })
            .await?;
        let def = Arc::new(def);
        self.write_state()
            .tables
            .insert((def.namespace.clone(), def.name.clone()), def.clone());
        Ok(def)
    }

    /// Points a table at another storage (the move job, once its files are copied): the
    /// schema and its version stay as they are.
    pub async fn set_storage(&self, table_id: u64, storage_id: &str) -> Result<Arc<TableDef>> {
        let _ddl = self.ddl.lock().await;
        let Some(current) = self.table_by_id(table_id) else {
            return Err(Error::NotFound(format!("table {table_id} does not exist")));
        };
        let mut def = (*current).clone();
        def.storage_id = storage_id.to_string();
        self.replace_table(def).await
    }

    /// Drops a table and its rows; `Ok(None)` if it did not exist and `if_exists` was given.
    pub async fn drop_table(
        &self,
        namespace: &str,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<Arc<TableDef>>> {
        let _ddl = self.ddl.lock().await;
        let Some(def) = self.table(namespace, name) else {
            self.nothing_to_drop(namespace, name, Dropping::Table, if_exists)?;
            return Ok(None);
        };
        self.hot
            .write(WriteRequest {
                meta: vec![(store::table_key(def.id), None)],
                drop_prefixes: vec![PartitionKey::table_prefix(def.id)],
                ..Default::default()
            })
            .await?;
        self.state
            .write()
            .tables
            .remove(&(namespace.to_string(), name.to_string()));
        Ok(Some(def))
    }
}
