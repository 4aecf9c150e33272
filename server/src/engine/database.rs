//! The database: stores, catalog, authentication and query planning, shared by every call.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use datafusion::sql::sqlparser::ast::ObjectName;
use quilldb_storage::hot::{HotOptions, HotStore};
use quilldb_storage::keys::PartitionKey;

use super::events::{Events, LiveQueries, LiveQueryInfo};
use super::limits::Limits;
use super::planner::Planner;
use super::read::TableRead;
use crate::auth::Authenticator;
use crate::authz::{self, Access};
use crate::catalog::names::name_parts;
use crate::catalog::{Catalog, Storages, TableDef, TableType};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::session::Caller;
use crate::txn::Transactions;

/// Per-table figures for `/metrics`: unflushed rows (from the writer's counters) and cached
/// cold segments; never a scan.
fn table_figures(
    hot: &Arc<HotStore>,
    catalog: &Arc<Catalog>,
    storages: &Arc<Storages>,
) -> crate::metrics::TableFigures {
    let hot = Arc::downgrade(hot);
    let catalog = Arc::downgrade(catalog);
    let storages = Arc::downgrade(storages);
    Box::new(move || {
        let (Some(hot), Some(catalog), Some(storages)) =
            (hot.upgrade(), catalog.upgrade(), storages.upgrade())
        else {
            return Vec::new();
        };
        let pending = hot.pending().snapshot();
        catalog
            .tables(None)
            .into_iter()
            .map(|def| {
                let prefix = PartitionKey::table_prefix(def.id);
                let unflushed: u64 = pending
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix))
                    .map(|(_, w)| w.rows)
                    .sum();
                let segments = storages
                    .get(&def.storage_id)
                    .ok()
                    .and_then(|s| s.cold.cached(&s.folder(&def, None)).flatten())
                    .filter(|m| m.table_id == def.id)
                    .map_or(0, |m| m.segments.len());
                (def.qualified(), unflushed as i64, segments as i64)
            })
            .collect()
    })
}

/// The database.
pub struct Database {
    /// The hot store.
    pub hot: Arc<HotStore>,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// Where cold files go.
    pub storages: Arc<Storages>,
    /// Background jobs.
    pub jobs: Arc<Jobs>,
    /// Credentials and tokens.
    pub auth: Arc<Authenticator>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Statement limits.
    pub limits: Limits,
    /// Open transactions.
    pub transactions: Transactions,
    /// Plans and runs queries.
    pub planner: Planner,
    /// Catalog and user changes, followed by the live hub.
    pub events: Events,
    live: OnceLock<Arc<dyn LiveQueries>>,
    started: Instant,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the stores under the configured data folder and loads the catalog.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Arc<Self>> {
        let data = &config.server.data_dir;
        std::fs::create_dir_all(data).map_err(|e| {
            Error::Internal(format!("creating data folder {}: {e}", data.display()))
        })?;
        let hot = Arc::new(HotStore::open(&HotOptions {
            path: data.join("hot"),
            node_id: config.server.node_id,
            durability: config.storage.durability.into(),
            block_cache_bytes: config.storage.block_cache_mb << 20,
        })?);
        let catalog = Arc::new(Catalog::load(hot.clone())?);
        let mut storages = Storages::load(
            hot.clone(),
            data,
            &config.storage.allowed_roots,
            crate::catalog::ObjectAccess::new(&config.storage),
        )?;
        if !config.storage.default_storage.is_empty() {
            storages
                .default_id
                .clone_from(&config.storage.default_storage);
        }
        let storages = Arc::new(storages);
        let jobs = Jobs::load(
            hot.clone(),
            catalog.clone(),
            storages.clone(),
            metrics.clone(),
            crate::jobs::JobSettings {
                config: config.jobs.clone(),
                storage: config.storage.clone(),
                move_grace: std::time::Duration::from_secs(config.limits.query_timeout_seconds),
                exports: data.join("exports"),
            },
        )?;
        metrics.watch_store(&hot);
        metrics.watch_tables(table_figures(&hot, &catalog, &storages));
        let limits = Limits::new(&config.limits, config.storage.direct_ingest_rows);
        Ok(Arc::new(Self {
            auth: Arc::new(Authenticator::load(hot.clone(), &config.auth)?),
            planner: Planner::new(config, &limits, hot.clone())?,
            limits,
            transactions: Transactions::new(
                std::time::Duration::from_secs(config.limits.transaction_idle_seconds),
                config.limits.max_open_transactions,
            ),
            hot,
            catalog,
            storages,
            jobs,
            metrics,
            events: Events::default(),
            live: OnceLock::new(),
            started: Instant::now(),
        }))
    }

    /// Connects the live layer: committed changes go to `sink`, system.live_queries and KILL
    /// LIVE QUERY to `live`. Once; later calls are ignored.
    pub fn attach_live(
        &self,
        sink: Arc<dyn quilldb_storage::hot::ChangeSink>,
        live: Arc<dyn LiveQueries>,
    ) {
        if self.live.set(live).is_ok() {
            self.hot.set_change_sink(sink);
        }
    }

    /// The open subscriptions.
    pub fn live_queries(&self) -> Vec<LiveQueryInfo> {
        self.live.get().map(|l| l.list()).unwrap_or_default()
    }

