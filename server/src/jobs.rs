//! Background jobs: one framework for flush, compaction, stream eviction and clean-up.
//!
//! ```text
//!  STORAGE FLUSH / policy / DROP TABLE ─► submit ─► record (queued, persisted) ─► queue
//!                                                                               │
//!      workers (jobs.workers) ◄─────────────────────────────────────────────────┘
//!        running (persisted) ─► run::execute ─► completed | skipped | failed | cancelled
//! ```
//! Every job is a row of system.jobs, persisted under `jobs/<id>`: a job that was running when
//! the server died is marked failed at the next start and its work submitted again.

/// What each kind of job does.
mod export;
/// Job records.
pub mod record;
/// Running one job; the folder a partition's cold files live in.
pub(crate) mod run;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use quilldb_storage::hot::{HotStore, WriteRequest};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use record::{Job, JobKind, JobStatus};

use crate::catalog::{Catalog, Storages, TableDef, now_millis};
use crate::config::{JobsConfig, StorageConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Jobs waiting at most.
const QUEUE: usize = 4096;

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    tokens: HashMap<String, CancellationToken>,
}

/// The job manager.
pub struct Jobs {
    hot: Arc<HotStore>,
    catalog: Arc<Catalog>,
    storages: Arc<Storages>,
    metrics: Arc<Metrics>,
    config: JobsConfig,
    storage: StorageConfig,
    failpoint: Option<String>,
    state: Mutex<State>,
    changed: Notify,
    tx: mpsc::Sender<String>,
    rx: Mutex<Option<mpsc::Receiver<String>>>,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One lock per table: flushes, compactions and evictions share it, a move holds it alone,
    /// so no job writes a folder of the storage a table is leaving.
    table_locks: Mutex<HashMap<u64, Arc<tokio::sync::RwLock<()>>>>,
    /// How long a moved table's old copies stay after the switch: the longest a query planned
    /// before it may still read them (`limits.query_timeout_seconds`).
    pub(super) move_grace: std::time::Duration,
    /// Where EXPORT USER DATA writes its zips (`<data_dir>/exports`).
    pub(super) exports: std::path::PathBuf,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

/// What the jobs are configured with.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// `[jobs]`.
    pub config: JobsConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// How long a moved table's old copies stay (`limits.query_timeout_seconds`).
    pub move_grace: std::time::Duration,
    /// Where exports are written (`<data_dir>/exports`).
    pub exports: std::path::PathBuf,
}

impl Jobs {
    /// Loads the job records; nothing runs until [`Jobs::start`].
    pub fn load(
        hot: Arc<HotStore>,
        catalog: Arc<Catalog>,
        storages: Arc<Storages>,
        metrics: Arc<Metrics>,
        settings: JobSettings,
    ) -> Result<Arc<Self>> {
        let JobSettings {
            config,
            storage,
            move_grace,
            exports,
        } = settings;
        let mut state = State::default();
        for (_, v) in hot.scan_meta(record::PREFIX.as_bytes())? {
            let j = record::decode(&v)?;
            state.jobs.insert(j.id.clone(), j);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok(Arc::new(Self {
            hot,
            catalog,
            storages,
            metrics,
            config,
            storage,
            failpoint: std::env::var("QUILLDB_FAILPOINT")
                .ok()
                .filter(|s| !s.is_empty()),
            state: Mutex::new(state),
            changed: Notify::new(),
            tx,
            rx: Mutex::new(Some(rx)),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            table_locks: Mutex::new(HashMap::new()),
            move_grace,
            exports,
        }))
    }

    /// Recovers interrupted jobs and starts the workers, the flush policies and the retention
    /// clean-up.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        self.recover().await?;
        let rx = Arc::new(tokio::sync::Mutex::new(
            self.rx
                .lock()
                .take()
                .ok_or_else(|| Error::Internal("jobs started twice".into()))?,
        ));
        let mut tasks = Vec::new();
        for _ in 0..self.config.workers.max(1) {
            let jobs = self.clone();
            let rx = rx.clone();
            tasks.push(tokio::spawn(async move { jobs.worker(rx).await }));
        }
        let jobs = self.clone();
        tasks.push(tokio::spawn(async move { jobs.policies().await }));
        let jobs = self.clone();
        tasks.push(tokio::spawn(async move { jobs.retention().await }));
        self.tasks.lock().extend(tasks);
        Ok(())
    }

