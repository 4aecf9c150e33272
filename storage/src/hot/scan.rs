//! Scans and point lookups: RocksDB versions decoded straight into Arrow batches.

use std::sync::Arc;

use std::collections::HashSet;

use arrow::array::{ArrayRef, BooleanBuilder, Int64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::writer::decode_index;
use super::{CF_DV, CF_META, CF_PK, CF_ROWS, HotStore, KIND_PUT, SEQ_HWM_KEY, cf};
use crate::codec::{RowDecoder, get_varint};
use crate::keys::{PartitionKey, prefix_end};
use crate::{Error, Result};

/// Name of the system column that carries a row version's id.
pub const SEQ_COLUMN: &str = "_seq";

/// What to read from one table partition.
#[derive(Debug, Clone)]
pub struct ScanSpec {
    /// The partition.
    pub partition: PartitionKey,
    /// Columns to produce: stable id and output field, in output order.
    pub columns: Vec<(u32, Field)>,
    /// Whether to append `_seq` as the last column.
    pub with_seq: bool,
    /// Only versions with `_seq >= min_seq`.
    pub min_seq: u64,
    /// Only versions with `_seq <= max_seq`.
    pub max_seq: u64,
    /// Rows per batch.
    pub batch_size: usize,
    /// Stop after this many live rows.
    pub limit: Option<usize>,
    /// Uncommitted changes of a transaction, read in place of the stored versions.
    pub overlay: Option<Arc<Overlay>>,
}

/// The pending versions of one partition in an open transaction: what its own reads see.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    /// Primary-key bytes to (provisional `_seq`, row; `None` deletes).
    pub rows: std::collections::BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
}

impl Overlay {
    /// The pending rows that are live, in provisional `_seq` order.
    fn live_in(&self, min_seq: u64, max_seq: u64) -> Vec<(u64, &[u8])> {
        let mut out: Vec<(u64, &[u8])> = self
            .rows
            .values()
            .filter_map(|(seq, row)| Some((*seq, row.as_deref()?)))
            .filter(|(seq, _)| *seq >= min_seq && *seq <= max_seq)
            .collect();
        out.sort_unstable_by_key(|(seq, _)| *seq);
        out
    }
}

impl ScanSpec {
    /// The schema of the batches this scan produces.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(|(_, f)| f.clone()).collect();
        if self.with_seq {
            fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
        }
        Arc::new(Schema::new(fields))
    }

    fn decoder(&self) -> Result<RowDecoder> {
        let cols: Vec<(u32, DataType)> = self
            .columns
            .iter()
            .map(|(id, f)| (*id, f.data_type().clone()))
            .collect();
        RowDecoder::new(&cols, self.batch_size)
    }
}

/// Splits a stored row version into (is live, pk bytes, row bytes).
pub(crate) fn split_value(v: &[u8]) -> Result<(bool, &[u8], &[u8])> {
    let kind = *v
        .first()
        .ok_or_else(|| Error::corrupt("row version", "empty"))?;
    let mut pos = 1;
    let pk_len = get_varint(v, &mut pos)? as usize;
    let pk = v
        .get(pos..pos + pk_len)
        .ok_or_else(|| Error::corrupt("row version", "truncated key"))?;
    Ok((kind == KIND_PUT, pk, &v[pos + pk_len..]))
}

pub(crate) fn seq_of_key(key: &[u8]) -> Result<u64> {
    let tail: [u8; 8] = key
        .get(key.len().saturating_sub(8)..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::corrupt("row key", "too short"))?;
    Ok(u64::from_be_bytes(tail))
}

struct BatchBuilder {
    schema: SchemaRef,
    decoder: RowDecoder,
    seqs: Option<Int64Builder>,
}

impl BatchBuilder {
    fn new(spec: &ScanSpec) -> Result<Self> {
        Ok(Self {
            schema: spec.schema(),
            decoder: spec.decoder()?,
            seqs: spec
                .with_seq
                .then(|| Int64Builder::with_capacity(spec.batch_size)),
        })
    }

