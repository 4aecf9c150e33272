//! Crash tests: the server is killed right after each step of a flush (and of a compaction),
//! restarted, and must answer exactly as before: nothing lost, nothing duplicated, and the
//! interrupted work is retried.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use quilldb_tests::s3::S3Server;
use quilldb_tests::{Backend, Client, TestServer, column, pretty};

const SNAPSHOT: &str = "SELECT id, body, n FROM app.t ORDER BY id";

/// Cold rows from a clean flush, then hot changes on top of them: updates of cold rows, deletes
/// of cold rows and new rows.
async fn prepare(server: &TestServer) -> (Client, String) {
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT)")
        .await;
    let values: Vec<String> = (0..50).map(|i| format!("({i}, 'b{i}', {i})")).collect();
    c.ok(&format!("INSERT INTO app.t VALUES {}", values.join(", ")))
        .await;
    c.flush("app.t").await;
    c.ok("UPDATE app.t SET body = 'updated' WHERE id < 5").await;
    c.ok("DELETE FROM app.t WHERE id >= 45").await;
    let more: Vec<String> = (50..60).map(|i| format!("({i}, 'h{i}', {i})")).collect();
    c.ok(&format!("INSERT INTO app.t VALUES {}", more.join(", ")))
        .await;
    let expected = pretty(&c.rows(SNAPSHOT).await);
    (c, expected)
}

async fn check(c: &mut Client, expected: &str) {
    assert_eq!(pretty(&c.rows(SNAPSHOT).await), expected);
    let counts = c
        .rows("SELECT count(*) AS rows, count(DISTINCT id) AS keys FROM app.t")
        .await;
    assert_eq!(column(&counts, "rows"), vec!["55"]);
    assert_eq!(column(&counts, "keys"), vec!["55"]);
    // Keys that are cold, hot or deleted behave as such.
    assert_eq!(
        c.err("INSERT INTO app.t VALUES (1, 'dup', 0)").await.0,
        tonic::Code::AlreadyExists
    );
    assert_eq!(
        c.err("INSERT INTO app.t VALUES (55, 'dup', 0)").await.0,
        tonic::Code::AlreadyExists
    );
}

/// The Parquet files of app.t: in the data folder, or on the test S3 server.
fn parquet_files(server: &TestServer, b: Backend) -> usize {
    if b == Backend::S3Cold {
        return S3Server::shared()
            .objects(&format!("{}/app/t", server.s3_prefix()))
            .iter()
            .filter(|p| p.ends_with(".parquet"))
            .count();
    }
    std::fs::read_dir(server.data_dir().join("storage/app/t"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".parquet")
        })
        .count()
}

/// `b` is `Cold` (the data folder) or `S3Cold` (a bucket of the test S3 server).
async fn crash_during_flush_at(step: &str, b: Backend) {
    let mut server = b.server().await;
    let (c, expected) = prepare(&server).await;
    drop(c);
    server.stop();
    server.set_env("QUILLDB_FAILPOINT", Some(step));
    server.launch(&[]);
    let mut c = server.client().await;
    // The process may die before the answer arrives: the job is found in system.jobs later.
    let _ = c.query("STORAGE FLUSH TABLE app.t").await;
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(
        !status.success(),
        "the failpoint {step} must kill the process"
    );

    server.set_env("QUILLDB_FAILPOINT", None);
    server.launch(&[]);
    let mut c = server.client().await;
    check(&mut c, &expected).await;
    // The interrupted job is failed and its work retried.
    let rows = c
        .rows("SELECT status, message FROM system.jobs WHERE message LIKE 'interrupted%'")
        .await;
    assert_eq!(column(&rows, "status"), vec!["failed"], "{step}");
    let message = column(&rows, "message").pop().unwrap();
    assert!(message.contains("interrupted"), "{message}");
    let retry = message.rsplit(' ').next().unwrap().to_string();
    let (status, why) = c.wait_job(&retry).await;
    assert!(
        status == "completed" || status == "skipped",
        "{step}: {status} {why}"
    );
    check(&mut c, &expected).await;
    // Everything is cold now; one more round of writes and a flush still agree.
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "hot_rows")[0], "0", "{step}");
    c.ok("UPDATE app.t SET n = -1 WHERE id = 50").await;
    c.flush("app.t").await;
    assert_eq!(
        column(&c.rows("SELECT n FROM app.t WHERE id = 50").await, "n"),
        vec!["-1"]
    );
    check(
        &mut c,
        &expected.replace("| 50 | h50     | 50 |", "| 50 | h50     | -1 |"),
    )
    .await;
    // No orphan: every Parquet file left is a segment of the manifest (once a compaction the
    // flushes queued has removed the segments it replaced).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let segments = c.rows("SHOW MANIFEST app.t").await;
        let files = parquet_files(&server, b);
        if files == quilldb_tests::count(&segments) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{step}: {files} files for {}",
            pretty(&segments)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The crash tests, on disk and on S3.
macro_rules! on_both {
    ($($name:ident => $body:ident($($arg:expr),*);)*) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn disk() {
                    $body($($arg,)* Backend::Cold).await
                }

                #[tokio::test]
                async fn s3() {
                    $body($($arg,)* Backend::S3Cold).await
                }
            }
        )*
    };
}

on_both! {
    crash_after_the_horizon_is_set => crash_during_flush_at("flush:begin");
    crash_after_the_parquet_file_is_written => crash_during_flush_at("flush:parquet");
    crash_after_the_manifest_is_written => crash_during_flush_at("flush:manifest");
    crash_after_the_hot_rows_are_trimmed => crash_during_flush_at("flush:trim");
    crash_after_a_compaction_manifest => crash_during_compaction();
}

async fn crash_during_compaction(b: Backend) {
    // Only the explicit compaction runs (none queued by the flushes).
    let mut server = b
        .server_with(&[("QUILLDB_STORAGE__AUTO_COMPACT_SEGMENTS", "0")])
        .await;
    let (mut c, expected) = prepare(&server).await;
    c.flush("app.t").await;
    drop(c);
    server.stop();
    server.set_env("QUILLDB_FAILPOINT", Some("compact:manifest"));
    server.launch(&[]);
    let mut c = server.client().await;
    // The process may die before the answer arrives.
    let _ = c.query("STORAGE COMPACT TABLE app.t").await;
    assert!(!server.wait_exit(Duration::from_secs(30)).success());
    server.set_env("QUILLDB_FAILPOINT", None);
    server.launch(&[]);
    let mut c = server.client().await;
    check(&mut c, &expected).await;
    // The retried compaction removes the files the manifest no longer names.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let files = parquet_files(&server, b);
        if files == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{files} parquet files left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check(&mut c, &expected).await;
}
