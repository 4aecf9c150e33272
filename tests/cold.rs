//! Cold storage: files and manifests on disk, flush policies, pruning, compaction, storages and
//! jobs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use quilldb_tests::{Client, TestServer, column, count, metric};
use tonic::Code;

async fn setup(env: &[(&str, &str)]) -> (TestServer, Client) {
    let server = TestServer::start_with(env).await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT)")
        .await;
    (server, c)
}

fn manifest(server: &TestServer, folder: &str) -> serde_json::Value {
    let path = server
        .data_dir()
        .join("storage")
        .join(folder)
        .join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs `sql` every 50 ms until `done` holds for its rows (at most 20 s); answers those rows.
async fn eventually(
    c: &mut Client,
    sql: &str,
    what: &str,
    done: impl Fn(&[RecordBatch]) -> bool,
) -> Vec<RecordBatch> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = c.rows(sql).await;
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the one compaction job of the test to complete.
async fn compaction_completed(c: &mut Client) {
    eventually(
        c,
        "SELECT status FROM system.jobs WHERE job_type = 'compact'",
        "no compaction was queued",
        |b| column(b, "status") == vec!["completed"],
    )
    .await;
}

async fn insert_range(c: &mut Client, from: i64, to: i64) {
    let values: Vec<String> = (from..to).map(|i| format!("({i}, 'b{i}', {i})")).collect();
    c.ok(&format!("INSERT INTO app.t VALUES {}", values.join(", ")))
        .await;
}

#[tokio::test]
async fn flush_writes_parquet_and_manifest_then_trims_hot_rows() {
    let (server, mut c) = setup(&[]).await;
    insert_range(&mut c, 0, 10).await;
    c.ok("DELETE FROM app.t WHERE id = 9").await;
    let id = c.flush_job("app.t").await;
    assert!(id.starts_with("FL-") && id.len() == 9, "{id}");
    let (status, message) = c.wait_job(&id).await;
    assert_eq!(status, "completed", "{message}");

    let folder = server.data_dir().join("storage/app/t");
    let batch = folder.join("batch-0.parquet");
    assert!(std::fs::metadata(&batch).unwrap().len() > 0);
    let m = manifest(&server, "app/t");
    assert_eq!(m["table"], "app.t");
    assert!(
        m["user_id"].is_null(),
        "a SHARED table's manifest has no owner: {m}"
    );
    assert_eq!(m["next_batch"], 1);
    let seg = &m["segments"][0];
    assert_eq!(seg["path"], "batch-0.parquet");
    // Nine rows and the tombstone of the tenth.
    assert_eq!(seg["rows"], 10);
    assert_eq!(seg["deleted"], 1);
    assert_eq!(seg["stats"]["id"]["min"], 0);
    assert_eq!(seg["stats"]["id"]["max"], 9);
    assert!(seg["min_seq"].as_u64().unwrap() <= seg["max_seq"].as_u64().unwrap());

    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "hot_rows")[0], "0");
    assert_eq!(column(&d, "cold_rows")[0], "9");
    assert_eq!(column(&d, "segments")[0], "1");
    let shown = c.rows("SHOW MANIFEST app.t").await;
    assert_eq!(column(&shown, "path"), vec!["batch-0.parquet"]);
    assert_eq!(column(&shown, "rows"), vec!["10"]);

    // The deleted row stays deleted, the rest read from Parquet.
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 9);
    assert_eq!(count(&c.rows("SELECT * FROM app.t WHERE id = 9").await), 0);

    // Nothing new: the next flush is skipped; a hot row makes DESCRIBE count it.
    let again = c.flush_job("app.t").await;
    assert_eq!(c.wait_job(&again).await.0, "skipped");
    insert_range(&mut c, 10, 11).await;
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "hot_rows")[0], "1");

    // FLUSH ALL answers a job per table with unflushed rows.
    let all = c.rows("STORAGE FLUSH ALL IN app").await;
    assert_eq!(count(&all), 1);
    let job = column(&all, "job_id").pop().unwrap();
    assert_eq!(c.wait_job(&job).await.0, "completed");
    assert_eq!(
        manifest(&server, "app/t")["segments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let jobs = c
        .rows("SELECT job_id, job_type, status, rows FROM system.jobs WHERE status = 'completed' ORDER BY created_at")
        .await;
    assert_eq!(column(&jobs, "job_type"), vec!["flush", "flush"]);
    assert_eq!(column(&jobs, "rows"), vec!["10", "1"]);
    assert!(
        metric(
            &server,
            "quill_jobs_total{kind=\"flush\",status=\"completed\"}"
        ) >= 2.0
    );

    // Errors: unknown table, unknown job, finished job.
    assert_eq!(
        c.err("STORAGE FLUSH TABLE app.nope").await.0,
        Code::NotFound
    );
    assert_eq!(c.err("KILL JOB 'FL-zzzzzz'").await.0, Code::NotFound);
    assert_eq!(
        c.err(&format!("KILL JOB '{job}'")).await.0,
        Code::FailedPrecondition
    );
    let anon = &mut server.anonymous().await;
    assert_eq!(
        anon.err("STORAGE FLUSH TABLE app.t").await.0,
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn flush_policy_by_rows_runs_by_itself() {
    let (server, mut c) = setup(&[("QUILLDB_JOBS__POLICY_CHECK_MS", "50")]).await;
    c.ok("CREATE TABLE app.p (id BIGINT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'rows:20')")
        .await;
    let values: Vec<String> = (0..25).map(|i| format!("({i}, 'v')")).collect();
    c.ok(&format!("INSERT INTO app.p VALUES {}", values.join(", ")))
        .await;
    let done = eventually(
        &mut c,
        "SELECT rows FROM system.jobs WHERE table_name = 'p' AND status = 'completed'",
        "no flush by policy",
        |b| count(b) > 0,
    )
    .await;
    assert_eq!(column(&done, "rows"), vec!["25"]);
    assert!(
        server
            .data_dir()
            .join("storage/app/p/batch-0.parquet")
            .exists()
    );
    assert_eq!(count(&c.rows("SELECT * FROM app.p").await), 25);
}

#[tokio::test]
async fn point_lookup_on_100_segments_opens_one_file() {
    let (server, mut c) = setup(&[("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "0")]).await;
    for s in 0..100 {
        insert_range(&mut c, s * 10, s * 10 + 10).await;
        c.flush("app.t").await;
    }
    assert_eq!(
        manifest(&server, "app/t")["segments"]
            .as_array()
            .unwrap()
            .len(),
        100
    );
    let before = metric(&server, "quill_cold_segments_read_total");
    let rows = c.rows("SELECT body FROM app.t WHERE id = 537").await;
    assert_eq!(column(&rows, "body"), vec!["b537"]);
    let after = metric(&server, "quill_cold_segments_read_total");
    assert_eq!(
        after - before,
        1.0,
        "a key lookup reads exactly one segment"
    );
    // A range on a column with statistics opens only the segments that can match.
    let before = after;
    let rows = c
        .rows("SELECT count(*) AS c FROM app.t WHERE n >= 420 AND n < 440")
        .await;
    assert_eq!(column(&rows, "c"), vec!["20"]);
    let after = metric(&server, "quill_cold_segments_read_total");
    assert_eq!(
        after - before,
        2.0,
        "statistics prune the other 98 segments"
    );
    // EXPLAIN ANALYZE shows it too.
    let plan = c
        .rows("EXPLAIN ANALYZE SELECT * FROM app.t WHERE id = 5")
        .await;
    let text = column(&plan, "plan").join("\n");
    assert!(text.contains("segments_read=1"), "{text}");
    // The full scan still sees all 1000 rows in order.
    let ids = column(&c.rows("SELECT id FROM app.t").await, "id");
    assert_eq!(ids.len(), 1000);
    assert_eq!(ids[999], "999");
}

#[tokio::test]
async fn compaction_merges_segments_and_drops_dead_versions() {
    // The explicit compaction only: none queued by the flushes.
    let (server, mut c) = setup(&[("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "0")]).await;
    for s in 0..6 {
        insert_range(&mut c, s * 10, s * 10 + 10).await;
        c.flush("app.t").await;
    }
    c.ok("UPDATE app.t SET body = 'new' WHERE id < 15").await;
    c.ok("DELETE FROM app.t WHERE id >= 50").await;
    c.flush("app.t").await;
    let before = c.rows("SELECT id, body, n FROM app.t").await;
    assert_eq!(count(&before), 50);
    let (status, message) = c.compact("app.t").await;
    assert_eq!(status, "completed", "{message}");
    let m = manifest(&server, "app/t");
    let segs = m["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1, "{m}");
    // Only the newest version of each key stays; recent tombstones are kept.
    assert_eq!(segs[0]["rows"].as_u64().unwrap(), 50 + 10);
    let after = c.rows("SELECT id, body, n FROM app.t").await;
    assert_eq!(
        quilldb_tests::pretty(&before),
        quilldb_tests::pretty(&after)
    );
    // The replaced files are gone.
    let files: Vec<String> = std::fs::read_dir(server.data_dir().join("storage/app/t"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(files, vec![segs[0]["path"].as_str().unwrap().to_string()]);
    // Writes go on over the compacted data.
    assert_eq!(
        c.err("INSERT INTO app.t VALUES (3, 'x', 0)").await.0,
        Code::AlreadyExists
    );
    c.ok("INSERT INTO app.t VALUES (55, 'back', 0)").await;
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 51);
}

#[tokio::test]
async fn drop_table_removes_files_and_a_new_table_starts_empty() {
    let (server, mut c) = setup(&[]).await;
    insert_range(&mut c, 0, 5).await;
    c.flush("app.t").await;
    let folder = server.data_dir().join("storage/app/t");
    assert!(folder.join("manifest.json").exists());
    c.ok("DROP TABLE app.t").await;
    assert!(!folder.exists(), "the table's folder is gone");
    let cleanup = c
        .rows("SELECT status FROM system.jobs WHERE job_type = 'cleanup'")
        .await;
    assert_eq!(column(&cleanup, "status"), vec!["completed"]);
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT)")
        .await;
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 0);
    c.ok("INSERT INTO app.t VALUES (1, 'fresh', 1)").await;
    c.flush("app.t").await;
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t").await, "body"),
        vec!["fresh"]
    );
    // DROP NAMESPACE takes the folders of its tables too.
    c.ok("DROP NAMESPACE app").await;
    assert!(!folder.join("manifest.json").exists());
}

#[tokio::test]
async fn storages_are_created_listed_used_and_guarded() {
    let cold = tempfile::tempdir().unwrap();
    let roots = format!("[{}]", cold.path().display());
    let (server, mut c) = setup(&[("QUILLDB_STORAGE__ALLOWED_ROOTS", &roots)]).await;
    c.ok(&format!(
        "CREATE STORAGE disk2 TYPE 'filesystem' PATH '{}' SHARED_TABLES_TEMPLATE 'shared/{{namespace}}/{{table}}'",
        cold.path().display()
    ))
    .await;
    let shown = c.rows("SHOW STORAGES").await;
    assert_eq!(column(&shown, "storage_id"), vec!["disk2", "local"]);
    assert_eq!(count(&c.rows("SELECT * FROM system.storages").await), 2);
    c.ok("CREATE TABLE app.s (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'disk2')")
        .await;
    c.ok("INSERT INTO app.s VALUES (1, 'x')").await;
    c.flush("app.s").await;
    assert!(cold.path().join("shared/app/s/manifest.json").exists());
    assert!(!server.data_dir().join("storage/app/s").exists());
    assert_eq!(column(&c.rows("SELECT v FROM app.s").await, "v"), vec!["x"]);
    assert_eq!(
        c.err("DROP STORAGE disk2").await.0,
        Code::FailedPrecondition
    );
    assert_eq!(c.err("DROP STORAGE local").await.0, Code::InvalidArgument);
    assert_eq!(
        c.err("CREATE TABLE app.u (id BIGINT PRIMARY KEY) WITH (STORAGE_ID = 'nope')")
            .await
            .0,
        Code::NotFound
    );
    let (code, msg) = c
        .err(&format!(
            "CREATE STORAGE bad TYPE 'filesystem' PATH '{}' SHARED_TABLES_TEMPLATE '{{namespace}}/{{oops}}'",
            cold.path().join("bad").display()
        ))
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("{oops}"), "{msg}");
    c.ok("DROP TABLE app.s").await;
    c.ok("DROP STORAGE disk2").await;
    c.ok("DROP STORAGE IF EXISTS disk2").await;
    // Storages survive a restart.
    c.ok(&format!(
        "CREATE STORAGE disk3 TYPE 'filesystem' PATH '{}'",
        cold.path().display()
    ))
    .await;
    let mut server = server;
    server.stop();
    server.launch(&[]);
    let mut c = server.client().await;
    assert_eq!(
        column(&c.rows("SHOW STORAGES").await, "storage_id"),
        vec!["disk3", "local"]
    );
}

#[tokio::test]
async fn open_files_return_to_idle_after_a_cold_load() {
    let (server, mut c) = setup(&[]).await;
    for s in 0..20 {
        insert_range(&mut c, s * 50, s * 50 + 50).await;
        c.flush("app.t").await;
    }
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .count()
    };
    // Warm up once (caches, threads), then measure the idle level.
    c.rows("SELECT count(*) FROM app.t").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = fds();
    for i in 0..50 {
        c.rows("SELECT sum(n) FROM app.t").await;
        c.rows(&format!("SELECT * FROM app.t WHERE id = {}", i * 17))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = fds();
    assert!(after <= idle + 2, "open files grew from {idle} to {after}");
}

#[tokio::test]
async fn finished_jobs_leave_system_jobs_after_their_retention() {
    let (_server, mut c) = setup(&[("QUILLDB_JOBS__RETENTION_SECONDS", "1")]).await;
    insert_range(&mut c, 0, 3).await;
    let job = c.flush_job("app.t").await;
    assert_eq!(c.wait_job(&job).await.0, "completed");
    eventually(
        &mut c,
        &format!("SELECT job_id FROM system.jobs WHERE job_id = '{job}'"),
        &format!("job {job} outlived its retention"),
        |b| count(b) == 0,
    )
    .await;
}

#[tokio::test]
async fn shutdown_waits_for_a_running_flush() {
    let (mut server, mut c) = setup(&[]).await;
    // Stop the server under a running flush.
    let (job, running) = running_flush(&mut c, 300_000).await;
    drop(c);
    assert!(server.stop().success());
    let log = server.log();
    if running {
        let line = log
            .lines()
            .find(|l| l.contains("waiting up to"))
            .unwrap_or_else(|| panic!("the shutdown did not wait for {job}:\n{log}"));
        assert!(
            line.contains(&job),
            "the shutdown names the job it waits on: {line}"
        );
    }
    server.launch(&[]);
    let mut c = server.client().await;
    let rows = c
        .rows(&format!(
            "SELECT status FROM system.jobs WHERE job_id = '{job}'"
        ))
        .await;
    assert_eq!(
        column(&rows, "status"),
        vec!["completed"],
        "the flush finished before the exit"
    );
    assert_eq!(count(&c.rows("SELECT id FROM app.t").await), 300_000);
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "hot_rows")[0], "0");
}

#[tokio::test]
async fn flush_policy_by_interval_runs_by_itself() {
    let (_server, mut c) = setup(&[("QUILLDB_JOBS__POLICY_CHECK_MS", "50")]).await;
    c.ok("CREATE TABLE app.i (id BIGINT PRIMARY KEY, v TEXT) WITH (FLUSH_POLICY = 'interval:1')")
        .await;
    c.ok("INSERT INTO app.i VALUES (1, 'v')").await;
    let d = eventually(
        &mut c,
        "DESCRIBE TABLE app.i",
        "no flush by interval",
        |d| column(d, "segments")[0] == "1",
    )
    .await;
    assert_eq!(column(&d, "hot_rows")[0], "0");
    // Nothing new: no more flush jobs pile up for the table.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let jobs = c
        .rows("SELECT status FROM system.jobs WHERE table_name = 'i'")
        .await;
    assert_eq!(column(&jobs, "status"), vec!["completed"]);
}

/// Loads `rows` rows and starts a flush; answers the job id once it is running (or `None` if it
/// finished before it was seen running).
async fn running_flush(c: &mut Client, rows: usize) -> (String, bool) {
    // The flush watched is this one: the rows policy must not flush the rows first.
    c.ok("ALTER TABLE app.t SET (FLUSH_POLICY = 'interval:86400')")
        .await;
    c.ok(&format!(
        "INSERT INTO app.t SELECT value AS id, 'b' || CAST(value AS TEXT) AS body, \
         CAST(value AS INT) AS n FROM generate_series(0, {})",
        rows - 1
    ))
    .await;
    let job = c.flush_job("app.t").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let b = c
            .rows(&format!(
                "SELECT status FROM system.jobs WHERE job_id = '{job}'"
            ))
            .await;
        match column(&b, "status").pop().as_deref() {
            Some("running") => return (job, true),
            Some("queued") => tokio::time::sleep(Duration::from_millis(2)).await,
            _ => break,
        }
    }
    (job, false)
}

#[tokio::test]
async fn kill_job_cancels_a_running_flush_and_keeps_every_row() {
    let (server, mut c) = setup(&[]).await;
    let (job, running) = running_flush(&mut c, 600_000).await;
    if !running {
        eprintln!("the flush ended before it was seen running; nothing to kill");
        return;
    }
    match c.exec(&format!("KILL JOB '{job}'")).await {
        Ok(_) => {
            let (status, _) = c.wait_job(&job).await;
            assert_eq!(status, "cancelled");
            // Nothing of it was committed: no manifest, no file, every row still hot.
            assert!(
                !server
                    .data_dir()
                    .join("storage/app/t/manifest.json")
                    .exists()
            );
            assert!(
                !server
                    .data_dir()
                    .join("storage/app/t/batch-0.parquet")
                    .exists()
            );
            let d = c.rows("DESCRIBE TABLE app.t").await;
            assert_eq!(column(&d, "hot_rows")[0], "600000");
        }
        // It finished between the look and the kill.
        Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e}"),
    }
    assert_eq!(
        column(&c.rows("SELECT count(*) AS c FROM app.t").await, "c"),
        vec!["600000"]
    );
    c.flush("app.t").await;
    assert_eq!(
        column(&c.rows("SELECT count(*) AS c FROM app.t").await, "c"),
        vec!["600000"]
    );
}

#[tokio::test]
async fn a_second_signal_stops_at_once_and_the_flush_is_retried() {
    let (mut server, mut c) = setup(&[]).await;
    let (job, running) = running_flush(&mut c, 600_000).await;
    drop(c);
    let status = server.stop_twice(Duration::from_millis(100));
    server.launch(&[]);
    let mut c = server.client().await;
    let rows = c
        .rows(&format!(
            "SELECT status, message FROM system.jobs WHERE job_id = '{job}'"
        ))
        .await;
    let state = column(&rows, "status").pop().unwrap();
    let message = column(&rows, "message").pop().unwrap();
    if running && !status.success() {
        // Marked failed by the second signal (or, had it not been saved, at this start).
        assert_eq!(state, "failed", "{message}");
        assert!(
            message.contains("second signal") || message.contains("interrupted"),
            "{message}"
        );
        // Its work was submitted again at this start.
        let retry = message.rsplit(' ').next().unwrap().to_string();
        assert!(retry.starts_with("FL-"), "{message}");
        let (status, why) = c.wait_job(&retry).await;
        assert_eq!(status, "completed", "{why}");
    }
    // Whatever happened, every row is there once, and a flush completes.
    c.flush("app.t").await;
    let counts = c
        .rows("SELECT count(*) AS c, count(DISTINCT id) AS k FROM app.t")
        .await;
    assert_eq!(column(&counts, "c"), vec!["600000"]);
    assert_eq!(column(&counts, "k"), vec!["600000"]);
}

#[tokio::test]
async fn many_small_segments_queue_a_compaction() {
    let (server, mut c) = setup(&[("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "4")]).await;
    for s in 0..4 {
        insert_range(&mut c, s * 10, s * 10 + 10).await;
        c.flush("app.t").await;
    }
    compaction_completed(&mut c).await;
    assert_eq!(
        manifest(&server, "app/t")["segments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 40);
}

#[tokio::test]
async fn replacing_many_cold_rows_queues_a_compaction() {
    let (server, mut c) = setup(&[]).await;
    insert_range(&mut c, 0, 100).await;
    c.flush("app.t").await;
    c.ok("UPDATE app.t SET body = 'new' WHERE id < 20").await;
    c.ok("DELETE FROM app.t WHERE id >= 90").await;
    c.flush("app.t").await;
    compaction_completed(&mut c).await;
    let m = manifest(&server, "app/t");
    assert_eq!(m["segments"].as_array().unwrap().len(), 1, "{m}");
    // 90 live rows and the 10 recent tombstones.
    assert_eq!(m["segments"][0]["rows"], 100);
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 90);
    assert_eq!(
        count(&c.rows("SELECT * FROM app.t WHERE body = 'new'").await),
        20
    );
}

/// A lookup in a large segment reads the pages its version can lie on: keys on the first and
/// last rows of pages and row groups, and versions replaced by a later segment, all answer
/// their own row (single keys, key lists and prepared lookups alike).
#[tokio::test]
async fn lookups_in_a_large_segment_find_every_page() {
    let (_server, mut c) = setup(&[("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "0")]).await;
    c.ok("ALTER TABLE app.t SET (FLUSH_POLICY = 'interval:86400')")
        .await;
    c.ok("INSERT INTO app.t SELECT value AS id, 'b' || value AS body, CAST(value AS INT) AS n FROM generate_series(0, 19999)")
        .await;
    c.flush("app.t").await;
    c.ok("UPDATE app.t SET body = 'new' WHERE id IN (1024, 8192, 15000)")
        .await;
    c.flush("app.t").await;
    let keys = [
        0, 1, 1023, 1024, 1025, 2047, 2048, 8191, 8192, 8193, 12345, 15000, 16383, 16384, 19998,
        19999,
    ];
    for id in keys {
        let body = if [1024, 8192, 15000].contains(&id) {
            "new".to_string()
        } else {
            format!("b{id}")
        };
        let rows = c
            .rows(&format!("SELECT body FROM app.t WHERE id = {id}"))
            .await;
        assert_eq!(column(&rows, "body"), vec![body], "id {id}");
    }
    let list: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let rows = c
        .rows(&format!(
            "SELECT id FROM app.t WHERE id IN ({}) ORDER BY id",
            list.join(", ")
        ))
        .await;
    assert_eq!(column(&rows, "id"), list);
    assert_eq!(
        count(&c.rows("SELECT * FROM app.t WHERE id = 20000").await),
        0
    );
}
