//! Live queries over DoExchange: the message order, snapshot then changes, filters moving rows
//! in and out, projections, options, isolation, and every way a subscription ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int8Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use quilldb_flight::EventKind;
use quilldb_tests::{Client, Live, LiveEvent, TestServer, column};
use tonic::Code;

fn kind(e: &LiveEvent) -> EventKind {
    EventKind::try_from(e.0.kind).unwrap()
}

/// `(id, _op)` of each row of a batch.
fn ops(b: &RecordBatch) -> Vec<(i64, i8)> {
    let ids = b.column_by_name("id").unwrap();
    let ids = ids.as_any().downcast_ref::<Int64Array>().unwrap();
    let op = b.column_by_name("_op").unwrap();
    let op = op.as_any().downcast_ref::<Int8Array>().unwrap();
    (0..b.num_rows())
        .map(|i| (ids.value(i), op.value(i)))
        .collect()
}

/// Reads ACK, the INITIAL batches and INITIAL_DONE; answers the snapshot's `(id, _op)`s.
async fn snapshot(live: &mut Live) -> Vec<(i64, i8)> {
    live.schema().await;
    let ack = live.next().await;
    assert_eq!(kind(&ack), EventKind::Ack, "{ack:?}");
    assert!(ack.1.is_none());
    let mut rows = Vec::new();
    loop {
        let e = live.next().await;
        match kind(&e) {
            EventKind::Initial => rows.extend(ops(e.1.as_ref().unwrap())),
            EventKind::InitialDone => {
                assert!(e.1.is_none());
                return rows;
            }
            other => panic!("unexpected {other:?} in the snapshot"),
        }
    }
}

/// The next CHANGE rows, skipping heartbeats.
async fn change(live: &mut Live) -> Vec<(i64, i8)> {
    loop {
        let e = live.next().await;
        match kind(&e) {
            EventKind::Change => return ops(e.1.as_ref().unwrap()),
            EventKind::Heartbeat => continue,
            other => panic!("expected a CHANGE, got {other:?}: {:?}", e.0),
        }
    }
}

/// The end of a subscription: its kind and code.
async fn end(live: &mut Live) -> (EventKind, String, i64) {
    loop {
        let e = live.next().await;
        match kind(&e) {
            EventKind::Closed | EventKind::Error => return (kind(&e), e.0.code, e.0.last_seq),
            _ => continue,
        }
    }
}

async fn setup(server: &TestServer) -> Client {
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v BIGINT, note TEXT)")
        .await;
    root.ok("INSERT INTO app.t VALUES (1, 1, 'a'), (2, 5, 'b'), (3, 9, 'c')")
        .await;
    root
}

fn token(c: &Client) -> String {
    c.inner.token().cloned().unwrap()
}

/// Opens `sql` as the holder of `token` and reads its snapshot: the subscription and the
/// snapshot's `(id, _op)`s.
async fn open(server: &TestServer, token: &str, sql: &str) -> (Live, Vec<(i64, i8)>) {
    let mut live = server.subscribe(Some(token), sql, None).await.unwrap();
    let rows = snapshot(&mut live).await;
    (live, rows)
}

/// Subscribes as `root` to `app.t WHERE v > 2` and reads its snapshot (ids 2 and 3).
async fn over_two(server: &TestServer, root: &Client) -> Live {
    let (live, rows) = open(server, &token(root), "SUBSCRIBE TO app.t WHERE v > 2").await;
    assert_eq!(rows, vec![(2, 0), (3, 0)]);
    live
}

