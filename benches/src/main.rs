//! `quilldb-bench`: end-to-end figures over Flight SQL against a real server.
//!
//! Starts the `quilldb` binary (`QUILLDB_BIN`, else the one beside this tool) on port 0 in a
//! temp dir and measures single-row inserts (prepared and unprepared), 100-row INSERT
//! statements, 10 parallel clients, bulk loads through prepared parameters and through
//! CommandStatementIngest, a full DoGet scan and primary-key point lookups; then cold storage:
//! flush throughput, the same full scan hot and cold, and point lookups on a 1-segment table
//! against a 100-segment table. Prints one table and writes the same figures
//! to `benches/results/latest-<durability>.json` and a timestamped copy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Analytics against DataFusion in-process on the same files.
mod analytics;
/// The cost of one small call.
mod calls;
/// TPC-H beside DataFusion and DuckDB.
mod tpch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use quilldb_flight::client::LiveStream;
use quilldb_tests::{Client, TestServer, metric};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// Rows inserted one parameterized statement at a time by one client.
    #[arg(long, default_value_t = 5_000)]
    single_rows: usize,
    /// 100-row INSERT statements.
    #[arg(long, default_value_t = 500)]
    batch_statements: usize,
    /// Single-row inserts per parallel client (10 clients).
    #[arg(long, default_value_t = 1_000)]
    parallel_rows: usize,
    /// Rows in the scanned table.
    #[arg(long, default_value_t = 1_000_000)]
    scan_rows: usize,
    /// Rows bulk-ingested through CommandStatementIngest in one call.
    #[arg(long, default_value_t = 1_000_000)]
    ingest_rows: usize,
    /// Calls of each kind in the `calls` part.
    #[arg(long, default_value_t = 2_000)]
    calls: usize,
    /// In the `calls` part, only the calls whose name contains this (to profile one).
    #[arg(long)]
    call: Option<String>,
    /// Rows in the analytics part's table.
    #[arg(long, default_value_t = 1_000_000)]
    analytics_rows: usize,
    /// Point lookups.
    #[arg(long, default_value_t = 2_000)]
    lookups: usize,
    /// `sync` (the default and the figure that counts) or `async`.
    #[arg(long, default_value = "sync")]
    durability: String,
    /// Users in the USER-table part.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Run one part only: calls, single, batched, parallel, ingest, scan, cold, s3, analytics, auth,
    /// users or live; or `tpch` (only run when asked: it loads and queries TPC-H at `--tpch-sf`).
    #[arg(long)]
    only: Option<String>,
    /// TPC-H scale factor (1 by default; 10 as an option).
    #[arg(long, default_value = "1")]
    tpch_sf: String,
    /// Timed runs of each TPC-H query per engine (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    tpch_rounds: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "benches/results")]
    out: std::path::PathBuf,
}

struct Row {
    test: &'static str,
    rows: usize,
    seconds: f64,
    rate: String,
    extra: serde_json::Value,
}

impl Row {
    /// A row of lookup latencies: p50 and p99 in milliseconds.
    fn latency(test: &'static str, rows: usize, seconds: f64, p50: f64, p99: f64) -> Self {
        Self {
            test,
            rows,
            seconds,
            rate: format!("p50 {p50:.3} ms, p99 {p99:.3} ms"),
            extra: json!({ "p50_ms": p50, "p99_ms": p99 }),
        }
    }

    /// A row whose rate is rows per second.
    fn throughput(
        test: &'static str,
        rows: usize,
        time: Duration,
        extra: serde_json::Value,
    ) -> Self {
        let seconds = time.as_secs_f64();
        Self {
            test,
            rows,
            seconds,
            rate: format!("{:.0} rows/s", rows as f64 / seconds),
            extra,
        }
    }
}

fn schema4() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("$1", DataType::Int64, false),
        Field::new("$2", DataType::Utf8, false),
        Field::new("$3", DataType::Float64, false),
        Field::new("$4", DataType::Int64, false),
    ]))
}

fn params(ids: std::ops::Range<i64>) -> RecordBatch {
    let n = ids.clone().count();
    RecordBatch::try_new(
        schema4(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(StringArray::from_iter_values(
                ids.clone().map(|i| format!("user-{i}")),
            )),
            Arc::new(Float64Array::from_iter_values(
                ids.clone().map(|i| i as f64 * 0.5),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64 % 97))),
        ],
    )
    .unwrap()
}

