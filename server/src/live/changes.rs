//! Committed changes to CHANGE batches: the new and the prior rows are decoded in one batch each,
//! rows written before an ADD COLUMN read its default (each prior row carries its own version's
//! `_seq`), the filter runs on both, and each change becomes an insert (`_op` 1: now in the filter, was
//! not), an update (2: in it before and after), a delete (3: was in it, is not any more or was
//! deleted, carrying the row as it was) or nothing. A prior version that is only in cold
//! storage is read back from its segment before (see `Task::cold_priors`); only if compaction
//! has dropped it already does a delete carry the key alone.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Int8Array, Int64Array, StringArray, new_null_array,
};
use arrow::compute::interleave;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use quilldb_storage::codec::RowDecoder;
use quilldb_storage::hot::{Change, Prior};
use quilldb_storage::keys::pk;

use super::query::LiveQuery;
use crate::engine::fills::Fills;
use crate::error::{Error, Result};

/// `_op` values.
pub const OP_INSERT: i8 = 1;
/// An update.
pub const OP_UPDATE: i8 = 2;
/// A delete.
pub const OP_DELETE: i8 = 3;

/// Prior rows read back from cold storage, by the `_seq` of the version: single-row batches of
/// the subscription's rows schema (every column, then `_seq`).
pub type ColdPriors = HashMap<u64, RecordBatch>;

/// Where a prior row is before the prior batch is put together.
#[derive(Clone, Copy)]
enum PriorAt {
    Decoded(usize),
    Cold(usize),
}

/// Where an output row comes from.
#[derive(Clone, Copy)]
enum Source {
    New(usize),
    Prior(usize),
    /// A deleted row whose prior version compaction dropped: its key, other columns null.
    Key(usize),
}

/// Builds the CHANGE batches of one subscription.
pub struct ChangeBatcher {
    q: Arc<LiveQuery>,
    columns: Vec<(u32, DataType)>,
    /// Rows from before an ADD COLUMN read its default, as in every other read.
    fills: Fills,
}

impl ChangeBatcher {
    /// A batcher for `q`.
    pub fn new(q: Arc<LiveQuery>) -> Self {
        let columns = q
            .def
            .columns
            .iter()
            .map(|c| (c.id, c.field(&q.def).data_type().clone()))
            .collect();
        let ids: Vec<u32> = q.def.columns.iter().map(|c| c.id).collect();
        let fills = Fills::new(&q.def, &ids);
        Self { q, columns, fills }
    }

    fn decode(&self, rows: &[&[u8]], seqs: Vec<i64>) -> Result<RecordBatch> {
        let mut d = RowDecoder::new(&self.columns, rows.len())?;
        for r in rows {
            d.push(r)?;
        }
        let mut cols = d.finish()?;
        let seq_at = cols.len();
        cols.push(Arc::new(Int64Array::from(seqs)));
        let batch = RecordBatch::try_new(self.q.rows_schema(), cols)?;
        self.fills.apply(batch, seq_at)
    }