    fn push(&mut self, seq: u64, row: &[u8]) -> Result<()> {
        self.decoder.push(row)?;
        if let Some(s) = &mut self.seqs {
            s.append_value(seq as i64);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let rows = self.decoder.len();
        let mut cols: Vec<ArrayRef> = self.decoder.finish()?;
        if let Some(s) = &mut self.seqs {
            cols.push(Arc::new(s.finish()));
        }
        let opts = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            cols,
            &opts,
        )?)
    }
}

impl HotStore {
    /// Runs `f` over one consistent snapshot of the store.
    pub fn view<R>(&self, f: impl FnOnce(&HotView<'_>) -> R) -> R {
        let snap = self.db.snapshot();
        f(&HotView { db: &self.db, snap })
    }

    /// Streams the live rows of a partition in `_seq` order (see [`HotView::scan`]).
    pub fn scan(&self, spec: &ScanSpec, sink: impl FnMut(RecordBatch) -> bool) -> Result<()> {
        self.view(|v| v.scan(spec, sink))
    }

    /// The current version of one key: its `_seq` and whether it is live.
    pub fn current(&self, partition: &PartitionKey, pk: &[u8]) -> Result<Option<(u64, bool)>> {
        let pk_cf = cf(&self.db, CF_PK)?;
        match self
            .db
            .get_pinned_cf(pk_cf, partition.pk_key(pk))
            .map_err(|e| Error::rocks("read key index", e))?
        {
            Some(v) => decode_index(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Counts the live hot versions of a partition newer than `after` (for DESCRIBE and
    /// metrics).
    pub fn count_live(&self, partition: &PartitionKey, after: u64) -> Result<u64> {
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let mut ro = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(partition.as_bytes()) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(rows_cf, ro);
        it.seek(partition.row_key(after.saturating_add(1)));
        let mut n = 0;
        while it.valid() {
            if let Some(v) = it.value()
                && v.first() == Some(&KIND_PUT)
            {
                n += 1;
            }
            it.next();
        }
        it.status().map_err(|e| Error::rocks("count", e))?;
        Ok(n)
    }

    /// The partitions of a table that hold hot versions, found by jumping from one partition
    /// prefix to the next.
    pub fn partitions(&self, table_id: u64) -> Result<Vec<PartitionKey>> {
        Ok(self
            .partitions_oldest(table_id)?
            .into_iter()
            .map(|(p, _)| p)
            .collect())
    }

    /// Like [`Self::partitions`], each with the `_seq` of its oldest hot version (its first key):
    /// a STREAM table's partitions with something to evict are those whose oldest version expired.
    pub fn partitions_oldest(&self, table_id: u64) -> Result<Vec<(PartitionKey, u64)>> {
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let table = PartitionKey::table_prefix(table_id);
        let mut ro = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(&table) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(rows_cf, ro);
        it.seek(&table);
        let mut out = Vec::new();
        while it.valid() {
            let Some(k) = it.key() else { break };
            let len = *k
                .get(8)
                .ok_or_else(|| Error::corrupt("row key", "too short"))?
                as usize;
            let name = k
                .get(9..9 + len)
                .ok_or_else(|| Error::corrupt("row key", "truncated partition"))?;
            let part = PartitionKey::new(table_id, name)?;
            let oldest = seq_of_key(k)?;
            match prefix_end(part.as_bytes()) {
                Some(next) => it.seek(&next),
                None => {
                    out.push((part, oldest));
                    break;
                }
            }
            out.push((part, oldest));
        }
        it.status()
            .map_err(|e| Error::rocks("list partitions", e))?;
        Ok(out)
    }
}

/// A consistent snapshot of the hot store: scans, key lookups and deleted-version marks read
/// the same instant.
pub struct HotView<'a> {
    db: &'a rocksdb::DB,
    snap: rocksdb::Snapshot<'a>,
}

impl std::fmt::Debug for HotView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HotView")
    }
}

impl HotView<'_> {
    /// The `_seq` high-water mark this snapshot holds: every version with a `_seq` at or below
    /// it was committed before the snapshot, every later one after it (the writer stores the
    /// mark in each commit's batch). What a live query's snapshot was taken at.
    pub fn committed_seq(&self) -> Result<u64> {
        let meta = cf(self.db, CF_META)?;
        match self
            .db
            .get_pinned_cf_opt(meta, SEQ_HWM_KEY, &self.read_opts())
            .map_err(|e| Error::rocks("read seq high-water mark", e))?
        {
            Some(v) => Ok(u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| Error::corrupt("seq_hwm", "not 8 bytes"))?,
            )),
            None => Ok(0),
        }
    }

    fn read_opts(&self) -> rocksdb::ReadOptions {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_snapshot(&self.snap);
        ro
    }

    /// Streams the live rows of a partition in `_seq` order into `sink`, one batch at a time.
    /// `sink` returns `false` to stop early (the consumer went away). Runs on the calling
    /// thread: call it from a blocking pool. Returns the live rows produced.
    pub fn scan(&self, spec: &ScanSpec, mut sink: impl FnMut(RecordBatch) -> bool) -> Result<()> {
        let rows_cf = cf(self.db, CF_ROWS)?;
        let start = spec.partition.row_key(spec.min_seq);
        let end = match spec.max_seq.checked_add(1) {
            Some(e) => spec.partition.row_key(e),
            None => prefix_end(spec.partition.as_bytes())
                .unwrap_or_else(|| vec![u8::MAX; spec.partition.as_bytes().len() + 9]),
        };
        let mut ro = self.read_opts();
        ro.set_iterate_upper_bound(end);
        ro.set_readahead_size(2 << 20);
        let mut it = self.db.raw_iterator_cf_opt(rows_cf, ro);
        it.seek(&start);
        let mut out = BatchBuilder::new(spec)?;
        let mut remaining = spec.limit.unwrap_or(usize::MAX);
        while remaining > 0 && it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            let (live, pk, row) = split_value(v)?;
            let shadowed = spec
                .overlay
                .as_ref()
                .is_some_and(|o| o.rows.contains_key(pk));
            if live && !shadowed {
                out.push(seq_of_key(k)?, row)?;
                remaining -= 1;
                if out.decoder.len() >= spec.batch_size && !sink(out.finish()?) {
                    return Ok(());
                }
            }
            it.next();
        }
        it.status().map_err(|e| Error::rocks("scan", e))?;
        // Provisional `_seq`s are newer than every committed version the scan saw.
        if let Some(o) = &spec.overlay {
            for (seq, row) in o.live_in(spec.min_seq, spec.max_seq) {
                if remaining == 0 {
                    break;
                }
                out.push(seq, row)?;
                remaining -= 1;
                if out.decoder.len() >= spec.batch_size && !sink(out.finish()?) {
                    return Ok(());
                }
            }
        }
        if !out.decoder.is_empty() {
            sink(out.finish()?);
        }
        Ok(())
    }

    /// The current version of a key: its `_seq` and whether it is live. The index keeps keys
    /// whose version was flushed, so this also answers for cold rows.
    pub fn index(&self, partition: &PartitionKey, pk: &[u8]) -> Result<Option<(u64, bool)>> {
        let pk_cf = cf(self.db, CF_PK)?;
        match self
            .db
            .get_pinned_cf_opt(pk_cf, partition.pk_key(pk), &self.read_opts())
            .map_err(|e| Error::rocks("read key index", e))?
        {
            Some(v) => decode_index(&v).map(Some),
            None => Ok(None),
        }
    }

    /// The hot rows with these `_seq`s (sorted and deduplicated here), then `extra` (a
    /// transaction's pending rows), as one batch in `_seq` order.
    pub fn rows(
        &self,
        spec: &ScanSpec,
        seqs: &mut Vec<u64>,
        mut extra: Vec<(u64, Vec<u8>)>,
    ) -> Result<RecordBatch> {
        let rows_cf = cf(self.db, CF_ROWS)?;
        seqs.sort_unstable();
        seqs.dedup();
        let ro = self.read_opts();
        let mut out = BatchBuilder::new(spec)?;
        for seq in seqs.iter() {
            if let Some(v) = self
                .db
                .get_pinned_cf_opt(rows_cf, spec.partition.row_key(*seq), &ro)
                .map_err(|e| Error::rocks("read row", e))?
            {
                let (live, _pk, row) = split_value(&v)?;
                if live {
                    out.push(*seq, row)?;
                }
            }
        }
        extra.sort_unstable_by_key(|(seq, _)| *seq);
        extra.dedup_by_key(|(seq, _)| *seq);
        for (seq, row) in extra {
            out.push(seq, &row)?;
        }
        out.finish()
    }

    /// The versions of a partition that were replaced or deleted after they may have been
    /// flushed: cold rows with these `_seq`s are dead.
    pub fn deleted(&self, partition: &PartitionKey) -> Result<HashSet<u64>> {
        let dv = cf(self.db, CF_DV)?;
        let mut ro = self.read_opts();
        if let Some(end) = prefix_end(partition.as_bytes()) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(dv, ro);
        it.seek(partition.as_bytes());
        let mut out = HashSet::new();
        while it.valid() {
            if let Some(k) = it.key() {
                out.insert(seq_of_key(k)?);
            }
            it.next();
        }
        it.status()
            .map_err(|e| Error::rocks("read deleted versions", e))?;
        Ok(out)
    }

    /// Whether the partition holds versions with `after < _seq <= upto`.
    pub fn has_versions(&self, partition: &PartitionKey, after: u64, upto: u64) -> Result<bool> {
        let rows_cf = cf(self.db, CF_ROWS)?;
        let mut ro = self.read_opts();
        ro.set_iterate_upper_bound(partition.row_key(upto.saturating_add(1)));
        let mut it = self.db.raw_iterator_cf_opt(rows_cf, ro);
        it.seek(partition.row_key(after.saturating_add(1)));
        let found = it.valid();
        it.status().map_err(|e| Error::rocks("scan", e))?;
        Ok(found)
    }

    /// Every version (tombstones included) of a partition with `after < _seq <= upto`, in
    /// `_seq` order, as batches of `spec.columns` (the key column taken from the index key, the
    /// others nullable), then `_seq` and `_deleted`: what a flush writes. A table without a
    /// primary key (`pk_column` `None`) has no key column; its tombstones carry, as `_seq`,
    /// the version they deleted (they are not flushed: a flush drops them).
    pub fn versions(
        &self,
        spec: &ScanSpec,
        pk_column: Option<usize>,
        after: u64,
        upto: u64,
        mut sink: impl FnMut(RecordBatch) -> Result<()>,
    ) -> Result<u64> {
        let rows_cf = cf(self.db, CF_ROWS)?;
        let mut ro = self.read_opts();
        ro.set_iterate_upper_bound(spec.partition.row_key(upto.saturating_add(1)));
        ro.set_readahead_size(2 << 20);
        let mut last_read = 0;
        let mut it = self.db.raw_iterator_cf_opt(rows_cf, ro);
        it.seek(spec.partition.row_key(after.saturating_add(1)));
        let others: Vec<(u32, DataType)> = spec
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != pk_column)
            .map(|(_, (id, f))| (*id, f.data_type().clone()))
            .collect();
        let pk_type = match pk_column {
            Some(at) => Some(
                spec.columns
                    .get(at)
                    .map(|(_, f)| f.data_type().clone())
                    .ok_or_else(|| Error::corrupt("flush", "no key column"))?,
            ),
            None => None,
        };
        let mut fields: Vec<Field> = spec
            .columns
            .iter()
            .map(|(_, f)| f.clone().with_nullable(true))
            .collect();
        fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
        fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
        let schema = Arc::new(Schema::new(fields));
        let mut decoder = RowDecoder::new(&others, spec.batch_size)?;
        let mut keys = pk_type.as_ref().map(PkColumn::new).transpose()?;
        let mut seqs = Int64Builder::with_capacity(spec.batch_size);
        let mut deleted = BooleanBuilder::with_capacity(spec.batch_size);
        let finish = |decoder: &mut RowDecoder,
                      keys: &mut Option<PkColumn>,
                      seqs: &mut Int64Builder,
                      deleted: &mut BooleanBuilder|
         -> Result<RecordBatch> {
            let mut others = decoder.finish()?.into_iter();
            let key = keys.as_mut().map(PkColumn::finish);
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
            for i in 0..spec.columns.len() {
                if let (Some(key), true) = (&key, Some(i) == pk_column) {
                    cols.push(key.clone());
                } else {
                    cols.push(
                        others
                            .next()
                            .ok_or_else(|| Error::corrupt("flush", "column count"))?,
                    );
                }
            }
            cols.push(Arc::new(seqs.finish()));
            cols.push(Arc::new(deleted.finish()));
            Ok(RecordBatch::try_new(schema.clone(), cols)?)
        };
        let mut remaining = spec.limit.unwrap_or(usize::MAX);
        while it.valid() && remaining > 0 {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            remaining -= 1;
            let (live, pk, row) = split_value(v)?;
            decoder.push(if live { row } else { &[] })?;
            let seq = match keys.as_mut() {
                Some(keys) => {
                    keys.push(pk)?;
                    seq_of_key(k)?
                }
                None if !live => deleted_version(pk)?,
                None => seq_of_key(k)?,
            };
            last_read = seq_of_key(k)?;
            seqs.append_value(seq as i64);
            deleted.append_value(!live);
            if decoder.len() >= spec.batch_size {
                sink(finish(&mut decoder, &mut keys, &mut seqs, &mut deleted)?)?;
            }
            it.next();
        }
        it.status().map_err(|e| Error::rocks("read versions", e))?;
        if !decoder.is_empty() {
            sink(finish(&mut decoder, &mut keys, &mut seqs, &mut deleted)?)?;
        }
        Ok(last_read)
    }

    /// The partition's flush horizon: every version at or below it may have been moved to
    /// cold storage (0 if it was never flushed).
    pub fn flush_horizon(&self, partition: &PartitionKey) -> Result<u64> {
        let found = self
            .db
            .get_cf_opt(
                cf(self.db, CF_META)?,
                super::horizon_key(partition.as_bytes()),
                &self.read_opts(),
            )
            .map_err(|e| Error::rocks("read the flush horizon", e))?;
        Ok(found
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }
}