async fn create(c: &mut Client, table: &str) {
    c.ok(&format!(
        "CREATE TABLE bench.{table} (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, bucket BIGINT) \
         WITH (FLUSH_POLICY = 'interval:86400')"
    ))
    .await;
}

/// Creates a prepared statement; answers its handle.
async fn prepare(c: &mut Client, sql: String) -> bytes::Bytes {
    calls::Raw::of(c).prepare(&sql).await
}

/// Runs a prepared update once per row of `params`, in one DoPut that carries the parameters
/// (as the ADBC driver does; arrow-rs's `PreparedStatement` spends a second call binding).
async fn prepared_update(c: &mut Client, handle: &bytes::Bytes, params: RecordBatch) -> i64 {
    calls::Raw::of(c).prepared_update(handle, params).await
}

async fn single_inserts(c: &mut Client, table: &str, ids: std::ops::Range<i64>) -> Duration {
    let mut raw = calls::Raw::of(c);
    let handle = raw
        .prepare(&format!(
            "INSERT INTO bench.{table} (id, name, score, bucket) VALUES ($1, $2, $3, $4)"
        ))
        .await;
    let start = Instant::now();
    for id in ids {
        let n = raw.prepared_update(&handle, params(id..id + 1)).await;
        assert_eq!(n, 1);
    }
    start.elapsed()
}

/// Loads `rows` rows into `bench.<table>` with one CommandStatementIngest call.
async fn ingest(c: &mut Client, table: &str, rows: usize) {
    let batches: Vec<RecordBatch> = (0..rows)
        .step_by(65_536)
        .map(|from| {
            let to = (from + 65_536).min(rows);
            let p = params(from as i64..to as i64);
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("score", DataType::Float64, false),
                Field::new("bucket", DataType::Int64, false),
            ]));
            RecordBatch::try_new(schema, p.columns().to_vec()).unwrap()
        })
        .collect();
    let cmd = arrow_flight::sql::CommandStatementIngest {
        table_definition_options: Some(arrow_flight::sql::TableDefinitionOptions {
            if_not_exist: 2,
            if_exists: 2,
        }),
        table: table.into(),
        schema: Some("bench".into()),
        ..Default::default()
    };
    let n = c
        .inner
        .execute_ingest(cmd, futures::stream::iter(batches.into_iter().map(Ok)))
        .await
        .unwrap();
    assert_eq!(n as usize, rows);
}

/// The best of three `SELECT *` scans through DoGet: seconds and Arrow bytes received.
async fn best_scan(server: &TestServer, c: &mut Client, table: &str, rows: usize) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut best_bytes = 0usize;
    for _ in 0..3 {
        let info = c
            .inner
            .execute(format!("SELECT * FROM {table}"), None)
            .await
            .unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut raw = server.raw_client().await;
        let token = c.inner.token().cloned().unwrap();
        let mut req = tonic::Request::new(ticket);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let start = Instant::now();
        let stream = raw.do_get(req).await.unwrap().into_inner();
        let bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = bytes.clone();
        let data = stream
            .inspect(move |m| {
                if let Ok(m) = m {
                    counter.fetch_add(
                        m.data_body.len() + m.data_header.len(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            })
            .map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
            .try_collect()
            .await
            .unwrap();
        let t = start.elapsed().as_secs_f64();
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, rows);
        if t < best {
            best = t;
            best_bytes = bytes.load(std::sync::atomic::Ordering::Relaxed);
        }
    }
    (best, best_bytes)
}

fn scan_row(test: &'static str, rows: usize, seconds: f64, bytes: usize) -> Row {
    let mbps = bytes as f64 / seconds / 1e6;
    Row {
        test,
        rows,
        seconds,
        rate: format!("{:.0} rows/s, {:.0} MB/s", rows as f64 / seconds, mbps),
        extra: json!({ "bytes": bytes, "mb_per_s": mbps }),
    }
}

/// `count` primary-key lookups spread over `0..max_id`: total seconds, p50 and p99 in ms.
async fn lookups(c: &mut Client, table: &str, count: usize, max_id: usize) -> (f64, f64, f64) {
    let mut lat = Vec::with_capacity(count);
    let start = Instant::now();
    for i in 0..count {
        let id = (i * 7919) % max_id;
        let t0 = Instant::now();
        let b = c
            .rows(&format!("SELECT * FROM {table} WHERE id = {id}"))
            .await;
        lat.push(t0.elapsed());
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    }
    let total = start.elapsed().as_secs_f64();
    lat.sort();
    (total, percentile(&lat, 0.5), percentile(&lat, 0.99))
}

/// Median latencies in ms of `queries` run by each client in turn, in `rounds` interleaved
/// rounds so that the machine's noise falls on every client alike.
async fn interleaved(clients: &mut [Client], queries: &[String], rounds: usize) -> Vec<f64> {
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); clients.len()];
    for _ in 0..rounds {
        for (i, c) in clients.iter_mut().enumerate() {
            for q in queries {
                let t0 = Instant::now();
                let b = c.rows(q).await;
                lat[i].push(t0.elapsed());
                assert!(!b.is_empty());
            }
        }
    }
    lat.iter_mut()
        .map(|l| {
            l.sort();
            percentile(l, 0.5)
        })
        .collect()
}

