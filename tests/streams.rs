//! STREAM tables: per-user rows with a TTL applied at read time, time-bucketed eviction by a
//! `stream_eviction` job, never flushed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use quilldb_tests::{Client, TestServer, column, count};
use tonic::Code;

async fn setup(server: &TestServer, ttl: u64) -> (Client, Client, Client) {
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok(&format!(
        "CREATE STREAM TABLE app.ev (id BIGINT PRIMARY KEY, body TEXT) WITH (TTL_SECONDS = {ttl})"
    ))
    .await;
    for u in ["alice", "bob"] {
        root.ok(&format!("CREATE USER {u} WITH PASSWORD 'password-{u}'"))
            .await;
    }
    let alice = server.client_as("alice", "password-alice").await.unwrap();
    let bob = server.client_as("bob", "password-bob").await.unwrap();
    (root, alice, bob)
}

/// Waits until `sql` answers `n` rows.
async fn until_rows(c: &mut Client, sql: &str, n: usize, limit: Duration) {
    let started = Instant::now();
    loop {
        let got = count(&c.rows(sql).await);
        if got == n {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{sql}: {got} rows, waiting for {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn stream_tables_follow_the_creation_rules() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    let (code, msg) = c
        .err("CREATE STREAM TABLE app.s (id BIGINT PRIMARY KEY)")
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("TTL_SECONDS"), "{msg}");
    let (code, msg) = c
        .err(
            "CREATE STREAM TABLE app.s (id BIGINT PRIMARY KEY) \
             WITH (TTL_SECONDS = 5, FLUSH_POLICY = 'rows:10')",
        )
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("FLUSH_POLICY"), "{msg}");
    let (code, msg) = c
        .err("CREATE TABLE app.s (id BIGINT PRIMARY KEY) WITH (TTL_SECONDS = 5)")
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    c.ok("CREATE STREAM TABLE app.s (id BIGINT PRIMARY KEY, v TEXT) WITH (TTL_SECONDS = 5)")
        .await;
    c.ok("INSERT INTO app.s VALUES (1, 'x')").await;
    let (code, msg) = c.err("STORAGE FLUSH TABLE app.s").await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let tables = c
        .rows("SELECT table_type, ttl_seconds FROM system.tables WHERE table_name = 's'")
        .await;
    assert_eq!(column(&tables, "table_type"), vec!["STREAM"]);
    assert_eq!(column(&tables, "ttl_seconds"), vec!["5"]);
}

#[tokio::test]
async fn rows_expire_at_read_time_per_user_and_keys_come_back() {
    let server = TestServer::start().await;
    let (_root, mut alice, mut bob) = setup(&server, 2).await;
    alice
        .ok("INSERT INTO app.ev VALUES (1, 'a1'), (2, 'a2')")
        .await;
    bob.ok("INSERT INTO app.ev VALUES (1, 'b1')").await;
    let written = Instant::now();
    // Each user sees their own rows; the same key lives in both partitions.
    assert_eq!(
        column(
            &alice.rows("SELECT body FROM app.ev ORDER BY id").await,
            "body"
        ),
        vec!["a1", "a2"]
    );
    assert_eq!(
        column(&bob.rows("SELECT body FROM app.ev").await, "body"),
        vec!["b1"]
    );
    let (code, _) = alice.err("INSERT INTO app.ev VALUES (1, 'again')").await;
    assert_eq!(code, Code::AlreadyExists);
    // A statement prepared while the rows are alive applies the TTL when it runs.
    let mut prepared = alice
        .inner
        .prepare("SELECT id FROM app.ev WHERE id = 1".into(), None)
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    assert_eq!(count(&alice.fetch(info).await.unwrap()), 1);

    let expiry = Duration::from_millis(2100).saturating_sub(written.elapsed());
    tokio::time::sleep(expiry).await;
    assert_eq!(count(&alice.rows("SELECT * FROM app.ev").await), 0);
    assert_eq!(
        count(&bob.rows("SELECT * FROM app.ev WHERE id = 1").await),
        0
    );
    let info = prepared.execute().await.unwrap();
    assert_eq!(count(&alice.fetch(info).await.unwrap()), 0);
    // Expired rows cannot be updated or deleted, and their keys can be written again.
    assert_eq!(
        alice.ok("UPDATE app.ev SET body = 'x' WHERE id = 2").await,
        0
    );
    assert_eq!(alice.ok("DELETE FROM app.ev WHERE id = 2").await, 0);
    alice.ok("INSERT INTO app.ev VALUES (1, 'a1 again')").await;
    assert_eq!(
        column(&alice.rows("SELECT body FROM app.ev").await, "body"),
        vec!["a1 again"]
    );
    assert_eq!(count(&bob.rows("SELECT * FROM app.ev").await), 0);
}

#[tokio::test]
async fn eviction_jobs_remove_expired_buckets_and_alter_changes_the_ttl() {
    let server = TestServer::start_with(&[("QUILLDB_JOBS__POLICY_CHECK_MS", "100")]).await;
    let (mut root, mut alice, mut bob) = setup(&server, 1).await;
    for id in 0..50 {
        alice
            .ok(&format!("INSERT INTO app.ev VALUES ({id}, 'a')"))
            .await;
    }
    bob.ok("INSERT INTO app.ev VALUES (1, 'b')").await;
    // The rows expire after 1 s; their bucket (1 s wide) is evicted once it has ended too.
    let started = Instant::now();
    let jobs = loop {
        let jobs = root
            .rows(
                "SELECT rows, message FROM system.jobs \
                 WHERE job_type = 'stream_eviction' AND status = 'completed'",
            )
            .await;
        let evicted: u64 = column(&jobs, "rows")
            .iter()
            .map(|r| r.parse::<u64>().unwrap())
            .sum();
        if evicted >= 51 {
            break jobs;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no eviction of the 51 rows: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        column(&jobs, "message")
            .iter()
            .any(|m| m.contains("evicted")),
        "{jobs:?}"
    );
    let described = alice.rows("DESCRIBE TABLE app.ev").await;
    assert_eq!(column(&described, "hot_rows")[0], "0", "{described:?}");
    assert_eq!(count(&alice.rows("SELECT * FROM app.ev").await), 0);
    // Nothing else was touched: a fresh row stays; a longer TTL keeps rows longer at once.
    root.ok("ALTER TABLE app.ev SET (TTL_SECONDS = 3600)").await;
    alice.ok("INSERT INTO app.ev VALUES (7, 'kept')").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    until_rows(
        &mut alice,
        "SELECT * FROM app.ev",
        1,
        Duration::from_secs(1),
    )
    .await;
    // And a shorter one hides it at once (the form without brackets works too).
    root.ok("ALTER TABLE app.ev SET TTL_SECONDS = 1").await;
    assert_eq!(count(&alice.rows("SELECT * FROM app.ev").await), 0);
    let ttl = root
        .rows("SELECT ttl_seconds FROM system.tables WHERE table_name = 'ev'")
        .await;
    assert_eq!(column(&ttl, "ttl_seconds"), vec!["1"]);
}