/// The version a tombstone (or a delete [`super::Change`]) of a table without a primary key
/// names: its key bytes are that version's `_seq`.
pub fn deleted_version(pk: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = pk
        .try_into()
        .map_err(|_| Error::corrupt("tombstone", "not a version of a table without a key"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Name of the flag column of cold versions: a tombstone is flushed like any version.
pub const DELETED_COLUMN: &str = "_deleted";

/// Builds a key column back from index key bytes.
enum PkColumn {
    Int(DataType, Int64Builder),
    Text(arrow::array::StringBuilder),
    Bytes(arrow::array::BinaryBuilder),
}

impl PkColumn {
    fn new(ty: &DataType) -> Result<Self> {
        Ok(match ty {
            DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                Self::Int(ty.clone(), Int64Builder::new())
            }
            DataType::Utf8 => Self::Text(arrow::array::StringBuilder::new()),
            DataType::Binary => Self::Bytes(arrow::array::BinaryBuilder::new()),
            other => return Err(Error::UnsupportedType(other.to_string())),
        })
    }

    fn push(&mut self, pk: &[u8]) -> Result<()> {
        match self {
            Self::Int(_, b) => b.append_value(
                crate::keys::pk::decode_int(pk)
                    .ok_or_else(|| Error::corrupt("key", "not an integer key"))?,
            ),
            Self::Text(b) => b.append_value(
                std::str::from_utf8(pk).map_err(|e| Error::corrupt("key", e.to_string()))?,
            ),
            Self::Bytes(b) => b.append_value(pk),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Int(ty, b) => {
                let a: ArrayRef = Arc::new(b.finish());
                // Keys were written from values of this type: the cast is exact.
                arrow::compute::cast(&a, ty).unwrap_or(a)
            }
            Self::Text(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hot::{RowOp, WriteMode, WriteRequest};
    use crate::keys::pk;
    use arrow::array::Int64Array;

    fn spec(part: &PartitionKey) -> ScanSpec {
        ScanSpec {
            partition: part.clone(),
            columns: vec![(1, Field::new("id", DataType::Int64, false))],
            with_seq: true,
            min_seq: 0,
            max_seq: u64::MAX,
            batch_size: 2,
            limit: None,
            overlay: None,
        }
    }

    fn inserts(part: &Arc<PartitionKey>, ids: &[i64], mode: WriteMode) -> WriteRequest {
        crate::testing::writes(part, ids, "v", mode)
    }

    fn ids(store: &HotStore, part: &PartitionKey) -> Vec<i64> {
        let mut out = Vec::new();
        store
            .scan(&spec(part), |b| {
                let a = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap_or_else(|| panic!());
                out.extend(a.values().iter().copied());
                true
            })
            .unwrap();
        out
    }

    #[tokio::test]
    async fn duplicate_keys_write_nothing_and_versions_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::testing::open_hot(dir.path());
        let part = Arc::new(PartitionKey::new(7, b"").unwrap());
        store
            .write(inserts(&part, &[1, 2, 3], WriteMode::InsertNew))
            .await
            .unwrap();
        let err = store
            .write(inserts(&part, &[4, 2], WriteMode::InsertNew))
            .await;
        assert!(matches!(err, Err(Error::DuplicateKey { op: 1 })));
        assert_eq!(ids(&store, &part), vec![1, 2, 3]);

        // Upsert 1 moves it to the end of _seq order; deleting 2 hides it.
        store
            .write(inserts(&part, &[1], WriteMode::Upsert))
            .await
            .unwrap();
        store
            .write(WriteRequest {
                rows: vec![RowOp {
                    partition: part.clone(),
                    pk: pk::int(2),
                    row: None,
                    mode: WriteMode::Upsert,
                    live_from: 0,
                }],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ids(&store, &part), vec![3, 1]);
        assert_eq!(store.count_live(&part, 0).unwrap(), 2);
        // A deleted key can be inserted again.
        store
            .write(inserts(&part, &[2], WriteMode::InsertNew))
            .await
            .unwrap();
        let found = store
            .view(|v| {
                let mut seqs: Vec<u64> = [pk::int(2), pk::int(9)]
                    .iter()
                    .filter_map(|k| v.index(&part, k).ok().flatten())
                    .filter(|(_, live)| *live)
                    .map(|(seq, _)| seq)
                    .collect();
                v.rows(&spec(&part), &mut seqs, Vec::new())
            })
            .unwrap();
        assert_eq!(found.num_rows(), 1);
    }

    #[tokio::test]
    async fn bulk_requests_check_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::testing::open_hot(dir.path());
        let part = Arc::new(PartitionKey::new(3, b"").unwrap());
        let first: Vec<i64> = (0..5000).collect();
        store
            .write(inserts(&part, &first, WriteMode::InsertNew))
            .await
            .unwrap();
        // A large request holding one existing key fails whole, naming that op.
        let mut second: Vec<i64> = (5000..10_000).collect();
        second[4321] = 17;
        let err = store
            .write(inserts(&part, &second, WriteMode::InsertNew))
            .await;
        assert!(
            matches!(err, Err(Error::DuplicateKey { op: 4321 })),
            "{err:?}"
        );
        // A large request repeating a key of its own fails at the repeat.
        let mut third: Vec<i64> = (10_000..15_000).collect();
        third[4999] = 10_000;
        let err = store
            .write(inserts(&part, &third, WriteMode::InsertNew))
            .await;
        assert!(
            matches!(err, Err(Error::DuplicateKey { op: 4999 })),
            "{err:?}"
        );
        assert_eq!(store.count_live(&part, 0).unwrap(), 5000);
        // Upserting them all replaces each version once.
        store
            .write(inserts(&part, &first, WriteMode::Upsert))
            .await
            .unwrap();
        assert_eq!(ids(&store, &part), first);
    }

    #[tokio::test]
    async fn seq_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let part = Arc::new(PartitionKey::new(1, b"").unwrap());
        let last = {
            let store = crate::testing::open_hot(dir.path());
            store
                .write(inserts(&part, &[1, 2], WriteMode::InsertNew))
                .await
                .unwrap()
                .last_seq
        };
        let store = crate::testing::open_hot(dir.path());
        assert!(store.seq().next_id() > last);
        assert_eq!(ids(&store, &part), vec![1, 2]);
    }
}
