//! The hot store: RocksDB with three column families (see [`crate::keys`]).

mod changes;
mod pending;
mod scan;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options};
use tokio::sync::{mpsc, oneshot};

pub use changes::{Change, ChangeSink, Prior};
pub use pending::{PendingWrites, Unflushed};
pub use scan::{DELETED_COLUMN, HotView, Overlay, SEQ_COLUMN, ScanSpec, deleted_version};
pub use writer::{Maintenance, RowOp, WriteMode, WriteOutcome, WriteRequest};

use crate::keys::{PartitionKey, prefix_end};
use crate::seq::SeqGenerator;
use crate::{Error, Result};

pub(crate) const CF_ROWS: &str = "rows";
pub(crate) const CF_PK: &str = "pk";
pub(crate) const CF_META: &str = "meta";
/// Versions replaced or deleted after they may have been flushed: `[partition][seq]` -> empty.
pub(crate) const CF_DV: &str = "dv";
pub(crate) const SEQ_HWM_KEY: &[u8] = b"seq_hwm";
/// Metadata prefix of each partition's flush horizon.
pub(crate) const HORIZON_PREFIX: &[u8] = b"cold_horizon/";

/// The metadata key of a partition's flush horizon.
pub(crate) fn horizon_key(partition: &[u8]) -> Vec<u8> {
    let mut k = HORIZON_PREFIX.to_vec();
    k.extend_from_slice(partition);
    k
}

/// Value kind byte of a row version.
pub(crate) const KIND_PUT: u8 = 0;
pub(crate) const KIND_TOMBSTONE: u8 = 1;

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The WAL is fsynced before the acknowledgement (group commit shares one fsync).
    Sync,
    /// The WAL is written before the acknowledgement and fsynced at least once a second.
    Async,
}

/// How to open the hot store.
#[derive(Debug, Clone)]
pub struct HotOptions {
    /// The RocksDB folder (`<data_dir>/hot`).
    pub path: PathBuf,
    /// Node id written into every `_seq`.
    pub node_id: u16,
    /// Durability of acknowledged writes.
    pub durability: Durability,
    /// Block cache size in bytes.
    pub block_cache_bytes: usize,
}

/// The hot store. Cheap to share behind an `Arc`; all writes go through one writer thread.
pub struct HotStore {
    db: Arc<DB>,
    seq: Arc<SeqGenerator>,
    tx: Mutex<Option<mpsc::Sender<writer::Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
    pending: Arc<PendingWrites>,
    sink: Arc<changes::SinkSlot>,
}

impl std::fmt::Debug for HotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotStore")
            .field("path", &self.db.path())
            .finish()
    }
}

impl HotStore {
    /// Opens (or creates) the store and starts its writer.
    pub fn open(opts: &HotOptions) -> Result<Self> {
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);

        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        cf_opts.set_bottommost_compression_type(rocksdb::DBCompressionType::Zstd);
        cf_opts.set_write_buffer_size(64 << 20);

        let mut db_opts = cf_opts.clone();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_open_files(512);
        db_opts.set_keep_log_file_num(4);

