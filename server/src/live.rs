//! Live queries: subscriptions over DoExchange (spec/flight.md).
//!
//! ```text
//!  writer thread ── commit (durable) ──► LiveHub::publish ── index by table, then partition ──►
//!     per-subscription queue (bounded in rows: over it, CLOSED lagged)  ──►  subscription task
//!     (decode, filter on old and new rows, project, frame)  ──►  DoExchange stream
//! ```
//!
//! No gap, no duplicate: a subscription is registered in the index before its snapshot is read;
//! the snapshot's RocksDB view records the `_seq` high-water mark it holds, and queued changes
//! at or below it are dropped, those above it sent.

/// Turning committed changes into CHANGE batches.
pub mod changes;
/// Parsing SUBSCRIBE.
pub mod query;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Int8Array, Int64Array, StringArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use quilldb_flight::{EventKind, LiveMessage, SubscribeRequest, Subscription};
use quilldb_storage::hot::{Change, ChangeSink, Prior};
use quilldb_storage::keys::PartitionKey;
use quilldb_storage::merge::MergedRead;
use tokio::sync::{Notify, mpsc};

use crate::catalog::{TableType, now_millis};
use crate::config::LiveConfig;
use crate::db::Database;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::session::{Caller, Role};
use query::LiveQuery;

/// Why a subscription ends.
#[derive(Debug, Clone)]
struct Ending {
    code: &'static str,
    message: String,
}

/// One open subscription as the hub and system.live_queries see it.
#[derive(Debug)]
pub struct LiveEntry {
    /// The live id.
    pub id: String,
    /// Who subscribed.
    pub user: String,
    /// Their role when they subscribed.
    pub role: Role,
    /// The table.
    pub table_id: u64,
    /// `namespace.table`.
    pub table: String,
    /// The SUBSCRIBE text.
    pub query: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// The partition it follows; `None` for all users.
    partition: Option<Vec<u8>>,
    queue: Mutex<VecDeque<(Arc<Change>, Instant)>>,
    queued: AtomicUsize,
    notify: Notify,
    ending: Mutex<Option<Ending>>,
    /// The greatest `_seq` sent.
    pub last_seq: AtomicI64,
    /// When a message last left, in milliseconds since the hub started: the heartbeat ticker
    /// reads it, so subscriptions keep no timer of their own.
    last_sent_ms: AtomicU64,
    /// Set by the ticker: a HEARTBEAT is due.
    beat: std::sync::atomic::AtomicBool,
    /// Change rows sent.
    pub rows_sent: AtomicU64,
}

impl LiveEntry {
    fn end(&self, code: &'static str, message: impl Into<String>) {
        let mut e = self.ending.lock();
        if e.is_none() {
            *e = Some(Ending {
                code,
                message: message.into(),
            });
        }
        drop(e);
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct TableSubs {
    by_partition: HashMap<Vec<u8>, Vec<Arc<LiveEntry>>>,
    every_partition: Vec<Arc<LiveEntry>>,
}

/// What a CHANGE batch list is built from: the first and last `_seq` and the count of the
/// changes, then the subscription's signature (compared last: it is the longest).
type SharedKey = (u64, u64, usize, Arc<str>);
/// Built batches, each with its encoded FlightData.
type SharedBatches = Arc<Vec<(RecordBatch, arrow_flight::FlightData)>>;
/// Built batch lists kept for reuse.
const SHARED_KEPT: usize = 64;

/// Prior rows lately read back from cold storage, by table, schema version, partition and
/// `_seq` (`None`: compacted away).
#[derive(Default)]
struct ColdCache {
    rows: HashMap<ColdKey, Option<RecordBatch>>,
    order: VecDeque<ColdKey>,
}
type ColdKey = (u64, u32, Vec<u8>, u64);
/// Prior rows kept in the cold cache.
const COLD_KEPT: usize = 4096;

impl ColdCache {
    fn keep(&mut self, key: ColdKey, row: Option<RecordBatch>) {
        if self.rows.insert(key.clone(), row).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > COLD_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.rows.remove(&old);
            }
        }
    }
}

