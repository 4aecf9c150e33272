//! DataFusion's session setup, owned in one place: the configuration every statement plans
//! with (no view types, QuillDB's batch size and parser limits, joins that yield), the function
//! registry (bounded built-ins and QuillDB's functions), a memory pool per query, and the
//! executor that runs plans off the gRPC runtime. Which tables a context sees is given by the
//! caller (the provider layer's catalog), so the engine knows no provider.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;

use arrow::datatypes::DataType;
use datafusion::catalog::cte_worktable::CteWorkTable;
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, InformationSchemaProvider};
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProviderList, SchemaProvider,
    TableFunctionArgs, TableProvider,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{
    DFSchema, ResolvedTableReference, Result as DfResult, ScalarValue, TableReference,
    plan_datafusion_err,
};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, RelationPlanner};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    AggregateUDF, Expr, HigherOrderUDF, LogicalPlan, ScalarUDF, TableSource, WindowUDF,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Statement};
use futures::TryStreamExt;
use quilldb_storage::hot::HotStore;

use super::bounded::bounded;
use super::functions;
use super::limits::Limits;
use super::read::SCAN_BATCH_ROWS;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::session::Caller;

/// A planned query: the logical plan of one statement, its tables resolved for the caller who
/// planned it. It holds no session: each execution starts from the shared one.
#[derive(Clone)]
pub struct QueryPlan {
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

    /// The logical plan (a view's, to be inlined into the plans that read it).
    pub fn logical_plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// The same plan with its placeholders bound (a prepared query's execution).
    pub fn bind(&self, params: &[ScalarValue]) -> Result<QueryPlan> {
        let plan = if params.is_empty() {
            self.plan.clone()
        } else {
            self.plan.clone().with_param_values(params.to_vec())?
        };
        Ok(QueryPlan { plan })
    }

    /// Whether every table the plan scans passes `keep`: a plan kept for later executions must
    /// be one whose tables read their rows when it runs, not when it was planned.
    pub fn scans_only(&self, keep: impl Fn(&dyn TableProvider) -> bool) -> bool {
        let mut all = true;
        let _ = self.plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                all &= source_as_provider(&scan.source).is_ok_and(|p| keep(p.as_ref()));
            }
            Ok(if all {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        });
        all
    }

    /// The types DataFusion inferred for `$n` placeholders.
    pub fn parameter_types(
        &self,
    ) -> std::collections::HashMap<String, Option<arrow::datatypes::DataType>> {
        self.plan.get_parameter_types().unwrap_or_default()
    }
}

/// Where the table names of a statement lead.
pub enum Tables {
    /// The caller's catalog; a name without a namespace is in `default_schema`.
    Catalog {
        /// The `quill` catalog as the caller sees it.
        catalog: Arc<dyn CatalogProvider>,
        /// The caller's namespace.
        default_schema: String,
    },
    /// One in-memory table and nothing else (the rows an `ON CONFLICT DO UPDATE` works on).
    One {
        /// Its name.
        name: String,
        /// Its rows.
        table: Arc<dyn TableProvider>,
    },
    /// No table (an expression over the columns of one row).
    None,
}

/// Plans and runs queries.
pub struct Planner {
    base: SessionState,
    max_query_memory: usize,
    /// Runs query execution, so CPU-heavy queries never starve the gRPC runtime.
    executor: Executor,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner").finish_non_exhaustive()
    }
}

