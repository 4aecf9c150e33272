//! The one way to read a table's partition. A SELECT's scan, a primary-key lookup, a
//! subscription's snapshot and resume, the prior rows of live filters, EXECUTE AS USER (a scan
//! with another caller) and every future reader go through [`TableRead`]:
//!
//! ```text
//!  TableRead { table, partition, columns, _seq range, keys, limit, overlay, pruner }
//!     │  blocking pool (never an async worker)
//!     ▼
//!  MergedRead: cold segments (manifest-consistent) + hot versions, newest wins
//!     │  STREAM TTL applied when the read starts
//!     ▼
//!  Fills: rows from before ADD COLUMN ... DEFAULT read the default
//!     ▼
//!  batches of the asked columns, then `_seq` if asked
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use quilldb_storage::hot::{HotStore, Overlay, SEQ_COLUMN, ScanSpec};
use quilldb_storage::keys::PartitionKey;
use quilldb_storage::merge::{ColdSource, MergedRead, ReadStats, SegmentPruner, SnapshotObserver};

use super::fills::{Fills, seq_column};
use crate::catalog::{Storages, TableDef, TableType};
use crate::error::{Error, Result};

/// Rows per batch out of a read.
pub const SCAN_BATCH_ROWS: usize = 8192;

/// Batches a read stream may hold before the reader waits.
const STREAM_BUFFER: usize = 2;

/// One read of one partition of a table.
#[derive(Clone)]
pub struct TableRead {
    def: Arc<TableDef>,
    read: MergedRead,
    /// Whether the caller asked for `_seq` (it is read anyway when a column needs filling).
    with_seq: bool,
}

impl std::fmt::Debug for TableRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TableRead({})", self.def.qualified())
    }
}

impl TableRead {
    /// A read of every column and `_seq` of `partition` of `def`, live rows only.
    pub fn new(
        hot: &Arc<HotStore>,
        storages: &Storages,
        def: Arc<TableDef>,
        partition: PartitionKey,
    ) -> Result<Self> {
        let cold = match def.table_type {
            // STREAM tables are never flushed.
            TableType::Stream => None,
            _ => Some(cold_source(storages, &def, &partition)?),
        };
        let spec = ScanSpec {
            partition,
            columns: def.columns.iter().map(|c| (c.id, c.field(&def))).collect(),
            with_seq: true,
            min_seq: 0,
            max_seq: u64::MAX,
            batch_size: SCAN_BATCH_ROWS,
            limit: None,
            overlay: None,
        };
        let read = MergedRead {
            hot: hot.clone(),
            cold,
            pk_column_id: def.key().map(|(_, c)| c.id).unwrap_or_default(),
            spec,
            keys: None,
            pruner: None,
            observer: None,
        };
        Ok(Self {
            def,
            read,
            with_seq: true,
        })
    }

    /// Reads only the columns at these positions of the table, in this order; `_seq` after
    /// them if `with_seq`.
    pub fn columns(mut self, positions: &[usize], with_seq: bool) -> Self {
        self.read.spec.columns = positions
            .iter()
            .map(|i| {
                let c = &self.def.columns[*i];
                (c.id, c.field(&self.def))
            })
            .collect();
        self.with_seq = with_seq;
        self
    }

    /// Only versions with `_seq` in `min..=max`.
    pub fn seq_range(mut self, min: u64, max: u64) -> Self {
        self.read.spec.min_seq = min;
        self.read.spec.max_seq = max;
        self
    }

    /// Point lookups by encoded primary keys instead of a scan.
    pub fn keys(mut self, keys: Option<Vec<Vec<u8>>>) -> Self {
        self.read.keys = keys;
        self
    }

    /// At most `limit` rows.
    pub fn limit(mut self, limit: Option<usize>) -> Self {
        self.read.spec.limit = limit;
        self
    }

