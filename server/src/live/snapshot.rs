//! A subscription's first rows: the snapshot of every matching row (the newest `last_rows`),
//! or, resuming after `from`, what changed since. Both read through the engine's `TableRead`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int8Array, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use quilldb_flight::EventKind;
use quilldb_storage::keys::PartitionKey;

use super::changes::{self, split};
use super::query::LiveQuery;
use super::task::Task;
use crate::catalog::TableType;
use crate::error::{Error, Result};

impl Task {
    /// The partitions the snapshot reads.
    async fn partitions(&self) -> Result<Vec<PartitionKey>> {
        let def = &self.q.def;
        match &self.entry.partition {
            Some(p) => Ok(vec![PartitionKey::new(def.id, p)?]),
            None => {
                let mut parts = self.db.hot.partitions(def.id)?;
                if def.table_type == TableType::User {
                    let storage = self.db.storages.get(&def.storage_id)?;
                    for user in storage.cold.subfolders(&storage.table_root(def)).await? {
                        let p = PartitionKey::new(def.id, user.as_bytes())?;
                        if !parts.contains(&p) {
                            parts.push(p);
                        }
                    }
                }
                Ok(parts)
            }
        }
    }

    /// Sends the INITIAL batches; answers, per partition read, the `_seq` its view holds.
    pub(super) async fn snapshot(&self) -> Result<HashMap<Vec<u8>, u64>> {
        let mut horizons = HashMap::new();
        let partitions = self.partitions().await?;
        if partitions.len() > 1 {
            // all_users: the users' rows merged into one ascending `_seq` order (held in
            // memory: the newest `last_rows` per user when that option is given).
            let mut all = Vec::new();
            for partition in &partitions {
                let (seq, batches) = self.read_partition(partition).await?;
                horizons.insert(partition.name().to_vec(), seq);
                all.extend(batches);
            }
            for b in merged_by_seq(&self.q, all)? {
                if !self.send_rows(EventKind::Initial, b).await {
                    break;
                }
            }
            return Ok(horizons);
        }
        for partition in partitions {
            let (seq, batches) = self.read_partition(&partition).await?;
            horizons.insert(partition.name().to_vec(), seq);
            for b in batches {
                if !self.send_rows(EventKind::Initial, b).await {
                    return Ok(horizons);
                }
            }
        }
        Ok(horizons)
    }

    /// Resuming after `from`: per partition, every row whose current version is newer (an
    /// update if it matches the filter, else a delete carrying it) and every delete after
    /// `from` (its key), in `_seq` order. Answers the partitions' horizons and the batches;
    /// `None` if deletes after `from` are no longer kept.
    ///
    /// A table without a primary key identifies rows by `_seq`: a newer version is a new row
    /// (an insert if it matches the filter), and a delete carries the deleted version's `_seq`.
    pub(super) async fn catch_up(
        &self,
        from: u64,
    ) -> Result<Option<(HashMap<Vec<u8>, u64>, Vec<RecordBatch>)>> {
        let keyless = self.q.def.key().is_none();
        let mut horizons = HashMap::new();
        let mut out = Vec::new();
        for partition in self.partitions().await? {
            let read = self
                .db
                .read(self.q.def.clone(), partition.clone())?
                .seq_range(from.saturating_add(1), u64::MAX);
            let q = self.q.clone();
            let user = String::from_utf8_lossy(partition.name()).into_owned();
            let handle = tokio::runtime::Handle::current();
            let Some((seq, batches)) = tokio::task::spawn_blocking(move || -> Result<_> {
                let mut rows = Vec::new();
                let stats = read.run_blocking(&handle, |b| {
                    rows.push(b);
                    Ok(true)
                })?;
                let Some(deletes) = read.deletes_blocking(&handle, from, stats.snapshot_seq)?
                else {
                    return Ok(None);
                };
                let schema = q.rows_schema();
                let mut parts = Vec::new();
                let mut ops: Vec<i8> = Vec::new();
                for b in &rows {
                    let mut b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
                    if keyless {
                        b = matching(&q, &b)?;
                        ops.extend(std::iter::repeat_n(changes::OP_INSERT, b.num_rows()));
                        parts.push(b);
                        continue;
                    }
                    let inside = matching_mask(&q, &b)?;
                    ops.extend(inside.iter().map(|m| {
                        if *m {
                            changes::OP_UPDATE
                        } else {
                            changes::OP_DELETE
                        }
                    }));
                    parts.push(b);
                }
                for b in &deletes {
                    parts.push(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?);
                    ops.extend(std::iter::repeat_n(changes::OP_DELETE, b.num_rows()));
                }
                let all = arrow::compute::concat_batches(&schema, &parts)?;
                let seqs = all.column(q.def.columns.len()).clone();
                let order = arrow::compute::sort_to_indices(&seqs, None, None)?;
                let sorted = arrow::compute::take_record_batch(&all, &order)?;
                let ops: Vec<i8> = order.values().iter().map(|i| ops[*i as usize]).collect();
                let out = output(&q, &sorted, ops, &user)?;
                Ok(Some((
                    stats.snapshot_seq,
                    split(vec![out], q.options.batch_size),
                )))
            })
            .await
            .map_err(|e| Error::Internal(format!("resume task: {e}")))??
            else {
                return Ok(None);
            };
            horizons.insert(partition.name().to_vec(), seq);
            out.extend(batches.into_iter().filter(|b| b.num_rows() > 0));
        }
        Ok(Some((horizons, out)))
    }

