//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// RocksDB properties reported as `quill_rocksdb{property=...}` (a fixed set).
const ROCKSDB_PROPERTIES: [(&str, &str); 5] = [
    ("estimated_keys", "rocksdb.estimate-num-keys"),
    ("sst_bytes", "rocksdb.total-sst-files-size"),
    ("memtable_bytes", "rocksdb.cur-size-all-mem-tables"),
    (
        "pending_compaction_bytes",
        "rocksdb.estimate-pending-compaction-bytes",
    ),
    ("block_cache_bytes", "rocksdb.block-cache-usage"),
];

const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    30.0,
];

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// Flight calls by method and gRPC status.
    pub requests: IntCounterVec,
    /// Flight call durations by method, to the end of the response stream.
    pub request_seconds: HistogramVec,
    /// Statements by kind and gRPC status.
    pub statements: IntCounterVec,
    /// Time from a statement's arrival to its answer (queries: to the plan).
    pub statement_seconds: Histogram,
    /// Rows sent by DoGet.
    pub rows_streamed: IntCounter,
    /// Queries answered by the primary-key point read, without planning.
    pub point_reads: IntCounter,
    /// Bytes of Arrow data sent by DoGet.
    pub bytes_streamed: IntCounter,
    /// Rows changed by DML.
    pub rows_written: IntCounter,
    /// Logged-in sessions.
    pub active_sessions: IntGauge,
    /// RocksDB figures of the hot store, read when `/metrics` is scraped.
    pub rocksdb: IntGaugeVec,
    /// Finished jobs by kind and status.
    pub jobs: IntCounterVec,
    /// Job durations by kind.
    pub job_seconds: HistogramVec,
    /// Rows written by jobs, by kind.
    pub job_rows: IntCounterVec,
    /// Bytes written (or freed) by jobs, by kind.
    pub job_bytes: IntCounterVec,
    /// Cold segments opened to read rows.
    pub segments_read: IntCounter,
    /// Cold segments skipped by statistics.
    pub segments_pruned: IntCounter,
    tables: IntGaugeVec,
    /// Open live-query subscriptions.
    pub live_subscriptions: IntGauge,
    /// Change rows sent to subscribers.
    pub live_rows: IntCounter,
    /// From a change's commit to its batch leaving for the subscriber.
    pub live_latency: Histogram,
    table_figures: parking_lot::Mutex<Option<TableFigures>>,
    store: parking_lot::Mutex<Option<std::sync::Weak<quilldb_storage::hot::HotStore>>>,
}

