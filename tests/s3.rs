//! S3 storages against a real S3-compatible server (s3s-fs on loopback, with SigV4
//! authentication): the cold path end to end, credentials that never show, and the faults a
//! bucket brings: an outage during a flush, bad settings, slow answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quilldb_tests::s3::{ACCESS_KEY, BUCKET, S3Server, SECRET_KEY, STORAGE};
use quilldb_tests::{Client, TestServer, column, count, http_get, metric, pretty};
use tonic::Code;

/// A server with the storage `s3test` on `s3` (objects under `prefix`) and `app.t` on it.
async fn setup(s3: &S3Server, env: &[(&str, &str)], prefix: &str) -> (TestServer, Client) {
    let server = TestServer::start_with(env).await;
    let mut c = server.client().await;
    c.ok(&s3.create_storage_sql(prefix)).await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok(&format!(
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT) WITH (STORAGE_ID = '{STORAGE}')"
    ))
    .await;
    (server, c)
}

async fn insert(c: &mut Client, from: i64, to: i64) {
    let values: Vec<String> = (from..to)
        .map(|i| format!("({i}, 'body-{i}', {})", i % 7))
        .collect();
    c.ok(&format!("INSERT INTO app.t VALUES {}", values.join(", ")))
        .await;
}

#[tokio::test]
async fn the_cold_path_runs_on_a_bucket_and_credentials_never_show() {
    let s3 = S3Server::start();
    let (mut server, mut c) = setup(&s3, &[], "quill-data").await;
    insert(&mut c, 0, 200).await;
    c.flush("app.t").await;
    insert(&mut c, 200, 300).await;
    c.ok("UPDATE app.t SET body = 'changed' WHERE id < 10")
        .await;
    c.ok("DELETE FROM app.t WHERE id >= 290").await;
    c.flush("app.t").await;

    // The segments and the manifest are objects in the bucket, under the storage's prefix.
    let objects = s3.objects("quill-data/app/t");
    assert!(
        objects.contains(&"quill-data/app/t/manifest.json".to_string()),
        "{objects:?}"
    );
    assert_eq!(
        objects.iter().filter(|o| o.ends_with(".parquet")).count(),
        2,
        "{objects:?}"
    );
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "hot_rows")[0], "0");

    // Reads: a lookup, a pruned scan, an aggregate, from the bucket.
    let expected_count = "290";
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        vec![expected_count]
    );
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t WHERE id = 3").await, "body"),
        vec!["changed"]
    );
    assert_eq!(
        column(
            &c.rows("SELECT body FROM app.t WHERE id = 150").await,
            "body"
        ),
        vec!["body-150"]
    );
    assert_eq!(
        count(&c.rows("SELECT * FROM app.t WHERE id = 295").await),
        0
    );
    // A lookup opens only the segment whose key range holds the key.
    let before = metric(&server, "quill_cold_segments_read_total");
    assert_eq!(
        column(
            &c.rows("SELECT body FROM app.t WHERE id = 250").await,
            "body"
        ),
        vec!["body-250"]
    );
    assert_eq!(
        metric(&server, "quill_cold_segments_read_total") - before,
        1.0
    );

    // Compaction on the bucket: one segment left, the old objects gone.
    let (status, message) = c.compact("app.t").await;
    assert_eq!(status, "completed", "{message}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while s3
        .objects("quill-data/app/t")
        .iter()
        .filter(|o| o.ends_with(".parquet"))
        .count()
        != 1
    {
        assert!(Instant::now() < deadline, "{:?}", s3.objects("quill-data"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        vec![expected_count]
    );

    // USER tables: one folder per user in the bucket.
    c.ok(&format!(
        "CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT) WITH (STORAGE_ID = '{STORAGE}')"
    ))
    .await;
    c.ok("CREATE USER alice PASSWORD 'pw-alice-1' ROLE user")
        .await;
    let mut alice = server.client_as("alice", "pw-alice-1").await.unwrap();
    alice
        .ok("INSERT INTO app.notes VALUES (1, 'mine'), (2, 'also mine')")
        .await;
    c.flush("app.notes").await;
    assert!(
        s3.objects("quill-data/app/notes/alice")
            .iter()
            .any(|o| o.ends_with(".parquet")),
        "{:?}",
        s3.objects("quill-data")
    );
    assert_eq!(count(&alice.rows("SELECT * FROM app.notes").await), 2);

    // What the server shows of the storage: where it is and where its keys come from.
    let shown = c.rows("SHOW STORAGES").await;
    let text = pretty(&shown);
    assert!(text.contains(&s3.endpoint()), "{text}");
    assert!(text.contains("configuration (storage.s3.s3test)"), "{text}");
    let listed = pretty(&c.rows("SELECT * FROM system.storages").await);
    let (_, metrics) = http_get(&server.http_url, "/metrics");

    // A restart reads the same rows from the bucket (manifests are loaded again).
    drop(alice);
    server.stop();
    server.launch(&[]);
    let mut c = server.client().await;
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        vec![expected_count]
    );
    let mut alice = server.client_as("alice", "pw-alice-1").await.unwrap();
    assert_eq!(count(&alice.rows("SELECT * FROM app.notes").await), 2);

    // DROP TABLE removes the table's objects from the bucket.
    c.ok("DROP TABLE app.t").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s3.objects("quill-data/app/t").is_empty() {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            s3.objects("quill-data/app/t")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The secret key is nowhere a user or an operator can read it.
    let log = server.log();
    for (what, text) in [
        ("SHOW STORAGES", text.as_str()),
        ("system.storages", listed.as_str()),
        ("/metrics", metrics.as_str()),
        ("the log", log.as_str()),
    ] {
        assert!(!text.contains(SECRET_KEY), "{what} shows the secret");
        assert!(!text.contains(ACCESS_KEY), "{what} shows the access key");
    }
}

#[tokio::test]
async fn credentials_are_refused_in_sql() {
    let s3 = S3Server::start();
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let (code, msg) = c
        .err(&format!(
            "CREATE STORAGE leak TYPE 's3' BUCKET '{BUCKET}' ENDPOINT '{}' \
             SECRET_ACCESS_KEY '{SECRET_KEY}'",
            s3.endpoint()
        ))
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("[storage.s3.leak]"), "{msg}");
    assert!(
        !server.log().contains(SECRET_KEY),
        "the log shows the secret"
    );
    assert_eq!(count(&c.rows("SHOW STORAGES").await), 1);
}

#[tokio::test]
async fn bad_settings_are_refused_by_create_storage_with_the_storage_named() {
    let s3 = S3Server::start();
    let server = TestServer::start_with(&[
        ("QUILLDB_STORAGE__S3__WRONGKEYS__ACCESS_KEY_ID", ACCESS_KEY),
        (
            "QUILLDB_STORAGE__S3__WRONGKEYS__SECRET_ACCESS_KEY",
            "not-the-secret",
        ),
        ("QUILLDB_STORAGE__S3__NOBUCKET__ACCESS_KEY_ID", ACCESS_KEY),
        (
            "QUILLDB_STORAGE__S3__NOBUCKET__SECRET_ACCESS_KEY",
            SECRET_KEY,
        ),
        ("QUILLDB_STORAGE__S3__NOWHERE__ACCESS_KEY_ID", ACCESS_KEY),
        (
            "QUILLDB_STORAGE__S3__NOWHERE__SECRET_ACCESS_KEY",
            SECRET_KEY,
        ),
        ("QUILLDB_STORAGE__OBJECT_TIMEOUT_SECONDS", "2"),
        ("QUILLDB_STORAGE__OBJECT_RETRIES", "1"),
    ])
    .await;
    let mut c = server.client().await;
    let endpoint = s3.endpoint();
    for (name, bucket, endpoint, hint) in [
        ("wrongkeys", BUCKET, endpoint.as_str(), "credentials"),
        (
            "nobucket",
            "no-such-bucket",
            endpoint.as_str(),
            "no-such-bucket",
        ),
        ("nowhere", BUCKET, "http://127.0.0.1:9", "127.0.0.1:9"),
    ] {
        let started = Instant::now();
        let (code, msg) = c
            .err(&format!(
                "CREATE STORAGE {name} TYPE 's3' BUCKET '{bucket}' ENDPOINT '{endpoint}'"
            ))
            .await;
        eprintln!("{name}: {msg}");
        assert_eq!(code, Code::FailedPrecondition, "{name}: {msg}");
        assert!(msg.contains(&format!("storage {name}")), "{msg}");
        assert!(msg.contains(hint), "{name}: {msg}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name} took {:?}",
            started.elapsed()
        );
        assert!(!msg.contains("not-the-secret"), "{msg}");
    }
    // Nothing was kept, and the server goes on serving.
    assert_eq!(count(&c.rows("SHOW STORAGES").await), 1);
    assert_eq!(column(&c.rows("SELECT 1 AS one").await, "one"), vec!["1"]);
    // A storage without credentials anywhere is refused before anything is sent.
    let (code, msg) = c
        .err(&format!(
            "CREATE STORAGE nokeys TYPE 's3' BUCKET '{BUCKET}' ENDPOINT '{}'",
            s3.endpoint()
        ))
        .await;
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("storage.s3.nokeys"), "{msg}");
}

