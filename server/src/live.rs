//! Live queries: subscriptions over DoExchange (spec/flight.md).
//!
//! ```text
//!  writer thread ── commit (durable) ──► LiveHub::publish ── index by table, then partition ──►
//!     per-subscription queue (bounded in rows: over it, CLOSED lagged)  ──►  subscription task
//!     (decode, fill added columns, filter on old and new rows, project, frame)  ──►  DoExchange
//!
//!  snapshot / resume ── engine::TableRead (the read every SELECT and lookup uses) ──► task
//!  DDL and user changes ── engine::CatalogEvent (bounded channel) ──► hub ends subscriptions
//! ```
//!
//! No gap, no duplicate: a subscription is registered in the index before its snapshot is read;
//! the snapshot's RocksDB view records the `_seq` high-water mark it holds, and queued changes
//! at or below it are dropped, those above it sent.

/// Turning committed changes into CHANGE batches.
pub mod changes;
/// The registry, router and caches of subscriptions.
pub mod hub;
/// A subscription as the statement layer builds it.
pub mod query;
/// The snapshot and the resume of a subscription.
mod snapshot;
/// The task of one subscription.
mod task;

use std::sync::Arc;

use futures::StreamExt;
use quilldb_flight::{LiveMessage, Subscription};
use tokio::sync::mpsc;

pub use hub::{LiveEntry, LiveHub};
use query::LiveQuery;
use task::Task;

use crate::engine::Database;
use crate::error::Result;
use crate::session::Caller;

/// Opens a subscription built and authorized by the statement layer: registers it, then
/// streams its snapshot and changes from a task the hub owns.
pub fn subscribe(
    db: &Arc<Database>,
    hub: &Arc<LiveHub>,
    caller: &Caller,
    q: LiveQuery,
) -> Result<Subscription> {
    let schema = q.schema();
    hub.tick();
    let entry = hub.register(caller, &q)?;
    let (tx, rx) = mpsc::channel::<LiveMessage>(16);
    let id = entry.id.clone();
    let signature: Arc<str> = format!(
        "{}/{}/{:?}/{:?}/{:?}/{}/{}",
        q.def.id,
        q.def.schema_version,
        entry.partition,
        q.columns,
        q.filter.as_ref().map(|f| f.to_string()),
        q.options.all_users,
        q.options.batch_size
    )
    .into();
    let task = Task {
        db: db.clone(),
        hub: hub.clone(),
        signature,
        schema: schema.clone(),
        q: Arc::new(q),
        entry: entry.clone(),
        tx,
    };
    let registered = Registered {
        hub: hub.clone(),
        entry,
    };
    hub.spawn(async move {
        // Unregistered however the task ends: done, panicked, or stopped at shutdown.
        let _registered = registered;
        task.run().await;
    });
    let messages = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
    Ok(Subscription {
        id,
        schema,
        messages,
    })
}

/// A subscription's place in the hub, given back when its task ends.
struct Registered {
    hub: Arc<LiveHub>,
    entry: Arc<LiveEntry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.hub.unregister(&self.entry);
    }
}