#[tokio::test]
async fn snapshot_then_changes_with_rows_moving_in_and_out_of_the_filter() {
    let server = TestServer::start().await;
    let mut root = setup(&server).await;
    let mut live = over_two(&server, &root).await;
    root.ok("INSERT INTO app.t VALUES (4, 7, 'd'), (5, 0, 'e')")
        .await;
    assert_eq!(change(&mut live).await, vec![(4, 1)]);
    // Into the filter: an insert; within it: an update; out of it: a delete; delete: a delete.
    root.ok("UPDATE app.t SET v = 3 WHERE id = 1").await;
    assert_eq!(change(&mut live).await, vec![(1, 1)]);
    root.ok("UPDATE app.t SET note = 'x' WHERE id = 2").await;
    assert_eq!(change(&mut live).await, vec![(2, 2)]);
    root.ok("UPDATE app.t SET v = 0 WHERE id = 3").await;
    assert_eq!(change(&mut live).await, vec![(3, 3)]);
    root.ok("DELETE FROM app.t WHERE id = 4").await;
    let e = live.next().await;
    assert_eq!(kind(&e), EventKind::Change);
    let b = e.1.unwrap();
    assert_eq!(ops(&b), vec![(4, 3)]);
    // A delete carries the row as it was.
    assert_eq!(column(std::slice::from_ref(&b), "note"), vec!["d"]);
    // Changes outside the filter send nothing; a transaction arrives at COMMIT, in order.
    root.ok("UPDATE app.t SET note = 'y' WHERE id = 5").await;
    root.ok("BEGIN").await;
    root.ok("INSERT INTO app.t VALUES (6, 10, 'f')").await;
    root.ok("UPDATE app.t SET v = 11 WHERE id = 6").await;
    assert!(
        live.next_within(Duration::from_millis(300)).await.is_none(),
        "nothing before COMMIT"
    );
    root.ok("COMMIT").await;
    assert_eq!(change(&mut live).await, vec![(6, 1)]);
}

#[tokio::test]
async fn flushed_rows_moving_in_and_out_of_the_filter_carry_their_rows() {
    let server = TestServer::start().await;
    let mut root = setup(&server).await;
    root.ok("INSERT INTO app.t VALUES (4, 0, 'd')").await;
    // Every row's live version is now in cold storage only: the prior rows of the changes
    // below are read back from the segment.
    root.flush("app.t").await;
    let mut live = over_two(&server, &root).await;
    // Out of the filter before, in it now: an insert, not an update.
    root.ok("UPDATE app.t SET v = 3 WHERE id = 1").await;
    assert_eq!(change(&mut live).await, vec![(1, 1)]);
    // Never in the filter: nothing, not even the key.
    root.ok("DELETE FROM app.t WHERE id = 4").await;
    root.ok("UPDATE app.t SET v = 4 WHERE id = 2").await;
    let e = live.next().await;
    assert_eq!(kind(&e), EventKind::Change);
    assert_eq!(
        ops(e.1.as_ref().unwrap()),
        vec![(2, 2)],
        "no delete of id 4"
    );
    // Out of the filter, and deleted: deletes carrying the rows as they were.
    root.ok("UPDATE app.t SET v = 0 WHERE id = 3").await;
    let e = live.next().await;
    let b = e.1.unwrap();
    assert_eq!(ops(&b), vec![(3, 3)]);
    assert_eq!(column(std::slice::from_ref(&b), "note"), vec!["c"]);
    root.flush("app.t").await;
    root.ok("DELETE FROM app.t WHERE id = 2").await;
    let e = live.next().await;
    let b = e.1.unwrap();
    assert_eq!(ops(&b), vec![(2, 3)]);
    assert_eq!(column(std::slice::from_ref(&b), "note"), vec!["b"]);
}

