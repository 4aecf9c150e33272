//! The single writer: validates keys, assigns `_seq`, and commits groups of requests with one
//! WAL write (and one fsync in `sync` durability). Serializing validation here is what makes the
//! duplicate-key check exact without locks in the callers.

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{mpsc, oneshot};

use super::changes::{Change, Prior, SinkSlot};
use super::{
    CF_DV, CF_META, CF_PK, CF_ROWS, Durability, KIND_PUT, KIND_TOMBSTONE, PendingWrites,
    SEQ_HWM_KEY, cf, horizon_key,
};
use crate::codec::put_varint;
use crate::keys::{PartitionKey, prefix_end};
use crate::seq::SeqGenerator;
use crate::{Error, Result};

/// Tables without a primary key.
mod keyless;

/// Requests taken into one group commit at most.
const MAX_GROUP: usize = 512;
/// Requests with more rows than this read their key index entries in one batched call.
const PREFETCH_MIN: usize = 8;
/// Requests with at least this many rows (bulk loads) are committed alone, without the
/// per-key bookkeeping a group needs.
const BULK_MIN: usize = 4096;

/// What a row op requires of the current version of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Insert; a live row with this key fails the whole request with [`Error::DuplicateKey`].
    InsertNew,
    /// Insert unless a live row has this key (`ON CONFLICT DO NOTHING`).
    InsertIgnore,
    /// Write whatever is there.
    Upsert,
    /// Replace (or, with no row, delete) the live version with this `_seq`; otherwise
    /// [`Error::Conflict`].
    IfSeq(u64),
    /// A table without a primary key: add the row as a new version. Nothing is read and no
    /// key index entry is written; the op's `pk` is empty.
    Append,
    /// A table without a primary key, whose rows are identified by `_seq`: replace (or, with
    /// no row, delete) the live version with this `_seq`; otherwise [`Error::Conflict`]. The
    /// version goes (from the hot rows, or by a dv mark once it may be cold) and a tombstone
    /// naming it (its `_seq` as the tombstone's key bytes) records the delete for resumed
    /// subscriptions; a new row is appended as a new version.
    ReplaceVersion(u64),
}

impl WriteMode {
    /// Whether the op is of a table without a primary key.
    pub fn keyless(self) -> bool {
        matches!(self, Self::Append | Self::ReplaceVersion(_))
    }
}

/// One row change.
#[derive(Debug, Clone)]
pub struct RowOp {
    /// The table partition.
    pub partition: Arc<PartitionKey>,
    /// The order-preserving primary-key bytes.
    pub pk: Vec<u8>,
    /// The encoded row, or `None` for a delete.
    pub row: Option<Vec<u8>>,
    /// The precondition.
    pub mode: WriteMode,
    /// Versions with a smaller `_seq` have expired (a STREAM table's TTL) and count as absent:
    /// the key can be inserted again. 0 for tables without a TTL.
    pub live_from: u64,
}

/// An atomic unit: all of it is applied or none.
#[derive(Debug, Clone, Default)]
pub struct WriteRequest {
    /// Row changes.
    pub rows: Vec<RowOp>,
    /// Metadata puts (`Some`) and deletes (`None`).
    pub meta: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Key prefixes (see [`PartitionKey::table_prefix`]) whose rows and index entries are removed.
    pub drop_prefixes: Vec<Vec<u8>>,
    /// A transaction's start: a key whose current version (live or deleted) is newer than this
    /// `_seq` was changed by someone else since, and fails the request with
    /// [`Error::Conflict`].
    pub snapshot: Option<u64>,
    /// Flush and compaction bookkeeping (see [`Maintenance`]); a request carrying any is
    /// committed alone.
    pub maintenance: Vec<Maintenance>,
}

