//! Running queries: the concurrency limit, the time limit and cancellation of a DoGet stream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::backend::BatchStream;
use crate::error::Error;

/// Limits on queries.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Queries streaming at once, server-wide.
    pub max_concurrent: usize,
    /// How long one query may run, from GetFlightInfo to the end of its stream.
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 64,
            timeout: Duration::from_secs(300),
        }
    }
}

struct Running {
    principal: String,
    cancel: CancellationToken,
}

/// The queries admitted and not yet finished, by ticket handle.
pub struct Queries {
    limits: QueryLimits,
    permits: Arc<Semaphore>,
    running: Arc<Mutex<HashMap<Bytes, Running>>>,
}

impl Queries {
    /// A registry enforcing `limits`.
    pub fn new(limits: QueryLimits) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
            limits,
            running: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The time limit of one query.
    pub fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// Takes a query slot, or fails with RESOURCE_EXHAUSTED when the server runs its limit.
    fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Status::from(Error::ResourceExhausted(format!(
                "{} queries are running; the limit is {}: retry shortly",
                self.limits.max_concurrent, self.limits.max_concurrent
            )))
        })
    }

    /// Runs the query `handle` of `principal`: `start` opens its stream, which then ends with
    /// CANCELLED when cancelled, with DEADLINE_EXCEEDED past `deadline` (the end of its time
    /// `limit`), and frees its slot when dropped. Cancellation and the deadline also cover
    /// opening the stream.
    pub async fn run(
        &self,
        handle: Bytes,
        principal: &str,
        (deadline, limit): (tokio::time::Instant, Duration),
        start: impl std::future::Future<Output = Result<BatchStream, Status>>,
    ) -> Result<BatchStream, Status> {
        let permit = self.admit()?;
        let cancel = CancellationToken::new();
        self.running.lock().insert(
            handle.clone(),
            Running {
                principal: principal.to_string(),
                cancel: cancel.clone(),
            },
        );
        let slot = Slot {
            handle,
            running: self.running.clone(),
            _permit: permit,
        };
        let inner = tokio::select! {
            s = start => s?,
            _ = cancel.cancelled() => return Err(cancelled()),
            _ = tokio::time::sleep_until(deadline) => return Err(deadline_exceeded(limit)),
        };
        Ok(Guarded {
            inner,
            cancelled: cancel.cancelled_owned().boxed(),
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            limit,
            done: false,
            _slot: slot,
        }
        .boxed())
    }

    /// Cancels the running query `handle` of `principal`; false if none runs.
    pub fn cancel(&self, principal: &str, handle: &[u8]) -> bool {
        let running = self.running.lock();
        match running.get(handle) {
            Some(r) if r.principal == principal => {
                r.cancel.cancel();
                true
            }
            _ => false,
        }
    }
}

fn cancelled() -> Status {
    Status::from(Error::Cancelled("the query was cancelled".into()))
}

/// A query past its time limit; the message names the limit and the settings behind it.
pub fn deadline_exceeded(limit: Duration) -> Status {
    Status::from(Error::DeadlineExceeded(format!(
        "the query ran past its time limit of {} s (limits.query_timeout_seconds, \
         limits.role_query_timeout_seconds)",
        limit.as_secs()
    )))
}

/// Removes its query from the registry and frees the slot when the stream is dropped.
struct Slot {
    handle: Bytes,
    running: Arc<Mutex<HashMap<Bytes, Running>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.lock().remove(&self.handle);
    }
}

struct Guarded {
    inner: BatchStream,
    cancelled: futures::future::BoxFuture<'static, ()>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    done: bool,
    _slot: Slot,
}

// The futures are boxed, so moving the struct is safe.
impl Unpin for Guarded {}

impl Stream for Guarded {
    type Item = Result<arrow::record_batch::RecordBatch, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancelled.poll_unpin(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(cancelled())));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(deadline_exceeded(self.limit))));
        }
        let item = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(None) = item {
            self.done = true;
        }
        item
    }
}