    async fn recover(&self) -> Result<()> {
        let interrupted: Vec<Job> = self
            .state
            .lock()
            .jobs
            .values()
            .filter(|j| !j.status.is_finished() || j.retry_at_start)
            .cloned()
            .collect();
        for mut j in interrupted {
            if j.retry_at_start {
                let retry = self.resubmit(&j).await?;
                j.retry_at_start = false;
                if let Some(id) = retry {
                    j.message = format!("{}; retried as {id}", j.message);
                }
                self.save(j).await?;
                continue;
            }
            if j.status == JobStatus::Queued {
                self.enqueue(&j.id)?;
                continue;
            }
            let retry = self.resubmit(&j).await;
            j.status = JobStatus::Failed;
            j.finished_at = Some(now_millis());
            j.message = match &retry {
                Ok(Some(id)) => {
                    format!("interrupted: the server stopped while it ran; retried as {id}")
                }
                Ok(None) => {
                    "interrupted: the server stopped while it ran; its table is gone".into()
                }
                Err(e) => {
                    format!("interrupted: the server stopped while it ran; retry failed: {e}")
                }
            };
            tracing::warn!(job = %j.id, message = %j.message, "job interrupted");
            self.save(j).await?;
        }
        // Tables with hot rows from before the restart: their flush interval starts now.
        for def in self.catalog.tables(None) {
            for p in self.hot.partitions(def.id)? {
                self.hot.pending().note_existing(&p, 0);
            }
        }
        Ok(())
    }

    async fn resubmit(&self, j: &Job) -> Result<Option<String>> {
        if j.kind == JobKind::Export {
            return match &j.user_id {
                Some(user) => self.submit_export(user).await.map(Some),
                None => Ok(None),
            };
        }
        if j.kind == JobKind::Move {
            // The same move again: it copies what is missing, or only tidies up if the
            // switch was made.
            return match (self.catalog.table_by_id(j.table_id), &j.target) {
                (Some(def), Some((to, from))) => self
                    .submit_move(&def, to.clone(), from.clone(), Some(&j.id))
                    .await
                    .map(Some),
                _ => Ok(None),
            };
        }
        if j.kind == JobKind::Cleanup {
            return self
                .submit_cleanup(
                    j.namespace.clone(),
                    j.table_name.clone(),
                    j.table_id,
                    j.target.clone(),
                )
                .await
                .map(Some);
        }
        match self.catalog.table_by_id(j.table_id) {
            Some(def) => self.submit(j.kind, &def).await.map(Some),
            None => Ok(None),
        }
    }

    /// Queues a job for a table; an identical job already queued is returned instead.
    pub async fn submit(&self, kind: JobKind, def: &TableDef) -> Result<String> {
        if let Some(id) = self
            .state
            .lock()
            .jobs
            .values()
            .find(|j| j.kind == kind && j.table_id == def.id && j.status == JobStatus::Queued)
            .map(|j| j.id.clone())
        {
            return Ok(id);
        }
        let job = self.new_job(kind, def.namespace.clone(), def.name.clone(), def.id, None);
        self.start_job(job).await
    }

    /// Queues the move of a table's cold files from storage `from` to `to`; `retrying` is the
    /// interrupted move this one takes over.
    pub async fn submit_move(
        &self,
        def: &TableDef,
        to: String,
        from: String,
        retrying: Option<&str>,
    ) -> Result<String> {
        if let Some(id) = self
            .state
            .lock()
            .jobs
            .values()
            .find(|j| {
                j.kind == JobKind::Move
                    && j.table_id == def.id
                    && !j.status.is_finished()
                    && Some(j.id.as_str()) != retrying
            })
            .map(|j| j.id.clone())
        {
            return Err(Error::FailedPrecondition(format!(
                "{} is being moved already by job {id}",
                def.qualified()
            )));
        }
        let job = self.new_job(
            JobKind::Move,
            def.namespace.clone(),
            def.name.clone(),
            def.id,
            Some((to, from)),
        );
        self.start_job(job).await
    }

    /// Queues EXPORT USER DATA of `user`.
    pub async fn submit_export(&self, user: &str) -> Result<String> {
        let mut job = self.new_job(JobKind::Export, String::new(), String::new(), 0, None);
        job.user_id = Some(user.to_string());
        self.start_job(job).await
    }

    /// The zip of a completed export job (it may have expired since).
    pub fn export_file(&self, id: &str) -> std::path::PathBuf {
        self.exports.join(format!("{id}.zip"))
    }

