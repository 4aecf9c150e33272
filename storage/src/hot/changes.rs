//! Committed changes, handed to a listener (live queries) by the writer once they are durable.
//!
//! The writer captures changes only for tables the listener asks for ([`ChangeSink::wants`]),
//! so tables without subscribers pay one lookup per op. Changes arrive in commit (`_seq`) order,
//! one call per committed group, never for a request that failed.

use std::sync::Arc;

use parking_lot::RwLock;

use crate::keys::PartitionKey;

/// What a key held before a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// No live version: the change inserts.
    Absent,
    /// The live version: its `_seq` (which schema it was written under) and encoded row.
    Row {
        /// The version's `_seq`.
        seq: u64,
        /// The encoded row.
        row: Vec<u8>,
    },
    /// A live version (this `_seq`) whose row is in cold storage only: not read on the commit
    /// path; a listener reads it with [`crate::merge::ColdSource::versions`].
    Cold(u64),
}

/// One committed change of one key.
#[derive(Debug, Clone)]
pub struct Change {
    /// The partition (table and user).
    pub partition: Arc<PartitionKey>,
    /// The primary-key bytes.
    pub pk: Vec<u8>,
    /// The new version's `_seq`.
    pub seq: u64,
    /// The new row (encoded); `None` deletes.
    pub row: Option<Vec<u8>>,
    /// What the key held before.
    pub prior: Prior,
}

/// Receives committed changes. Called on the writer thread: it must not block.
pub trait ChangeSink: Send + Sync {
    /// Whether changes of `table_id` are wanted.
    fn wants(&self, table_id: u64) -> bool;
    /// Changes of one committed group, in `_seq` order.
    fn publish(&self, changes: Vec<Change>);
}

/// Where the writer finds the current listener.
#[derive(Default)]
pub struct SinkSlot(RwLock<Option<Arc<dyn ChangeSink>>>);

impl std::fmt::Debug for SinkSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkSlot")
    }
}

impl SinkSlot {
    /// Installs the listener.
    pub fn set(&self, sink: Arc<dyn ChangeSink>) {
        *self.0.write() = Some(sink);
    }

    /// The listener, if it wants changes of `table_id`.
    pub(crate) fn for_table(&self, table_id: u64) -> Option<Arc<dyn ChangeSink>> {
        self.0
            .read()
            .as_ref()
            .filter(|s| s.wants(table_id))
            .cloned()
    }

    /// Hands a committed group's changes over.
    pub(crate) fn publish(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Some(s) = self.0.read().as_ref() {
            s.publish(changes);
        }
    }
}
