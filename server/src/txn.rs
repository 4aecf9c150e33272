//! Transactions: writes buffered per key until COMMIT, read back by the transaction's own
//! queries through an [`Overlay`], and committed as one hot-store batch that fails when another
//! commit changed one of the keys after the transaction began.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quilldb_storage::hot::{HotStore, Overlay, RowOp, WriteMode, WriteRequest};
use quilldb_storage::keys::PartitionKey;
use rand::RngCore;

use crate::error::{Error, Result};

/// How long a transaction without changes may stay idle.
const EMPTY_IDLE: Duration = Duration::from_secs(24 * 3600);

/// A key's pending change.
#[derive(Debug, Clone)]
struct Pending {
    partition: Arc<PartitionKey>,
    /// What COMMIT requires of the committed version.
    mode: WriteMode,
    /// Versions older than this have expired (STREAM TTL).
    live_from: u64,
    /// Provisional `_seq`: orders the pending rows and is what the transaction's reads see.
    seq: u64,
    row: Option<Vec<u8>>,
    /// `(table, key)` for error messages.
    label: (String, String),
}

#[derive(Debug, Default)]
struct State {
    /// `(partition bytes, pk bytes)` to the pending change.
    pending: BTreeMap<(Vec<u8>, Vec<u8>), Pending>,
    overlays: HashMap<Vec<u8>, Arc<Overlay>>,
    closed: bool,
}

/// One open transaction.
#[derive(Debug)]
pub struct Transaction {
    /// The handle the client sends back (Flight SQL `transaction_id`).
    pub id: Vec<u8>,
    /// The principal that began it.
    pub owner: String,
    /// The newest `_seq` committed when it began.
    pub snapshot: u64,
    state: Mutex<State>,
    last_used: Mutex<Instant>,
    /// Statements of one transaction run one at a time.
    pub statement_lock: tokio::sync::Mutex<()>,
}

impl Transaction {
    /// Whether the transaction can still take statements.
    pub fn is_open(&self) -> bool {
        !self.state.lock().closed
    }

    /// The pending versions of one partition, for the transaction's own reads.
    pub fn overlay(&self, partition: &PartitionKey) -> Option<Arc<Overlay>> {
        let mut st = self.state.lock();
        if let Some(o) = st.overlays.get(partition.as_bytes()) {
            return Some(o.clone());
        }
        let prefix = partition.as_bytes().to_vec();
        let rows: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)> = st
            .pending
            .range((prefix.clone(), Vec::new())..)
            .take_while(|((p, _), _)| *p == prefix)
            .map(|((_, pk), v)| (pk.clone(), (v.seq, v.row.clone())))
            .collect();
        if rows.is_empty() {
            return None;
        }
        let o = Arc::new(Overlay { rows });
        st.overlays.insert(prefix, o.clone());
        Some(o)
    }

    /// Buffers the row changes of one statement, all or none. `labels[i]` names op `i`'s
    /// table and key. Inserts are checked against the committed rows now, so a duplicate key
    /// fails the statement rather than the COMMIT.
    pub fn stage(
        &self,
        hot: &HotStore,
        ops: Vec<RowOp>,
        labels: &[(String, String)],
    ) -> Result<i64> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(Error::FailedPrecondition(
                "the transaction has ended (committed, rolled back, or expired while idle); \
                 begin a new one"
                    .into(),
            ));
        }
        if ops.iter().any(|op| op.mode.keyless()) {
            // Its pending rows would have no key to be read back and checked by.
            return Err(Error::Unsupported(
                "changing a table without a primary key inside a transaction".into(),
            ));
        }
        let mut staged: BTreeMap<(Vec<u8>, Vec<u8>), Option<Pending>> = BTreeMap::new();
        let mut applied = 0i64;
        for (i, op) in ops.into_iter().enumerate() {
            let label = labels.get(i).cloned().unwrap_or_default();
            let key = (op.partition.as_bytes().to_vec(), op.pk.clone());
            let before: Option<Pending> = match staged.get(&key) {
                Some(p) => p.clone(),
                None => st.pending.get(&key).cloned(),
            };
            let seq = hot.seq().next_id();
            let next = match before {
                Some(prev) => {
                    let live = prev.row.is_some();
                    match op.mode {
                        WriteMode::InsertNew if live => {
                            return Err(Error::AlreadyExists(format!(
                                "duplicate primary key {} in {}",
                                label.1, label.0
                            )));
                        }
                        WriteMode::InsertIgnore if live => continue,
                        _ => {}
                    }
                    if op.row.is_none() && !live {
                        continue;
                    }
                    if op.row.is_none() && prev.mode == WriteMode::InsertNew {
                        // Inserted and deleted in the same transaction: nothing to commit.
                        applied += 1;
                        staged.insert(key, None);
                        continue;
                    }
                    Pending {
                        mode: prev.mode,
                        seq,
                        row: op.row,
                        ..prev
                    }
                }
                None => {
                    let live = hot
                        .current(&op.partition, &op.pk)
                        .map_err(Error::from)?
                        .is_some_and(|(seq, live)| live && seq >= op.live_from);
                    let mode = match op.mode {
                        WriteMode::InsertNew | WriteMode::InsertIgnore if live => {
                            if op.mode == WriteMode::InsertIgnore {
                                continue;
                            }
                            return Err(Error::AlreadyExists(format!(
                                "duplicate primary key {} in {}",
                                label.1, label.0
                            )));
                        }
                        WriteMode::InsertIgnore => WriteMode::InsertNew,
                        m => m,
                    };
                    if op.row.is_none() && !live {
                        continue;
                    }
                    Pending {
                        partition: op.partition,
                        mode,
                        live_from: op.live_from,
                        seq,
                        row: op.row,
                        label,
                    }
                }
            };
            applied += 1;
            staged.insert(key, Some(next));
        }
        for (key, p) in staged {
            st.overlays.remove(&key.0);
            match p {
                Some(p) => st.pending.insert(key, p),
                None => st.pending.remove(&key),
            };
        }
        *self.last_used.lock() = Instant::now();
        Ok(applied)
    }

    /// Takes the buffered changes out, in the order they were made, and ends the transaction.
    fn close(&self) -> (Vec<RowOp>, Vec<(String, String)>) {
        let mut st = self.state.lock();
        st.closed = true;
        st.overlays.clear();
        let mut pending: Vec<(Vec<u8>, Pending)> = std::mem::take(&mut st.pending)
            .into_iter()
            .map(|((_, pk), p)| (pk, p))
            .collect();
        pending.sort_by_key(|(_, p)| p.seq);
        pending
            .into_iter()
            .map(|(pk, p)| {
                (
                    RowOp {
                        partition: p.partition,
                        pk,
                        row: p.row,
                        mode: p.mode,
                        live_from: p.live_from,
                    },
                    p.label,
                )
            })
            .unzip()
    }
}

