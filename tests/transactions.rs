//! Transactions through SQL BEGIN/COMMIT/ROLLBACK and Flight SQL Begin/EndTransaction; bulk
//! ingest; query limits and cancellation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::{CommandStatementIngest, EndTransaction, TableDefinitionOptions};
use quilldb_tests::{TestServer, column, count, to_status};
use tonic::Code;

/// Minutes of work, in small steps that yield: cancellation and timeouts stop it at once.
const SLOW: &str = "SELECT count(*) AS n FROM generate_series(1, 100000000000)";
/// Minutes of work inside a cross join that feeds an aggregate.
const CROSS: &str = "SELECT sum(a.value * b.value) AS s FROM generate_series(1, 300000) a, \
                     generate_series(1, 300000) b";

async fn table(server: &TestServer) {
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    c.ok("INSERT INTO app.t VALUES (1, 'a'), (2, 'b')").await;
}

#[tokio::test]
async fn sql_transactions_are_invisible_until_commit_and_visible_to_themselves() {
    let server = TestServer::start().await;
    table(&server).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.ok("BEGIN").await;
    assert_eq!(a.ok("INSERT INTO app.t VALUES (3, 'c')").await, 1);
    assert_eq!(a.ok("UPDATE app.t SET v = 'A' WHERE id = 1").await, 1);
    assert_eq!(a.ok("DELETE FROM app.t WHERE id = 2").await, 1);
    let own = a.rows("SELECT id, v FROM app.t ORDER BY id").await;
    assert_eq!(column(&own, "v"), ["A", "c"]);
    // Point lookups read the pending rows too.
    assert_eq!(
        column(&a.rows("SELECT v FROM app.t WHERE id = 3").await, "v"),
        ["c"]
    );
    assert_eq!(count(&a.rows("SELECT v FROM app.t WHERE id = 2").await), 0);
    let others = b.rows("SELECT id, v FROM app.t ORDER BY id").await;
    assert_eq!(column(&others, "v"), ["a", "b"]);
    // A key inserted in the transaction is a duplicate for the transaction's next insert.
    let (code, msg) = a.err("INSERT INTO app.t VALUES (3, 'again')").await;
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    assert_eq!(a.ok("COMMIT").await, 3);
    let after = b.rows("SELECT id, v FROM app.t ORDER BY id").await;
    assert_eq!(column(&after, "id"), ["1", "3"]);
    assert_eq!(column(&after, "v"), ["A", "c"]);

    a.ok("START TRANSACTION").await;
    a.ok("INSERT INTO app.t VALUES (9, 'z')").await;
    a.ok("UPDATE app.t SET v = 'gone' WHERE id = 1").await;
    a.ok("ROLLBACK").await;
    let after = b.rows("SELECT id, v FROM app.t ORDER BY id").await;
    assert_eq!(column(&after, "v"), ["A", "c"]);
    a.ok("BEGIN").await;
    let (code, _) = a.err("BEGIN").await;
    assert_eq!(code, Code::FailedPrecondition);
    a.ok("ROLLBACK").await;
}

#[tokio::test]
async fn a_commit_after_a_conflicting_commit_is_aborted_and_applies_nothing() {
    let server = TestServer::start().await;
    table(&server).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.ok("BEGIN").await;
    a.ok("INSERT INTO app.t VALUES (5, 'mine')").await;
    a.ok("UPDATE app.t SET v = 'from a' WHERE id = 1").await;
    b.ok("UPDATE app.t SET v = 'from b' WHERE id = 1").await;
    let (code, msg) = a.err("COMMIT").await;
    assert_eq!(code, Code::Aborted, "{msg}");
    let rows = b.rows("SELECT id, v FROM app.t ORDER BY id").await;
    assert_eq!(column(&rows, "id"), ["1", "2"]);
    assert_eq!(column(&rows, "v"), ["from b", "b"]);

    // Two transactions inserting the same key: the second to commit is aborted.
    a.ok("BEGIN").await;
    b.ok("BEGIN").await;
    a.ok("INSERT INTO app.t VALUES (7, 'a')").await;
    b.ok("INSERT INTO app.t VALUES (7, 'b')").await;
    a.ok("COMMIT").await;
    let (code, _) = b.err("COMMIT").await;
    assert_eq!(code, Code::Aborted);
    assert_eq!(
        column(&b.rows("SELECT v FROM app.t WHERE id = 7").await, "v"),
        ["a"]
    );
}