    /// Reads one partition's matching rows (the newest `last_rows` of them, if asked).
    async fn read_partition(&self, partition: &PartitionKey) -> Result<(u64, Vec<RecordBatch>)> {
        let def = self.q.def.clone();
        let read = self.db.read(def.clone(), partition.clone())?;
        let q = self.q.clone();
        let user = String::from_utf8_lossy(partition.name()).into_owned();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<(u64, Vec<RecordBatch>)> {
            let mut kept: VecDeque<RecordBatch> = VecDeque::new();
            let mut kept_rows = 0usize;
            let stats = read.run_blocking(&handle, |b| {
                let m = matching(&q, &b)?;
                if m.num_rows() > 0 {
                    kept_rows += m.num_rows();
                    kept.push_back(m);
                    if let Some(n) = q.options.last_rows {
                        while kept_rows - kept.front().map_or(0, |f| f.num_rows()) >= n
                            && kept.len() > 1
                        {
                            kept_rows -= kept.pop_front().map_or(0, |f| f.num_rows());
                        }
                    }
                }
                Ok(true)
            })?;
            let mut rows: Vec<RecordBatch> = kept.into_iter().collect();
            if let Some(n) = q.options.last_rows {
                let schema = rows
                    .first()
                    .map_or_else(|| def.query_schema(), |b| b.schema());
                let all = arrow::compute::concat_batches(&schema, &rows)?;
                let skip = all.num_rows().saturating_sub(n);
                rows = vec![all.slice(skip, all.num_rows() - skip)];
            }
            let out = rows
                .iter()
                .map(|b| project(&q, b, 0, &user))
                .collect::<Result<Vec<_>>>()?;
            Ok((stats.snapshot_seq, split(out, q.options.batch_size)))
        })
        .await
        .map_err(|e| Error::Internal(format!("snapshot task: {e}")))?
    }
}

/// Whether each row of `b` (the table's columns, then `_seq`) passes the filter.
fn matching_mask(q: &LiveQuery, b: &RecordBatch) -> Result<Vec<bool>> {
    let Some(f) = &q.filter else {
        return Ok(vec![true; b.num_rows()]);
    };
    let mask = f.evaluate(b)?.into_array(b.num_rows())?;
    let mask = mask
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .ok_or_else(|| Error::InvalidArgument("the filter is not a condition".into()))?;
    Ok((0..mask.len())
        .map(|i| mask.is_valid(i) && mask.value(i))
        .collect())
}

/// The rows of `b` that pass the filter.
fn matching(q: &LiveQuery, b: &RecordBatch) -> Result<RecordBatch> {
    let mask = arrow::array::BooleanArray::from(matching_mask(q, b)?);
    Ok(filter_record_batch(b, &mask)?)
}

/// The subscription's columns of a snapshot batch `b` (table columns then `_seq`), with `_op`
/// and `_user_id`.
fn project(q: &LiveQuery, b: &RecordBatch, op: i8, user: &str) -> Result<RecordBatch> {
    output(q, b, vec![op; b.num_rows()], user)
}

/// The subscription's columns of `b` (table columns then `_seq`), then `ops` and `_user_id`.
fn output(q: &LiveQuery, b: &RecordBatch, ops: Vec<i8>, user: &str) -> Result<RecordBatch> {
    let n = b.num_rows();
    let seq_at = q.def.columns.len();
    let mut cols: Vec<ArrayRef> = q.columns.iter().map(|i| b.column(*i).clone()).collect();
    cols.push(b.column(seq_at).clone());
    cols.push(Arc::new(Int8Array::from(ops)));
    if q.options.all_users {
        cols.push(Arc::new(StringArray::from(vec![user; n])));
    }
    Ok(RecordBatch::try_new(q.schema(), cols)?)
}

/// Output batches of several users sorted into one ascending `_seq` order; with `last_rows`,
/// the newest of them all.
fn merged_by_seq(q: &LiveQuery, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    let schema = q.schema();
    let all = arrow::compute::concat_batches(&schema, &batches)?;
    let seq_at = q.columns.len();
    let order = arrow::compute::sort_to_indices(all.column(seq_at), None, None)?;
    let mut sorted = arrow::compute::take_record_batch(&all, &order)?;
    if let Some(n) = q.options.last_rows {
        let skip = sorted.num_rows().saturating_sub(n);
        sorted = sorted.slice(skip, sorted.num_rows() - skip);
    }
    Ok(split(vec![sorted], q.options.batch_size))
}