        let cfs = [CF_ROWS, CF_PK, CF_META, CF_DV]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, cf_opts.clone()));
        let db = DB::open_cf_descriptors(&db_opts, &opts.path, cfs)
            .map_err(|e| Error::rocks("open", e))?;
        let db = Arc::new(db);

        let floor = {
            let meta = cf(&db, CF_META)?;
            match db
                .get_pinned_cf(meta, SEQ_HWM_KEY)
                .map_err(|e| Error::rocks("read seq high-water mark", e))?
            {
                Some(v) => u64::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| Error::corrupt("seq_hwm", "not 8 bytes"))?,
                ),
                None => 0,
            }
        };
        let seq = Arc::new(SeqGenerator::new(opts.node_id, floor));
        let stop = Arc::new(AtomicBool::new(false));
        let horizons = load_horizons(&db)?;
        let pending = Arc::new(PendingWrites::default());
        let sink = Arc::new(changes::SinkSlot::default());

        let (tx, rx) = mpsc::channel(4096);
        let mut threads = Vec::new();
        let writer = writer::Writer::new(
            db.clone(),
            seq.clone(),
            opts.durability,
            horizons,
            pending.clone(),
            sink.clone(),
        );
        threads.push(
            std::thread::Builder::new()
                .name("quill-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| Error::Thread {
                    thread: "writer",
                    detail: e.to_string(),
                })?,
        );
        if opts.durability == Durability::Async {
            let db = db.clone();
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("quill-wal-sync".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Acquire) {
                            std::thread::sleep(Duration::from_millis(200));
                            if let Err(e) = db.flush_wal(true) {
                                tracing::error!(error = %e, "background WAL fsync failed");
                            }
                        }
                    })
                    .map_err(|e| Error::Thread {
                        thread: "WAL sync",
                        detail: e.to_string(),
                    })?,
            );
        }
        Ok(Self {
            db,
            seq,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            stop,
            pending,
            sink,
        })
    }

    /// Installs the listener of committed changes (live queries).
    pub fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) {
        self.sink.set(sink);
    }

    /// Whether the change listener wants changes of `table_id` (it has subscriptions).
    pub fn listened(&self, table_id: u64) -> bool {
        self.sink.for_table(table_id).is_some()
    }

    /// Rows written per partition since its last flush (what flush policies look at).
    pub fn pending(&self) -> &PendingWrites {
        &self.pending
    }

    /// The `_seq` generator (also used for `SNOWFLAKE_ID()`).
    pub fn seq(&self) -> &SeqGenerator {
        &self.seq
    }

    /// Applies one request atomically and durably (per the configured durability).
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome> {
        let tx = self.tx.lock().clone().ok_or(Error::Closed)?;
        let (done, wait) = oneshot::channel();
        tx.send(writer::Job { req, done })
            .await
            .map_err(|_| Error::Closed)?;
        wait.await.map_err(|_| Error::Closed)?
    }

    /// Evicts a STREAM partition's versions older than `before` through the writer (see
    /// [`Maintenance::Evict`]); answers how many versions went.
    pub async fn evict(&self, partition: Arc<PartitionKey>, before: u64) -> Result<u64> {
        let outcome = self
            .write(WriteRequest {
                maintenance: vec![Maintenance::Evict { partition, before }],
                ..Default::default()
            })
            .await?;
        Ok(outcome.applied)
    }

    /// Reads one metadata value.
    pub fn get_meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(cf(&self.db, CF_META)?, key)
            .map_err(|e| Error::rocks("read metadata", e))
    }

    /// Every metadata entry whose key starts with `prefix`, in key order.
    pub fn scan_meta(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let meta = cf(&self.db, CF_META)?;
        let mut ro = rocksdb::ReadOptions::default();
        if let Some(end) = prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        let mut it = self.db.raw_iterator_cf_opt(meta, ro);
        it.seek(prefix);
        let mut out = Vec::new();
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                out.push((k.to_vec(), v.to_vec()));
            }
            it.next();
        }
        it.status().map_err(|e| Error::rocks("scan metadata", e))?;
        Ok(out)
    }

    /// A RocksDB integer property (for metrics), such as `rocksdb.estimate-num-keys`.
    pub fn property(&self, name: &str) -> Option<u64> {
        let rows = cf(&self.db, CF_ROWS).ok()?;
        self.db.property_int_value_cf(rows, name).ok().flatten()
    }

    /// Stops the writer after the queued writes and syncs the WAL. Later writes fail with
    /// [`Error::Closed`].
    pub fn close(&self) {
        self.tx.lock().take();
        self.stop.store(true, Ordering::Release);
        for t in self.threads.lock().drain(..) {
            if t.join().is_err() {
                tracing::error!("a hot store thread panicked");
            }
        }
        if let Err(e) = self.db.flush_wal(true) {
            tracing::error!(error = %e, "final WAL fsync failed");
        }
    }
}

impl Drop for HotStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn load_horizons(db: &DB) -> Result<std::collections::HashMap<Vec<u8>, u64>> {
    let meta = cf(db, CF_META)?;
    let mut ro = rocksdb::ReadOptions::default();
    if let Some(end) = prefix_end(HORIZON_PREFIX) {
        ro.set_iterate_upper_bound(end);
    }
    let mut it = db.raw_iterator_cf_opt(meta, ro);
    it.seek(HORIZON_PREFIX);
    let mut out = std::collections::HashMap::new();
    while it.valid() {
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let h: [u8; 8] = v
                .try_into()
                .map_err(|_| Error::corrupt("flush horizon", "not 8 bytes"))?;
            out.insert(k[HORIZON_PREFIX.len()..].to_vec(), u64::from_be_bytes(h));
        }
        it.next();
    }
    it.status()
        .map_err(|e| Error::rocks("read flush horizons", e))?;
    Ok(out)
}

pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::corrupt("column family", format!("{name} is missing")))
}