/// The registry and router of live queries.
pub struct LiveHub {
    /// Prior rows read back from cold storage: an update of a flushed row that many
    /// subscriptions see is read once (the lock makes the others wait for that read).
    cold: tokio::sync::Mutex<ColdCache>,
    /// CHANGE batches lately built, by the subscription signature and the changes they hold:
    /// subscriptions with the same table, user, columns, filter and batch size that wake for
    /// the same changes build and encode them once.
    shared: Mutex<VecDeque<(SharedKey, SharedBatches)>>,
    /// The heartbeat ticker's time base.
    started: Instant,
    ticking: std::sync::atomic::AtomicBool,
    /// How long deletes are kept (`storage.deletion_retention_seconds`): how far back a
    /// subscription can resume.
    retention_seconds: u64,
    index: RwLock<HashMap<u64, TableSubs>>,
    entries: Mutex<HashMap<String, Arc<LiveEntry>>>,
    config: LiveConfig,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveHub")
    }
}

impl ChangeSink for LiveHub {
    fn wants(&self, table_id: u64) -> bool {
        self.index.read().contains_key(&table_id)
    }

    fn publish(&self, changes: Vec<Change>) {
        let now = Instant::now();
        let limit = self.config.buffer_rows;
        let index = self.index.read();
        let mut touched: Vec<Arc<LiveEntry>> = Vec::new();
        for change in changes {
            let Some(t) = index.get(&change.partition.table_id()) else {
                continue;
            };
            let change = Arc::new(change);
            let followers = t
                .by_partition
                .get(change.partition.name())
                .into_iter()
                .flatten()
                .chain(&t.every_partition);
            for entry in followers {
                if entry.ending.lock().is_some() {
                    continue;
                }
                if entry.queued.fetch_add(1, Ordering::AcqRel) >= limit {
                    entry.end(
                        "lagged",
                        format!(
                            "the subscriber fell {limit} changes behind (live.buffer_rows): \
                             resubscribe with OPTIONS (from = last_seq)"
                        ),
                    );
                    continue;
                }
                entry.queue.lock().push_back((change.clone(), now));
                if !touched.iter().any(|e| Arc::ptr_eq(e, entry)) {
                    touched.push(entry.clone());
                }
            }
        }
        for e in touched {
            e.notify.notify_one();
        }
    }
}

impl LiveHub {
    /// An empty hub.
    pub fn new(config: LiveConfig, retention_seconds: u64, metrics: Arc<Metrics>) -> Self {
        Self {
            shared: Mutex::new(VecDeque::with_capacity(SHARED_KEPT)),
            cold: tokio::sync::Mutex::new(ColdCache::default()),
            started: Instant::now(),
            ticking: std::sync::atomic::AtomicBool::new(false),
            retention_seconds,
            index: RwLock::new(HashMap::new()),
            entries: Mutex::new(HashMap::new()),
            config,
            metrics,
        }
    }