    /// Reads a transaction's pending changes in place of the stored versions they replace.
    pub fn overlay(mut self, overlay: Option<Arc<Overlay>>) -> Self {
        self.read.spec.overlay = overlay;
        self
    }

    /// Skips cold segments and row groups whose statistics rule the filters out.
    pub fn pruner(mut self, pruner: Option<Arc<dyn SegmentPruner>>) -> Self {
        self.read.pruner = pruner;
        self
    }

    /// Tells `observer` the dv marks of the read's snapshot before it reads anything.
    pub fn observer(mut self, observer: Option<Arc<dyn SnapshotObserver>>) -> Self {
        self.read.observer = observer;
        self
    }

    /// The partition's cold folder (none for STREAM tables).
    pub fn cold(&self) -> Option<&ColdSource> {
        self.read.cold.as_ref()
    }

    /// Whether the read sees a transaction's pending changes.
    pub fn has_overlay(&self) -> bool {
        self.read.spec.overlay.is_some()
    }

    /// How many keys the read looks up, if it is a key lookup: an upper bound of its rows.
    pub fn key_count(&self) -> Option<usize> {
        self.read.keys.as_ref().map(Vec::len)
    }

    /// About how many rows the read yields: the keys of a key lookup, else the partition's
    /// unflushed versions (a read of hot rows only; a join puts the smaller side first by it).
    pub fn row_estimate(&self) -> usize {
        self.key_count().unwrap_or_else(|| {
            self.read
                .hot
                .pending()
                .rows(self.read.spec.partition.as_bytes()) as usize
        })
    }

    /// The `_seq` range the read is limited to.
    pub fn seq_bounds(&self) -> (u64, u64) {
        (self.read.spec.min_seq, self.read.spec.max_seq)
    }

    /// The stable ids of the columns read, in order.
    pub fn column_ids(&self) -> Vec<u32> {
        self.read.spec.columns.iter().map(|(id, _)| *id).collect()
    }

    /// The table.
    pub fn table(&self) -> &Arc<TableDef> {
        &self.def
    }

    /// The partition.
    pub fn partition(&self) -> &PartitionKey {
        &self.read.spec.partition
    }

    /// What the read is limited to, for EXPLAIN: key lookups, `_seq` range, limit, pruning.
    pub fn describe(&self) -> String {
        let spec = &self.read.spec;
        let mut out = String::new();
        if let Some(k) = &self.read.keys {
            out.push_str(&format!(", key_lookups={}", k.len()));
        }
        if spec.min_seq > 0 || spec.max_seq < u64::MAX {
            out.push_str(&format!(", seq=[{}, {}]", spec.min_seq, spec.max_seq));
        }
        if let Some(l) = spec.limit {
            out.push_str(&format!(", limit={l}"));
        }
        if self.read.pruner.is_some() {
            out.push_str(", statistics_pruning");
        }
        out
    }