    /// Removes the export zips older than `jobs.export_retention_seconds`.
    fn expire_exports(&self) {
        let horizon =
            now_millis() - (self.config.export_retention_seconds as i64).saturating_mul(1000);
        let expired: Vec<String> = self
            .state
            .lock()
            .jobs
            .values()
            .filter(|j| j.kind == JobKind::Export && j.finished_at.is_some_and(|t| t < horizon))
            .map(|j| j.id.clone())
            .collect();
        for id in expired {
            let path = self.export_file(&id);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(job = %id, "export expired and removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(job = %id, error = %e, "removing an expired export"),
            }
        }
    }

    /// The lock of one table's jobs.
    pub(super) fn table_lock(&self, table_id: u64) -> Arc<tokio::sync::RwLock<()>> {
        self.table_locks.lock().entry(table_id).or_default().clone()
    }

    /// Queues the removal of a dropped table's files.
    pub async fn submit_cleanup(
        &self,
        namespace: String,
        table: String,
        table_id: u64,
        target: Option<(String, String)>,
    ) -> Result<String> {
        let job = self.new_job(JobKind::Cleanup, namespace, table, table_id, target);
        self.start_job(job).await
    }

    fn new_job(
        &self,
        kind: JobKind,
        namespace: String,
        table_name: String,
        table_id: u64,
        target: Option<(String, String)>,
    ) -> Job {
        let state = self.state.lock();
        let mut id = record::new_id(kind);
        while state.jobs.contains_key(&id) {
            id = record::new_id(kind);
        }
        Job {
            id,
            kind,
            status: JobStatus::Queued,
            namespace,
            table_name,
            table_id,
            user_id: None,
            rows: 0,
            bytes: 0,
            message: String::new(),
            created_at: now_millis(),
            started_at: None,
            finished_at: None,
            target,
            retry_at_start: false,
        }
    }

    async fn start_job(&self, job: Job) -> Result<String> {
        if self.stop.is_cancelled() {
            return Err(Error::FailedPrecondition(
                "the server is shutting down".into(),
            ));
        }
        let id = job.id.clone();
        self.save(job).await?;
        self.enqueue(&id)?;
        Ok(id)
    }

    fn enqueue(&self, id: &str) -> Result<()> {
        self.tx.try_send(id.to_string()).map_err(|_| {
            Error::ResourceExhausted(format!("{QUEUE} jobs are waiting already: try again later"))
        })
    }

    /// Persists a job and makes it the current version.
    async fn save(&self, job: Job) -> Result<()> {
        self.hot
            .write(WriteRequest {
                meta: vec![(record::key(&job.id), Some(record::encode(&job)))],
                ..Default::default()
            })
            .await?;
        self.state.lock().jobs.insert(job.id.clone(), job);
        self.changed.notify_waiters();
        Ok(())
    }

    /// One job.
    pub fn get(&self, id: &str) -> Option<Job> {
        self.state.lock().jobs.get(id).cloned()
    }

    /// Every job, newest first.
    pub fn list(&self) -> Vec<Job> {
        let mut v: Vec<Job> = self.state.lock().jobs.values().cloned().collect();
        v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        v
    }

    /// The running jobs.
    pub fn running(&self) -> Vec<Job> {
        self.list()
            .into_iter()
            .filter(|j| j.status == JobStatus::Running)
            .collect()
    }