/// Reads CHANGE rows of `live` until `want` rows came; each row's `id` names the moment its
/// write was sent (`sent`), and its latency is pushed to the answer.
async fn receive(
    mut live: LiveStream,
    want: usize,
    sent: Arc<parking_lot::Mutex<std::collections::HashMap<i64, Instant>>>,
) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(want.min(100_000));
    let mut got = 0;
    while got < want {
        let Some((event, batch)) = live.next_within(Duration::from_secs(60)).await.unwrap() else {
            panic!("a subscriber waited 60 s: {got} of {want} rows");
        };
        assert!(event.kind != 4 && event.kind != 5, "ended: {event:?}");
        let Some(b) = batch.filter(|_| event.kind == 3) else {
            continue;
        };
        let now = Instant::now();
        let ids = b.column_by_name("id").unwrap();
        let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
        if let Some(at) = ids
            .iter()
            .flatten()
            .last()
            .and_then(|id| sent.lock().get(&id).copied())
        {
            lat.push(now.duration_since(at));
        }
        got += b.num_rows();
    }
    lat
}

/// Writes `events` rows into `table`, one statement every 2 ms, each noting when it was sent;
/// answers the subscribers' latencies, sorted, and the seconds it all took.
async fn timed_events(
    c: &mut Client,
    table: &str,
    events: usize,
    next_id: &mut i64,
    sent: &Arc<parking_lot::Mutex<std::collections::HashMap<i64, Instant>>>,
    receivers: Vec<tokio::task::JoinHandle<Vec<Duration>>>,
) -> (Vec<Duration>, f64) {
    let start = Instant::now();
    for _ in 0..events {
        let id = *next_id;
        *next_id += 1;
        sent.lock().insert(id, Instant::now());
        c.ok(&format!("INSERT INTO {table} VALUES ({id}, 'event {id}')"))
            .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut lat = Vec::new();
    for t in receivers {
        lat.extend(t.await.unwrap());
    }
    lat.sort();
    (lat, start.elapsed().as_secs_f64())
}

/// Opens `n` subscriptions to `sql` (as `token`), `per_channel` to a connection; waits until
/// each has sent its snapshot.
async fn subscribers(
    server: &TestServer,
    tokens: &[String],
    n: usize,
    sql: &str,
) -> Vec<LiveStream> {
    let mut out = Vec::with_capacity(n);
    let mut channel = server.channel().await;
    for i in 0..n {
        if i % 100 == 0 {
            channel = server.channel().await;
        }
        let token = &tokens[i % tokens.len()];
        let mut live = quilldb_flight::client::subscribe(channel.clone(), Some(token), sql, None)
            .await
            .unwrap();
        loop {
            let (event, _) = live
                .next_within(Duration::from_secs(10))
                .await
                .unwrap()
                .expect("a message within 10 s");
            if event.kind == 2 {
                break;
            }
        }
        out.push(live);
    }
    out
}

/// CPU seconds process `pid` (`self`: this client) has used, from /proc (0 elsewhere).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The cumulative buckets `(le, count)` of the server's commit-to-send histogram.
fn send_buckets(server: &TestServer) -> Vec<(f64, u64)> {
    let (_, text) = quilldb_tests::http_get(&server.http_url, "/metrics");
    text.lines()
        .filter_map(|l| l.strip_prefix("quill_live_commit_to_send_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bucket bound (ms) below which a fraction `p` of the server's commit-to-send times
/// fell between two snapshots of the histogram.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> f64 {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before.iter().find(|(b, _)| b == le).map_or(0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = counts.last().map_or(0, |(_, n)| *n);
    let want = (total as f64 * p).ceil() as u64;
    counts
        .iter()
        .find(|(_, n)| *n >= want)
        .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let server =
        // Automatic compaction would merge the 100-segment table the lookups compare.
        TestServer::start_with(&[
            ("QUILLDB_STORAGE__DURABILITY", args.durability.as_str()),
            ("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "0"),
            // The live part opens 1,000 subscriptions as root and reads 100,000 rows per
            // subscriber as fast as this client decodes them.
            ("QUILLDB_LIVE__MAX_PER_USER", "100000"),
            ("QUILLDB_LIVE__BUFFER_ROWS", "1000000"),
        ])
        .await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE bench").await;
    let mut rows: Vec<Row> = Vec::new();

    let want = |part: &str| args.only.as_deref().is_none_or(|o| o == part);

    // 0. What one small call costs the server, in the raw and the ADBC driver's pattern.
    if want("calls") {
        let token = c.inner.token().cloned().unwrap();
        rows.extend(calls::run(&server, &token, args.calls, args.call.as_deref()).await);
    }

    // 1. Single-row parameterized inserts, one client, then the same unprepared.
    if want("single") {
        create(&mut c, "single").await;
        let n = args.single_rows;
        let t = single_inserts(&mut c, "single", 0..n as i64).await;
        rows.push(Row::throughput(
            "Single-row inserts (param)",
            n,
            t,
            json!({}),
        ));

        // 1b. The same inserts unprepared: one literal INSERT statement per row.
        create(&mut c, "unprepared").await;
        let start = Instant::now();
        for id in 0..n {
            let sql = format!(
                "INSERT INTO bench.unprepared (id, name, score, bucket) VALUES ({id}, 'user-{id}', {}, {})",
                id as f64 * 0.5,
                id % 97
            );
            assert_eq!(c.inner.execute_update(sql, None).await.unwrap(), 1);
        }
        let tu = start.elapsed();
        rows.push(Row {
            test: "Single-row inserts (unprepared)",
            rows: n,
            seconds: tu.as_secs_f64(),
            rate: format!("{:.0} rows/s", n as f64 / tu.as_secs_f64()),
            extra: json!({ "prepared_speedup": tu.as_secs_f64() / t.as_secs_f64() }),
        });
    }

    // 2. 100-row INSERT statements.
    if want("batched") {
        create(&mut c, "batched").await;
        let start = Instant::now();
        for s in 0..args.batch_statements {
            let mut sql =
                String::from("INSERT INTO bench.batched (id, name, score, bucket) VALUES ");
            for r in 0..100 {
                let id = s * 100 + r;
                if r > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("({id}, 'user-{id}', {}.5, {})", id, id % 97));
            }
            assert_eq!(c.inner.execute_update(sql, None).await.unwrap(), 100);
        }
        let t = start.elapsed();
        let n = args.batch_statements * 100;
        rows.push(Row::throughput("Batched (100/statement)", n, t, json!({})));
    }

    // 3. Ten parallel clients, single-row parameterized inserts.
    if want("parallel") {
        create(&mut c, "parallel").await;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..10i64 {
            let mut wc = server.client().await;
            let per = args.parallel_rows as i64;
            tasks.push(tokio::spawn(async move {
                single_inserts(&mut wc, "parallel", w * per..(w + 1) * per).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let t = start.elapsed();
        let n = args.parallel_rows * 10;
        rows.push(Row::throughput("Parallel (10 clients)", n, t, json!({})));
    }

    // 4. Bulk load through prepared parameters, full scan through DoGet, point lookups.
    if want("scan") {
        create(&mut c, "scan").await;
        let load = prepare(
            &mut c,
            "INSERT INTO bench.scan (id, name, score, bucket) VALUES ($1, $2, $3, $4)".into(),
        )
        .await;
        let load_start = Instant::now();
        let chunk = 50_000;
        let mut done = 0;
        while done < args.scan_rows {
            let end = (done + chunk).min(args.scan_rows);
            prepared_update(&mut c, &load, params(done as i64..end as i64)).await;
            done = end;
        }
        let load_t = load_start.elapsed();
        rows.push(Row::throughput(
            "Bulk load (50k params/call)",
            args.scan_rows,
            load_t,
            json!({}),
        ));
    }

    // 4b. Bulk ingest: one CommandStatementIngest call, batches of 64Ki rows.
    if want("ingest") {
        create(&mut c, "ingest").await;
        let start = Instant::now();
        ingest(&mut c, "ingest", args.ingest_rows).await;
        let t = start.elapsed();
        // The server logs how the call's time divides between receiving and committing.
        if let Some(line) = server.log().lines().rev().find(|l| l.contains(" ingest ")) {
            println!(
                "server: {}",
                line.split("ingest").last().unwrap_or_default().trim()
            );
        }
        rows.push(Row::throughput(
            "Bulk ingest (1 call)",
            args.ingest_rows,
            t,
            json!({}),
        ));
    }

    if want("scan") {
        let (scan_best, scan_bytes) =
            best_scan(&server, &mut c, "bench.scan", args.scan_rows).await;
        rows.push(scan_row(
            "Full scan via DoGet (best of 3)",
            args.scan_rows,
            scan_best,
            scan_bytes,
        ));
        let (total, p50, p99) = lookups(&mut c, "bench.scan", args.lookups, args.scan_rows).await;
        rows.push(Row::latency(
            "PK point lookups",
            args.lookups,
            total,
            p50,
            p99,
        ));
    }

    // 6. Cold storage: flush throughput, the same full scan hot and cold, and point lookups
    //    on a 1-segment table against a 100-segment table.
    if want("cold") {
        let n = args.scan_rows;
        create(&mut c, "cold").await;
        ingest(&mut c, "cold", n).await;
        let (hot_scan, hot_bytes) = best_scan(&server, &mut c, "bench.cold", n).await;
        rows.push(scan_row(
            "Hot full scan (best of 3)",
            n,
            hot_scan,
            hot_bytes,
        ));
        let start = Instant::now();
        let job = c.flush_job("bench.cold").await;
        let (status, message) = c.wait_job(&job).await;
        assert_eq!(status, "completed", "{message}");
        let flush_t = start.elapsed();
        rows.push(Row::throughput(
            "Flush to Parquet",
            n,
            flush_t,
            json!({ "job": message }),
        ));
        let (cold_scan, cold_bytes) = best_scan(&server, &mut c, "bench.cold", n).await;
        let mut row = scan_row("Cold full scan (best of 3)", n, cold_scan, cold_bytes);
        row.extra["cold_over_hot_time"] = json!(cold_scan / hot_scan);
        rows.push(row);
        let (total, p50_1, p99_1) = lookups(&mut c, "bench.cold", args.lookups, n).await;
        rows.push(Row::latency(
            "Lookups, 1 segment",
            args.lookups,
            total,
            p50_1,
            p99_1,
        ));
        create(&mut c, "seg100").await;
        let per = n / 100;
        let load = prepare(
            &mut c,
            "INSERT INTO bench.seg100 (id, name, score, bucket) VALUES ($1, $2, $3, $4)".into(),
        )
        .await;
        for s in 0..100 {
            prepared_update(
                &mut c,
                &load,
                params((s * per) as i64..((s + 1) * per) as i64),
            )
            .await;
            c.flush("bench.seg100").await;
        }
        let (total, p50, p99) = lookups(&mut c, "bench.seg100", args.lookups, per * 100).await;
        let mut row = Row::latency("Lookups, 100 segments", args.lookups, total, p50, p99);
        row.extra["p50_over_1_segment"] = json!(p50 / p50_1);
        rows.push(row);
    }

    // 6a. The same cold figures with the files on the test S3 server (s3s-fs on loopback)
    //     beside local disk, in one run: flush, full scan, 1-segment lookups.
    if want("s3") {
        let n = args.scan_rows;
        let s3 = quilldb_tests::s3::S3Server::shared();
        c.ok(&s3.create_storage_sql("bench")).await;
        for (table, on) in [("cold_disk", "disk"), ("cold_s3", "s3")] {
            c.ok(&format!(
                "CREATE TABLE bench.{table} (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, \
                 bucket BIGINT) WITH (FLUSH_POLICY = 'interval:86400', STORAGE_ID = '{}')",
                if on == "s3" {
                    quilldb_tests::s3::STORAGE
                } else {
                    "local"
                }
            ))
            .await;
            ingest(&mut c, table, n).await;
        }
        let mut figures = Vec::new();
        for (table, on) in [("cold_disk", "disk"), ("cold_s3", "s3")] {
            let name = format!("bench.{table}");
            let start = Instant::now();
            let job = c.flush_job(&name).await;
            let (status, message) = c.wait_job(&job).await;
            assert_eq!(status, "completed", "{message}");
            let flush_t = start.elapsed();
            let (scan, bytes) = best_scan(&server, &mut c, &name, n).await;
            let (total, p50, p99) = lookups(&mut c, &name, args.lookups, n).await;
            figures.push((on, flush_t, scan, bytes, total, p50, p99));
        }
        let disk = figures[0];
        for (on, flush_t, scan, bytes, total, p50, p99) in figures {
            let (flush_name, scan_name, lookup_name) = if on == "s3" {
                (
                    "Flush to Parquet (S3)",
                    "Cold full scan (S3, best of 3)",
                    "Lookups, 1 segment (S3)",
                )
            } else {
                (
                    "Flush to Parquet (disk)",
                    "Cold full scan (disk, best of 3)",
                    "Lookups, 1 segment (disk)",
                )
            };
            let mut row = Row::throughput(flush_name, n, flush_t, json!({}));
            row.extra["over_disk"] = json!(flush_t.as_secs_f64() / disk.1.as_secs_f64());
            rows.push(row);
            let mut row = scan_row(scan_name, n, scan, bytes);
            row.extra["over_disk"] = json!(scan / disk.2);
            rows.push(row);
            let mut row = Row::latency(lookup_name, args.lookups, total, p50, p99);
            row.extra["p50_over_disk"] = json!(p50 / disk.5);
            rows.push(row);
        }
    }

    // 6b. Analytics over flushed and hot data against DataFusion on the same Parquet files.
    if args.only.as_deref() == Some("tpch") {
        rows.extend(tpch::run(&args.tpch_sf, args.tpch_rounds).await);
    }

    if want("analytics") {
        rows.extend(analytics::run(&server, &mut c, args.analytics_rows, 5).await);
    }

    // 7. Authentication: the same point lookups on a PUBLIC table, anonymous and signed in.
    if want("auth") {
        c.ok("CREATE TABLE bench.public (id BIGINT PRIMARY KEY, name TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')")
            .await;
        c.ok("INSERT INTO bench.public SELECT value, 'n' || value FROM generate_series(0, 999)")
            .await;
        c.ok("CREATE USER bench_user WITH PASSWORD 'bench-password'")
            .await;
        let mut clients = vec![
            server.anonymous().await,
            server
                .client_as("bench_user", "bench-password")
                .await
                .unwrap(),
        ];
        let queries: Vec<String> = (0..100)
            .map(|i| format!("SELECT * FROM bench.public WHERE id = {}", i * 7))
            .collect();
        interleaved(&mut clients, &queries, 2).await; // warm up
        let rounds = 20;
        let start = Instant::now();
        let p50 = interleaved(&mut clients, &queries, rounds).await;
        let total = start.elapsed().as_secs_f64();
        let n = queries.len() * rounds;
        let mut row = Row::latency("Anonymous lookups (public)", n, total / 2.0, p50[0], p50[0]);
        row.rate = format!("p50 {:.3} ms", p50[0]);
        rows.push(row);
        let mut row = Row::latency("Signed-in lookups (public)", n, total / 2.0, p50[1], p50[1]);
        row.rate = format!(
            "p50 {:.3} ms ({:+.1}%)",
            p50[1],
            (p50[1] / p50[0] - 1.0) * 100.0
        );
        row.extra["over_anonymous"] = json!(p50[1] / p50[0]);
        rows.push(row);
    }

    // 8. One user's query on a USER table of `users` users, against a USER table holding only
    //    that user's rows.
    if want("users") {
        c.ok("CREATE USER TABLE bench.many (id BIGINT PRIMARY KEY, body TEXT)")
            .await;
        c.ok("CREATE USER TABLE bench.solo (id BIGINT PRIMARY KEY, body TEXT)")
            .await;
        let start = Instant::now();
        let workers = 4;
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mut wc = server.client().await;
            let users = args.users;
            tasks.push(tokio::spawn(async move {
                for u in (w..users).step_by(workers) {
                    wc.ok(&format!("CREATE USER u{u} WITH PASSWORD 'bench-password'"))
                        .await;
                    let values: Vec<String> =
                        (0..10).map(|i| format!("({i}, 'u{u} row {i}')")).collect();
                    wc.ok(&format!(
                        "EXECUTE AS USER 'u{u}' (INSERT INTO bench.many VALUES {})",
                        values.join(", ")
                    ))
                    .await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let load = start.elapsed();
        println!(
            "users: {} users with 10 rows each in {:.1}s",
            args.users,
            load.as_secs_f64()
        );
        let me = args.users / 2;
        let values: Vec<String> = (0..10).map(|i| format!("({i}, 'u{me} row {i}')")).collect();
        c.ok(&format!(
            "EXECUTE AS USER 'u{me}' (INSERT INTO bench.solo VALUES {})",
            values.join(", ")
        ))
        .await;
        let mut one = server
            .client_as(&format!("u{me}"), "bench-password")
            .await
            .unwrap();
        let mut two = server
            .client_as(&format!("u{me}"), "bench-password")
            .await
            .unwrap();
        assert_eq!(
            one.rows("SELECT * FROM bench.many")
                .await
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>(),
            10
        );
        // Two sessions of the same user: one reads the 10,000-user table, the other the table
        // holding only this user's rows, query for query in turn.
        let mut p50s = Vec::new();
        for (label, q) in [
            ("scan", "SELECT * FROM bench.{t}"),
            ("lookup", "SELECT * FROM bench.{t} WHERE id = 7"),
        ] {
            let queries = [q.replace("{t}", "many"), q.replace("{t}", "solo")];
            let mut pair = [one, two];
            let mut lat = [Vec::new(), Vec::new()];
            let started = Instant::now();
            for round in 0..1200 {
                for (i, c) in pair.iter_mut().enumerate() {
                    let t0 = Instant::now();
                    let b = c.rows(&queries[i]).await;
                    if round >= 200 {
                        lat[i].push(t0.elapsed());
                    }
                    assert!(!b.is_empty());
                }
            }
            [one, two] = pair;
            let p: Vec<f64> = lat
                .iter_mut()
                .map(|l| {
                    l.sort();
                    percentile(l, 0.5)
                })
                .collect();
            p50s.push((label, p[0], p[1], started.elapsed().as_secs_f64()));
        }
        for (label, many, solo, seconds) in p50s {
            let test = if label == "scan" {
                "USER table scan, many users"
            } else {
                "USER table key, many users"
            };
            let mut row = Row::latency(test, 1000, seconds, many, many);
            row.rate = format!("p50 {many:.3} / {solo:.3} ms alone");
            row.extra = json!({ "p50_ms": many, "alone_p50_ms": solo, "over_alone": many / solo, "users": args.users });
            rows.push(row);
        }
    }

    // 9. Live queries: commit-to-receipt latency with 1, 100 and 1,000 subscribers of one
    //    table and 10,000 spread over users, then fan-out throughput.
    if want("live") {
        c.ok("CREATE TABLE bench.feed (id BIGINT PRIMARY KEY, body TEXT)")
            .await;
        c.ok("CREATE USER TABLE bench.inbox (id BIGINT PRIMARY KEY, body TEXT)")
            .await;
        let root_token = c.inner.token().cloned().unwrap();
        let sent = Arc::new(parking_lot::Mutex::new(std::collections::HashMap::new()));
        let mut next_id = 0i64;
        let events = 200;
        for n in [1usize, 100, 1000] {
            let subs = subscribers(
                &server,
                std::slice::from_ref(&root_token),
                n,
                "SUBSCRIBE TO bench.feed",
            )
            .await;
            let tasks: Vec<_> = subs
                .into_iter()
                .map(|l| tokio::spawn(receive(l, events, sent.clone())))
                .collect();
            let buckets = send_buckets(&server);
            let rows_before = metric(&server, "quill_live_notifications_total");
            let server_pid = server.pid().to_string();
            let cpu_before = cpu_seconds(&server_pid);
            let own_before = cpu_seconds("self");
            let (lat, total) =
                timed_events(&mut c, "bench.feed", events, &mut next_id, &sent, tasks).await;
            // CPU per delivered row, server and this client: on one machine they share the
            // cores, so together they set a floor under the latency of the last subscriber.
            let delivered =
                (metric(&server, "quill_live_notifications_total") - rows_before).max(1.0);
            let server_us = (cpu_seconds(&server_pid) - cpu_before) * 1e6 / delivered;
            let client_us = (cpu_seconds("self") - own_before) * 1e6 / delivered;
            let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            let test: &'static str = match n {
                1 => "Live latency, 1 subscriber",
                100 => "Live latency, 100 subscribers",
                _ => "Live latency, 1000 subscribers",
            };
            let mut row = Row::latency(test, events, total, p50, p99);
            row.extra["subscribers"] = json!(n);
            // The server's own part: from the durable commit to the batch leaving for each
            // subscriber (bucket bounds), without the write before it or the client after it.
            let after = send_buckets(&server);
            row.extra["server_commit_to_send_p50_ms_at_most"] =
                json!(bucket_quantile(&buckets, &after, 0.5));
            row.extra["server_commit_to_send_p99_ms_at_most"] =
                json!(bucket_quantile(&buckets, &after, 0.99));
            row.extra["server_cpu_us_per_row"] = json!((server_us * 10.0).round() / 10.0);
            row.extra["client_cpu_us_per_row"] = json!((client_us * 10.0).round() / 10.0);
            println!(
                "{test}: server commit-to-send p50 <= {} ms, p99 <= {} ms; CPU per delivered \
                 row: server {server_us:.1} us, client {client_us:.1} us",
                bucket_quantile(&buckets, &after, 0.5),
                bucket_quantile(&buckets, &after, 0.99)
            );
            rows.push(row);
        }
        // 10,000 subscriptions spread over 1,000 users (10 each) of a USER table; one user writes.
        let mut tokens = Vec::new();
        for u in 0..1000 {
            c.ok(&format!("CREATE USER lu{u} WITH PASSWORD 'bench-password'"))
                .await;
            let client = server
                .client_as(&format!("lu{u}"), "bench-password")
                .await
                .unwrap();
            tokens.push(client.inner.token().cloned().unwrap());
        }
        let subs = subscribers(&server, &tokens, 10_000, "SUBSCRIBE TO bench.inbox").await;
        let mut writer = server.client_with_token(&tokens[7]).await;
        // The other 9,990 stay open, idle, while user 7's ten receive.
        let mut tasks = Vec::new();
        let mut idle = Vec::new();
        for (i, l) in subs.into_iter().enumerate() {
            if i % tokens.len() == 7 {
                tasks.push(tokio::spawn(receive(l, events, sent.clone())));
            } else {
                idle.push(l);
            }
        }
        let (lat, total) = timed_events(
            &mut writer,
            "bench.inbox",
            events,
            &mut next_id,
            &sent,
            tasks,
        )
        .await;
        let mut row = Row::latency(
            "Live latency, 10k subs / 1k users",
            events,
            total,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        );
        row.extra["subscriptions"] = json!(10_000);
        rows.push(row);
        drop(idle);

        // Fan-out: 100 subscribers, 100,000 rows written in 1,000-row statements.
        let n = 100;
        let total_rows = 100_000;
        c.ok("CREATE TABLE bench.fan (id BIGINT PRIMARY KEY, body TEXT)")
            .await;
        let subs = subscribers(
            &server,
            std::slice::from_ref(&root_token),
            n,
            "SUBSCRIBE TO bench.fan",
        )
        .await;
        let tasks: Vec<_> = subs
            .into_iter()
            .map(|l| tokio::spawn(receive(l, total_rows, sent.clone())))
            .collect();
        let start = Instant::now();
        for chunk in 0..total_rows / 1000 {
            let values: Vec<String> = (0..1000)
                .map(|i| format!("({}, 'fan-out row')", chunk * 1000 + i))
                .collect();
            c.ok(&format!(
                "INSERT INTO bench.fan VALUES {}",
                values.join(", ")
            ))
            .await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let t = start.elapsed();
        rows.push(Row::throughput(
            "Live fan-out (100 subscribers)",
            n * total_rows,
            t,
            json!({ "subscribers": n, "rows_written": total_rows }),
        ));
    }

    println!(
        "┌─────────────────────────────────┬───────────┬──────────┬──────────────────────────────┐"
    );
    println!(
        "│ Test Type                       │      Rows │     Time │ Rate                         │"
    );
    println!(
        "├─────────────────────────────────┼───────────┼──────────┼──────────────────────────────┤"
    );
    for r in &rows {
        println!(
            "│ {:<31} │ {:>9} │ {:>7.2}s │ {:<28} │",
            r.test, r.rows, r.seconds, r.rate
        );
    }
    println!(
        "└─────────────────────────────────┴───────────┴──────────┴──────────────────────────────┘"
    );

    let when = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let doc = json!({
        "when": when,
        "durability": args.durability,
        "server": quilldb_tests::binary().display().to_string(),
        "results": rows.iter().map(|r| json!({
            "test": r.test, "rows": r.rows, "seconds": r.seconds, "rate": r.rate,
            "rows_per_second": r.rows as f64 / r.seconds, "extra": r.extra,
        })).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(&args.out).unwrap();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let latest = args.out.join(format!("latest-{}.json", args.durability));
    std::fs::write(&latest, &text).unwrap();
    std::fs::write(
        args.out.join(format!("{when}-{}.json", args.durability)),
        &text,
    )
    .unwrap();
    println!(
        "durability {}; results written to {}",
        args.durability,
        latest.display()
    );
}