#[tokio::test]
async fn flight_sql_transactions_route_statements_by_id() {
    let server = TestServer::start().await;
    table(&server).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let txn = a
        .inner
        .begin_transaction()
        .await
        .map_err(to_status)
        .expect("begin");
    let n = a
        .inner
        .execute_update(
            "INSERT INTO app.t VALUES (4, 'd')".into(),
            Some(txn.clone()),
        )
        .await
        .map_err(to_status)
        .expect("insert");
    assert_eq!(n, 1);
    let info = a
        .inner
        .execute("SELECT count(*) AS n FROM app.t".into(), Some(txn.clone()))
        .await
        .map_err(to_status)
        .expect("query");
    let own = a.fetch(info).await.expect("fetch");
    assert_eq!(column(&own, "n"), ["3"]);
    assert_eq!(
        column(&b.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        ["2"]
    );
    // Another user's session cannot use the id; a made-up id is NOT_FOUND.
    let err = b
        .inner
        .execute_update(
            "DELETE FROM app.t".into(),
            Some(bytes::Bytes::from_static(b"nope")),
        )
        .await
        .map_err(to_status)
        .expect_err("unknown transaction");
    assert_eq!(err.code(), Code::NotFound);
    // Ingest inside the transaction is part of it.
    let batch = quilldb_tests::id_v_batch(&[10, 11], |i| if i == 10 { "x" } else { "y" }.into());
    let n = a
        .ingest("app", "t", vec![batch], Some(txn.clone()))
        .await
        .expect("ingest");
    assert_eq!(n, 2);
    assert_eq!(
        column(&b.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        ["2"]
    );
    a.inner
        .end_transaction(txn.clone(), EndTransaction::Commit)
        .await
        .map_err(to_status)
        .expect("commit");
    assert_eq!(
        column(&b.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        ["5"]
    );
    // The id is gone once committed.
    let err = a
        .inner
        .end_transaction(txn, EndTransaction::Commit)
        .await
        .map_err(to_status)
        .expect_err("ended");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn idle_transactions_expire_and_apply_nothing() {
    let server = TestServer::start_with(&[("QUILLDB_LIMITS__TRANSACTION_IDLE_SECONDS", "1")]).await;
    table(&server).await;
    let mut a = server.client().await;
    a.ok("BEGIN").await;
    a.ok("INSERT INTO app.t VALUES (8, 'late')").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, msg) = a.err("COMMIT").await;
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert_eq!(count(&a.rows("SELECT id FROM app.t WHERE id = 8").await), 0);
    // The session can begin again; a transaction that holds nothing outlives the idle limit
    // (drivers keep one open on every idle connection).
    a.ok("BEGIN").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.ok("INSERT INTO app.t VALUES (9, 'kept')").await;
    assert_eq!(a.ok("COMMIT").await, 1);
}

#[tokio::test]
async fn query_timeout_and_concurrency_limit() {
    let server = TestServer::start_with(&[
        ("QUILLDB_LIMITS__QUERY_TIMEOUT_SECONDS", "1"),
        ("QUILLDB_LIMITS__MAX_CONCURRENT_QUERIES", "1"),
    ])
    .await;
    let mut a = server.client().await;
    let started = std::time::Instant::now();
    let err = a.query(SLOW).await.expect_err("times out");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server goes on serving.
    assert_eq!(column(&a.rows("SELECT 1 AS one").await, "one"), ["1"]);
    // A join that produces batch after batch without polling its input also stops at the
    // limit and frees its query thread: the next query runs at once.
    let err = a.query(CROSS).await.expect_err("times out");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    let started = std::time::Instant::now();
    let rows = a
        .rows("SELECT count(*) AS n FROM generate_series(1, 100000)")
        .await;
    assert_eq!(column(&rows, "n"), ["100000"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timed-out join still held the query threads: {:?}",
        started.elapsed()
    );

    // One query slot: a second query while the first streams is refused.
    let info = a
        .inner
        .execute(SLOW.into(), None)
        .await
        .map_err(to_status)
        .expect("plan");
    let ticket = info.endpoint[0].ticket.clone().expect("ticket");
    let running = a
        .inner
        .do_get(ticket)
        .await
        .map_err(to_status)
        .expect("start");
    let mut b = server.client().await;
    let err = b.query("SELECT 2 AS two").await.expect_err("limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    drop(running);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(column(&b.rows("SELECT 2 AS two").await, "two"), ["2"]);
}

#[tokio::test]
async fn ingest_is_atomic_and_refuses_create_and_replace() {
    let server = TestServer::start().await;
    table(&server).await;
    let mut c = server.client().await;
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let batches = |ids: Vec<Vec<i64>>| {
        let schema = schema.clone();
        futures::stream::iter(
            ids.into_iter()
                .map(move |ids| {
                    Ok(
                        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids))])
                            .expect("batch"),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let cmd = |exists: i32, not_exist: i32| CommandStatementIngest {
        table_definition_options: Some(TableDefinitionOptions {
            if_not_exist: not_exist,
            if_exists: exists,
        }),
        table: "t".into(),
        schema: Some("app".into()),
        ..Default::default()
    };
    // Three batches in one call; the last holds a duplicate: nothing of the call is written.
    let err = c
        .inner
        .execute_ingest(
            cmd(2, 2),
            batches(vec![vec![100, 101], vec![102], vec![103, 1]]),
        )
        .await
        .map_err(to_status)
        .expect_err("duplicate");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert!(err.message().contains("id = 1"), "{err}");
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        ["2"]
    );
    let n = c
        .inner
        .execute_ingest(cmd(2, 2), batches(vec![vec![100, 101], vec![102]]))
        .await
        .map_err(to_status)
        .expect("ingest");
    assert_eq!(n, 3);
    for (exists, not_exist, words) in [(3, 1, "cannot replace"), (1, 1, "cannot create")] {
        let err = c
            .inner
            .execute_ingest(cmd(exists, not_exist), batches(vec![vec![500]]))
            .await
            .map_err(to_status)
            .expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(words), "{err}");
    }
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        ["5"]
    );
}