    /// The schema of the batches: the asked columns, then `_seq` if asked.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .read
            .spec
            .columns
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        if self.with_seq {
            fields.push(Field::new(
                SEQ_COLUMN,
                arrow::datatypes::DataType::Int64,
                false,
            ));
        }
        Arc::new(Schema::new(fields))
    }

    fn fills(&self) -> Fills {
        let ids: Vec<u32> = self.read.spec.columns.iter().map(|(id, _)| *id).collect();
        Fills::new(&self.def, &ids)
    }

    /// Runs the read on the calling thread, which must be a blocking one; cold files are read
    /// through `handle`. `sink` answers `false` to stop.
    pub fn run_blocking(
        &self,
        handle: &tokio::runtime::Handle,
        mut sink: impl FnMut(RecordBatch) -> Result<bool> + Send,
    ) -> Result<ReadStats> {
        let fills = self.fills();
        let mut read = self.read.clone();
        // A STREAM table's TTL is applied when the read starts: a row is invisible the moment
        // it expires, however long ago the read was planned.
        read.spec.min_seq = read.spec.min_seq.max(self.def.live_from());
        // Filling added columns needs each row's `_seq`, asked for or not.
        read.spec.with_seq = self.with_seq || !fills.is_empty();
        let seq_at = read.spec.columns.len();
        let schema = self.schema();
        let mut failed = None;
        let stats = read.run(handle, |b| {
            let out = fills.apply(b, seq_at).and_then(|b| {
                if self.with_seq || b.num_columns() == seq_at {
                    Ok(b)
                } else {
                    let cols = b.columns()[..seq_at].to_vec();
                    let opts = arrow::record_batch::RecordBatchOptions::new()
                        .with_row_count(Some(b.num_rows()));
                    Ok(RecordBatch::try_new_with_options(
                        schema.clone(),
                        cols,
                        &opts,
                    )?)
                }
            });
            match out.and_then(&mut sink) {
                Ok(go_on) => go_on,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Runs the read on the blocking pool, handing each batch to `sink` there.
    pub async fn for_each(
        self,
        sink: impl FnMut(RecordBatch) -> Result<bool> + Send + 'static,
    ) -> Result<ReadStats> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || self.run_blocking(&handle, sink))
            .await
            .map_err(|e| Error::Internal(format!("table read task: {e}")))?
    }

    /// Every batch of the read, and what it touched.
    pub async fn collect(self) -> Result<(ReadStats, Vec<RecordBatch>)> {
        let out = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let into = out.clone();
        let stats = self
            .for_each(move |b| {
                into.lock().push(b);
                Ok(true)
            })
            .await?;
        let batches = std::mem::take(&mut *out.lock());
        Ok((stats, batches))
    }

    /// The read as a stream of batches; `done` gets what it touched when it ends. Dropping the
    /// stream stops the read.
    pub fn stream(
        self,
        done: impl FnOnce(ReadStats) + Send + 'static,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let handle = tokio::runtime::Handle::current();
        let errors = tx.clone();
        tokio::task::spawn_blocking(move || {
            let sent = self.run_blocking(&handle, |b| Ok(tx.blocking_send(Ok(b)).is_ok()));
            match sent {
                Ok(stats) => done(stats),
                Err(e) => {
                    let _ = errors.blocking_send(Err(e));
                }
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// The flushed versions `seqs` (every column and `_seq`), one single-row batch each: the
    /// prior rows of changes to versions that are only in cold storage.
    pub async fn cold_versions(&self, seqs: &HashSet<u64>) -> Result<HashMap<u64, RecordBatch>> {
        let Some(source) = &self.read.cold else {
            return Ok(HashMap::new());
        };
        let fills = self.fills();
        let seq_at = self.read.spec.columns.len();
        let mut out = HashMap::new();
        for b in source.versions(&self.read.spec.columns, seqs).await? {
            let b = fills.apply(b, seq_at)?;
            let versions = seq_column(&b, seq_at)?;
            for i in 0..b.num_rows() {
                out.insert(versions.value(i) as u64, b.slice(i, 1));
            }
        }
        Ok(out)
    }

    /// The keys deleted with `_seq` in `after+1..=upto` (the key column and `_seq`, others
    /// NULL; for a table without a primary key, NULLs and the deleted version's `_seq`), on
    /// the calling blocking thread. `None`: deletes that old are no longer kept.
    pub fn deletes_blocking(
        &self,
        handle: &tokio::runtime::Handle,
        after: u64,
        upto: u64,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let pk_at = self.def.key().map(|(at, _)| at);
        Ok(self.read.deletes(handle, after, upto, pk_at)?)
    }
}

/// The cold folder of one partition of `def`.
fn cold_source(
    storages: &Storages,
    def: &TableDef,
    partition: &PartitionKey,
) -> Result<ColdSource> {
    let storage = storages.get(&def.storage_id)?;
    Ok(ColdSource {
        store: storage.cold.clone(),
        folder: storage.partition_folder(def, partition).0,
        table_id: def.id,
    })
}