/// Reports `(table, unflushed rows, cold segments)` for every table.
pub type TableFigures = Box<dyn Fn() -> Vec<(String, i64, i64)> + Send + Sync>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("quill".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "flight_requests_total",
                "Flight calls by method and gRPC status",
            ),
            &["method", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "flight_request_duration_seconds",
                "Flight call latency, to the end of the response stream",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        let statements = IntCounterVec::new(
            Opts::new("statements_total", "Statements by kind and gRPC status"),
            &["kind", "status"],
        )?;
        let statement_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "statement_duration_seconds",
                "Statement latency (queries: to the plan)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let rows_streamed = IntCounter::new("rows_streamed_total", "Rows sent by DoGet")?;
        let point_reads = IntCounter::new(
            "point_reads_total",
            "Queries answered by the primary-key point read, without planning",
        )?;
        let bytes_streamed = IntCounter::new("bytes_streamed_total", "Arrow bytes sent by DoGet")?;
        let rows_written = IntCounter::new("rows_written_total", "Rows changed by DML")?;
        let active_sessions = IntGauge::new("active_sessions", "Logged-in sessions")?;
        let rocksdb = IntGaugeVec::new(
            Opts::new("rocksdb", "Hot store (RocksDB) figures by property"),
            &["property"],
        )?;
        let jobs = IntCounterVec::new(
            Opts::new("jobs_total", "Finished background jobs by kind and status"),
            &["kind", "status"],
        )?;
        let job_seconds = HistogramVec::new(
            HistogramOpts::new("job_duration_seconds", "Background job durations by kind").buckets(
                vec![
                    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            ),
            &["kind"],
        )?;
        let job_rows = IntCounterVec::new(
            Opts::new("job_rows_total", "Rows written by background jobs, by kind"),
            &["kind"],
        )?;
        let job_bytes = IntCounterVec::new(
            Opts::new(
                "job_bytes_total",
                "Bytes written (or freed) by background jobs, by kind",
            ),
            &["kind"],
        )?;
        let segments_read = IntCounter::new(
            "cold_segments_read_total",
            "Cold Parquet segments opened to read rows",
        )?;
        let segments_pruned = IntCounter::new(
            "cold_segments_pruned_total",
            "Cold Parquet segments skipped by key index or statistics",
        )?;
        let tables = IntGaugeVec::new(
            Opts::new(
                "table",
                "Per table (the 200 largest by segments): unflushed rows and cold segments",
            ),
            &["table", "figure"],
        )?;
        let live_subscriptions =
            IntGauge::new("live_subscriptions", "Open live-query subscriptions")?;
        let live_rows = IntCounter::new(
            "live_notifications_total",
            "Change rows sent to live-query subscribers",
        )?;
        let live_latency = Histogram::with_opts(
            HistogramOpts::new(
                "live_commit_to_send_seconds",
                "From a change's durable commit to its batch leaving for the subscriber",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(live_subscriptions.clone()))?;
        registry.register(Box::new(live_rows.clone()))?;
        registry.register(Box::new(live_latency.clone()))?;
        for m in [&jobs, &job_rows, &job_bytes] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(job_seconds.clone()))?;
        registry.register(Box::new(segments_read.clone()))?;
        registry.register(Box::new(segments_pruned.clone()))?;
        registry.register(Box::new(tables.clone()))?;
        registry.register(Box::new(rocksdb.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(statements.clone()))?;
        registry.register(Box::new(statement_seconds.clone()))?;
        registry.register(Box::new(rows_streamed.clone()))?;
        registry.register(Box::new(point_reads.clone()))?;
        registry.register(Box::new(bytes_streamed.clone()))?;
        registry.register(Box::new(rows_written.clone()))?;
        registry.register(Box::new(active_sessions.clone()))?;
        // The conventional build_info gauge: 1, with the version in labels.
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "The server's version and commit (always 1)"),
            &["version", "commit"],
        )?;
        build_info
            .with_label_values(&[crate::VERSION, crate::GIT_COMMIT])
            .set(1);
        registry.register(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            requests,
            request_seconds,
            statements,
            statement_seconds,
            rows_streamed,
            point_reads,
            bytes_streamed,
            rows_written,
            active_sessions,
            rocksdb,
            jobs,
            job_seconds,
            job_rows,
            job_bytes,
            segments_read,
            segments_pruned,
            tables,
            live_subscriptions,
            live_rows,
            live_latency,
            table_figures: parking_lot::Mutex::new(None),
            store: parking_lot::Mutex::new(None),
        })
    }

    /// Counts one finished job.
    pub fn observe_job(
        &self,
        kind: &str,
        status: &str,
        elapsed: std::time::Duration,
        rows: u64,
        bytes: u64,
    ) {
        self.jobs.with_label_values(&[kind, status]).inc();
        self.job_seconds
            .with_label_values(&[kind])
            .observe(elapsed.as_secs_f64());
        self.job_rows.with_label_values(&[kind]).inc_by(rows);
        self.job_bytes.with_label_values(&[kind]).inc_by(bytes);
    }

    /// Sets what reports the per-table figures at each scrape: `(table, unflushed rows, cold
    /// segments)`.
    pub fn watch_tables(&self, f: TableFigures) {
        *self.table_figures.lock() = Some(f);
    }

    /// Counts one finished Flight call.
    pub fn observe_call(&self, method: &str, code: tonic::Code, elapsed: std::time::Duration) {
        self.requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        self.request_seconds
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// Reports the figures of `store` at every scrape.
    pub fn watch_store(&self, store: &std::sync::Arc<quilldb_storage::hot::HotStore>) {
        *self.store.lock() = Some(std::sync::Arc::downgrade(store));
    }

    fn read_tables(&self) {
        let Some(figures) = self.table_figures.lock().as_ref().map(|f| f()) else {
            return;
        };
        let mut figures = figures;
        figures.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)));
        figures.truncate(200);
        self.tables.reset();
        for (table, unflushed, segments) in figures {
            self.tables
                .with_label_values(&[table.as_str(), "unflushed_rows"])
                .set(unflushed);
            self.tables
                .with_label_values(&[table.as_str(), "cold_segments"])
                .set(segments);
        }
    }

    fn read_store(&self) {
        let Some(store) = self.store.lock().as_ref().and_then(|w| w.upgrade()) else {
            return;
        };
        for (label, property) in ROCKSDB_PROPERTIES {
            if let Some(v) = store.property(property) {
                self.rocksdb
                    .with_label_values(&[label])
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        self.read_store();
        self.read_tables();
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Resident memory of this process in bytes (0 where unknown).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// Open file descriptors of this process (0 where unknown).
pub fn open_files() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}
