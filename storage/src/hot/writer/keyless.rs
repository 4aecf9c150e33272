//! The writer's part for tables without a primary key: their rows are versions identified by
//! `_seq`, so nothing is read for an insert and no key index entry is written.

use std::collections::HashMap;

use rocksdb::WriteBatch;

use super::super::changes::{Change, Prior};
use super::super::{CF_DV, CF_ROWS, KIND_PUT, KIND_TOMBSTONE, cf};
use super::{Current, Planned, RowOp, WriteMode, WriteOutcome, WriteRequest, Writer, row_value};
use crate::codec::put_varint;
use crate::keys::PartitionKey;
use crate::{Error, Result};

impl Writer {
    /// Plans one op of a table without a primary key ([`WriteMode::Append`] or
    /// [`WriteMode::ReplaceVersion`]): no key index is read or written.
    pub(super) fn plan_keyless(
        &self,
        op: &RowOp,
        group: &HashMap<Vec<u8>, Current>,
        p: &mut Planned,
    ) -> Result<()> {
        let listened = self.sink.for_table(op.partition.table_id()).is_some();
        let mut counted = false;
        if let WriteMode::ReplaceVersion(old) = op.mode {
            let mark = version_mark(&op.partition, old);
            let gone = p.overlay.contains_key(&mark) || group.contains_key(&mark);
            let row_key = op.partition.row_key(old);
            let hot = if gone {
                None
            } else {
                self.db
                    .get_pinned_cf(cf(&self.db, CF_ROWS)?, &row_key)
                    .map_err(|e| Error::rocks("read a version", e))?
                    .map(|v| v.to_vec())
            };
            let maybe_cold = self.maybe_cold(&op.partition, old);
            let live = match &hot {
                Some(v) => super::super::scan::split_value(v)?.0,
                None => {
                    !gone
                        && old >= op.live_from
                        && maybe_cold
                        && self
                            .db
                            .get_pinned_cf(cf(&self.db, CF_DV)?, &row_key)
                            .map_err(|e| Error::rocks("read dv marks", e))?
                            .is_none()
                }
            };
            if !live {
                return Err(Error::Conflict);
            }
            let prior = match &hot {
                Some(v) => Prior::Row {
                    seq: old,
                    row: super::super::scan::split_value(v)?.2.to_vec(),
                },
                None => Prior::Cold(old),
            };
            if hot.is_some() {
                p.deletes.push((CF_ROWS, row_key.clone()));
            }
            if maybe_cold {
                p.puts.push((CF_DV, row_key, Vec::new()));
            }
            p.overlay.insert(mark, None);
            let seq = self.seq.next_id();
            let named = old.to_be_bytes().to_vec();
            p.puts.push((
                CF_ROWS,
                op.partition.row_key(seq),
                row_value(KIND_TOMBSTONE, &named, &[]),
            ));
            if listened {
                p.changes.push(Change {
                    partition: op.partition.clone(),
                    pk: named,
                    seq,
                    row: None,
                    prior,
                });
            }
            p.outcome.applied += 1;
            p.outcome.last_seq = seq;
            counted = true;
        }
        if let Some(row) = &op.row {
            let seq = self.seq.next_id();
            p.puts.push((
                CF_ROWS,
                op.partition.row_key(seq),
                row_value(KIND_PUT, &[], row),
            ));
            if listened {
                p.changes.push(Change {
                    partition: op.partition.clone(),
                    pk: Vec::new(),
                    seq,
                    row: Some(row.clone()),
                    prior: Prior::Absent,
                });
            }
            if !counted {
                p.outcome.applied += 1;
            }
            p.outcome.last_seq = seq;
        }
        Ok(())
    }

    /// Commits a large request of [`WriteMode::Append`] ops alone: nothing to read, nothing
    /// to check, one put per row.
    pub(super) fn write_appends(&self, req: &WriteRequest) -> Result<WriteOutcome> {
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let mut batch = WriteBatch::default();
        let mut outcome = WriteOutcome::default();
        let mut changes = Vec::new();
        let mut value = Vec::new();
        for op in &req.rows {
            let Some(row) = &op.row else {
                continue;
            };
            let seq = self.seq.next_id();
            value.clear();
            value.push(KIND_PUT);
            put_varint(&mut value, 0);
            value.extend_from_slice(row);
            batch.put_cf(rows_cf, op.partition.row_key(seq), &value);
            if self.sink.for_table(op.partition.table_id()).is_some() {
                changes.push(Change {
                    partition: op.partition.clone(),
                    pk: Vec::new(),
                    seq,
                    row: Some(row.clone()),
                    prior: Prior::Absent,
                });
            }
            outcome.applied += 1;
            outcome.last_seq = seq;
        }
        self.commit_alone(batch, req, changes)?;
        Ok(outcome)
    }
}

/// The group overlay's entry for a version of a table without a primary key, replaced
/// earlier in the group (apart from every key index entry: those start with the partition,
/// never with 0xff).
fn version_mark(partition: &PartitionKey, seq: u64) -> Vec<u8> {
    let mut k = vec![u8::MAX];
    k.extend_from_slice(&partition.row_key(seq));
    k
}