/// The open transactions of the server.
#[derive(Debug)]
pub struct Transactions {
    open: Mutex<HashMap<Vec<u8>, Arc<Transaction>>>,
    idle: Duration,
    max_open: usize,
}

impl Transactions {
    /// Transactions idle longer than `idle` are rolled back.
    pub fn new(idle: Duration, max_open: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            idle,
            max_open,
        }
    }

    fn sweep(&self, open: &mut HashMap<Vec<u8>, Arc<Transaction>>) {
        let idle = self.idle;
        open.retain(|_, t| {
            // Drivers open the next transaction right after each COMMIT (ADBC with autocommit
            // off), so an idle connection holds an empty one: it costs nothing and is kept
            // for a day; one holding changes is rolled back after `idle`.
            let elapsed = t.last_used.lock().elapsed();
            let empty = t.state.lock().pending.is_empty();
            let keep = elapsed < idle || (empty && elapsed < EMPTY_IDLE);
            if !keep {
                let _ = t.close();
                tracing::info!(owner = %t.owner, "an idle transaction expired and was rolled back");
            }
            keep
        });
    }

    /// Begins a transaction for `owner`.
    pub fn begin(&self, hot: &HotStore, owner: &str) -> Result<Arc<Transaction>> {
        let mut open = self.open.lock();
        self.sweep(&mut open);
        if open.len() >= self.max_open {
            return Err(Error::ResourceExhausted(format!(
                "{} transactions are open; the limit is {}",
                open.len(),
                self.max_open
            )));
        }
        let mut id = vec![0u8; 16];
        rand::rng().fill_bytes(&mut id);
        let t = Arc::new(Transaction {
            id: id.clone(),
            owner: owner.to_string(),
            snapshot: hot.seq().last(),
            state: Mutex::new(State::default()),
            last_used: Mutex::new(Instant::now()),
            statement_lock: tokio::sync::Mutex::new(()),
        });
        open.insert(id, t.clone());
        Ok(t)
    }

    /// The open transaction `id` of `owner`.
    pub fn get(&self, owner: &str, id: &[u8]) -> Result<Arc<Transaction>> {
        let mut open = self.open.lock();
        self.sweep(&mut open);
        match open.get(id) {
            Some(t) if t.owner == owner => {
                *t.last_used.lock() = Instant::now();
                Ok(t.clone())
            }
            _ => Err(Error::NotFound(
                "no such transaction: it was committed, rolled back or expired".into(),
            )),
        }
    }

    fn remove(&self, t: &Transaction) {
        self.open.lock().remove(&t.id);
    }

    /// Rolls `t` back: its changes are dropped.
    pub fn rollback(&self, t: &Transaction) {
        self.remove(t);
        let _ = t.close();
    }

    /// Commits `t` in one hot-store batch; answers the number of row changes.
    pub async fn commit(&self, hot: &HotStore, t: &Transaction) -> Result<u64> {
        {
            let mut open = self.open.lock();
            self.sweep(&mut open);
            if open.remove(&t.id).is_none() {
                return Err(Error::FailedPrecondition(
                    "the transaction has ended: it expired while idle \
                     (limits.transaction_idle_seconds) or was rolled back; nothing was applied"
                        .into(),
                ));
            }
        }
        let (rows, labels) = t.close();
        if rows.is_empty() {
            return Ok(0);
        }
        match hot
            .write(WriteRequest {
                rows,
                snapshot: Some(t.snapshot),
                ..Default::default()
            })
            .await
        {
            Ok(outcome) => Ok(outcome.applied),
            Err(quilldb_storage::Error::Conflict) => Err(Error::Aborted(
                "the transaction was rolled back: another commit changed a row it wrote after \
                 it began; nothing was applied"
                    .into(),
            )),
            Err(quilldb_storage::Error::DuplicateKey { op }) => {
                let (table, key) = labels.get(op).cloned().unwrap_or_default();
                Err(Error::Aborted(format!(
                    "the transaction was rolled back: duplicate primary key {key} in {table}; \
                     nothing was applied"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}
