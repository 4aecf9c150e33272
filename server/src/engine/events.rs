//! What the engine tells the layers above it, and the little it asks of them. Catalog and user
//! changes are published as [`CatalogEvent`]s on a bounded channel that the live hub follows,
//! so DDL code never calls into subscriptions; system.live_queries and KILL LIVE QUERY reach the
//! hub through the [`LiveQueries`] trait, so the engine does not depend on it.

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::session::{Caller, Role};

/// Events the channel holds before a publisher waits for the follower.
const CAPACITY: usize = 256;

/// A change to the catalog or to users that open subscriptions must react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// A table was dropped (`table_dropped`) or altered (`schema_changed`).
    TableChanged {
        /// The table's id.
        table_id: u64,
        /// The CLOSED code its subscriptions end with.
        code: &'static str,
        /// Why, for the subscriber.
        message: String,
    },
    /// A user was dropped.
    UserDropped {
        /// The user.
        user: String,
    },
    /// A user's role changed.
    RoleChanged {
        /// The user.
        user: String,
        /// The new role.
        role: Role,
    },
}

/// The bounded channel of catalog events, with one follower.
#[derive(Debug)]
pub struct Events {
    tx: mpsc::Sender<CatalogEvent>,
    rx: Mutex<Option<mpsc::Receiver<CatalogEvent>>>,
}

impl Default for Events {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Events {
    /// Publishes `event`; waits while the follower is `CAPACITY` events behind. Nothing is
    /// kept when no follower has taken the channel (nobody could act on it).
    pub async fn publish(&self, event: CatalogEvent) {
        if self.rx.lock().is_some() {
            return;
        }
        if self.tx.send(event).await.is_err() {
            tracing::debug!("catalog event with no follower");
        }
    }

    /// The receiving end, once: for the live hub.
    pub fn follow(&self) -> Option<mpsc::Receiver<CatalogEvent>> {
        self.rx.lock().take()
    }
}

/// One open subscription, as system.live_queries shows it.
#[derive(Debug, Clone)]
pub struct LiveQueryInfo {
    /// The live id.
    pub id: String,
    /// Who subscribed.
    pub user: String,
    /// `namespace.table`.
    pub table: String,
    /// The SUBSCRIBE text.
    pub query: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The greatest `_seq` sent.
    pub last_seq: i64,
    /// Change rows sent.
    pub rows_sent: u64,
    /// `active` or `closing (code)`.
    pub status: String,
}

/// What the engine asks of the live layer.
pub trait LiveQueries: Send + Sync {
    /// The open subscriptions, oldest first.
    fn list(&self) -> Vec<LiveQueryInfo>;
    /// KILL LIVE QUERY `id` for `caller`.
    fn kill(&self, caller: &Caller, id: &str) -> Result<()>;
}