#[tokio::test]
async fn an_outage_during_a_flush_fails_the_job_and_keeps_the_rows_hot() {
    let s3 = S3Server::start();
    let (_server, mut c) = setup(
        &s3,
        &[
            ("QUILLDB_STORAGE__OBJECT_TIMEOUT_SECONDS", "2"),
            ("QUILLDB_STORAGE__OBJECT_RETRIES", "1"),
        ],
        "outage",
    )
    .await;
    insert(&mut c, 0, 100).await;
    c.flush("app.t").await;
    insert(&mut c, 100, 150).await;
    c.ok("UPDATE app.t SET body = 'late' WHERE id = 5").await;
    let before = pretty(
        &c.rows("SELECT * FROM app.t WHERE id >= 100 ORDER BY id")
            .await,
    );

    s3.stop();
    let job = c.flush_job("app.t").await;
    let (status, message) = c.wait_job(&job).await;
    eprintln!("flush during the outage: {status}: {message}");
    assert_eq!(status, "failed", "{message}");
    assert!(message.contains("storage s3test"), "{message}");
    // The hot rows are all there and readable; writes go on.
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_ne!(column(&d, "hot_rows")[0], "0");
    assert_eq!(
        pretty(
            &c.rows("SELECT * FROM app.t WHERE id >= 100 ORDER BY id")
                .await
        ),
        before
    );
    c.ok("INSERT INTO app.t VALUES (1000, 'during', 0)").await;

    // Back: the next flush succeeds and nothing is lost or doubled.
    s3.resume();
    c.flush("app.t").await;
    let counts = c
        .rows("SELECT count(*) AS n, count(DISTINCT id) AS k FROM app.t")
        .await;
    assert_eq!(column(&counts, "n"), vec!["151"]);
    assert_eq!(column(&counts, "k"), vec!["151"]);
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t WHERE id = 5").await, "body"),
        vec!["late"]
    );
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "hot_rows")[0], "0");
    // The failed try left no object the manifest does not name.
    let segments = count(&c.rows("SHOW MANIFEST app.t").await);
    let files = s3
        .objects("outage/app/t")
        .iter()
        .filter(|o| o.ends_with(".parquet"))
        .count();
    assert_eq!(files, segments, "{:?}", s3.objects("outage"));
}