    /// Waits until the job has finished (or `timeout` passed); returns its last state.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Option<Job> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let j = self.get(id)?;
            if j.status.is_finished() || tokio::time::Instant::now() >= deadline {
                return Some(j);
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// KILL JOB: a queued job is cancelled at once, a running one at its next step.
    pub async fn kill(&self, id: &str) -> Result<Job> {
        let Some(mut j) = self.get(id) else {
            return Err(Error::NotFound(format!("job {id} does not exist")));
        };
        match j.status {
            JobStatus::Queued => {
                j.status = JobStatus::Cancelled;
                j.finished_at = Some(now_millis());
                j.message = "cancelled before it started".into();
                self.save(j.clone()).await?;
                Ok(j)
            }
            JobStatus::Running => {
                if let Some(t) = self.state.lock().tokens.get(id) {
                    t.cancel();
                }
                Ok(self.wait(id, Duration::from_secs(30)).await.unwrap_or(j))
            }
            s => Err(Error::FailedPrecondition(format!(
                "job {id} has already finished ({s})"
            ))),
        }
    }

    /// Cancels the queued and running jobs of a table (DROP TABLE), waiting for running ones to
    /// stop.
    pub async fn cancel_table(&self, table_id: u64) {
        let ids: Vec<String> = self
            .state
            .lock()
            .jobs
            .values()
            .filter(|j| {
                j.table_id == table_id && !j.status.is_finished() && j.kind != JobKind::Cleanup
            })
            .map(|j| j.id.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.kill(&id).await {
                tracing::debug!(job = %id, error = %e, "cancelling a job of a dropped table");
            }
        }
    }

    /// Shutdown: no new jobs; waits up to `jobs.shutdown_wait_seconds` for the running ones,
    /// saying which; those still running after it are marked failed.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let wait = Duration::from_secs(self.config.shutdown_wait_seconds);
        let deadline = tokio::time::Instant::now() + wait;
        let mut logged = false;
        loop {
            let running = self.running();
            if running.is_empty() {
                break;
            }
            if !logged {
                let ids: Vec<String> = running
                    .iter()
                    .map(|j| format!("{} ({} {}.{})", j.id, j.kind, j.namespace, j.table_name))
                    .collect();
                tracing::info!(jobs = %ids.join(", "), "waiting up to {}s for running jobs", wait.as_secs());
                logged = true;
            }
            if tokio::time::Instant::now() >= deadline {
                self.fail_running("still running when the shutdown wait ended")
                    .await;
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), self.changed.notified()).await;
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Marks every running job failed (a second signal, or the shutdown wait ran out).
    pub async fn fail_running(&self, why: &str) {
        for mut j in self.running() {
            if let Some(t) = self.state.lock().tokens.get(&j.id) {
                t.cancel();
            }
            j.status = JobStatus::Failed;
            j.finished_at = Some(now_millis());
            j.message = format!("stopped: {why}");
            j.retry_at_start = true;
            tracing::warn!(job = %j.id, "{}", j.message);
            if let Err(e) = self.save(j).await {
                tracing::error!(error = %e, "saving a stopped job");
            }
        }
    }

    async fn worker(self: Arc<Self>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<String>>>) {
        loop {
            let id = {
                let mut rx = rx.lock().await;
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    id = rx.recv() => match id {
                        Some(id) => id,
                        None => return,
                    },
                }
            };
            if let Err(e) = self.run_job(&id).await {
                tracing::error!(job = %id, error = %e, "job bookkeeping failed");
            }
        }
    }

    async fn run_job(&self, id: &str) -> Result<()> {
        let Some(mut job) = self.get(id) else {
            return Ok(());
        };
        if job.status != JobStatus::Queued {
            return Ok(());
        }
        let token = CancellationToken::new();
        self.state
            .lock()
            .tokens
            .insert(id.to_string(), token.clone());
        job.status = JobStatus::Running;
        job.started_at = Some(now_millis());
        self.save(job.clone()).await?;
        tracing::info!(job = %job.id, kind = %job.kind, table = %format!("{}.{}", job.namespace, job.table_name), "job started");
        let started = std::time::Instant::now();
        let result = run::execute(self, &job, &token).await;
        self.state.lock().tokens.remove(id);
        // A second signal or the end of the shutdown wait may have marked it already.
        if self.get(id).is_some_and(|j| j.status != JobStatus::Running) {
            return Ok(());
        }
        match result {
            Ok(Some(done)) => {
                job.status = JobStatus::Completed;
                job.rows = done.rows;
                job.bytes = done.bytes;
                job.message = done.message;
                if done.compact_due
                    && let Some(def) = self.catalog.table_by_id(job.table_id)
                {
                    match self.submit(JobKind::Compact, &def).await {
                        Ok(id) => {
                            job.message = format!("{}; compaction queued as {id}", job.message)
                        }
                        Err(e) => {
                            tracing::warn!(table = %def.qualified(), error = %e, "cannot queue a compaction")
                        }
                    }
                }
            }
            Ok(None) => {
                job.status = JobStatus::Skipped;
                job.message = "nothing to do".into();
            }
            Err(Error::Cancelled(_)) => {
                job.status = JobStatus::Cancelled;
                job.message = "cancelled".into();
            }
            Err(e) => {
                job.status = JobStatus::Failed;
                job.message = e.to_string();
            }
        }
        job.finished_at = Some(now_millis());
        self.metrics.observe_job(
            &job.kind.to_string(),
            &job.status.to_string(),
            started.elapsed(),
            job.rows,
            job.bytes,
        );
        tracing::info!(job = %job.id, status = %job.status, rows = job.rows, bytes = job.bytes, message = %job.message, "job finished");
        self.save(job).await
    }

