//! The database: stores, catalog, authentication and query planning, shared by every call.

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, Statement};
use futures::TryStreamExt;
use quilldb_storage::hot::{HotOptions, HotStore, ScanSpec};
use quilldb_storage::keys::PartitionKey;

use crate::auth::Authenticator;
use crate::authz::{self, Access};
use crate::catalog::{Catalog, Storages, TableDef, TableType};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::provider::bounded::bounded;
use crate::provider::catalog::QuillCatalog;
use crate::provider::{functions, table::SCAN_BATCH_ROWS};
use crate::session::Caller;
use crate::sql::parser::{Command, TextLimits, name_parts};
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

/// Configured limits enforced on statements.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Size and nesting of SQL text.
    pub text: TextLimits,
    /// Memory one query may hold, in bytes.
    pub max_query_memory: usize,
    /// Most rows in one INSERT or ingest call.
    pub max_rows_per_insert: usize,
    /// Time limits of statements.
    timeouts: crate::config::LimitsConfig,
}

impl Limits {
    fn new(config: &crate::config::LimitsConfig, text: TextLimits) -> Self {
        Self {
            text,
            max_query_memory: config.max_query_memory_mb << 20,
            max_rows_per_insert: config.max_rows_per_insert,
            timeouts: config.clone(),
        }
    }

    /// How long a statement of `role` may run.
    pub fn query_timeout(&self, role: crate::session::Role) -> std::time::Duration {
        self.timeouts.query_timeout(role)
    }
}

/// A planned query and the context that planned it (its catalog view is the caller's).
pub struct QueryPlan {
    ctx: SessionContext,
    plan: LogicalPlan,
}