    /// KILL LIVE QUERY.
    pub fn kill_live_query(&self, caller: &Caller, id: &str) -> Result<()> {
        match self.live.get() {
            Some(l) => l.kill(caller, id),
            None => Err(Error::NotFound(format!(
                "no live query {id} of yours is open"
            ))),
        }
    }

    /// A read of one partition of `def` (every column and `_seq`; see [`TableRead`]).
    pub fn read(&self, def: Arc<TableDef>, partition: PartitionKey) -> Result<TableRead> {
        TableRead::new(&self.hot, &self.storages, def, partition)
    }

    /// The manifest of one partition of `def` (`None`: nothing flushed yet).
    pub async fn manifest(
        &self,
        def: &TableDef,
        partition: &PartitionKey,
    ) -> Result<Option<Arc<quilldb_storage::cold::Manifest>>> {
        let storage = self.storages.get(&def.storage_id)?;
        let (folder, _) = storage.partition_folder(def, partition);
        Ok(storage
            .cold
            .manifest(&folder)
            .await?
            .filter(|m| m.table_id == def.id))
    }

    /// Stops query execution and the writer, and syncs the WAL.
    pub fn close(&self) {
        self.planner.shutdown();
        self.hot.close();
    }

    /// Every namespace and `system`: the Flight SQL db_schemas.
    pub fn schema_names(&self, caller: &Caller) -> Vec<String> {
        let tables = self.catalog.tables(None);
        let mut names: Vec<String> = self
            .catalog
            .namespaces()
            .into_iter()
            .map(|n| n.name)
            .filter(|ns| {
                authz::can_list_namespace(
                    caller.role,
                    tables.iter().filter(|t| t.namespace == *ns).map(|t| &**t),
                )
            })
            .collect();
        if authz::require_system_table(caller.role, "live_queries").is_ok() {
            names.push(crate::catalog::SYSTEM_SCHEMA.to_string());
        }
        names
    }

    /// Requires a namespace the caller may see (`authz::can_list_namespace`); a missing or hidden
    /// one is answered as `authz::missing_table` says.
    pub fn require_namespace(&self, caller: &Caller, ns: &str) -> Result<()> {
        if self.schema_names(caller).iter().any(|n| n == ns) {
            return Ok(());
        }
        let what = format!("namespace {ns} does not exist");
        Err(authz::missing_table(caller.role, Access::Read, ns, &what))
    }

    /// `(namespace, table)` of a possibly unqualified name.
    pub fn resolve_table_name(
        &self,
        caller: &Caller,
        name: &ObjectName,
    ) -> Result<(String, String)> {
        let parts = name_parts(name)?;
        match parts.as_slice() {
            [t] => match caller.namespace() {
                Some(ns) => Ok((ns, t.clone())),
                None => Err(Error::InvalidArgument(format!(
                    "no namespace selected for table {t}: write ns.{t} or run USE ns first"
                ))),
            },
            [ns, t] => Ok((ns.clone(), t.clone())),
            [c, ns, t] if c == quilldb_flight::CATALOG => Ok((ns.clone(), t.clone())),
            _ => Err(Error::InvalidArgument(format!(
                "{name} is not a table name"
            ))),
        }
    }

    /// The definition of a table that must exist and that the caller may access as asked. A
    /// missing table is answered as `authz::missing_table` says.
    pub fn table_for(
        &self,
        caller: &Caller,
        name: &ObjectName,
        access: Access,
    ) -> Result<Arc<TableDef>> {
        let (ns, t) = self.resolve_table_name(caller, name)?;
        let missing =
            |what: String| authz::missing_table(caller.role, access, &format!("{ns}.{t}"), &what);
        if !self.catalog.has_namespace(&ns) {
            return Err(missing(format!("namespace {ns} does not exist")));
        }
        let Some(def) = self.catalog.table(&ns, &t) else {
            if self.catalog.view(&ns, &t).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "{ns}.{t} is a view, not a table: only SELECT reads views; subscriptions, \
                     writes and table statements need one of its tables"
                )));
            }
            return Err(missing(format!("table {ns}.{t} does not exist")));
        };
        authz::require_table(caller.role, &def, access)?;
        Ok(def)
    }

    /// The hot-store partition the caller's rows of `def` live in.
    pub fn partition_of(&self, def: &TableDef, caller: &Caller) -> Result<Vec<u8>> {
        match def.table_type {
            TableType::Shared => Ok(Vec::new()),
            TableType::User | TableType::Stream => Ok(caller.user.as_bytes().to_vec()),
        }
    }

    /// Server figures for system.stats.
    pub fn stats(&self) -> Vec<(&'static str, String)> {
        vec![
            ("version", crate::version_line()),
            (
                "uptime_seconds",
                self.started.elapsed().as_secs().to_string(),
            ),
            ("namespaces", self.catalog.namespaces().len().to_string()),
            ("tables", self.catalog.tables(None).len().to_string()),
            (
                "hot_keys_estimate",
                self.hot
                    .property("rocksdb.estimate-num-keys")
                    .unwrap_or(0)
                    .to_string(),
            ),
            (
                "resident_memory_bytes",
                crate::metrics::resident_bytes().to_string(),
            ),
            ("open_files", crate::metrics::open_files().to_string()),
        ]
    }
}