    /// CHANGE batches another subscription of the same signature built for the same changes.
    fn shared_batches(&self, key: &SharedKey) -> Option<SharedBatches> {
        let shared = self.shared.lock();
        shared
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    /// Encodes `batches` and keeps them for the other subscriptions of `key`'s signature.
    fn keep_batches(
        &self,
        key: SharedKey,
        schema: &arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<SharedBatches> {
        let built = batches
            .into_iter()
            .map(|b| {
                let data = quilldb_flight::live::encode_rows(schema, &b)
                    .map_err(|e| Error::Internal(e.message().to_string()))?;
                Ok((b, data))
            })
            .collect::<Result<Vec<_>>>()?;
        let built = Arc::new(built);
        let mut shared = self.shared.lock();
        if shared.len() >= SHARED_KEPT {
            shared.pop_front();
        }
        shared.push_back((key, built.clone()));
        Ok(built)
    }

    fn clock(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts (once) the task that marks HEARTBEATs due: one timer for every subscription.
    fn tick(self: &Arc<Self>) {
        if self.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = Arc::downgrade(self);
        let every_ms = self.config.heartbeat_seconds.max(1) * 1000;
        tokio::spawn(async move {
            let mut interval =
                tokio::time::interval(Duration::from_millis((every_ms / 4).clamp(50, 1000)));
            loop {
                interval.tick().await;
                let Some(hub) = hub.upgrade() else { return };
                let now = hub.clock();
                for e in hub.entries.lock().values() {
                    if now.saturating_sub(e.last_sent_ms.load(Ordering::Relaxed)) >= every_ms {
                        e.last_sent_ms.store(now, Ordering::Relaxed);
                        e.beat.store(true, Ordering::Release);
                        e.notify.notify_one();
                    }
                }
            }
        });
    }

    /// The open subscriptions.
    pub fn list(&self) -> Vec<Arc<LiveEntry>> {
        let mut out: Vec<_> = self.entries.lock().values().cloned().collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }

    fn register(&self, caller: &Caller, q: &LiveQuery) -> Result<Arc<LiveEntry>> {
        let mut entries = self.entries.lock();
        if entries.len() >= self.config.max_subscriptions {
            return Err(Error::ResourceExhausted(format!(
                "the server has {} open subscriptions (live.max_subscriptions)",
                entries.len()
            )));
        }
        let mine = entries.values().filter(|e| e.user == caller.user).count();
        if mine >= self.config.max_per_user {
            return Err(Error::ResourceExhausted(format!(
                "{} has {mine} open subscriptions (live.max_per_user)",
                caller.user
            )));
        }
        let partition = match (q.def.table_type, q.options.all_users) {
            (TableType::Shared, _) => Some(Vec::new()),
            (_, true) => None,
            (_, false) => Some(caller.user.as_bytes().to_vec()),
        };
        let entry = Arc::new(LiveEntry {
            id: crate::jobs::record::short_id("LQ"),
            user: caller.user.clone(),
            role: caller.role,
            table_id: q.def.id,
            table: q.def.qualified(),
            query: q.text.clone(),
            created_at: now_millis(),
            partition: partition.clone(),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            notify: Notify::new(),
            ending: Mutex::new(None),
            last_seq: AtomicI64::new(0),
            rows_sent: AtomicU64::new(0),
            last_sent_ms: AtomicU64::new(self.clock()),
            beat: std::sync::atomic::AtomicBool::new(false),
        });
        entries.insert(entry.id.clone(), entry.clone());
        let mut index = self.index.write();
        let t = index.entry(q.def.id).or_default();
        match partition {
            Some(p) => t.by_partition.entry(p).or_default().push(entry.clone()),
            None => t.every_partition.push(entry.clone()),
        }
        self.metrics.live_subscriptions.inc();
        Ok(entry)
    }

    fn unregister(&self, entry: &Arc<LiveEntry>) {
        if self.entries.lock().remove(&entry.id).is_none() {
            return;
        }
        let mut index = self.index.write();
        if let Some(t) = index.get_mut(&entry.table_id) {
            let drop_from = |v: &mut Vec<Arc<LiveEntry>>| v.retain(|e| !Arc::ptr_eq(e, entry));
            match &entry.partition {
                Some(p) => {
                    if let Some(v) = t.by_partition.get_mut(p) {
                        drop_from(v);
                        if v.is_empty() {
                            t.by_partition.remove(p);
                        }
                    }
                }
                None => drop_from(&mut t.every_partition),
            }
            if t.by_partition.is_empty() && t.every_partition.is_empty() {
                index.remove(&entry.table_id);
            }
        }
        self.metrics.live_subscriptions.dec();
    }

    /// Ends the subscriptions matching `which` with `code`.
    fn end_where(&self, which: impl Fn(&LiveEntry) -> bool, code: &'static str, message: &str) {
        for e in self.entries.lock().values().filter(|e| which(e)) {
            e.end(code, message);
        }
    }

    /// Ends the subscriptions of a table: `table_dropped` or `schema_changed`.
    pub fn end_table(&self, table_id: u64, code: &'static str, message: &str) {
        self.end_where(|e| e.table_id == table_id, code, message);
    }

    /// Ends every subscription of `user` (`unauthorized`).
    pub fn end_user(&self, user: &str, message: &str) {
        self.end_where(|e| e.user == user, "unauthorized", message);
    }

    /// Ends the subscriptions of `user` that `role` may no longer read (`unauthorized`).
    pub fn end_unreadable(&self, user: &str, role: Role, catalog: &crate::catalog::Catalog) {
        self.end_where(
            |e| {
                e.user == user
                    && catalog.table_by_id(e.table_id).is_none_or(|def| {
                        !crate::authz::can_read(role, &def)
                            || (e.partition.is_none() && role < Role::Service)
                    })
            },
            "unauthorized",
            &format!("{user} may no longer read this table"),
        );
    }

    /// Ends every subscription (`shutdown`).
    pub fn end_all(&self) {
        self.end_where(|_| true, "shutdown", "the server is shutting down");
    }

    /// KILL LIVE QUERY: users and services their own, dba and system any.
    pub fn kill(&self, caller: &Caller, id: &str) -> Result<()> {
        let entry = self.entries.lock().get(id).cloned();
        match entry {
            Some(e) if e.user == caller.user || caller.role >= Role::Dba => {
                e.end("killed", format!("killed by {}", caller.user));
                Ok(())
            }
            _ => Err(Error::NotFound(format!(
                "no live query {id} of yours is open"
            ))),
        }
    }
}

/// Opens a subscription: parses and authorizes it, registers it, then streams its snapshot and
/// changes from a task of its own.
pub async fn subscribe(
    db: &Arc<Database>,
    caller: &Caller,
    request: SubscribeRequest,
) -> Result<Subscription> {
    let q = query::parse(db, caller, &request.sql, request.params.as_ref()).await?;
    let schema = q.schema();
    db.live.tick();
    let entry = db.live.register(caller, &q)?;
    let (tx, rx) = mpsc::channel::<LiveMessage>(16);
    let id = entry.id.clone();
    let signature: Arc<str> = format!(
        "{}/{}/{:?}/{:?}/{:?}/{}/{}",
        q.def.id,
        q.def.schema_version,
        entry.partition,
        q.columns,
        q.filter.as_ref().map(|f| f.to_string()),
        q.options.all_users,
        q.options.batch_size
    )
    .into();
    let task = Task {
        db: db.clone(),
        signature,
        schema: schema.clone(),
        q: Arc::new(q),
        entry: entry.clone(),
        tx,
    };
    tokio::spawn(async move {
        let entry = task.entry.clone();
        let db = task.db.clone();
        task.run().await;
        db.live.unregister(&entry);
    });
    let messages = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
    Ok(Subscription {
        id,
        schema,
        messages,
    })
}

/// The work of one subscription.
struct Task {
    db: Arc<Database>,
    q: Arc<LiveQuery>,
    /// What makes two subscriptions' CHANGE batches the same (see `LiveHub::change_batches`).
    signature: Arc<str>,
    schema: arrow::datatypes::SchemaRef,
    entry: Arc<LiveEntry>,
    tx: mpsc::Sender<LiveMessage>,
}

impl Task {
    async fn run(self) {
        let last = |e: &LiveEntry| e.last_seq.load(Ordering::Acquire);
        // A resumed subscription starts where the client was.
        if let Some(from) = self.q.options.from {
            self.entry.last_seq.store(from as i64, Ordering::Release);
        }
        let ack = LiveMessage::event(EventKind::Ack, last(&self.entry));
        if self.tx.send(ack).await.is_err() {
            return;
        }
        let started = match self.q.options.from {
            None => self.snapshot().await.map(|h| (h, Vec::new())),
            Some(from) => {
                let floor = quilldb_storage::seq::first_id_at(
                    (now_millis().max(0) as u64)
                        .saturating_sub(self.db.live.retention_seconds.saturating_mul(1000)),
                );
                if from < floor {
                    let msg = LiveMessage::end(
                        EventKind::Error,
                        from as i64,
                        "resume_too_old",
                        "deletes that old are no longer kept (storage.deletion_retention_seconds): \
                         subscribe again without from",
                    );
                    let _ = self.tx.send(msg).await;
                    return;
                }
                self.catch_up(from).await
            }
        };
        let (horizons, catch_up) = match started {
            Ok(h) => h,
            Err(e) => return self.fail(e).await,
        };
        if self.q.options.from.is_none() {
            let snapshot_seq = horizons.values().copied().max().unwrap_or(0);
            self.entry
                .last_seq
                .fetch_max(snapshot_seq as i64, Ordering::AcqRel);
        }
        let done = LiveMessage::event(EventKind::InitialDone, last(&self.entry));
        if self.tx.send(done).await.is_err() {
            return;
        }
        for batch in catch_up {
            if !self.send_rows(EventKind::Change, batch).await {
                return;
            }
        }
        let changes = changes::ChangeBatcher::new(self.q.clone());
        loop {
            let ending = self.entry.ending.lock().clone();
            if let Some(end) = ending {
                let msg =
                    LiveMessage::end(EventKind::Closed, last(&self.entry), end.code, end.message);
                let _ = self.tx.send(msg).await;
                return;
            }
            let pending: Vec<(Arc<Change>, Instant)> = self.entry.queue.lock().drain(..).collect();
            if pending.is_empty() {
                if self.entry.beat.swap(false, Ordering::AcqRel) {
                    let beat = LiveMessage::event(EventKind::Heartbeat, last(&self.entry));
                    if self.tx.send(beat).await.is_err() {
                        return;
                    }
                    continue;
                }
                tokio::select! {
                    _ = self.entry.notify.notified() => continue,
                    _ = self.tx.closed() => return,
                }
            }
            self.entry.queued.fetch_sub(pending.len(), Ordering::AcqRel);
            let oldest = pending.first().map(|(_, at)| *at);
            let fresh: Vec<Arc<Change>> = pending
                .into_iter()
                .map(|(c, _)| c)
                .filter(|c| horizons.get(c.partition.name()).is_none_or(|h| c.seq > *h))
                .collect();
            let batches = match self.change_batches(&fresh, &changes).await {
                Ok(b) => b,
                Err(e) => return self.fail(e).await,
            };
            for (batch, encoded) in batches.iter() {
                if !self
                    .send_encoded(EventKind::Change, batch.clone(), Some(encoded.clone()))
                    .await
                {
                    return;
                }
            }
            if let Some(at) = oldest {
                self.db
                    .metrics
                    .live_latency
                    .observe(at.elapsed().as_secs_f64());
            }
        }
    }

    /// The CHANGE batches of `changes`: reused when another subscription of the same
    /// signature built them for the same changes.
    async fn change_batches(
        &self,
        changes: &[Arc<Change>],
        batcher: &changes::ChangeBatcher,
    ) -> Result<SharedBatches> {
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Ok(Arc::new(Vec::new()));
        };
        let key: SharedKey = (first.seq, last.seq, changes.len(), self.signature.clone());
        if let Some(found) = self.db.live.shared_batches(&key) {
            return Ok(found);
        }
        let cold = self.cold_priors(changes).await;
        if let Some(found) = self.db.live.shared_batches(&key) {
            return Ok(found);
        }
        let batches = batcher.batches(changes, &cold)?;
        self.db.live.keep_batches(key, &self.schema, batches)
    }

    /// The prior rows of changes to versions that are only in cold storage, read back from
    /// their segments (once for every subscription, through the hub's cache). A version that
    /// cannot be read (compacted away) is left out: its delete then carries the key alone.
    async fn cold_priors(&self, changes: &[Arc<Change>]) -> changes::ColdPriors {
        let def = &self.q.def;
        let key = |c: &Change, v: u64| (def.id, def.schema_version, c.partition.name().to_vec(), v);
        let wanted: Vec<(&Arc<Change>, u64)> = changes
            .iter()
            .filter_map(|c| match c.prior {
                Prior::Cold(v) => Some((c, v)),
                _ => None,
            })
            .collect();
        let mut out = changes::ColdPriors::new();
        if wanted.is_empty() {
            return out;
        }
        let mut cache = self.db.live.cold.lock().await;
        let mut missing: HashMap<Vec<u8>, (Arc<PartitionKey>, HashSet<u64>)> = HashMap::new();
        for (c, v) in &wanted {
            if !cache.rows.contains_key(&key(c, *v)) {
                missing
                    .entry(c.partition.name().to_vec())
                    .or_insert_with(|| (c.partition.clone(), HashSet::new()))
                    .1
                    .insert(*v);
            }
        }
        for (name, (partition, versions)) in missing {
            let found = match self.read_cold(&partition, &versions).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(live_id = %self.entry.id, error = %e,
                        "reading prior rows from cold storage");
                    HashMap::new()
                }
            };
            for v in versions {
                cache.keep(
                    (def.id, def.schema_version, name.clone(), v),
                    found.get(&v).cloned(),
                );
            }
        }
        for (c, v) in wanted {
            if let Some(Some(row)) = cache.rows.get(&key(c, v)) {
                out.insert(v, row.clone());
            }
        }
        out
    }

