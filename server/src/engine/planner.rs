//! DataFusion's session setup, owned in one place: the configuration every statement plans
//! with (no view types, QuillDB's batch size and parser limits, joins that yield), the function
//! registry (bounded built-ins and QuillDB's functions), a memory pool per query, and the
//! executor that runs plans off the gRPC runtime. Which tables a context sees is given by the
//! caller (the provider layer's catalog), so the engine knows no provider.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::CatalogProvider;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
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

/// A planned query and the context that planned it (its catalog view is the caller's).
#[derive(Clone)]
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
    /// A plan built in `ctx`.
    pub fn new(ctx: SessionContext, plan: LogicalPlan) -> Self {
        Self { ctx, plan }
    }

    /// The result schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.plan.schema().as_arrow().clone())
    }

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
            .with_round_robin_repartition(false)
            .with_target_partitions(config.query.target_partitions.max(1));
        let opts = df_config.options_mut();
        opts.sql_parser.map_string_types_to_utf8view = false;
        opts.execution.parquet.schema_force_view_types = false;
        // DataFusion's own parser (a subscription's filter) recurses as deep as ours.
        opts.sql_parser.recursion_limit = datafusion::common::config::ConfigNonZeroUsize::try_new(
            limits.text.parser_recursion(),
        )?;
        let mut base = SessionStateBuilder::new()
            .with_config(df_config)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(crate::exec::JoinsYield))
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

    /// A context for one statement of `caller`, seeing the tables of `catalog`.
    pub fn context(&self, caller: &Caller, catalog: Arc<dyn CatalogProvider>) -> SessionContext {
        let ctx = SessionContext::new_with_state(self.state(caller));
        ctx.register_catalog(quilldb_flight::CATALOG, catalog);
        ctx
    }

    /// A context with one in-memory table `table` holding `rows` and nothing else (the rows
    /// an `ON CONFLICT DO UPDATE` works on).
    pub fn scratch_context(
        &self,
        caller: &Caller,
        table: &str,
        rows: RecordBatch,
    ) -> Result<SessionContext> {
        let mut state = self.state(caller);
        let opts = state.config_mut().options_mut();
        opts.catalog.default_catalog = "scratch".into();
        opts.catalog.default_schema = "scratch".into();
        let config = state
            .config()
            .clone()
            .with_create_default_catalog_and_schema(true);
        let ctx = SessionContext::new_with_state(
            SessionStateBuilder::new_from_existing(state)
                .with_config(config)
                .build(),
        );
        ctx.register_batch(table, rows)?;
        Ok(ctx)
    }

    fn state(&self, caller: &Caller) -> SessionState {
        // Each query gets its own memory pool (`limits.max_query_memory_mb`), sharing the
        // disk manager for spills and the caches.
        let runtime = RuntimeEnvBuilder::from_runtime_env(self.base.runtime_env())
            .with_memory_pool(Arc::new(TrackConsumersPool::new(
                GreedyMemoryPool::new(self.max_query_memory),
                std::num::NonZeroUsize::MIN.saturating_add(4),
            )))
            .build_arc();
        let mut state = match runtime {
            Ok(env) => SessionStateBuilder::new_from_existing(self.base.clone())
                .with_runtime_env(env)
                .build(),
            Err(e) => {
                tracing::error!(error = %e, "query memory pool");
                self.base.clone()
            }
        };
        state.config_mut().options_mut().catalog.default_schema =
            caller.namespace().unwrap_or_else(|| "public".into());
        for udf in functions::session(&caller.user, &caller.role.to_string()) {
            let _ = state.register_udf(Arc::new(udf));
        }
        state
    }

    /// Runs a planned query as a stream, on the query executor.
    pub async fn execute(&self, plan: &QueryPlan) -> Result<SendableRecordBatchStream> {
        self.executor
            .stream(plan.ctx.state(), plan.plan.clone())
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