#[tokio::test]
async fn a_kill_in_the_middle_of_an_upload_loses_nothing() {
    let s3 = S3Server::start();
    let (mut server, mut c) = setup(&s3, &[], "killed").await;
    insert(&mut c, 0, 500).await;
    c.flush("app.t").await;
    insert(&mut c, 500, 800).await;
    c.ok("DELETE FROM app.t WHERE id < 20").await;
    let expected = pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await);
    // Every request takes a while: the flush is caught mid-way.
    s3.slow_down(Duration::from_millis(400));
    let job = c.flush_job("app.t").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = c
            .rows(&format!(
                "SELECT status FROM system.jobs WHERE job_id = '{job}'"
            ))
            .await;
        if column(&b, "status") == vec!["running"] {
            break;
        }
        assert!(Instant::now() < deadline, "the flush never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    s3.slow_down(Duration::ZERO);
    server.launch(&[]);
    let mut c = server.client().await;
    assert_eq!(
        pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await),
        expected
    );
    c.flush("app.t").await;
    assert_eq!(
        pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await),
        expected
    );
    let counts = c
        .rows("SELECT count(*) AS n, count(DISTINCT id) AS k FROM app.t")
        .await;
    assert_eq!(column(&counts, "n"), column(&counts, "k"));
    // Orphans of the killed flush are gone once the retried work is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let segments = count(&c.rows("SHOW MANIFEST app.t").await);
        let files = s3
            .objects("killed/app/t")
            .iter()
            .filter(|o| o.ends_with(".parquet"))
            .count();
        if files == segments {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{files} files, {segments} segments: {:?}",
            s3.objects("killed")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn slow_answers_meet_the_query_timeout() {
    let s3 = S3Server::start();
    let (_server, mut c) = setup(
        &s3,
        &[("QUILLDB_LIMITS__QUERY_TIMEOUT_SECONDS", "2")],
        "slow",
    )
    .await;
    insert(&mut c, 0, 300).await;
    c.flush("app.t").await;
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 300);
    s3.slow_down(Duration::from_secs(20));
    let started = Instant::now();
    let (code, msg) = c.err("SELECT * FROM app.t WHERE body LIKE '%9%'").await;
    let took = started.elapsed();
    assert_eq!(code, Code::DeadlineExceeded, "{msg}");
    assert!(took < Duration::from_secs(10), "the timeout took {took:?}");
    // The server answers other work meanwhile, and the bucket again once it is quick.
    assert_eq!(column(&c.rows("SELECT 1 AS one").await, "one"), vec!["1"]);
    s3.slow_down(Duration::ZERO);
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 300);
}