    fn mask(&self, b: &RecordBatch) -> Result<Vec<bool>> {
        let Some(f) = &self.q.filter else {
            return Ok(vec![true; b.num_rows()]);
        };
        let m = f.evaluate(b)?.into_array(b.num_rows())?;
        let m = m
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::InvalidArgument("the filter is not a condition".into()))?;
        Ok((0..m.len()).map(|i| m.is_valid(i) && m.value(i)).collect())
    }

    /// The CHANGE batches (at most `batch_size` rows each) for `changes`, in their order;
    /// `cold` holds the prior rows of `Prior::Cold` changes that could be read back.
    pub fn batches(&self, changes: &[Arc<Change>], cold: &ColdPriors) -> Result<Vec<RecordBatch>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let (mut news, mut new_seqs, mut priors, mut prior_seqs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut cold_rows: Vec<RecordBatch> = Vec::new();
        let mut slots = Vec::with_capacity(changes.len());
        for c in changes {
            let new = c.row.as_deref().map(|r| {
                news.push(r);
                new_seqs.push(c.seq as i64);
                news.len() - 1
            });
            // `None`: the prior row is unknown (cold, and since compacted away).
            let prior = match &c.prior {
                Prior::Row { seq, row } => {
                    priors.push(row.as_slice());
                    prior_seqs.push(*seq as i64);
                    Some(Some(PriorAt::Decoded(priors.len() - 1)))
                }
                Prior::Absent => Some(None),
                Prior::Cold(version) => cold.get(version).map(|row| {
                    cold_rows.push(row.clone());
                    Some(PriorAt::Cold(cold_rows.len() - 1))
                }),
            };
            slots.push((new, prior));
        }
        let new_batch = self.decode(&news, new_seqs)?;
        let decoded = self.decode(&priors, prior_seqs)?;
        let prior_batch = if cold_rows.is_empty() {
            decoded
        } else {
            cold_rows.insert(0, decoded);
            arrow::compute::concat_batches(&self.q.rows_schema(), &cold_rows)?
        };
        let slots: Vec<(Option<usize>, Option<Option<usize>>)> = slots
            .into_iter()
            .map(|(new, prior)| {
                let at = prior.map(|p| {
                    p.map(|p| match p {
                        PriorAt::Decoded(i) => i,
                        PriorAt::Cold(i) => priors.len() + i,
                    })
                });
                (new, at)
            })
            .collect();
        let new_in = self.mask(&new_batch)?;
        let prior_in = self.mask(&prior_batch)?;

        let mut sources = Vec::new();
        let mut ops = Vec::new();
        let mut seqs = Vec::new();
        let mut users = Vec::new();
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut key_seqs = Vec::new();
        let keyless = self.q.def.key().is_none();
        for (c, (new, prior)) in changes.iter().zip(slots) {
            // A table without a primary key identifies rows by `_seq`: a delete carries the
            // deleted version's (its key bytes), not the tombstone's.
            let seq = match (keyless, c.row.is_none()) {
                (true, true) => quilldb_storage::hot::deleted_version(&c.pk)? as i64,
                _ => c.seq as i64,
            };
            // Was the key in the subscriber's set before? `None`: unknown.
            let was_in = prior.map(|p| p.is_some_and(|k| prior_in[k]));
            let is_in = new.is_some_and(|k| new_in[k]);
            let (op, source) = match (was_in, is_in, new, prior.flatten()) {
                (Some(false), true, Some(k), _) => (OP_INSERT, Source::New(k)),
                (_, true, Some(k), _) => (OP_UPDATE, Source::New(k)),
                (Some(true), false, _, Some(k)) => (OP_DELETE, Source::Prior(k)),
                (None, false, _, _) => {
                    keys.push(&c.pk);
                    key_seqs.push(seq);
                    (OP_DELETE, Source::Key(keys.len() - 1))
                }
                _ => continue,
            };
            sources.push(source);
            ops.push(op);
            seqs.push(seq);
            if self.q.options.all_users {
                users.push(String::from_utf8_lossy(c.partition.name()).into_owned());
            }
        }
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        let key_batch = if keys.is_empty() {
            RecordBatch::new_empty(self.q.rows_schema())
        } else {
            self.key_batch(&keys, key_seqs)?
        };
        let picks: Vec<(usize, usize)> = sources
            .iter()
            .map(|s| match s {
                Source::New(i) => (0, *i),
                Source::Prior(i) => (1, *i),
                Source::Key(i) => (2, *i),
            })
            .collect();
        let batches = [&new_batch, &prior_batch, &key_batch];
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.q.columns.len() + 3);
        for i in &self.q.columns {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(*i).as_ref()).collect();
            cols.push(interleave(&arrays, &picks)?);
        }
        cols.push(Arc::new(Int64Array::from(seqs)));
        cols.push(Arc::new(Int8Array::from(ops)));
        if self.q.options.all_users {
            cols.push(Arc::new(StringArray::from(users)));
        }
        let out = RecordBatch::try_new(self.q.schema(), cols)?;
        Ok(split(vec![out], self.q.options.batch_size))
    }

    /// Deleted keys whose prior rows are gone: the key column, other columns null.
    fn key_batch(&self, keys: &[&[u8]], seqs: Vec<i64>) -> Result<RecordBatch> {
        let schema = self.q.rows_schema();
        let pk_at = self.q.def.key().map(|(at, _)| at);
        let mut cols = Vec::with_capacity(schema.fields().len());
        for (i, f) in schema
            .fields()
            .iter()
            .enumerate()
            .take(self.q.def.columns.len())
        {
            if Some(i) == pk_at {
                cols.push(pk::decode_array(keys, f.data_type())?);
            } else {
                cols.push(new_null_array(f.data_type(), keys.len()));
            }
        }
        cols.push(Arc::new(Int64Array::from(seqs)) as ArrayRef);
        Ok(RecordBatch::try_new(schema, cols)?)
    }
}

/// Bytes of Arrow data one message carries at most: below gRPC's default 4 MiB limit of
/// stock clients.
const MESSAGE_BYTES: usize = 3 << 20;

/// Cuts batches into pieces of at most `size` rows and about [`MESSAGE_BYTES`].
pub fn split(batches: Vec<RecordBatch>, size: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for b in batches {
        let per_row = b.get_array_memory_size() / b.num_rows().max(1);
        let size = size.min((MESSAGE_BYTES / per_row.max(1)).max(1));
        let mut at = 0;
        while at < b.num_rows() {
            let len = size.min(b.num_rows() - at);
            out.push(b.slice(at, len));
            at += len;
        }
    }
    out
}
