//! Scans and point lookups: RocksDB versions decoded straight into Arrow batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::writer::decode_index;
use super::{CF_PK, CF_ROWS, HotStore, KIND_PUT, cf};
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
fn split_value(v: &[u8]) -> Result<(bool, &[u8], &[u8])> {
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

fn seq_of_key(key: &[u8]) -> Result<u64> {
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
    /// Streams the live rows of a partition in `_seq` order into `sink`, one batch at a time.
    /// `sink` returns `false` to stop early (the consumer went away). Runs on the calling
    /// thread: call it from a blocking pool.
    pub fn scan(&self, spec: &ScanSpec, mut sink: impl FnMut(RecordBatch) -> bool) -> Result<()> {
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let start = spec.partition.row_key(spec.min_seq);
        let end = match spec.max_seq.checked_add(1) {
            Some(e) => spec.partition.row_key(e),
            None => prefix_end(spec.partition.as_bytes())
                .unwrap_or_else(|| vec![u8::MAX; spec.partition.as_bytes().len() + 9]),
        };
        let mut ro = rocksdb::ReadOptions::default();
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

    /// The live rows with these primary keys, in `_seq` order (keys without a live row are left
    /// out).
    pub fn lookup(&self, spec: &ScanSpec, pks: &[Vec<u8>]) -> Result<RecordBatch> {
        let pk_cf = cf(&self.db, CF_PK)?;
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let snapshot = self.db.snapshot();
        let mut seqs = Vec::with_capacity(pks.len());
        let mut pending: Vec<(u64, &[u8])> = Vec::new();
        for pk in pks {
            if let Some((seq, row)) = spec.overlay.as_ref().and_then(|o| o.rows.get(pk)) {
                if let Some(row) = row
                    && *seq >= spec.min_seq
                    && *seq <= spec.max_seq
                {
                    pending.push((*seq, row));
                }
                continue;
            }
            let key = spec.partition.pk_key(pk);
            if let Some(v) = snapshot
                .get_pinned_cf(pk_cf, &key)
                .map_err(|e| Error::rocks("read key index", e))?
            {
                let (seq, live) = decode_index(&v)?;
                if live && seq >= spec.min_seq && seq <= spec.max_seq {
                    seqs.push(seq);
                }
            }
        }
        seqs.sort_unstable();
        seqs.dedup();
        let mut out = BatchBuilder::new(spec)?;
        for seq in seqs {
            if let Some(v) = snapshot
                .get_pinned_cf(rows_cf, spec.partition.row_key(seq))
                .map_err(|e| Error::rocks("read row", e))?
            {
                let (live, _pk, row) = split_value(&v)?;
                if live {
                    out.push(seq, row)?;
                }
            }
        }
        pending.sort_unstable_by_key(|(seq, _)| *seq);
        pending.dedup_by_key(|(seq, _)| *seq);
        for (seq, row) in pending {
            out.push(seq, row)?;
        }
        out.finish()
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

    /// Counts the live rows of a partition (for DESCRIBE and metrics).
    pub fn count_live(&self, partition: &PartitionKey) -> Result<u64> {
        let pk_cf = cf(&self.db, CF_PK)?;
        let mut ro = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(partition.as_bytes()) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(pk_cf, ro);
        it.seek(partition.as_bytes());
        let mut n = 0;
        while it.valid() {
            if let Some(v) = it.value()
                && decode_index(v)?.1
            {
                n += 1;
            }
            it.next();
        }
        it.status().map_err(|e| Error::rocks("count", e))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode_rows;
    use crate::hot::{Durability, HotOptions, RowOp, WriteMode, WriteRequest};
    use crate::keys::pk;
    use arrow::array::{Int64Array, StringArray};

    fn open(dir: &std::path::Path) -> HotStore {
        HotStore::open(&HotOptions {
            path: dir.join("hot"),
            node_id: 1,
            durability: Durability::Sync,
            block_cache_bytes: 8 << 20,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn rows(ids: &[i64]) -> Vec<Vec<u8>> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::Utf8, true),
        ]));
        let names: Vec<String> = ids.iter().map(|i| format!("v{i}")).collect();
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        encode_rows(&b, &[1, 2]).unwrap_or_else(|e| panic!("{e}"))
    }

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
        WriteRequest {
            rows: ids
                .iter()
                .zip(rows(ids))
                .map(|(id, row)| RowOp {
                    partition: part.clone(),
                    pk: pk::int(*id),
                    row: Some(row),
                    mode,
                })
                .collect(),
            ..Default::default()
        }
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
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[tokio::test]
    async fn duplicate_keys_write_nothing_and_versions_resolve() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let part = Arc::new(PartitionKey::new(7, b"").unwrap_or_else(|e| panic!("{e}")));
        store
            .write(inserts(&part, &[1, 2, 3], WriteMode::InsertNew))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let err = store
            .write(inserts(&part, &[4, 2], WriteMode::InsertNew))
            .await;
        assert!(matches!(err, Err(Error::DuplicateKey { op: 1 })));
        assert_eq!(ids(&store, &part), vec![1, 2, 3]);

        // Upsert 1 moves it to the end of _seq order; deleting 2 hides it.
        store
            .write(inserts(&part, &[1], WriteMode::Upsert))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        store
            .write(WriteRequest {
                rows: vec![RowOp {
                    partition: part.clone(),
                    pk: pk::int(2),
                    row: None,
                    mode: WriteMode::Upsert,
                }],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&store, &part), vec![3, 1]);
        assert_eq!(store.count_live(&part).unwrap_or_else(|e| panic!("{e}")), 2);
        // A deleted key can be inserted again.
        store
            .write(inserts(&part, &[2], WriteMode::InsertNew))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let found = store
            .lookup(&spec(&part), &[pk::int(2), pk::int(9)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(found.num_rows(), 1);
    }

    #[tokio::test]
    async fn bulk_requests_check_every_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = open(dir.path());
        let part = Arc::new(PartitionKey::new(3, b"").unwrap_or_else(|e| panic!("{e}")));
        let first: Vec<i64> = (0..5000).collect();
        store
            .write(inserts(&part, &first, WriteMode::InsertNew))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
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
        assert_eq!(
            store.count_live(&part).unwrap_or_else(|e| panic!("{e}")),
            5000
        );
        // Upserting them all replaces each version once.
        store
            .write(inserts(&part, &first, WriteMode::Upsert))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&store, &part), first);
    }

    #[tokio::test]
    async fn seq_survives_restart() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let part = Arc::new(PartitionKey::new(1, b"").unwrap_or_else(|e| panic!("{e}")));
        let last = {
            let store = open(dir.path());
            store
                .write(inserts(&part, &[1, 2], WriteMode::InsertNew))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .last_seq
        };
        let store = open(dir.path());
        assert!(store.seq().next_id() > last);
        assert_eq!(ids(&store, &part), vec![1, 2]);
    }
}
