//! The hub: the registry of open subscriptions, the router of committed changes to them, the
//! caches they share (CHANGE batches built once per signature, prior rows read back from cold
//! storage once), the heartbeat ticker, and the owner of their tasks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};
use quilldb_storage::hot::{Change, ChangeSink};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::query::LiveQuery;
use crate::catalog::{Catalog, TableType, now_millis};
use crate::config::LiveConfig;
use crate::engine::{CatalogEvent, LiveQueries, LiveQueryInfo};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::session::{Caller, Role};

/// Why a subscription ends.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    pub(super) code: &'static str,
    pub(super) message: String,
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
    pub(super) partition: Option<Vec<u8>>,
    pub(super) queue: Mutex<VecDeque<(Arc<Change>, Instant)>>,
    pub(super) queued: AtomicUsize,
    pub(super) notify: Notify,
    pub(super) ending: Mutex<Option<Ending>>,
    /// The greatest `_seq` sent.
    pub last_seq: AtomicI64,
    /// When a message last left, in milliseconds since the hub started: the heartbeat ticker
    /// reads it, so subscriptions keep no timer of their own.
    pub(super) last_sent_ms: AtomicU64,
    /// Set by the ticker: a HEARTBEAT is due.
    pub(super) beat: std::sync::atomic::AtomicBool,
    /// Change rows sent.
    pub rows_sent: AtomicU64,
}

impl LiveEntry {
    pub(super) fn end(&self, code: &'static str, message: impl Into<String>) {
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
pub(super) type SharedKey = (u64, u64, usize, Arc<str>);
/// Built batches, each with its encoded FlightData.
pub(super) type SharedBatches = Arc<Vec<(RecordBatch, arrow_flight::FlightData)>>;
/// Built batch lists kept for reuse.
const SHARED_KEPT: usize = 64;

/// Prior rows lately read back from cold storage, by table, schema version, partition and
/// `_seq` (`None`: compacted away).
#[derive(Default)]
pub(super) struct ColdCache {
    pub(super) rows: HashMap<ColdKey, Option<RecordBatch>>,
    order: VecDeque<ColdKey>,
}
type ColdKey = (u64, u32, Vec<u8>, u64);
/// Prior rows kept in the cold cache.
const COLD_KEPT: usize = 4096;

impl ColdCache {
    pub(super) fn keep(&mut self, key: ColdKey, row: Option<RecordBatch>) {
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
    pub(super) cold: tokio::sync::Mutex<ColdCache>,
    /// CHANGE batches lately built, by the subscription signature and the changes they hold:
    /// subscriptions with the same table, user, columns, filter and batch size that wake for
    /// the same changes build and encode them once.
    shared: Mutex<VecDeque<(SharedKey, SharedBatches)>>,
    /// The heartbeat ticker's time base.
    started: Instant,
    ticking: std::sync::atomic::AtomicBool,
    /// How long deletes are kept (`storage.deletion_retention_seconds`): how far back a
    /// subscription can resume.
    pub(super) retention_seconds: u64,
    index: RwLock<HashMap<u64, TableSubs>>,
    /// The subscription tasks and the hub's own (ticker, event follower): ended at shutdown.
    tasks: Mutex<JoinSet<()>>,
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
            tasks: Mutex::new(JoinSet::new()),
            entries: Mutex::new(HashMap::new()),
            config,
            metrics,
        }
    }

    /// CHANGE batches another subscription of the same signature built for the same changes.
    pub(super) fn shared_batches(&self, key: &SharedKey) -> Option<SharedBatches> {
        let shared = self.shared.lock();
        shared
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    /// Encodes `batches` and keeps them for the other subscriptions of `key`'s signature.
    pub(super) fn keep_batches(
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

    pub(super) fn clock(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts (once) the task that marks HEARTBEATs due: one timer for every subscription.
    pub(super) fn tick(self: &Arc<Self>) {
        if self.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = Arc::downgrade(self);
        let every_ms = self.config.heartbeat_seconds.max(1) * 1000;
        self.spawn(async move {
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

    /// The open subscriptions, oldest first.
    pub fn entries(&self) -> Vec<Arc<LiveEntry>> {
        let mut out: Vec<_> = self.entries.lock().values().cloned().collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }

    pub(super) fn register(&self, caller: &Caller, q: &LiveQuery) -> Result<Arc<LiveEntry>> {
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

    pub(super) fn unregister(&self, entry: &Arc<LiveEntry>) {
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

    /// Ends the subscriptions of `user` that `role` may no longer read (`unauthorized`).
    fn end_unreadable(&self, user: &str, role: Role, catalog: &Catalog) {
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

    /// Runs `work` as a task the hub owns (ended at shutdown).
    pub(super) fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock();
        // Reap the finished ones so the set holds only running tasks.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(work);
    }

    /// Follows the engine's catalog events: subscriptions of dropped or altered tables end,
    /// and those of dropped users or of users who may no longer read their table.
    pub fn follow(
        self: &Arc<Self>,
        mut events: tokio::sync::mpsc::Receiver<CatalogEvent>,
        catalog: Arc<Catalog>,
    ) {
        let hub = Arc::downgrade(self);
        self.spawn(async move {
            while let Some(event) = events.recv().await {
                let Some(hub) = hub.upgrade() else { return };
                match event {
                    CatalogEvent::TableChanged {
                        table_id,
                        code,
                        message,
                    } => hub.end_where(|e| e.table_id == table_id, code, &message),
                    CatalogEvent::UserDropped { user } => {
                        hub.end_where(|e| e.user == user, "unauthorized", "the user was dropped")
                    }
                    CatalogEvent::RoleChanged { user, role } => {
                        hub.end_unreadable(&user, role, &catalog)
                    }
                }
            }
        });
    }

    /// Ends every subscription with CLOSED `shutdown` and waits (up to `grace`) for their
    /// tasks to send it; then stops the hub's tasks.
    pub async fn shutdown(&self, grace: Duration) {
        self.end_where(|_| true, "shutdown", "the server is shutting down");
        let deadline = Instant::now() + grace;
        while !self.entries.lock().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        tasks.shutdown().await;
    }
}

impl LiveQueries for LiveHub {
    fn list(&self) -> Vec<LiveQueryInfo> {
        self.entries()
            .iter()
            .map(|e| LiveQueryInfo {
                id: e.id.clone(),
                user: e.user.clone(),
                table: e.table.clone(),
                query: e.query.clone(),
                created_at: e.created_at,
                last_seq: e.last_seq.load(Ordering::Relaxed),
                rows_sent: e.rows_sent.load(Ordering::Relaxed),
                status: match e.ending.lock().as_ref() {
                    Some(end) => format!("closing ({})", end.code),
                    None => "active".into(),
                },
            })
            .collect()
    }

    /// KILL LIVE QUERY: users and services their own, dba and system any.
    fn kill(&self, caller: &Caller, id: &str) -> Result<()> {
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