impl std::fmt::Debug for QueryPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryPlan")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl QueryPlan {
    /// The result schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }
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
    /// Live queries.
    pub live: Arc<crate::live::LiveHub>,
    base_state: SessionState,
    started: Instant,
    /// Runs query execution, so CPU-heavy queries never starve the gRPC runtime.
    executor: Executor,
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
        let storages = Arc::new(Storages::load(
            hot.clone(),
            data,
            &config.storage.allowed_roots,
        )?);
        let jobs = Jobs::load(
            hot.clone(),
            catalog.clone(),
            storages.clone(),
            metrics.clone(),
            config.jobs.clone(),
            config.storage.clone(),
        )?;
        metrics.watch_store(&hot);
        metrics.watch_tables(table_figures(&hot, &catalog, &storages));
        let text_limits = TextLimits {
            max_bytes: config.limits.max_sql_bytes,
            max_depth: config.limits.max_expression_depth.max(1),
        };
        let mut df_config = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(quilldb_flight::CATALOG, "public")
            .with_batch_size(SCAN_BATCH_ROWS)
            .with_round_robin_repartition(false)
            .with_target_partitions(config.query.target_partitions.max(1));
        let opts = df_config.options_mut();
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.execution.parquet.schema_force_view_types = false;
        // DataFusion's own parser (a subscription's filter) recurses as deep as ours.
        opts.sql_parser.recursion_limit = datafusion::common::config::ConfigNonZeroUsize::try_new(
            text_limits.parser_recursion(),
        )?;
        let mut base_state = SessionStateBuilder::new()
            .with_config(df_config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::exec::JoinsYield))
            .build();
        // No single function call may make a result larger than a query may hold.
        let max_query_memory = config.limits.max_query_memory_mb << 20;
        let bounded: Vec<_> = base_state
            .scalar_functions()
            .values()
            .map(|udf| bounded(udf, max_query_memory))
            .collect();
        for udf in bounded {
            base_state
                .register_udf(Arc::new(udf))
                .map_err(|e| Error::Internal(format!("registering functions: {e}")))?;
        }
        for udf in functions::global(hot.clone()) {
            base_state
                .register_udf(Arc::new(udf))
                .map_err(|e| Error::Internal(format!("registering functions: {e}")))?;
        }
        let live = Arc::new(crate::live::LiveHub::new(
            config.live.clone(),
            config.storage.deletion_retention_seconds,
            metrics.clone(),
        ));
        hot.set_change_sink(live.clone());
        Ok(Arc::new(Self {
            live,
            auth: Arc::new(Authenticator::load(hot.clone(), &config.auth)?),
            limits: Limits::new(&config.limits, text_limits),
            transactions: Transactions::new(
                std::time::Duration::from_secs(config.limits.transaction_idle_seconds),
                config.limits.max_open_transactions,
            ),
            hot,
            catalog,
            storages,
            jobs,
            metrics,
            base_state,
            started: Instant::now(),
            executor: Executor::new(config.query.target_partitions.max(1))?,
        }))
    }

    /// The cold folder of one partition of `def`.
    pub fn cold_source(
        &self,
        def: &TableDef,
        partition: &PartitionKey,
    ) -> Result<quilldb_storage::merge::ColdSource> {
        let storage = self.storages.get(&def.storage_id)?;
        Ok(quilldb_storage::merge::ColdSource {
            store: storage.cold.clone(),
            folder: storage.partition_folder(def, partition).0,
            table_id: def.id,
        })
    }

    /// The live rows (hot or cold) with these primary keys, in `_seq` order.
    pub async fn lookup(
        &self,
        def: &TableDef,
        spec: ScanSpec,
        keys: Vec<Vec<u8>>,
    ) -> Result<RecordBatch> {
        let schema = spec.schema();
        let read = quilldb_storage::merge::MergedRead {
            hot: self.hot.clone(),
            cold: Some(self.cold_source(def, &spec.partition)?),
            pk_column_id: def.pk()?.1.id,
            spec,
            keys: Some(keys),
            pruner: None,
        };
        let handle = tokio::runtime::Handle::current();
        let batches = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            read.run(&handle, |b| {
                out.push(b);
                true
            })
            .map(|_| out)
        })
        .await
        .map_err(|e| Error::Internal(format!("lookup task: {e}")))??;
        let batch = arrow::compute::concat_batches(&schema, &batches)?;
        let ids: Vec<u32> = def.columns.iter().map(|c| c.id).collect();
        crate::sql::alter::apply_fills(batch, ids.len(), &crate::sql::alter::fills(def, &ids))
    }

    /// The manifest of one partition of `def` (`None`: nothing flushed yet).
    pub async fn manifest(
        &self,
        def: &TableDef,
        partition: &PartitionKey,
    ) -> Result<Option<Arc<quilldb_storage::cold::Manifest>>> {
        let src = self.cold_source(def, partition)?;
        Ok(src
            .store
            .manifest(&src.folder)
            .await?
            .filter(|m| m.table_id == def.id))
    }

    /// Stops query execution and the writer, and syncs the WAL.
    pub fn close(&self) {
        self.executor.shutdown();
        self.hot.close();
    }

    /// A DataFusion context for one statement of `caller`.
    pub fn context(self: &Arc<Self>, caller: &Caller) -> SessionContext {
        // Each query gets its own memory pool (`limits.max_query_memory_mb`), sharing the
        // disk manager for spills and the caches.
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.base_state.runtime_env())
            .with_memory_pool(Arc::new(TrackConsumersPool::new(
                GreedyMemoryPool::new(self.limits.max_query_memory),
                std::num::NonZeroUsize::MIN.saturating_add(4),
            )))
            .build_arc();
        let mut state = match runtime {
            Ok(env) => SessionStateBuilder::new_from_existing(self.base_state.clone())
                .with_runtime_env(env)
                .build(),
            Err(e) => {
                tracing::error!(error = %e, "query memory pool");
                self.base_state.clone()
            }
        };
        state.config_mut().options_mut().catalog.default_schema =
            caller.namespace().unwrap_or_else(|| "public".into());
        for udf in functions::session(&caller.user, &caller.role.to_string()) {
            let _ = state.register_udf(Arc::new(udf));
        }
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog(
            quilldb_flight::CATALOG,
            Arc::new(QuillCatalog::new(self.clone(), caller.clone())),
        );
        ctx
    }

    /// Plans a query with its parameter values bound.
    pub async fn plan_query(
        self: &Arc<Self>,
        caller: &Caller,
        stmt: Statement,
        params: &[ScalarValue],
    ) -> Result<QueryPlan> {
        let ctx = self.context(caller);
        plan_in(ctx, stmt, params).await
    }

    /// Runs a query to completion (for DML row selection).
    pub async fn query_batches(
        self: &Arc<Self>,
        caller: &Caller,
        stmt: Statement,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        let plan = self.plan_query(caller, stmt, params).await?;
        self.collect(plan).await
    }

    /// Runs query text to completion.
    pub async fn query_sql(
        self: &Arc<Self>,
        caller: &Caller,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        match crate::sql::parser::parse(sql, &self.limits.text)? {
            Command::Query(stmt) => self.query_batches(caller, *stmt, params).await,
            _ => Err(Error::Internal(format!("not a query: {sql}"))),
        }
    }

    /// Runs query text against one in-memory table named `table` (ON CONFLICT DO UPDATE).
    pub async fn scratch_query(
        self: &Arc<Self>,
        caller: &Caller,
        table: &str,
        rows: RecordBatch,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Vec<RecordBatch>> {
        let mut state = self.base_state.clone();
        state.config_mut().options_mut().catalog.default_catalog = "scratch".into();
        state.config_mut().options_mut().catalog.default_schema = "scratch".into();
        let mut config = state.config().clone();
        config = config.with_create_default_catalog_and_schema(true);
        let ctx = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state)
                .with_config(config)
                .build(),
        );
        for udf in functions::session(&caller.user, &caller.role.to_string()) {
            ctx.register_udf(udf);
        }
        ctx.register_batch(table, rows)?;
        let Command::Query(stmt) = crate::sql::parser::parse(sql, &self.limits.text)? else {
            return Err(Error::Internal(format!("not a query: {sql}")));
        };
        self.collect(plan_in(ctx, *stmt, params).await?).await
    }

    /// Runs a planned query as a stream, on the query executor.
    pub async fn execute(
        &self,
        plan: &QueryPlan,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        self.executor
            .stream(plan.ctx.state(), plan.plan.clone())
            .await
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
            names.push(crate::provider::system::SYSTEM_SCHEMA.to_string());
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

    /// A scan of every column and `_seq` of one partition.
    pub fn full_scan_spec(&self, def: &TableDef, partition: &PartitionKey) -> Result<ScanSpec> {
        Ok(ScanSpec {
            partition: partition.clone(),
            columns: def.columns.iter().map(|c| (c.id, c.field(def))).collect(),
            with_seq: true,
            min_seq: 0,
            max_seq: u64::MAX,
            batch_size: SCAN_BATCH_ROWS,
            limit: None,
            overlay: None,
        })
    }

    /// Server figures for system.stats.
    pub fn stats(&self) -> Vec<(&'static str, String)> {
        vec![
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

async fn plan_in(
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
    Ok(QueryPlan { ctx, plan })
}

impl Database {
    async fn collect(&self, plan: QueryPlan) -> Result<Vec<RecordBatch>> {
        let stream = self.executor.stream(plan.ctx.state(), plan.plan).await?;
        Ok(stream.try_collect().await?)
    }
}

impl QueryPlan {
    /// The same plan with its placeholders bound (a prepared query's execution).
    pub fn bind(&self, params: &[ScalarValue]) -> Result<QueryPlan> {
        let plan = if params.is_empty() {
            self.plan.clone()
        } else {
            self.plan.clone().with_param_values(params.to_vec())?
        };
        Ok(QueryPlan {
            ctx: self.ctx.clone(),
            plan,
        })
    }

    /// The types DataFusion inferred for `$n` placeholders.
    pub fn parameter_types(
        &self,
    ) -> std::collections::HashMap<String, Option<arrow::datatypes::DataType>> {
        self.plan.get_parameter_types().unwrap_or_default()
    }
}