/// The writer's part of a flush or compaction: ordered with every write, so a flush horizon is
/// exactly "every version committed before this point".
#[derive(Debug, Clone)]
pub enum Maintenance {
    /// Starts a flush of the partition: from now on, replacing or deleting a version at or below
    /// the horizon records that version as deleted for cold reads. The horizon (the newest
    /// committed `_seq`) comes back as the outcome's `last_seq`.
    BeginFlush(Arc<PartitionKey>),
    /// Removes the partition's hot versions at or below `upto`: a committed segment holds them.
    Trim {
        /// The partition.
        partition: Arc<PartitionKey>,
        /// The flush horizon.
        upto: u64,
    },
    /// Removes a STREAM partition's versions older than `before` (whole expired time buckets)
    /// with the index entries that still point at them; the count comes back as `applied`.
    Evict {
        /// The partition.
        partition: Arc<PartitionKey>,
        /// The first `_seq` that stays.
        before: u64,
    },
    /// Starts a load straight to cold storage (see [`crate::flush::load_direct`]): reserves
    /// `rows` successive `_seq`s for the loaded rows (`first_seq` of the outcome, the others
    /// following it, see [`crate::seq::successor`]) and starts a flush whose horizon is the
    /// last of them, the outcome's `last_seq`. No other version of any partition gets a `_seq`
    /// in that range, so the flushed hot versions and the loaded ones keep disjoint ranges.
    BeginDirect {
        /// The partition.
        partition: Arc<PartitionKey>,
        /// Rows to load (at least 1).
        rows: u64,
    },
    /// Forgets deleted-version marks of versions a compaction removed from its files.
    ForgetDeleted {
        /// The partition.
        partition: Arc<PartitionKey>,
        /// The versions.
        seqs: Vec<u64>,
    },
}

/// What a request did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Row ops that changed something.
    pub applied: u64,
    /// The greatest `_seq` written (0 if none).
    pub last_seq: u64,
    /// The first `_seq` a [`Maintenance::BeginDirect`] reserved (0 otherwise).
    pub first_seq: u64,
}

pub(crate) struct Job {
    pub req: WriteRequest,
    pub done: oneshot::Sender<Result<WriteOutcome>>,
}

/// The current version of a key: its `_seq` and whether it is live (not a tombstone).
type Current = Option<(u64, bool)>;

pub(crate) struct Writer {
    db: Arc<DB>,
    seq: Arc<SeqGenerator>,
    durability: Durability,
    /// Per partition, the newest `_seq` that may be in cold storage: replacing a version at or
    /// below it marks the old version deleted (the `dv` family), as it may sit in a segment.
    horizons: HashMap<Vec<u8>, u64>,
    pending: Arc<PendingWrites>,
    /// The listener of committed changes (live queries).
    sink: Arc<SinkSlot>,
}

/// New row bodies (`None`: deleted) of keys of listened tables, planned earlier in the same
/// group: the prior row of a later change of the same key, which is not committed yet.
type Bodies = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// The mutations of one validated request, applied to the group batch only when it is valid.
#[derive(Default)]
struct Planned {
    puts: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    deletes: Vec<(&'static str, Vec<u8>)>,
    overlay: HashMap<Vec<u8>, Current>,
    outcome: WriteOutcome,
    changes: Vec<Change>,
    bodies: Bodies,
}

impl Writer {
    pub fn new(
        db: Arc<DB>,
        seq: Arc<SeqGenerator>,
        durability: Durability,
        horizons: HashMap<Vec<u8>, u64>,
        pending: Arc<PendingWrites>,
        sink: Arc<SinkSlot>,
    ) -> Self {
        Self {
            db,
            seq,
            durability,
            horizons,
            pending,
            sink,
        }
    }

