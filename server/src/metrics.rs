//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// Flight calls by call and gRPC status.
    pub requests: IntCounterVec,
    /// Time from a statement's arrival to its answer (queries: to the plan).
    pub statement_seconds: Histogram,
    /// Rows sent by DoGet.
    pub rows_streamed: IntCounter,
    /// Bytes of Arrow data sent by DoGet.
    pub bytes_streamed: IntCounter,
    /// Rows changed by DML.
    pub rows_written: IntCounter,
    /// Logged-in sessions.
    pub active_sessions: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("quilldb".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "flight_requests_total",
                "Flight SQL calls by call and status",
            ),
            &["call", "status"],
        )?;
        let statement_seconds = Histogram::with_opts(
            HistogramOpts::new("statement_duration_seconds", "Statement latency").buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 5.0,
            ]),
        )?;
        let rows_streamed = IntCounter::new("rows_streamed_total", "Rows sent by DoGet")?;
        let bytes_streamed = IntCounter::new("bytes_streamed_total", "Arrow bytes sent by DoGet")?;
        let rows_written = IntCounter::new("rows_written_total", "Rows changed by DML")?;
        let active_sessions = IntGauge::new("active_sessions", "Logged-in sessions")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(statement_seconds.clone()))?;
        registry.register(Box::new(rows_streamed.clone()))?;
        registry.register(Box::new(bytes_streamed.clone()))?;
        registry.register(Box::new(rows_written.clone()))?;
        registry.register(Box::new(active_sessions.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            requests,
            statement_seconds,
            rows_streamed,
            bytes_streamed,
            rows_written,
            active_sessions,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
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