impl Planner {
    /// The session every statement starts from.
    pub fn new(config: &Config, limits: &Limits, hot: Arc<HotStore>) -> Result<Self> {
        let mut df_config = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(quilldb_flight::CATALOG, "public")
            .with_batch_size(SCAN_BATCH_ROWS)
            .with_target_partitions(config.query.target_partitions.max(1));
        let opts = df_config.options_mut();
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.execution.parquet.schema_force_view_types = false;
        // A plain SELECT promises `_seq` order (engine::order): keep it through repartitions
        // rather than sorting again.
        opts.optimizer.prefer_existing_sort = true;
        // Row estimates (the manifest's row counts, a key lookup's key count) keep small
        // inputs on one partition: spreading a handful of rows over the cores costs more than
        // it saves.
        opts.execution
            .use_row_number_estimates_to_optimize_partitioning = true;
        opts.optimizer.repartition_file_min_size = config.query.scan_partition_min_bytes.max(1);
        // DataFusion's own parser (a subscription's filter) recurses as deep as ours.
        opts.sql_parser.recursion_limit = datafusion::common::config::ConfigNonZeroUsize::try_new(
            limits.text.parser_recursion(),
        )?;
        let mut base = SessionStateBuilder::new()
            .with_config(df_config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::exec::JoinsYield))
            .with_analyzer_rule(Arc::new(super::order::SeqOrder))
            .build();
        // No single function call may make a result larger than a query may hold.
        let wrapped: Vec<_> = base
            .scalar_functions()
            .values()
            .map(|udf| bounded(udf, limits.max_query_memory))
            .collect();
        for udf in wrapped.into_iter().chain(functions::global(hot)) {
            base.register_udf(Arc::new(udf))
                .map_err(|e| Error::Internal(format!("registering functions: {e}")))?;
        }
        Ok(Self {
            base,
            max_query_memory: limits.max_query_memory,
            executor: Executor::new(config.query.target_partitions.max(1))?,
        })
    }

    /// Plans `stmt` for `caller` over `tables`, its parameter values bound. The shared session
    /// is read, never copied: the statement's tables and the caller's own functions come from
    /// a context built for this statement alone.
    pub async fn plan(
        &self,
        caller: &Caller,
        tables: Tables,
        stmt: Statement,
        params: &[ScalarValue],
    ) -> Result<QueryPlan> {
        let stmt = DfStatement::Statement(Box::new(stmt));
        let mut context = StatementContext::new(&self.base, caller, &tables);
        for reference in self.base.resolve_table_references(&stmt)? {
            context.resolve(&tables, reference).await?;
        }
        let plan = SqlToRel::new_with_options(&context, parser_options(&self.base))
            .statement_to_plan(stmt)?;
        let plan = if params.is_empty() {
            plan
        } else {
            plan.with_param_values(params.to_vec())?
        };
        Ok(QueryPlan { plan })
    }

    /// The `(namespace, table)` names `stmt` reads, unqualified ones in `default_schema`.
    pub fn table_references(
        &self,
        stmt: &Statement,
        default_schema: &str,
    ) -> Result<Vec<(String, String)>> {
        let stmt = DfStatement::Statement(Box::new(stmt.clone()));
        Ok(self
            .base
            .resolve_table_references(&stmt)?
            .into_iter()
            .map(|r| r.resolve(quilldb_flight::CATALOG, default_schema))
            .filter(|r| *r.catalog == *quilldb_flight::CATALOG)
            .map(|r| (r.schema.to_string(), r.table.to_string()))
            .collect())
    }

    /// A SQL expression over the columns of `schema` as `caller` means it (a subscription's
    /// filter): names resolve to columns, functions include the caller's own.
    pub fn expr(&self, caller: &Caller, expr: SqlExpr, schema: &DFSchema) -> Result<Expr> {
        let context = StatementContext::new(&self.base, caller, &Tables::None);
        Ok(
            SqlToRel::new_with_options(&context, parser_options(&self.base)).sql_to_expr(
                expr,
                schema,
                &mut PlannerContext::new(),
            )?,
        )
    }

    /// The executable form of `expr` over `schema`, its clock started now.
    pub fn physical_expr(&self, expr: Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(self.started().create_physical_expr(expr, schema)?)
    }

    /// The shared session with its clock started now (`now()` is the start of a statement).
    fn started(&self) -> SessionState {
        let mut state = self.base.clone();
        state.mark_start_execution();
        state
    }

    /// The runtime of one query: its own memory pool (`limits.max_query_memory_mb`), sharing
    /// the disk manager for spills and the caches.
    fn query_runtime(&self) -> Arc<RuntimeEnv> {
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.base.runtime_env())
            .with_memory_pool(Arc::new(TrackConsumersPool::new(
                GreedyMemoryPool::new(self.max_query_memory),
                std::num::NonZeroUsize::MIN.saturating_add(4),
            )))
            .build_arc();
        runtime.unwrap_or_else(|e| {
            tracing::error!(error = %e, "query memory pool");
            self.base.runtime_env().clone()
        })
    }

    /// Runs a planned query as a stream, on the query executor.
    pub async fn execute(&self, plan: &QueryPlan) -> Result<SendableRecordBatchStream> {
        self.executor
            .stream(self.started(), plan.plan.clone(), self.query_runtime())
            .await
    }

    /// Runs a planned query to completion.
    pub async fn collect(&self, plan: &QueryPlan) -> Result<Vec<RecordBatch>> {
        Ok(self.execute(plan).await?.try_collect().await?)
    }

    /// Stops query execution.
    pub fn shutdown(&self) {
        self.executor.shutdown();
    }
}

/// DataFusion's SQL options, as the session's configuration sets them.
fn parser_options(state: &SessionState) -> ParserOptions {
    let o = &state.config().options().sql_parser;
    ParserOptions {
        parse_float_as_decimal: o.parse_float_as_decimal,
        enable_ident_normalization: o.enable_ident_normalization,
        enable_options_value_normalization: o.enable_options_value_normalization,
        support_varchar_with_length: o.support_varchar_with_length,
        map_string_types_to_utf8view: o.map_string_types_to_utf8view,
        collect_spans: o.collect_spans,
        default_null_ordering: o.default_null_ordering.as_str().into(),
    }
}

