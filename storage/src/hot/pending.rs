//! Rows written per partition since its last flush: what FLUSH_POLICY looks at, kept by the
//! writer after each commit so that no write path can forget to count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::writer::RowOp;
use crate::keys::PartitionKey;

/// Unflushed writes of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unflushed {
    /// Row versions written since the last flush began.
    pub rows: u64,
    /// When the oldest of them was written.
    pub since: Instant,
    /// Rows counted when the running flush began (they go once it commits).
    in_flush: u64,
}

/// The per-partition counters.
#[derive(Debug, Default)]
pub struct PendingWrites {
    parts: Mutex<HashMap<Vec<u8>, Unflushed>>,
}

impl PendingWrites {
    /// Counts committed row ops, one map update per run of ops on the same partition.
    pub(crate) fn note(&self, ops: &[RowOp]) {
        let mut parts = self.parts.lock();
        let now = Instant::now();
        let mut i = 0;
        while i < ops.len() {
            let p = &ops[i].partition;
            let mut j = i + 1;
            while j < ops.len() && Arc::ptr_eq(&ops[j].partition, p) {
                j += 1;
            }
            let e = parts.entry(p.as_bytes().to_vec()).or_insert(Unflushed {
                rows: 0,
                since: now,
                in_flush: 0,
            });
            if e.rows == 0 {
                e.since = now;
            }
            e.rows += (j - i) as u64;
            i = j;
        }
    }

    /// Marks a partition as having unflushed rows (found at start, when counts are unknown).
    pub fn note_existing(&self, partition: &PartitionKey, rows: u64) {
        self.parts
            .lock()
            .entry(partition.as_bytes().to_vec())
            .or_insert(Unflushed {
                rows,
                since: Instant::now(),
                in_flush: 0,
            });
    }

    pub(crate) fn begin_flush(&self, partition: &[u8]) {
        if let Some(e) = self.parts.lock().get_mut(partition) {
            e.in_flush = e.rows;
        }
    }

    pub(crate) fn flushed(&self, partition: &[u8]) {
        let mut parts = self.parts.lock();
        if let Some(e) = parts.get_mut(partition) {
            e.rows = e.rows.saturating_sub(e.in_flush);
            e.in_flush = 0;
            if e.rows == 0 {
                parts.remove(partition);
            }
        }
    }

    /// Forgets the partitions of a dropped table.
    pub fn forget_table(&self, table_prefix: &[u8]) {
        self.parts
            .lock()
            .retain(|k, _| !k.starts_with(table_prefix));
    }

    /// Row versions of `partition` written and not yet flushed (those of a running flush
    /// included): about how many rows its hot store holds.
    pub fn rows(&self, partition: &[u8]) -> u64 {
        self.parts
            .lock()
            .get(partition)
            .map_or(0, |u| u.rows + u.in_flush)
    }

    /// Every partition with unflushed rows.
    pub fn snapshot(&self) -> Vec<(Vec<u8>, Unflushed)> {
        self.parts
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}