    /// The flushed versions `versions` of `partition`, one single-row batch each.
    async fn read_cold(
        &self,
        partition: &PartitionKey,
        versions: &HashSet<u64>,
    ) -> Result<HashMap<u64, RecordBatch>> {
        let def = &self.q.def;
        if def.table_type == TableType::Stream {
            return Ok(HashMap::new());
        }
        let source = self.db.cold_source(def, partition)?;
        let spec = self.db.full_scan_spec(def, partition)?;
        let schema = self.q.rows_schema();
        let seq_at = def.columns.len();
        let mut out = HashMap::new();
        for b in source.versions(&spec.columns, versions).await? {
            let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
            let seqs = b
                .column(seq_at)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| Error::Internal("_seq is not BIGINT".into()))?;
            for i in 0..b.num_rows() {
                out.insert(seqs.value(i) as u64, b.slice(i, 1));
            }
        }
        Ok(out)
    }

    /// Ends the subscription with ERROR `internal`.
    async fn fail(&self, e: Error) {
        tracing::warn!(live_id = %self.entry.id, error = %e, "live query failed");
        let last = self.entry.last_seq.load(Ordering::Acquire);
        let msg = LiveMessage::end(EventKind::Error, last, "internal", e.to_string());
        let _ = self.tx.send(msg).await;
    }

    /// Sends one batch of rows; `false` once the client is gone.
    async fn send_rows(&self, kind: EventKind, batch: RecordBatch) -> bool {
        self.send_encoded(kind, batch, None).await
    }

    /// Sends one batch of rows, already encoded if `encoded` is given.
    async fn send_encoded(
        &self,
        kind: EventKind,
        batch: RecordBatch,
        encoded: Option<arrow_flight::FlightData>,
    ) -> bool {
        let seq_at = self.q.columns.len();
        let max = batch
            .column(seq_at)
            .as_any()
            .downcast_ref::<Int64Array>()
            .and_then(arrow::compute::max)
            .unwrap_or(0);
        let last = self
            .entry
            .last_seq
            .fetch_max(max, Ordering::AcqRel)
            .max(max);
        let rows = batch.num_rows() as u64;
        let msg = LiveMessage {
            batch: Some(batch),
            encoded,
            ..LiveMessage::event(kind, last)
        };
        if self.tx.send(msg).await.is_err() {
            return false;
        }
        self.entry
            .last_sent_ms
            .store(self.db.live.clock(), Ordering::Relaxed);
        if kind == EventKind::Change {
            self.entry.rows_sent.fetch_add(rows, Ordering::Relaxed);
            self.db.metrics.live_rows.inc_by(rows);
        }
        true
    }

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
    async fn snapshot(&self) -> Result<HashMap<Vec<u8>, u64>> {
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
    /// `from` (its key), in `_seq` order. Answers the partitions' horizons and the batches.
    async fn catch_up(&self, from: u64) -> Result<(HashMap<Vec<u8>, u64>, Vec<RecordBatch>)> {
        let mut horizons = HashMap::new();
        let mut out = Vec::new();
        for partition in self.partitions().await? {
            let mut read = self.merged_read(&partition)?;
            read.spec.min_seq = read.spec.min_seq.max(from.saturating_add(1));
            let q = self.q.clone();
            let user = String::from_utf8_lossy(partition.name()).into_owned();
            let handle = tokio::runtime::Handle::current();
            let (seq, batches) = tokio::task::spawn_blocking(move || -> Result<_> {
                let mut rows = Vec::new();
                let stats = read.run(&handle, |b| {
                    rows.push(b);
                    true
                })?;
                let (pk_at, _) = q.def.pk()?;
                let deletes = read.deletes(&handle, from, stats.snapshot_seq, pk_at)?;
                let schema = q.rows_schema();
                let mut parts = Vec::new();
                let mut ops: Vec<i8> = Vec::new();
                for b in &rows {
                    let b = RecordBatch::try_new(schema.clone(), b.columns().to_vec())?;
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
                Ok((stats.snapshot_seq, split(vec![out], q.options.batch_size)))
            })
            .await
            .map_err(|e| Error::Internal(format!("resume task: {e}")))??;
            horizons.insert(partition.name().to_vec(), seq);
            out.extend(batches.into_iter().filter(|b| b.num_rows() > 0));
        }
        Ok((horizons, out))
    }

    /// A merged read of one partition: every column and `_seq`, live rows only.
    fn merged_read(&self, partition: &PartitionKey) -> Result<MergedRead> {
        let def = &self.q.def;
        let cold = match def.table_type {
            TableType::Stream => None,
            _ => Some(self.db.cold_source(def, partition)?),
        };
        let mut spec = self.db.full_scan_spec(def, partition)?;
        spec.min_seq = def.live_from();
        Ok(MergedRead {
            hot: self.db.hot.clone(),
            cold,
            spec,
            keys: None,
            pk_column_id: def.pk().map(|(_, c)| c.id).unwrap_or_default(),
            pruner: None,
        })
    }

    /// Reads one partition's matching rows (the newest `last_rows` of them, if asked).
    async fn read_partition(&self, partition: &PartitionKey) -> Result<(u64, Vec<RecordBatch>)> {
        let def = self.q.def.clone();
        let read = self.merged_read(partition)?;
        let q = self.q.clone();
        let user = String::from_utf8_lossy(partition.name()).into_owned();
        let handle = tokio::runtime::Handle::current();
        let outcome = tokio::task::spawn_blocking(move || -> Result<(u64, Vec<RecordBatch>)> {
            let mut kept: VecDeque<RecordBatch> = VecDeque::new();
            let mut kept_rows = 0usize;
            let mut failed = None;
            let stats = read.run(&handle, |b| {
                match matching(&q, &b) {
                    Ok(m) if m.num_rows() > 0 => {
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
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
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
        .map_err(|e| Error::Internal(format!("snapshot task: {e}")))??;
        Ok(outcome)
    }
}

/// system.live_queries: one row per open subscription.
pub fn live_queries_batch(entries: &[Arc<LiveEntry>]) -> Result<RecordBatch> {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let utf8 = |v: Vec<String>| Arc::new(StringArray::from(v)) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        Field::new("live_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("query", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("last_seq", DataType::Int64, false),
        Field::new("rows_sent", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
    ]));
    Ok(RecordBatch::try_new(
        schema,
        vec![
            utf8(entries.iter().map(|e| e.id.clone()).collect()),
            utf8(entries.iter().map(|e| e.user.clone()).collect()),
            utf8(entries.iter().map(|e| e.table.clone()).collect()),
            utf8(entries.iter().map(|e| e.query.clone()).collect()),
            Arc::new(
                arrow::array::TimestampMillisecondArray::from(
                    entries.iter().map(|e| e.created_at).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|e| e.last_seq.load(Ordering::Relaxed))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                entries
                    .iter()
                    .map(|e| e.rows_sent.load(Ordering::Relaxed) as i64)
                    .collect::<Vec<_>>(),
            )),
            utf8(
                entries
                    .iter()
                    .map(|e| match e.ending.lock().as_ref() {
                        Some(end) => format!("closing ({})", end.code),
                        None => "active".into(),
                    })
                    .collect(),
            ),
        ],
    )?)
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

/// Bytes of Arrow data one message carries at most: below gRPC's default 4 MiB limit of
/// stock clients.
const MESSAGE_BYTES: usize = 3 << 20;

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

/// Cuts batches into pieces of at most `size` rows and about [`MESSAGE_BYTES`].
fn split(batches: Vec<RecordBatch>, size: usize) -> Vec<RecordBatch> {
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
