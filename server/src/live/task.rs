//! The task of one subscription: ACK, the snapshot (or the resume), INITIAL_DONE, then the
//! CHANGE batches of its queue until it ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arrow::array::Int64Array;
use arrow::record_batch::RecordBatch;
use quilldb_flight::{EventKind, LiveMessage};
use quilldb_storage::hot::{Change, Prior};
use quilldb_storage::keys::PartitionKey;
use tokio::sync::mpsc;

use super::changes;
use super::hub::{LiveEntry, LiveHub, SharedBatches, SharedKey};
use super::query::LiveQuery;
use crate::catalog::now_millis;
use crate::engine::Database;
use crate::error::{Error, Result};

/// The work of one subscription.
pub(super) struct Task {
    pub(super) db: Arc<Database>,
    pub(super) hub: Arc<LiveHub>,
    pub(super) q: Arc<LiveQuery>,
    /// What makes two subscriptions' CHANGE batches the same (see `LiveHub::change_batches`).
    pub(super) signature: Arc<str>,
    pub(super) schema: arrow::datatypes::SchemaRef,
    pub(super) entry: Arc<LiveEntry>,
    pub(super) tx: mpsc::Sender<LiveMessage>,
}

impl Task {
    pub(super) async fn run(self) {
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
                        .saturating_sub(self.hub.retention_seconds.saturating_mul(1000)),
                );
                let caught_up = if from < floor {
                    Ok(None)
                } else {
                    self.catch_up(from).await
                };
                match caught_up {
                    Ok(Some(started)) => Ok(started),
                    Ok(None) => {
                        let msg = LiveMessage::end(
                            EventKind::Error,
                            from as i64,
                            "resume_too_old",
                            "deletes that old are no longer kept (storage.deletion_retention_seconds; \
                             a table without a primary key keeps them until its next flush): \
                             subscribe again without from",
                        );
                        let _ = self.tx.send(msg).await;
                        return;
                    }
                    Err(e) => Err(e),
                }
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
            // The deletes of a table without a primary key carry an older `_seq` (the
            // version's): what was delivered is still every change up to the newest.
            let keyless = self.q.def.key().is_none();
            let newest = fresh
                .iter()
                .filter(|c| keyless && c.row.is_none())
                .map(|c| c.seq as i64)
                .max();
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
            if let Some(newest) = newest.filter(|_| !batches.is_empty()) {
                self.entry.last_seq.fetch_max(newest, Ordering::AcqRel);
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
        if let Some(found) = self.hub.shared_batches(&key) {
            return Ok(found);
        }
        let cold = self.cold_priors(changes).await;
        if let Some(found) = self.hub.shared_batches(&key) {
            return Ok(found);
        }
        let batches = batcher.batches(changes, &cold)?;
        self.hub.keep_batches(key, &self.schema, batches)
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
        let mut cache = self.hub.cold.lock().await;
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
        let read = self.db.read(def.clone(), partition.clone())?;
        let schema = self.q.rows_schema();
        read.cold_versions(versions)
            .await?
            .into_iter()
            .map(|(v, b)| {
                Ok((
                    v,
                    RecordBatch::try_new(schema.clone(), b.columns().to_vec())?,
                ))
            })
            .collect()
    }

    /// Ends the subscription with ERROR `internal`.
    async fn fail(&self, e: Error) {
        tracing::warn!(live_id = %self.entry.id, error = %e, "live query failed");
        let last = self.entry.last_seq.load(Ordering::Acquire);
        let msg = LiveMessage::end(EventKind::Error, last, "internal", e.to_string());
        let _ = self.tx.send(msg).await;
    }

    /// Sends one batch of rows; `false` once the client is gone.
    pub(super) async fn send_rows(&self, kind: EventKind, batch: RecordBatch) -> bool {
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
            .store(self.hub.clock(), Ordering::Relaxed);
        if kind == EventKind::Change {
            self.entry.rows_sent.fetch_add(rows, Ordering::Relaxed);
            self.db.metrics.live_rows.inc_by(rows);
        }
        true
    }
}