    /// What `key` held before a change, for a listened table: its live version's row, from
    /// this group's earlier changes or the rows family (`Cold` once flushed and trimmed).
    fn prior(
        &self,
        partition: &PartitionKey,
        key: &[u8],
        current: Current,
        live_from: u64,
        earlier: [&Bodies; 2],
    ) -> Result<Prior> {
        let Some((old, true)) = current.filter(|(s, _)| *s >= live_from) else {
            return Ok(Prior::Absent);
        };
        if let Some(body) = earlier.iter().find_map(|b| b.get(key)) {
            return Ok(body
                .clone()
                .map_or(Prior::Absent, |row| Prior::Row { seq: old, row }));
        }
        let found = self
            .db
            .get_pinned_cf(cf(&self.db, CF_ROWS)?, partition.row_key(old))
            .map_err(|e| Error::rocks("read the prior version", e))?;
        match found {
            Some(v) => Ok(Prior::Row {
                seq: old,
                row: super::scan::split_value(&v)?.2.to_vec(),
            }),
            None => Ok(Prior::Cold(old)),
        }
    }

    /// Whether replacing version `old` of `partition` must mark it deleted for cold reads.
    fn maybe_cold(&self, partition: &PartitionKey, old: u64) -> bool {
        self.horizons
            .get(partition.as_bytes())
            .is_some_and(|h| old <= *h)
    }

    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut pending: Option<Job> = None;
        loop {
            let first = match pending.take() {
                Some(j) => j,
                None => match rx.blocking_recv() {
                    Some(j) => j,
                    None => return,
                },
            };
            if !first.req.maintenance.is_empty() {
                self.commit_maintenance(first);
                continue;
            }
            if is_bulk(&first.req) {
                self.commit_bulk(first);
                continue;
            }
            let mut group = vec![first];
            // A request that drops prefixes is committed on its own, so the overlay of a
            // group never has to reason about ranges.
            if group[0].req.drop_prefixes.is_empty() {
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) if is_plain(&j.req) => group.push(j),
                        Ok(j) => {
                            pending = Some(j);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&self, group: Vec<Job>) {
        let mut batch = WriteBatch::default();
        let mut overlay: HashMap<Vec<u8>, Current> = HashMap::default();
        let mut bodies = Bodies::default();
        let mut changes = Vec::new();
        let mut accepted = Vec::with_capacity(group.len());
        let mut counted = Vec::with_capacity(group.len());
        for job in group {
            match self.plan(&job.req, &overlay, &bodies) {
                Ok(mut planned) => {
                    if let Err(e) = self.apply(&mut batch, &job.req, &planned) {
                        let _ = job.done.send(Err(e));
                        continue;
                    }
                    overlay.extend(planned.overlay);
                    bodies.extend(planned.bodies);
                    changes.append(&mut planned.changes);
                    accepted.push((job.done, planned.outcome));
                    counted.push((job.req, ()));
                }
                Err(e) => {
                    let _ = job.done.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let result = self.commit(batch);
        if result.is_ok() {
            for (req, _) in &counted {
                self.pending.note(&req.rows);
            }
            self.sink.publish(changes);
        }
        drop(counted);
        for (done, outcome) in accepted {
            let _ = done.send(result.clone().map(|()| outcome));
        }
    }

    /// Commits one large request alone: its keys are read in one sorted batched call, checked,
    /// and written straight into the batch. A request that repeats a key takes the general
    /// path, whose overlay resolves the repeats in order.
    fn commit_bulk(&self, job: Job) {
        if job.req.snapshot.is_none() && job.req.rows.iter().all(|op| op.mode == WriteMode::Append)
        {
            let Job { req, done } = job;
            let _ = done.send(self.write_appends(&req));
            drop(req);
            return;
        }
        if job.req.rows.iter().any(|op| op.mode.keyless()) {
            return self.commit_group(vec![job]);
        }
        let keys: Vec<Vec<u8>> = job
            .req
            .rows
            .iter()
            .map(|op| op.partition.pk_key(&op.pk))
            .collect();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by(|a, b| keys[*a].cmp(&keys[*b]));
        if order.windows(2).any(|w| keys[w[0]] == keys[w[1]]) {
            return self.commit_group(vec![job]);
        }
        let Job { req, done } = job;
        let result = self.write_bulk(&req, &keys, &order);
        let _ = done.send(result);
        // Freeing a million row buffers takes a while: the caller has its answer first.
        drop((req, keys, order));
    }

    fn write_bulk(
        &self,
        req: &WriteRequest,
        keys: &[Vec<u8>],
        order: &[usize],
    ) -> Result<WriteOutcome> {
        let pk_cf = cf(&self.db, CF_PK)?;
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let mut current: Vec<Current> = vec![None; keys.len()];
        let found = self
            .db
            .batched_multi_get_cf(pk_cf, order.iter().map(|i| &keys[*i]), true);
        for (i, v) in order.iter().zip(found) {
            if let Some(v) = v.map_err(|e| Error::rocks("read key index", e))? {
                current[*i] = Some(decode_index(&v)?);
            }
        }
        // Check every op before writing anything: the request is atomic.
        let mut skip = vec![false; keys.len()];
        for (i, op) in req.rows.iter().enumerate() {
            let c = current[i];
            if let (Some(snapshot), Some((seq, _))) = (req.snapshot, c)
                && seq > snapshot
            {
                return Err(Error::Conflict);
            }
            let live = matches!(c, Some((s, true)) if s >= op.live_from);
            match op.mode {
                WriteMode::InsertNew if live => return Err(Error::DuplicateKey { op: i }),
                WriteMode::InsertIgnore if live => skip[i] = true,
                WriteMode::IfSeq(expected) if !live || c != Some((expected, true)) => {
                    return Err(Error::Conflict);
                }
                _ => {}
            }
            if op.row.is_none() && !live {
                skip[i] = true;
            }
        }
        let mut batch = WriteBatch::default();
        let mut outcome = WriteOutcome::default();
        let mut key = Vec::new();
        let mut value = Vec::new();
        let mut changes = Vec::new();
        let none = Bodies::default();
        for (i, op) in req.rows.iter().enumerate() {
            if skip[i] {
                continue;
            }
            let seq = self.seq.next_id();
            if self.sink.for_table(op.partition.table_id()).is_some() {
                let prior = self.prior(
                    &op.partition,
                    &keys[i],
                    current[i],
                    op.live_from,
                    [&none, &none],
                )?;
                changes.push(Change {
                    partition: op.partition.clone(),
                    pk: op.pk.clone(),
                    seq,
                    row: op.row.clone(),
                    prior,
                });
            }
            let prefix = op.partition.as_bytes();
            if let Some((old, was_live)) = current[i] {
                batch.delete_cf(rows_cf, op.partition.row_key(old));
                if was_live && self.maybe_cold(&op.partition, old) {
                    batch.put_cf(cf(&self.db, CF_DV)?, op.partition.row_key(old), []);
                }
            }
            let kind = if op.row.is_some() {
                KIND_PUT
            } else {
                KIND_TOMBSTONE
            };
            let body = op.row.as_deref().unwrap_or_default();
            value.clear();
            value.push(kind);
            put_varint(&mut value, op.pk.len() as u64);
            value.extend_from_slice(&op.pk);
            value.extend_from_slice(body);
            key.clear();
            key.extend_from_slice(prefix);
            key.extend_from_slice(&seq.to_be_bytes());
            batch.put_cf(rows_cf, &key, &value);
            let mut index = [0u8; 9];
            index[..8].copy_from_slice(&seq.to_be_bytes());
            index[8] = kind;
            batch.put_cf(pk_cf, &keys[i], index);
            outcome.applied += 1;
            outcome.last_seq = seq;
        }
        self.commit_alone(batch, req, changes)?;
        Ok(outcome)
    }

    /// Commits a request written into `batch` by itself (a bulk path): its metadata puts too,
    /// then the pending counts and the listener.
    fn commit_alone(
        &self,
        mut batch: WriteBatch,
        req: &WriteRequest,
        changes: Vec<Change>,
    ) -> Result<()> {
        let meta = cf(&self.db, CF_META)?;
        for (key, value) in &req.meta {
            match value {
                Some(v) => batch.put_cf(meta, key, v),
                None => batch.delete_cf(meta, key),
            }
        }
        self.commit(batch)?;
        self.pending.note(&req.rows);
        self.sink.publish(changes);
        Ok(())
    }

    /// Writes a batch with the `_seq` high-water mark, fsynced per the durability.
    fn commit(&self, mut batch: WriteBatch) -> Result<()> {
        let meta = cf(&self.db, CF_META)?;
        batch.put_cf(meta, SEQ_HWM_KEY, self.seq.last().to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(self.durability == Durability::Sync);
        self.db
            .write_opt(batch, &wo)
            .map_err(|e| Error::rocks("write", e))
    }

    fn commit_maintenance(&mut self, job: Job) {
        let result = self.maintain(&job.req.maintenance);
        let _ = job.done.send(result);
    }

    fn maintain(&mut self, ops: &[Maintenance]) -> Result<WriteOutcome> {
        let mut batch = WriteBatch::default();
        let mut outcome = WriteOutcome::default();
        let mut horizons = Vec::new();
        for op in ops {
            match op {
                Maintenance::BeginFlush(partition) => {
                    // Single writer: every version up to `last` is committed at this point.
                    let horizon = self.seq.last();
                    batch.put_cf(
                        cf(&self.db, CF_META)?,
                        horizon_key(partition.as_bytes()),
                        horizon.to_be_bytes(),
                    );
                    horizons.push((partition.as_bytes().to_vec(), horizon));
                    outcome.last_seq = horizon;
                }
                Maintenance::BeginDirect { partition, rows } => {
                    let first = self.seq.reserve((*rows).max(1));
                    let horizon = crate::seq::advance(first, rows.saturating_sub(1));
                    batch.put_cf(
                        cf(&self.db, CF_META)?,
                        horizon_key(partition.as_bytes()),
                        horizon.to_be_bytes(),
                    );
                    horizons.push((partition.as_bytes().to_vec(), horizon));
                    outcome.first_seq = first;
                    outcome.last_seq = horizon;
                }
                Maintenance::Trim { partition, upto } => {
                    let start = partition.row_key(0);
                    let end = match upto.checked_add(1) {
                        Some(e) => partition.row_key(e),
                        None => prefix_end(partition.as_bytes())
                            .unwrap_or_else(|| vec![u8::MAX; partition.as_bytes().len() + 9]),
                    };
                    batch.delete_range_cf(cf(&self.db, CF_ROWS)?, start, end);
                }
                Maintenance::Evict { partition, before } => {
                    outcome.applied += self.evict(&mut batch, partition, *before)?;
                }
                Maintenance::ForgetDeleted { partition, seqs } => {
                    let dv = cf(&self.db, CF_DV)?;
                    for s in seqs {
                        batch.delete_cf(dv, partition.row_key(*s));
                    }
                }
            }
        }
        self.commit(batch)?;
        for op in ops {
            match op {
                Maintenance::BeginFlush(p) | Maintenance::BeginDirect { partition: p, .. } => {
                    self.pending.begin_flush(p.as_bytes())
                }
                Maintenance::Trim { partition, .. } => self.pending.flushed(partition.as_bytes()),
                Maintenance::Evict { .. } | Maintenance::ForgetDeleted { .. } => {}
            }
        }
        self.horizons.extend(horizons);
        Ok(outcome)
    }

    /// Adds the eviction of a partition's versions below `before` to `batch`: one range delete
    /// of the rows, and a delete of each index entry that still points at an evicted version
    /// (a key written again since keeps its entry). Runs in the writer, so no write interleaves.
    fn evict(&self, batch: &mut WriteBatch, partition: &PartitionKey, before: u64) -> Result<u64> {
        let rows_cf = cf(&self.db, CF_ROWS)?;
        let pk_cf = cf(&self.db, CF_PK)?;
        let start = partition.row_key(0);
        let end = partition.row_key(before);
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(end.clone());
        let mut it = self.db.raw_iterator_cf_opt(rows_cf, ro);
        it.seek(&start);
        let mut evicted = 0;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let seq = super::scan::seq_of_key(k)?;
            let pk_key = partition.pk_key(super::scan::split_value(v)?.1);
            let points_here = self
                .db
                .get_pinned_cf(pk_cf, &pk_key)
                .map_err(|e| Error::rocks("read key index", e))?
                .map(|e| decode_index(&e))
                .transpose()?
                .is_some_and(|(s, _)| s == seq);
            if points_here {
                batch.delete_cf(pk_cf, &pk_key);
            }
            evicted += 1;
            it.next();
        }
        it.status().map_err(|e| Error::rocks("evict", e))?;
        batch.delete_range_cf(rows_cf, start, end);
        Ok(evicted)
    }

    fn current(&self, overlay: &HashMap<Vec<u8>, Current>, key: &[u8]) -> Result<Current> {
        if let Some(c) = overlay.get(key) {
            return Ok(*c);
        }
        let pk_cf = cf(&self.db, CF_PK)?;
        let Some(v) = self
            .db
            .get_pinned_cf(pk_cf, key)
            .map_err(|e| Error::rocks("read key index", e))?
        else {
            return Ok(None);
        };
        decode_index(&v).map(Some)
    }

    /// The stored index entries of every key of a large request, read in one batched call.
    fn prefetch(&self, keys: &[Vec<u8>]) -> Result<HashMap<Vec<u8>, Current>> {
        let pk_cf = cf(&self.db, CF_PK)?;
        let mut sorted: Vec<&Vec<u8>> = keys.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let found = self
            .db
            .batched_multi_get_cf(pk_cf, sorted.iter().copied(), true);
        let mut out = HashMap::with_capacity(sorted.len());
        for (key, v) in sorted.into_iter().zip(found) {
            let v = v.map_err(|e| Error::rocks("read key index", e))?;
            let current = match v {
                Some(v) => Some(decode_index(&v)?),
                None => None,
            };
            out.insert(key.clone(), current);
        }
        Ok(out)
    }

    fn plan(
        &self,
        req: &WriteRequest,
        group: &HashMap<Vec<u8>, Current>,
        group_bodies: &Bodies,
    ) -> Result<Planned> {
        let mut p = Planned::default();
        let keys: Vec<Vec<u8>> = req
            .rows
            .iter()
            .map(|op| {
                if op.mode.keyless() {
                    Vec::new()
                } else {
                    op.partition.pk_key(&op.pk)
                }
            })
            .collect();
        let stored = if keys.len() > PREFETCH_MIN {
            let keyed: Vec<Vec<u8>> = keys.iter().filter(|k| !k.is_empty()).cloned().collect();
            self.prefetch(&keyed)?
        } else {
            HashMap::default()
        };
        p.puts.reserve(keys.len() * 2);
        p.overlay.reserve(keys.len());
        for ((i, op), key) in req.rows.iter().enumerate().zip(keys) {
            if op.mode.keyless() {
                self.plan_keyless(op, group, &mut p)?;
                continue;
            }
            let current = match p.overlay.get(&key) {
                Some(c) => *c,
                None => {
                    let c = match (group.get(&key), stored.get(&key)) {
                        (Some(c), _) | (None, Some(c)) => *c,
                        (None, None) => self.current(group, &key)?,
                    };
                    if let (Some(snapshot), Some((seq, _))) = (req.snapshot, c)
                        && seq > snapshot
                    {
                        return Err(Error::Conflict);
                    }
                    c
                }
            };
            let live = matches!(current, Some((s, true)) if s >= op.live_from);
            match op.mode {
                WriteMode::InsertNew if live => return Err(Error::DuplicateKey { op: i }),
                WriteMode::InsertIgnore if live => continue,
                WriteMode::IfSeq(expected) if !live || current != Some((expected, true)) => {
                    return Err(Error::Conflict);
                }
                _ => {}
            }
            if op.row.is_none() && !live {
                continue;
            }
            let seq = self.seq.next_id();
            if self.sink.for_table(op.partition.table_id()).is_some() {
                let prior = self.prior(
                    &op.partition,
                    &key,
                    current,
                    op.live_from,
                    [&p.bodies, group_bodies],
                )?;
                p.changes.push(Change {
                    partition: op.partition.clone(),
                    pk: op.pk.clone(),
                    seq,
                    row: op.row.clone(),
                    prior,
                });
                p.bodies.insert(key.clone(), op.row.clone());
            }
            if let Some((old, was_live)) = current {
                p.deletes.push((CF_ROWS, op.partition.row_key(old)));
                if was_live && self.maybe_cold(&op.partition, old) {
                    p.puts.push((CF_DV, op.partition.row_key(old), Vec::new()));
                }
            }
            let kind = if op.row.is_some() {
                KIND_PUT
            } else {
                KIND_TOMBSTONE
            };
            let body = op.row.as_deref().unwrap_or_default();
            p.puts.push((
                CF_ROWS,
                op.partition.row_key(seq),
                row_value(kind, &op.pk, body),
            ));
            p.puts.push((CF_PK, key.clone(), encode_index(seq, kind)));
            p.overlay.insert(key, Some((seq, kind == KIND_PUT)));
            p.outcome.applied += 1;
            p.outcome.last_seq = seq;
        }
        Ok(p)
    }

    fn apply(&self, batch: &mut WriteBatch, req: &WriteRequest, p: &Planned) -> Result<()> {
        for prefix in &req.drop_prefixes {
            let end = prefix_end(prefix).unwrap_or_else(|| vec![u8::MAX; prefix.len() + 1]);
            for name in [CF_ROWS, CF_PK, CF_DV] {
                batch.delete_range_cf(cf(&self.db, name)?, prefix.as_slice(), end.as_slice());
            }
            batch.delete_range_cf(
                cf(&self.db, CF_META)?,
                horizon_key(prefix),
                horizon_key(&end),
            );
        }
        for (name, key) in &p.deletes {
            batch.delete_cf(cf(&self.db, name)?, key);
        }
        for (name, key, value) in &p.puts {
            batch.put_cf(cf(&self.db, name)?, key, value);
        }
        let meta = cf(&self.db, CF_META)?;
        for (key, value) in &req.meta {
            match value {
                Some(v) => batch.put_cf(meta, key, v),
                None => batch.delete_cf(meta, key),
            }
        }
        Ok(())
    }
}

fn is_bulk(req: &WriteRequest) -> bool {
    req.rows.len() >= BULK_MIN && req.drop_prefixes.is_empty()
}

/// A request that can share a group commit with others.
fn is_plain(req: &WriteRequest) -> bool {
    req.drop_prefixes.is_empty() && req.maintenance.is_empty() && !is_bulk(req)
}

/// A stored version: its kind, the key bytes, the encoded row.
fn row_value(kind: u8, pk: &[u8], body: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + 5 + pk.len() + body.len());
    value.push(kind);
    put_varint(&mut value, pk.len() as u64);
    value.extend_from_slice(pk);
    value.extend_from_slice(body);
    value
}

fn encode_index(seq: u64, kind: u8) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.push(kind);
    v
}

pub(crate) fn decode_index(v: &[u8]) -> Result<(u64, bool)> {
    if v.len() != 9 {
        return Err(Error::corrupt("key index entry", "not 9 bytes"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&v[..8]);
    Ok((u64::from_be_bytes(b), v[8] == KIND_PUT))
}