    /// Submits flushes whose table's FLUSH_POLICY is due, and evictions of STREAM tables with
    /// a whole expired time bucket.
    async fn policies(self: Arc<Self>) {
        let every = Duration::from_millis(self.config.policy_check_ms.max(10));
        let mut evictions_checked: HashMap<u64, std::time::Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            self.evictions(&mut evictions_checked).await;
            let mut due: HashMap<u64, Arc<TableDef>> = HashMap::new();
            for (partition, w) in self.hot.pending().snapshot() {
                let Some(id) = partition
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                else {
                    continue;
                };
                let Some(def) = self.catalog.table_by_id(id) else {
                    self.hot.pending().forget_table(&id.to_be_bytes());
                    continue;
                };
                if def.table_type == crate::catalog::TableType::Stream {
                    continue;
                }
                let p = def.flush_policy;
                let by_rows = p.rows.is_some_and(|r| w.rows >= r);
                let by_time = p
                    .interval_secs
                    .is_some_and(|s| w.since.elapsed() >= Duration::from_secs(s));
                if by_rows || by_time {
                    due.insert(id, def);
                }
            }
            for def in due.into_values() {
                let busy = self.state.lock().jobs.values().any(|j| {
                    j.table_id == def.id && j.kind == JobKind::Flush && !j.status.is_finished()
                });
                if busy {
                    continue;
                }
                match self.submit(JobKind::Flush, &def).await {
                    Ok(id) => {
                        tracing::debug!(job = %id, table = %def.qualified(), "flush policy due")
                    }
                    Err(e) => {
                        tracing::warn!(table = %def.qualified(), error = %e, "cannot queue a flush")
                    }
                }
            }
        }
    }

    /// Submits a `stream_eviction` job for each STREAM table holding a user partition whose
    /// oldest version lies in an expired bucket; each table is looked at once per bucket width.
    async fn evictions(&self, checked: &mut HashMap<u64, std::time::Instant>) {
        let streams: Vec<Arc<TableDef>> = self
            .catalog
            .tables(None)
            .into_iter()
            .filter(|t| t.table_type == crate::catalog::TableType::Stream)
            .collect();
        checked.retain(|id, _| streams.iter().any(|t| t.id == *id));
        for def in streams {
            let (Some(bucket), Some(before)) = (def.stream_bucket_ms(), def.evict_before()) else {
                continue;
            };
            if checked
                .get(&def.id)
                .is_some_and(|at| at.elapsed() < Duration::from_millis(bucket))
            {
                continue;
            }
            checked.insert(def.id, std::time::Instant::now());
            let busy = self.state.lock().jobs.values().any(|j| {
                j.table_id == def.id && j.kind == JobKind::StreamEviction && !j.status.is_finished()
            });
            let expired = match self.hot.partitions_oldest(def.id) {
                Ok(parts) => parts.iter().any(|(_, oldest)| *oldest < before),
                Err(e) => {
                    tracing::warn!(table = %def.qualified(), error = %e, "cannot list partitions");
                    false
                }
            };
            if busy || !expired {
                continue;
            }
            if let Err(e) = self.submit(JobKind::StreamEviction, &def).await {
                tracing::warn!(table = %def.qualified(), error = %e, "cannot queue an eviction");
            }
        }
    }

    /// Forgets finished jobs older than `jobs.retention_seconds`.
    async fn retention(self: Arc<Self>) {
        loop {
            self.expire_exports();
            let horizon =
                now_millis() - (self.config.retention_seconds as i64).saturating_mul(1000);
            let old: Vec<String> = self
                .state
                .lock()
                .jobs
                .values()
                .filter(|j| {
                    j.status.is_finished() && j.finished_at.unwrap_or(j.created_at) < horizon
                })
                .map(|j| j.id.clone())
                .collect();
            if !old.is_empty() {
                let req = WriteRequest {
                    meta: old.iter().map(|id| (record::key(id), None)).collect(),
                    ..Default::default()
                };
                match self.hot.write(req).await {
                    Ok(_) => {
                        let mut state = self.state.lock();
                        for id in &old {
                            state.jobs.remove(id);
                        }
                        tracing::info!(
                            jobs = old.len(),
                            "finished jobs past their retention removed"
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "removing old jobs"),
                }
            }
            // Looks twice per retention period, at most once a minute.
            let shortest = self
                .config
                .retention_seconds
                .min(self.config.export_retention_seconds);
            let every = Duration::from_secs((shortest / 2).clamp(1, 60));
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
