//! `quilldb-soak`: ten minutes of mixed traffic against the release binary, to show that the
//! server stays correct and bounded under everyday load (issue 16).
//!
//! 64 clients (32 services on a SHARED table, 32 users on a USER table) insert, update, delete,
//! look up and scan; 1,000 subscriptions with filters fold every change they receive; flushes
//! and compactions run all along; one more client is killed mid-call and reconnects every few
//! seconds. At the end it reports the errors (all but the killed client's must be 0), the
//! server's RSS over time (CSV and JSON in benches/results, plotted by `benches/plot_rss.py`),
//! its open file descriptors idle before and after, and whether every subscriber's folded view
//! equals the SELECT of its filter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, Int8Array, Int64Array, RecordBatch};
use arrow::util::display::array_value_to_string;
use clap::Parser;
use quilldb_flight::client::LiveStream;
use quilldb_tests::{Client, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// How long the load runs.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Clients doing reads and writes (half services on the SHARED table, half users).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Subscriptions with filters (half on each table).
    #[arg(long, default_value_t = 1000)]
    subscriptions: usize,
    /// Seconds between two kills of the extra client.
    #[arg(long, default_value_t = 3)]
    kill_every: u64,
    /// Without flushes and compactions (to tell their part in a failure).
    #[arg(long)]
    no_maintenance: bool,
    /// Where to write the results.
    #[arg(long, default_value = "benches/results")]
    out: std::path::PathBuf,
}

/// Buckets of the SHARED table and kinds of the USER table: subscription filters pick one.
const BUCKETS: i64 = 50;
const KINDS: i64 = 16;

#[derive(Default)]
struct Counters {
    ops: AtomicU64,
    errors: AtomicU64,
    killed_errors: AtomicU64,
    kills: AtomicU64,
    events: AtomicU64,
    /// Rows that came with a `_seq` not above the last one seen of their id.
    out_of_order: AtomicU64,
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open descriptors of the server: (sockets, files and the rest).
fn fds(pid: u32) -> (usize, usize) {
    let mut sockets = 0;
    let mut other = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            match std::fs::read_link(e.path()) {
                Ok(t) if t.to_string_lossy().starts_with("socket:") => sockets += 1,
                _ => other += 1,
            }
        }
    }
    (sockets, other)
}

/// One row as text, the columns before `_seq`, for comparing a folded view with a SELECT.
fn row_text(b: &RecordBatch, row: usize, columns: usize) -> String {
    (0..columns)
        .map(|c| array_value_to_string(b.column(c), row).unwrap())
        .collect::<Vec<_>>()
        .join("|")
}

fn ids(b: &RecordBatch) -> &Int64Array {
    b.column_by_name("id")
        .unwrap()
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
}

/// A subscription's view of its filter, folded from its events.
struct Folded {
    sql: String,
    check: String,
    token: String,
    rows: HashMap<i64, String>,
    /// The last event seen of every id: its `_seq` and `_op`, to tell a change never delivered
    /// from one applied wrong.
    seen: HashMap<i64, (i64, i8)>,
    /// The greatest `last_seq` the server reported.
    last_seq: i64,
    failure: Option<String>,
}