#[tokio::test]
async fn projections_options_and_parameters() {
    let server = TestServer::start().await;
    let mut root = setup(&server).await;
    let t = token(&root);
    for i in 10..40 {
        root.ok(&format!("INSERT INTO app.t VALUES ({i}, {i}, 'n')"))
            .await;
    }
    // A projection: the selected columns, then _seq and _op.
    let mut live = server
        .subscribe(
            Some(&t),
            "SUBSCRIBE TO SELECT id, note FROM app.t WHERE v >= $1 OPTIONS (last_rows = 5, batch_size = 2)",
            Some(
                RecordBatch::try_new(
                    Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
                    vec![Arc::new(Int64Array::from(vec![20]))],
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let schema = live.schema().await;
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "note", "_seq", "_op"]);
    assert_eq!(kind(&live.next().await), EventKind::Ack);
    let mut ids = Vec::new();
    loop {
        let e = live.next().await;
        if kind(&e) == EventKind::InitialDone {
            assert!(e.0.last_seq > 0);
            break;
        }
        let b = e.1.unwrap();
        assert!(b.num_rows() <= 2, "batch_size");
        ids.extend(ops(&b).into_iter().map(|(id, _)| id));
    }
    assert_eq!(
        ids,
        vec![35, 36, 37, 38, 39],
        "the newest five, ascending _seq"
    );
    root.ok("INSERT INTO app.t VALUES (100, 100, 'z'), (101, 1, 'z')")
        .await;
    assert_eq!(change(&mut live).await, vec![(100, 1)]);

    // Resuming from before the deletion retention: ERROR resume_too_old.
    let mut old = server
        .subscribe(Some(&t), "SUBSCRIBE TO app.t OPTIONS (from = 1)", None)
        .await
        .unwrap();
    old.schema().await;
    assert_eq!(kind(&old.next().await), EventKind::Ack);
    let (k, code, _) = end(&mut old).await;
    assert_eq!((k, code.as_str()), (EventKind::Error, "resume_too_old"));

    // Restrictions are INVALID_ARGUMENT and say what is wrong.
    for (sql, words) in [
        ("SUBSCRIBE TO SELECT count(*) FROM app.t", "plain columns"),
        ("SUBSCRIBE TO SELECT id FROM app.t ORDER BY id", "ORDER BY"),
        ("SUBSCRIBE TO SELECT id FROM app.t LIMIT 3", "LIMIT"),
        ("SUBSCRIBE TO SELECT DISTINCT id FROM app.t", "DISTINCT"),
        (
            "SUBSCRIBE TO SELECT a.id FROM app.t a JOIN app.t b ON a.id = b.id",
            "JOIN",
        ),
        ("SUBSCRIBE TO SELECT v FROM app.t GROUP BY v", "GROUP BY"),
        (
            "SUBSCRIBE TO app.t WHERE id IN (SELECT id FROM app.t)",
            "subquer",
        ),
        ("SUBSCRIBE TO app.t OPTIONS (colour = 1)", "unknown option"),
    ] {
        let err = server.subscribe(Some(&t), sql, None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{sql}: {err}");
        assert!(err.message().contains(words), "{sql}: {err}");
    }
}

#[tokio::test]
async fn user_tables_deliver_own_rows_and_all_users_to_services() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE USER TABLE app.n (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    for (u, r) in [("alice", "user"), ("bob", "user"), ("svc", "service")] {
        root.ok(&format!(
            "CREATE USER {u} WITH PASSWORD 'password-{u}' ROLE {r}"
        ))
        .await;
    }
    let mut alice = server.client_as("alice", "password-alice").await.unwrap();
    let mut bob = server.client_as("bob", "password-bob").await.unwrap();
    let svc = server.client_as("svc", "password-svc").await.unwrap();
    alice.ok("INSERT INTO app.n VALUES (1, 'a')").await;
    let (mut a, rows) = open(&server, &token(&alice), "SUBSCRIBE TO app.n").await;
    assert_eq!(rows, vec![(1, 0)]);
    let mut all = server
        .subscribe(
            Some(&token(&svc)),
            "SUBSCRIBE TO app.n OPTIONS (all_users = true)",
            None,
        )
        .await
        .unwrap();
    assert_eq!(snapshot(&mut all).await, vec![(1, 0)]);
    // bob's rows, same key: never to alice; to the all_users subscription with _user_id.
    bob.ok("INSERT INTO app.n VALUES (1, 'b')").await;
    let e = all.next().await;
    assert_eq!(kind(&e), EventKind::Change);
    assert_eq!(column(&[e.1.unwrap()], "_user_id"), vec!["bob"]);
    alice.ok("DELETE FROM app.n WHERE id = 1").await;
    assert_eq!(change(&mut a).await, vec![(1, 3)]);
    assert_eq!(change(&mut all).await, vec![(1, 3)]);
    // Deletes never leak across users either.
    bob.ok("DELETE FROM app.n WHERE id = 1").await;
    assert_eq!(change(&mut all).await, vec![(1, 3)]);
    assert!(a.next_within(Duration::from_millis(300)).await.is_none());
    // all_users is for service and up.
    let err = server
        .subscribe(
            Some(&token(&alice)),
            "SUBSCRIBE TO app.n OPTIONS (all_users = true)",
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Permissions are those of SELECT, checked at subscribe time.
    root.ok("CREATE TABLE app.private (id BIGINT PRIMARY KEY)")
        .await;
    let err = server
        .subscribe(Some(&token(&alice)), "SUBSCRIBE TO app.private", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = server
        .subscribe(None, "SUBSCRIBE TO app.n", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn every_close_reason() {
    let server = TestServer::start_with(&[
        ("QUILLDB_LIVE__BUFFER_ROWS", "50"),
        ("QUILLDB_LIVE__HEARTBEAT_SECONDS", "1"),
    ])
    .await;
    let mut root = setup(&server).await;
    let t = token(&root);
    root.ok("CREATE USER alice WITH PASSWORD 'password-alice'")
        .await;
    root.ok("CREATE TABLE app.pub (id BIGINT PRIMARY KEY) WITH (ACCESS_LEVEL = 'PROTECTED')")
        .await;
    let alice = server.client_as("alice", "password-alice").await.unwrap();

    // Heartbeat after a second of silence; then KILL LIVE QUERY.
    let (mut live, _) = open(&server, &t, "SUBSCRIBE TO app.t").await;
    let beat = live.next_within(Duration::from_secs(5)).await.unwrap();
    assert_eq!(kind(&beat), EventKind::Heartbeat);
    let rows = root
        .rows("SELECT live_id, user_id, table_name FROM system.live_queries")
        .await;
    assert_eq!(column(&rows, "table_name"), vec!["app.t"]);
    let id = column(&rows, "live_id").pop().unwrap();
    assert_eq!(beat.0.subscription_id, id);
    // A user sees only their own rows and cannot kill another's query.
    let (mut a, _) = open(&server, &token(&alice), "SUBSCRIBE TO app.pub").await;
    let mut alice_c = server.client_with_token(&token(&alice)).await;
    let mine = alice_c
        .rows("SELECT user_id FROM system.live_queries")
        .await;
    assert_eq!(column(&mine, "user_id"), vec!["alice"]);
    assert_eq!(
        alice_c.err(&format!("KILL LIVE QUERY '{id}'")).await.0,
        Code::NotFound
    );
    root.ok(&format!("KILL LIVE QUERY '{id}'")).await;
    assert_eq!(end(&mut live).await.1, "killed");

    // ALTER TABLE: schema_changed; DROP TABLE: table_dropped.
    let (mut live, _) = open(&server, &t, "SUBSCRIBE TO app.t").await;
    root.ok("ALTER TABLE app.t ADD COLUMN extra INT").await;
    assert_eq!(end(&mut live).await.1, "schema_changed");
    let (mut live, _) = open(&server, &t, "SUBSCRIBE TO app.t").await;
    root.ok("DROP TABLE app.t").await;
    assert_eq!(end(&mut live).await.1, "table_dropped");

    // Losing the right to read: unauthorized. A role change that keeps it changes nothing; an
    // all_users subscription ends when its service becomes a user.
    root.ok("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY)")
        .await;
    root.ok("CREATE USER svc WITH PASSWORD 'password-svc' ROLE service")
        .await;
    let svc = server.client_as("svc", "password-svc").await.unwrap();
    let mut everyone = server
        .subscribe(
            Some(&token(&svc)),
            "SUBSCRIBE TO app.notes OPTIONS (all_users = true)",
            None,
        )
        .await
        .unwrap();
    snapshot(&mut everyone).await;
    root.ok("ALTER USER svc SET ROLE dba").await;
    assert!(
        everyone
            .next_within(Duration::from_millis(300))
            .await
            .is_none_or(|e| kind(&e) == EventKind::Heartbeat)
    );
    root.ok("ALTER USER svc SET ROLE user").await;
    assert_eq!(end(&mut everyone).await.1, "unauthorized");
    root.ok("DROP USER alice").await;
    assert_eq!(end(&mut a).await.1, "unauthorized");

    // A consumer that does not read falls behind: lagged, with the last _seq it received.
    root.ok("CREATE TABLE app.fast (id BIGINT PRIMARY KEY, pad TEXT)")
        .await;
    let mut slow = server
        .subscribe(
            Some(&t),
            "SUBSCRIBE TO app.fast OPTIONS (batch_size = 1)",
            None,
        )
        .await
        .unwrap();
    snapshot(&mut slow).await;
    let pad = "x".repeat(20_000);
    for i in 0..300 {
        root.ok(&format!("INSERT INTO app.fast VALUES ({i}, '{pad}')"))
            .await;
    }
    let (k, code, last_seq) = end(&mut slow).await;
    assert_eq!((k, code.as_str()), (EventKind::Closed, "lagged"));
    assert!(last_seq > 0);
    // Others are not held up, and the server serves on.
    assert_eq!(
        column(&root.rows("SELECT count(*) AS n FROM app.fast").await, "n"),
        ["300"]
    );

    // Shutdown: CLOSED shutdown.
    let (mut live, _) = open(&server, &t, "SUBSCRIBE TO app.fast").await;
    let mut server = server;
    let stopping = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    });
    assert_eq!(end(&mut live).await.1, "shutdown");
    let _server = stopping.await.unwrap();
}

#[tokio::test]
async fn subscription_limits_and_metrics() {
    let server = TestServer::start_with(&[("QUILLDB_LIVE__MAX_PER_USER", "2")]).await;
    let root = setup(&server).await;
    let t = token(&root);
    let (a, _) = open(&server, &t, "SUBSCRIBE TO app.t").await;
    let (_b, _) = open(&server, &t, "SUBSCRIBE TO app.t WHERE v > 1").await;
    let err = server
        .subscribe(Some(&t), "SUBSCRIBE TO app.t", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let (_, metrics) = quilldb_tests::http_get(&server.http_url, "/metrics");
    assert!(metrics.contains("quill_live_subscriptions 2"), "{metrics}");
    assert!(
        metrics.contains("quill_live_commit_to_send_seconds"),
        "{metrics}"
    );
    // A subscription the client drops frees its slot.
    drop(a);
    let started = std::time::Instant::now();
    loop {
        match server.subscribe(Some(&t), "SUBSCRIBE TO app.t", None).await {
            Ok(_) => break,
            Err(e) if started.elapsed() < Duration::from_secs(5) => {
                assert_eq!(e.code(), Code::ResourceExhausted);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the dropped subscription kept its slot: {e}"),
        }
    }
}

#[tokio::test]
async fn an_all_users_snapshot_is_in_seq_order_across_users() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE USER TABLE app.n (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    let mut users = Vec::new();
    for u in ["ann", "ben"] {
        root.ok(&format!("CREATE USER {u} WITH PASSWORD 'password-{u}'"))
            .await;
        users.push(server.client_as(u, &format!("password-{u}")).await.unwrap());
    }
    for id in 1..=6 {
        users[(id % 2) as usize]
            .ok(&format!("INSERT INTO app.n VALUES ({id}, 'x')"))
            .await;
    }
    // ann's rows are flushed: the snapshot reads cold and hot partitions alike.
    root.flush("app.n").await;
    let t = token(&root);
    let mut all = server
        .subscribe(
            Some(&t),
            "SUBSCRIBE TO app.n OPTIONS (all_users = true, batch_size = 4)",
            None,
        )
        .await
        .unwrap();
    let rows = snapshot(&mut all).await;
    assert_eq!(
        rows.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    let mut last = server
        .subscribe(
            Some(&t),
            "SUBSCRIBE TO app.n OPTIONS (all_users = true, last_rows = 2)",
            None,
        )
        .await
        .unwrap();
    assert_eq!(snapshot(&mut last).await, vec![(5, 0), (6, 0)]);
}

#[tokio::test]
async fn identical_subscriptions_share_batches_but_not_identity() {
    let server = TestServer::start().await;
    let mut root = setup(&server).await;
    let t = token(&root);
    let mut subs = Vec::new();
    for sql in [
        "SUBSCRIBE TO app.t WHERE v > 2",
        "SUBSCRIBE TO app.t WHERE v > 2",
        "SUBSCRIBE TO app.t WHERE v > 6",
    ] {
        let mut live = server.subscribe(Some(&t), sql, None).await.unwrap();
        snapshot(&mut live).await;
        subs.push(live);
    }
    root.ok("INSERT INTO app.t VALUES (7, 5, 'g'), (8, 8, 'h')")
        .await;
    let mut ids = Vec::new();
    for (i, live) in subs.iter_mut().enumerate() {
        let e = live.next().await;
        assert_eq!(kind(&e), EventKind::Change);
        ids.push(e.0.subscription_id.clone());
        let want = if i < 2 {
            vec![(7, 1), (8, 1)]
        } else {
            vec![(8, 1)]
        };
        assert_eq!(ops(e.1.as_ref().unwrap()), want, "subscription {i}");
    }
    assert_ne!(ids[0], ids[1], "each subscription keeps its own id");
}
