//! The query executor: a tokio runtime of its own for DataFusion execution. Batches cross to
//! the gRPC runtime through a small bounded channel, so a CPU-heavy query occupies the query
//! threads and never the threads that answer calls (cancellation, other clients, health).

use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

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
    ) -> Result<SendableRecordBatchStream> {
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = self.handle.spawn(async move {
            let stream = DataFrame::new(state, plan).execute_stream().await;
            let mut stream = match stream {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    return;
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

/// Aborts the query task when its consumer goes away, even mid-computation.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