/// Folds a subscription's events until the load is over and the server has told it, with a
/// HEARTBEAT (sent only when its queue is empty), that nothing more is on its way.
async fn fold(
    mut live: LiveStream,
    mut view: Folded,
    settled: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> Folded {
    const COLUMNS: usize = 3;
    // Heartbeats come every few seconds; a minute of silence is a dead subscription.
    let mut heard = Instant::now();
    loop {
        let next = match live.next_within(Duration::from_secs(1)).await {
            Ok(Some(n)) => n,
            // Nothing within the second (the client answers an ended stream the same way).
            Ok(None) if heard.elapsed() < Duration::from_secs(60) => continue,
            Ok(None) => {
                view.failure = Some("nothing heard for 60 s".into());
                return view;
            }
            Err(e) => {
                view.failure = Some(format!("subscription error: {e}"));
                return view;
            }
        };
        heard = Instant::now();
        let (event, batch) = next;
        view.last_seq = view.last_seq.max(event.last_seq);
        match event.kind {
            // INITIAL and CHANGE carry rows.
            1 | 3 => {
                let Some(b) = batch else { continue };
                counters
                    .events
                    .fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                let ops = b
                    .column_by_name("_op")
                    .and_then(|c| c.as_any().downcast_ref::<Int8Array>().cloned());
                let seqs = b
                    .column_by_name("_seq")
                    .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
                let ids = ids(&b);
                for r in 0..b.num_rows() {
                    let op = ops.as_ref().map_or(1, |o| o.value(r));
                    let id = ids.value(r);
                    let seq = seqs.as_ref().map_or(0, |s| s.value(r));
                    if let Some((before, _)) = view.seen.get(&id)
                        && *before >= seq
                    {
                        let n = counters.out_of_order.fetch_add(1, Ordering::Relaxed);
                        if n < 10 {
                            eprintln!(
                                "{}: id {id} got _seq {seq} (_op {op}) after _seq {before}",
                                view.sql
                            );
                        }
                    }
                    view.seen.insert(id, (seq, op));
                    if op == 3 {
                        view.rows.remove(&id);
                    } else {
                        view.rows.insert(id, row_text(&b, r, COLUMNS));
                    }
                }
            }
            4 | 5 => {
                view.failure = Some(format!("closed: {} {}", event.code, event.message));
                return view;
            }
            6 if settled.load(Ordering::Acquire) => return view,
            _ => {}
        }
    }
}

/// One client's loop of mixed calls until `stop`; its errors are counted, not fatal.
async fn client_loop(
    mut c: Client,
    table: &'static str,
    me: i64,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut rng = StdRng::seed_from_u64(me as u64);
    let mut live_ids: Vec<i64> = Vec::new();
    let mut next = me * 1_000_000_000;
    let filter_column = if table == "soak.items" {
        "bucket"
    } else {
        "kind"
    };
    let groups = if table == "soak.items" {
        BUCKETS
    } else {
        KINDS
    };
    while !stop.load(Ordering::Acquire) {
        let roll = rng.random_range(0..100);
        let sql = if roll < 40 || live_ids.is_empty() {
            next += 1;
            live_ids.push(next);
            let group = rng.random_range(0..groups);
            if table == "soak.items" {
                format!(
                    "INSERT INTO soak.items (id, bucket, name, score) VALUES ({next}, {group}, 'item-{next}', {})",
                    rng.random_range(0..1000)
                )
            } else {
                format!(
                    "INSERT INTO soak.notes (id, kind, body) VALUES ({next}, {group}, 'note-{next}')"
                )
            }
        } else if roll < 60 {
            let id = live_ids[rng.random_range(0..live_ids.len())];
            let group = rng.random_range(0..groups);
            if table == "soak.items" {
                format!("UPDATE soak.items SET bucket = {group}, score = score + 1 WHERE id = {id}")
            } else {
                format!(
                    "UPDATE soak.notes SET kind = {group}, body = 'edited-{id}' WHERE id = {id}"
                )
            }
        } else if roll < 70 {
            let i = rng.random_range(0..live_ids.len());
            let id = live_ids.swap_remove(i);
            format!("DELETE FROM {table} WHERE id = {id}")
        } else if roll < 92 {
            let id = live_ids[rng.random_range(0..live_ids.len())];
            format!("SELECT * FROM {table} WHERE id = {id}")
        } else {
            format!(
                "SELECT count(*) AS n, max(id) AS m FROM {table} WHERE {filter_column} = {}",
                rng.random_range(0..groups)
            )
        };
        let result = if sql.starts_with("SELECT") {
            c.query(&sql).await.map(|_| ())
        } else {
            c.exec(&sql).await.map(|_| ())
        };
        counters.ops.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            let n = counters.errors.fetch_add(1, Ordering::Relaxed);
            if n < 20 {
                eprintln!("client {me}: {sql}: {e}");
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let mut server = TestServer::start_with(&[
        ("QUILLDB_LIVE__MAX_PER_USER", "2000"),
        ("QUILLDB_LIVE__BUFFER_ROWS", "200000"),
        // Subscribers stop folding at the first HEARTBEAT after the load: make it come soon.
        ("QUILLDB_LIVE__HEARTBEAT_SECONDS", "2"),
    ])
    .await;
    let pid = server.pid();
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE soak").await;
    root.ok("CREATE TABLE soak.items (id BIGINT PRIMARY KEY, bucket INT, name TEXT, score DOUBLE) WITH (FLUSH_POLICY = 'rows:20000,interval:60')")
        .await;
    root.ok("CREATE USER TABLE soak.notes (id BIGINT PRIMARY KEY, kind INT, body TEXT) WITH (FLUSH_POLICY = 'rows:20000,interval:60')")
        .await;
    let half = args.clients / 2;
    let mut tokens = Vec::new();
    for i in 0..args.clients {
        let role = if i < half { "service" } else { "user" };
        root.ok(&format!(
            "CREATE USER soak{i} WITH PASSWORD 'soak-password' ROLE {role}"
        ))
        .await;
        let c = server
            .client_as(&format!("soak{i}"), "soak-password")
            .await
            .unwrap();
        tokens.push(c.inner.token().cloned().unwrap());
    }
    root.ok("CREATE USER soakkill WITH PASSWORD 'soak-password' ROLE service")
        .await;
    // Idle figures: the server with its tables and users, nobody connected but root.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_fds = fds(pid);
    let idle_rss = rss_kb(pid);
    println!(
        "idle: RSS {} MiB, fds {} sockets + {} files",
        idle_rss / 1024,
        idle_fds.0,
        idle_fds.1
    );

    let stop = Arc::new(AtomicBool::new(false));
    // Set once every write has been answered: the next HEARTBEAT ends a fold.
    let settled = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());

    // 1,000 subscriptions: half over SHARED buckets (services), half over USER kinds (users).
    let mut subs = Vec::new();
    let mut channel = server.channel().await;
    for s in 0..args.subscriptions {
        if s % 100 == 0 {
            channel = server.channel().await;
        }
        let shared = s % 2 == 0;
        let owner = if shared {
            s % half.max(1)
        } else {
            half + s % (args.clients - half).max(1)
        };
        let (sql, check) = if shared {
            let b = (s / 2) as i64 % BUCKETS;
            (
                format!("SUBSCRIBE TO soak.items WHERE bucket = {b}"),
                format!("SELECT id, bucket, name FROM soak.items WHERE bucket = {b}"),
            )
        } else {
            let k = (s / 2) as i64 % KINDS;
            (
                format!("SUBSCRIBE TO soak.notes WHERE kind = {k}"),
                format!("SELECT id, kind, body FROM soak.notes WHERE kind = {k}"),
            )
        };
        // Only the columns compared: id, the filter column, and one more.
        let sql = sql
            .replace(
                "SUBSCRIBE TO soak.items",
                "SUBSCRIBE TO SELECT id, bucket, name FROM soak.items",
            )
            .replace(
                "SUBSCRIBE TO soak.notes",
                "SUBSCRIBE TO SELECT id, kind, body FROM soak.notes",
            );
        let token = tokens[owner].clone();
        let live = quilldb_flight::client::subscribe(channel.clone(), Some(&token), &sql, None)
            .await
            .unwrap_or_else(|e| panic!("subscription {s}: {e}"));
        let view = Folded {
            sql,
            check,
            token,
            rows: HashMap::new(),
            seen: HashMap::new(),
            last_seq: 0,
            failure: None,
        };
        subs.push(tokio::spawn(fold(
            live,
            view,
            settled.clone(),
            counters.clone(),
        )));
    }
    println!("{} subscriptions open", subs.len());

    // The clients.
    let mut workers = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let c = server.client_with_token(token).await;
        let table = if i < half { "soak.items" } else { "soak.notes" };
        workers.push(tokio::spawn(client_loop(
            c,
            table,
            i as i64 + 1,
            stop.clone(),
            counters.clone(),
        )));
    }
    // Flushes and compactions all along.
    let maintenance = {
        let stop = stop.clone();
        let enabled = !args.no_maintenance;
        let mut c = server.client().await;
        tokio::spawn(async move {
            let mut round = 0u64;
            while enabled && !stop.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let sql = match round % 3 {
                    0 => "STORAGE FLUSH TABLE soak.items",
                    1 => "STORAGE FLUSH TABLE soak.notes",
                    _ => "STORAGE COMPACT TABLE soak.items",
                };
                if let Err(e) = c.query(sql).await {
                    eprintln!("{sql}: {e}");
                }
                round += 1;
            }
        })
    };
    // The killed client: connects, starts calls, and is dropped mid-call every few seconds.
    let killer = {
        let stop = stop.clone();
        let counters = counters.clone();
        let server_channel = server.channel().await;
        let flight_url = server.flight_url.clone();
        let kill_every = args.kill_every;
        tokio::spawn(async move {
            let _keep = server_channel;
            let mut n = 0i64;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let url = flight_url.clone();
                let counters2 = counters.clone();
                let victim = tokio::spawn(async move {
                    let channel = tonic::transport::Endpoint::from_shared(
                        url.replacen("grpc://", "http://", 1),
                    )
                    .unwrap()
                    .connect()
                    .await;
                    let Ok(channel) = channel else {
                        counters2.killed_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let mut c =
                        arrow_flight::sql::client::FlightSqlServiceClient::new(channel.clone());
                    if c.handshake("soakkill", "soak-password").await.is_err() {
                        counters2.killed_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    let token = c.token().cloned().unwrap_or_default();
                    // A subscription and a stream of writes and scans, cut off at any point.
                    let _live = quilldb_flight::client::subscribe(
                        channel.clone(),
                        Some(&token),
                        "SUBSCRIBE TO soak.items WHERE bucket = 1",
                        None,
                    )
                    .await;
                    let mut i = 0;
                    loop {
                        i += 1;
                        let id = 9_000_000_000_000 + n * 1_000_000 + i;
                        let sql = format!(
                            "INSERT INTO soak.items (id, bucket, name, score) VALUES ({id}, 1, 'killed', 0)"
                        );
                        if c.execute_update(sql, None).await.is_err() {
                            counters2.killed_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Ok(info) = c.execute("SELECT * FROM soak.items".into(), None).await
                            && let Some(t) = info.endpoint.first().and_then(|e| e.ticket.clone())
                        {
                            // Start reading a scan and leave it unread.
                            let _ = c.do_get(t).await;
                        }
                    }
                });
                tokio::time::sleep(Duration::from_millis(kill_every * 1000)).await;
                victim.abort();
                let _ = victim.await;
                counters.kills.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // RSS over time.
    let started = Instant::now();
    let mut samples: Vec<(f64, u64, usize, usize)> = Vec::new();
    let mut last_print = Instant::now();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (s, f) = fds(pid);
        samples.push((started.elapsed().as_secs_f64(), rss_kb(pid), s, f));
        if last_print.elapsed() > Duration::from_secs(30) {
            last_print = Instant::now();
            println!(
                "{:>4.0} s: RSS {} MiB, fds {s}+{f}, {} calls, {} errors, {} kills, {} rows delivered",
                started.elapsed().as_secs_f64(),
                rss_kb(pid) / 1024,
                counters.ops.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed),
                counters.kills.load(Ordering::Relaxed),
                counters.events.load(Ordering::Relaxed),
            );
        }
    }
    stop.store(true, Ordering::Release);
    for w in workers {
        w.await.unwrap();
    }
    killer.await.unwrap();
    maintenance.await.unwrap();
    let load_seconds = started.elapsed().as_secs_f64();
    println!("load stopped after {load_seconds:.0} s; waiting for subscribers to settle");
    // A killed client's last write may still be on its way in the server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    settled.store(true, Ordering::Release);

    // Every subscriber's view against the SELECT of its filter, as its owner.
    let mut mismatched = Vec::new();
    let mut failed = Vec::new();
    let mut compared = 0usize;
    for s in subs {
        let view = s.await.unwrap();
        if let Some(f) = &view.failure {
            failed.push(format!("{}: {f}", view.sql));
            continue;
        }
        let mut c = server.client_with_token(&view.token).await;
        let batches = c.rows(&view.check).await;
        let mut expected = HashMap::new();
        for b in &batches {
            let ids = ids(b);
            for r in 0..b.num_rows() {
                expected.insert(ids.value(r), row_text(b, r, 3));
            }
        }
        compared += 1;
        if expected != view.rows {
            let missing: Vec<i64> = expected
                .keys()
                .filter(|k| !view.rows.contains_key(k))
                .copied()
                .collect();
            let extra: Vec<i64> = view
                .rows
                .keys()
                .filter(|k| !expected.contains_key(k))
                .copied()
                .collect();
            let differ: Vec<i64> = expected
                .iter()
                .filter(|(k, v)| view.rows.get(k).is_some_and(|f| f != *v))
                .map(|(k, _)| *k)
                .collect();
            mismatched.push(format!(
                "{}: {} rows expected, {} folded ({} missing, {} extra, {} differ; last_seq {})",
                view.sql,
                expected.len(),
                view.rows.len(),
                missing.len(),
                extra.len(),
                differ.len(),
                view.last_seq,
            ));
            // What the subscriber last saw of a few of them, beside the row as it is now.
            if mismatched.len() <= 3 {
                let table = view.check.split_whitespace().nth(5).unwrap_or("?");
                for (what, ids) in [
                    ("missing", &missing),
                    ("extra", &extra),
                    ("differ", &differ),
                ] {
                    for id in ids.iter().take(3) {
                        let now = c
                            .rows(&format!("SELECT * FROM {table} WHERE id = {id}"))
                            .await;
                        let now = now
                            .first()
                            .filter(|b| b.num_rows() > 0)
                            .map(|b| {
                                (0..b.num_columns())
                                    .map(|i| array_value_to_string(b.column(i), 0).unwrap())
                                    .collect::<Vec<_>>()
                                    .join("|")
                            })
                            .unwrap_or_else(|| "(no row)".into());
                        println!(
                            "    {what} id {id}: last seen {:?} (seq, op), folded {:?}, now {now}",
                            view.seen.get(id),
                            view.rows.get(id)
                        );
                    }
                }
            }
        }
    }
    drop(root);
    // Idle again: every client gone; give the server a moment to close them.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let end_fds = fds(pid);
    let end_rss = rss_kb(pid);
    let peak_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let ops = counters.ops.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    println!(
        "calls: {ops} ({:.0}/s), errors: {errors}",
        ops as f64 / load_seconds
    );
    println!(
        "killed client: {} kills, {} of its own errors",
        counters.kills.load(Ordering::Relaxed),
        counters.killed_errors.load(Ordering::Relaxed)
    );
    println!(
        "rows delivered to subscribers: {} ({} out of _seq order)",
        counters.events.load(Ordering::Relaxed),
        counters.out_of_order.load(Ordering::Relaxed)
    );
    println!(
        "subscriptions compared: {compared}, mismatched: {}, failed: {}",
        mismatched.len(),
        failed.len()
    );
    for m in mismatched.iter().chain(&failed).take(10) {
        println!("  {m}");
    }
    println!(
        "RSS: idle {} MiB, peak {} MiB, end {} MiB",
        idle_rss / 1024,
        peak_rss / 1024,
        end_rss / 1024
    );
    println!(
        "fds: idle {}+{}, end {}+{} (sockets+files)",
        idle_fds.0, idle_fds.1, end_fds.0, end_fds.1
    );
    let when = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let doc = json!({
        "when": when,
        "seconds": load_seconds,
        "clients": args.clients,
        "subscriptions": args.subscriptions,
        "calls": ops,
        "errors": errors,
        "kills": counters.kills.load(Ordering::Relaxed),
        "killed_client_errors": counters.killed_errors.load(Ordering::Relaxed),
        "rows_delivered": counters.events.load(Ordering::Relaxed),
        "rows_out_of_order": counters.out_of_order.load(Ordering::Relaxed),
        "subscriptions_compared": compared,
        "subscriptions_mismatched": mismatched,
        "subscriptions_failed": failed,
        "rss_kib": { "idle": idle_rss, "peak": peak_rss, "end": end_rss },
        "fds": { "idle_sockets": idle_fds.0, "idle_files": idle_fds.1, "end_sockets": end_fds.0, "end_files": end_fds.1 },
        "samples": samples.iter().map(|s| json!({"t": s.0, "rss_kib": s.1, "sockets": s.2, "files": s.3})).collect::<Vec<_>>(),
    });
    std::fs::create_dir_all(&args.out).unwrap();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    std::fs::write(args.out.join("latest-soak.json"), &text).unwrap();
    std::fs::write(args.out.join(format!("{when}-soak.json")), &text).unwrap();
    println!(
        "results written to {}",
        args.out.join("latest-soak.json").display()
    );
    assert!(server.stop().success(), "the server did not stop cleanly");
}