/// The Parquet files of a table folder on local disk.
fn disk_files(server: &TestServer, folder: &str) -> usize {
    std::fs::read_dir(server.data_dir().join("storage").join(folder))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                .count()
        })
        .unwrap_or(0)
}

fn s3_files(s3: &S3Server, prefix: &str) -> usize {
    s3.objects(prefix)
        .iter()
        .filter(|o| o.ends_with(".parquet"))
        .count()
}

#[tokio::test]
async fn a_table_moves_between_disk_and_a_bucket_while_it_is_written_and_read() {
    let s3 = S3Server::start();
    // The old copies go once no query planned before the switch can read them: the query
    // timeout later.
    let server = TestServer::start_with(&[("QUILLDB_LIMITS__QUERY_TIMEOUT_SECONDS", "2")]).await;
    let mut c = server.client().await;
    c.ok(&s3.create_storage_sql("moved")).await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT)")
        .await;
    insert(&mut c, 0, 300).await;
    c.flush("app.t").await;
    insert(&mut c, 300, 400).await;
    c.ok("UPDATE app.t SET body = 'changed' WHERE id % 10 = 0")
        .await;
    c.flush("app.t").await;
    insert(&mut c, 400, 450).await;
    c.ok("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("CREATE USER alice PASSWORD 'pw-alice-1' ROLE user")
        .await;
    let mut alice = server.client_as("alice", "pw-alice-1").await.unwrap();
    alice
        .ok("INSERT INTO app.notes VALUES (1, 'one'), (2, 'two')")
        .await;
    c.flush("app.notes").await;
    alice.ok("INSERT INTO app.notes VALUES (3, 'hot')").await;
    assert_eq!(disk_files(&server, "app/t"), 2);

    // Refusals first: a user, the same storage, a storage that does not exist.
    let (code, msg) = alice
        .err("ALTER TABLE app.notes SET (STORAGE_ID = 's3test')")
        .await;
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    let (code, msg) = c.err("ALTER TABLE app.t SET (STORAGE_ID = 'local')").await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let (code, msg) = c
        .err("ALTER TABLE app.t SET (STORAGE_ID = 'nowhere')")
        .await;
    assert_eq!(code, Code::NotFound, "{msg}");

    // The move, with a writer and a reader going on beside it.
    let mut writer = server.client().await;
    let mut reader = server.client().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut i, mut reads) = (1000, 0);
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                writer
                    .ok(&format!("INSERT INTO app.t VALUES ({i}, 'during', 1)"))
                    .await;
                i += 1;
                let n = column(&reader.rows("SELECT count(*) AS n FROM app.t").await, "n");
                assert!(n[0].parse::<i64>().unwrap() >= 450 + (i - 1001), "{n:?}");
                reads += 1;
            }
            (i - 1000, reads)
        })
    };
    let job = column(
        &c.rows("ALTER TABLE app.t SET (STORAGE_ID = 's3test')")
            .await,
        "job_id",
    )
    .pop()
    .unwrap();
    let (status, message) = c.wait_job(&job).await;
    assert_eq!(status, "completed", "{message}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (written, reads) = load.await.unwrap();
    assert!(written > 0 && reads > 0);
    eprintln!("{job}: {message}; {written} rows written and {reads} counts read meanwhile");

    // One copy, in the bucket; the rows as they were plus those written meanwhile.
    assert_eq!(disk_files(&server, "app/t"), 0);
    assert_eq!(s3_files(&s3, "moved/app/t"), 2);
    let tables = c
        .rows("SELECT storage_id FROM system.tables WHERE table_name = 't'")
        .await;
    assert_eq!(column(&tables, "storage_id"), vec!["s3test"]);
    let counts = c
        .rows("SELECT count(*) AS n, count(DISTINCT id) AS k FROM app.t")
        .await;
    assert_eq!(column(&counts, "n"), vec![(450 + written).to_string()]);
    assert_eq!(column(&counts, "k"), column(&counts, "n"));
    assert_eq!(
        column(
            &c.rows("SELECT body FROM app.t WHERE id = 120").await,
            "body"
        ),
        vec!["changed"]
    );
    // Flushes go to the new storage now.
    c.flush("app.t").await;
    assert_eq!(s3_files(&s3, "moved/app/t"), 3);
    assert_eq!(disk_files(&server, "app/t"), 0);

    // A USER table moves every user's folder.
    let job = column(
        &c.rows("ALTER TABLE app.notes SET STORAGE_ID = 's3test'")
            .await,
        "job_id",
    )
    .pop()
    .unwrap();
    assert_eq!(c.wait_job(&job).await.0, "completed");
    assert_eq!(s3_files(&s3, "moved/app/notes/alice"), 1);
    assert_eq!(disk_files(&server, "app/notes/alice"), 0);
    assert_eq!(
        column(
            &alice.rows("SELECT body FROM app.notes ORDER BY id").await,
            "body"
        ),
        vec!["one", "two", "hot"]
    );

    // And back to disk.
    let before = pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await);
    let job = column(
        &c.rows("ALTER TABLE app.t SET (STORAGE_ID = 'local')").await,
        "job_id",
    )
    .pop()
    .unwrap();
    assert_eq!(c.wait_job(&job).await.0, "completed");
    assert_eq!(s3_files(&s3, "moved/app/t"), 0);
    assert_eq!(disk_files(&server, "app/t"), 3);
    assert_eq!(
        pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await),
        before
    );
}

