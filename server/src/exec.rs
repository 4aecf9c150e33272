//! The query executor: a tokio runtime of its own for DataFusion execution. Batches cross to
//! the gRPC runtime through a small bounded channel, so a CPU-heavy query occupies the query
//! threads and never the threads that answer calls (cancellation, other clients, health).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionState;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// The stack of every thread that parses, plans or executes statements (the gRPC runtime's and
/// the query runtime's workers and blocking threads). Walks over a statement's trees recurse
/// once per level of nesting, and `limits.max_expression_depth` bounds the levels; this is
/// sized for the deepest statement that limit lets through, in a debug build, with room to
/// spare (docs/decisions.md). Untouched stack costs address space only.
pub const THREAD_STACK_BYTES: usize = 64 << 20;

/// Batches in flight between a running query and its consumer.
const CHANNEL_BATCHES: usize = 2;

/// The query runtime.
pub struct Executor {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
}

impl Executor {
    /// A runtime with `threads` worker threads.
    pub fn new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("quill-query")
            .thread_stack_size(THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("starting the query runtime: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// Plans `plan` physically and runs it on the executor; the answer is read on the caller's
    /// runtime. Dropping the stream stops the query.
    pub async fn stream(
        &self,
        state: SessionState,
        plan: LogicalPlan,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = self.handle.spawn(async move {
            let mut ready = Some(ready_tx);
            let run = AssertUnwindSafe(run(state, plan, runtime, &tx, &mut ready));
            if let Err(panic) = run.catch_unwind().await {
                // A bug in an operator ends this query with an error, never with a stream that
                // looks complete.
                let message = quilldb_flight::panic_message(panic.as_ref());
                tracing::error!(panic = %message, "a query panicked");
                let e = DataFusionError::Internal(format!("the query failed: {message}"));
                match ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(e));
                    }
                    None => {
                        let _ = tx.send(Err(e)).await;
                    }
                }
            }
        });
        let abort = AbortOnDrop(task.abort_handle());
        match ready_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(Error::Internal("the query task ended early".into())),
        }
        let batches = futures::stream::unfold((rx, abort), |(mut rx, abort)| async move {
            rx.recv().await.map(|b| (b, (rx, abort)))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    /// Stops the runtime without waiting for running queries.
    pub fn shutdown(&self) {
        if let Some(rt) = self.runtime.lock().take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Plans `plan` physically and sends its batches to `tx`; `ready` is told once the stream is
/// open (or why it could not open). The query runs in `runtime` (its memory pool); its task
/// context carries no function registry, which only plan deserialization reads.
async fn run(
    state: SessionState,
    plan: LogicalPlan,
    runtime: Arc<RuntimeEnv>,
    tx: &mpsc::Sender<DfResult<RecordBatch>>,
    ready: &mut Option<oneshot::Sender<DfResult<()>>>,
) {
    let stream = match state.create_physical_plan(&plan).await {
        Ok(physical) => {
            let task = TaskContext::new(
                None,
                state.session_id().to_string(),
                state.config().clone(),
                HashMap::new(),
                HashMap::new(),
                HashMap::new(),
                HashMap::new(),
                runtime,
            );
            execute_stream(physical, Arc::new(task))
        }
        Err(e) => Err(e),
    };
    let mut stream = match stream {
        Ok(s) => {
            if let Some(r) = ready.take() {
                let _ = r.send(Ok(()));
            }
            s
        }
        Err(e) => {
            if let Some(r) = ready.take() {
                let _ = r.send(Err(e));
            }
            return;
        }
    };
    while let Some(item) = stream.next().await {
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

/// Aborts the query task when its consumer goes away, even mid-computation.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A physical optimizer rule: the output of every join takes part in tokio's cooperative
/// scheduling. A join over buffered rows (a cross join feeding an aggregate) otherwise produces
/// batch after batch inside one poll of its consumer and never yields, so a query past its
/// time limit, or cancelled, would keep its query thread for as long as the join has rows.
/// With the budget, the task yields every few batches, and the abort of a timed-out query
/// takes effect there.
#[derive(Debug, Default)]
pub struct JoinsYield;

impl datafusion::physical_optimizer::PhysicalOptimizerRule for JoinsYield {
    fn optimize(
        &self,
        plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        use datafusion::physical_plan::coop::CooperativeExec;
        plan.transform_up(|node| {
            if node.children().len() >= 2 {
                let wrapped: Arc<dyn datafusion::physical_plan::ExecutionPlan> =
                    Arc::new(CooperativeExec::new(node));
                Ok(Transformed::yes(wrapped))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "JoinsYield"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