/// What one statement's planning sees: the shared session's functions and planners, the
/// caller's own functions, and the tables the statement names, resolved before planning (the
/// lookups may wait; planning may not).
struct StatementContext<'a> {
    base: &'a SessionState,
    catalog: &'static str,
    schema: String,
    session: Vec<Arc<ScalarUDF>>,
    tables: HashMap<ResolvedTableReference, Arc<dyn TableSource>>,
}

/// The catalog and schema of the one-table context.
const SCRATCH: &str = "scratch";

impl<'a> StatementContext<'a> {
    fn new(base: &'a SessionState, caller: &Caller, tables: &Tables) -> Self {
        let (catalog, schema) = match tables {
            Tables::Catalog { default_schema, .. } => {
                (quilldb_flight::CATALOG, default_schema.clone())
            }
            Tables::One { .. } | Tables::None => (SCRATCH, SCRATCH.to_string()),
        };
        Self {
            base,
            catalog,
            schema,
            session: functions::session(&caller.user, &caller.role.to_string())
                .into_iter()
                .map(Arc::new)
                .collect(),
            tables: HashMap::new(),
        }
    }

    fn resolved(&self, reference: TableReference) -> ResolvedTableReference {
        reference.resolve(self.catalog, &self.schema)
    }

    /// Looks `reference` up; a name that leads nowhere stays unresolved, and planning reports
    /// it. A lookup's own error (a refusal) is the statement's error.
    async fn resolve(&mut self, tables: &Tables, reference: TableReference) -> Result<()> {
        let resolved = self.resolved(reference);
        if self.tables.contains_key(&resolved) {
            return Ok(());
        }
        let table = match tables {
            Tables::Catalog { catalog, .. } => {
                let schema: Option<Arc<dyn SchemaProvider>> = if *resolved.catalog != *self.catalog
                {
                    None
                } else if *resolved.schema == *INFORMATION_SCHEMA {
                    let list = Arc::new(MemoryCatalogProviderList::new());
                    list.register_catalog(self.catalog.to_string(), catalog.clone());
                    Some(Arc::new(
                        InformationSchemaProvider::new(list)
                            .with_table_functions(self.base.table_functions().clone()),
                    ))
                } else {
                    catalog.schema(&resolved.schema)
                };
                match schema {
                    Some(s) => s.table(&resolved.table).await?,
                    None => None,
                }
            }
            Tables::One { name, table } => (*resolved.catalog == *SCRATCH
                && *resolved.schema == *SCRATCH
                && *resolved.table == **name)
                .then(|| table.clone()),
            Tables::None => None,
        };
        if let Some(t) = table {
            self.tables.insert(resolved, provider_as_source(t));
        }
        Ok(())
    }
}

impl ContextProvider for StatementContext<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let name = self.resolved(name);
        self.tables
            .get(&name)
            .cloned()
            .ok_or_else(|| plan_datafusion_err!("table '{name}' not found"))
    }

    fn get_table_function_source(
        &self,
        name: &str,
        args: Vec<Expr>,
    ) -> DfResult<Arc<dyn TableSource>> {
        let function = self
            .base
            .table_functions()
            .get(name)
            .cloned()
            .ok_or_else(|| plan_datafusion_err!("table function '{name}' not found"))?;
        let simplifier = ExprSimplifier::new(
            SimplifyContext::builder()
                .with_config_options(self.base.config_options().clone())
                .build(),
        );
        let empty = DFSchema::empty();
        let args = args
            .into_iter()
            .map(|a| {
                simplifier
                    .coerce(a, &empty)
                    .and_then(|e| simplifier.simplify(e))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let provider =
            function.create_table_provider_with_args(TableFunctionArgs::new(&args, self.base))?;
        Ok(provider_as_source(provider))
    }

    fn create_cte_work_table(
        &self,
        name: &str,
        schema: SchemaRef,
    ) -> DfResult<Arc<dyn TableSource>> {
        Ok(provider_as_source(Arc::new(CteWorkTable::new(
            name, schema,
        ))))
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.base.expr_planners()
    }

    fn get_relation_planners(&self) -> &[Arc<dyn RelationPlanner>] {
        self.base.relation_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.session
            .iter()
            .find(|f| f.name() == name)
            .or_else(|| self.base.scalar_functions().get(name))
            .cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.base.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.base.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.base.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.base.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.session.iter().map(|f| f.name().into()).collect();
        names.extend(self.base.scalar_functions().keys().cloned());
        names
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.base.higher_order_functions().keys().cloned().collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.base.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.base.window_functions().keys().cloned().collect()
    }
}