/// The server killed after each step of a move: one consistent copy, the same rows, and the
/// move finished by the retried job.
async fn crash_during_move_at(step: &str) {
    let s3 = S3Server::start();
    let mut server =
        TestServer::start_with(&[("QUILLDB_LIMITS__QUERY_TIMEOUT_SECONDS", "2")]).await;
    let mut c = server.client().await;
    c.ok(&s3.create_storage_sql("crash")).await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT)")
        .await;
    insert(&mut c, 0, 200).await;
    c.flush("app.t").await;
    insert(&mut c, 200, 260).await;
    c.flush("app.t").await;
    c.ok("DELETE FROM app.t WHERE id < 5").await;
    let expected = pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await);
    drop(c);
    server.stop();
    server.set_env("QUILLDB_FAILPOINT", Some(step));
    server.launch(&[]);
    let mut c = server.client().await;
    let _ = c
        .query("ALTER TABLE app.t SET (STORAGE_ID = 's3test')")
        .await;
    assert!(
        !server.wait_exit(Duration::from_secs(30)).success(),
        "{step}"
    );
    server.set_env("QUILLDB_FAILPOINT", None);
    server.launch(&[]);
    let mut c = server.client().await;
    assert_eq!(
        pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await),
        expected,
        "{step}"
    );
    let rows = c
        .rows("SELECT message FROM system.jobs WHERE job_type = 'move' AND message LIKE 'interrupted%'")
        .await;
    let message = column(&rows, "message").pop().unwrap();
    let retry = message.rsplit(' ').next().unwrap().to_string();
    let (status, why) = c.wait_job(&retry).await;
    assert_eq!(status, "completed", "{step}: {why}");
    assert_eq!(
        pretty(&c.rows("SELECT * FROM app.t ORDER BY id").await),
        expected,
        "{step}"
    );
    assert_eq!(disk_files(&server, "app/t"), 0, "{step}");
    assert_eq!(s3_files(&s3, "crash/app/t"), 2, "{step}");
    let tables = c
        .rows("SELECT storage_id FROM system.tables WHERE table_name = 't'")
        .await;
    assert_eq!(column(&tables, "storage_id"), vec!["s3test"]);
}

#[tokio::test]
async fn a_crash_after_the_copy_leaves_one_copy() {
    crash_during_move_at("move:copied").await;
}

#[tokio::test]
async fn a_crash_after_the_switch_leaves_one_copy() {
    crash_during_move_at("move:switched").await;
}
