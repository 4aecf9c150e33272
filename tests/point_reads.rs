//! Primary-key point reads (`SELECT cols FROM t WHERE pk = value`) skip planning: each one must
//! answer exactly what the planned query answers (the same schema with its metadata, the same
//! rows, the same errors), over hot, cold and mixed data, for every table type, in a
//! transaction and through prepared statements. `quill_point_reads_total` tells which path
//! answered, so each case also checks that the fast path was (or was not) taken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use quilldb_tests::{Backend, Client, TestServer, backend_matrix, metric, pretty};

backend_matrix!(point_reads_answer_like_planned_queries);

/// What a statement answered: its FlightInfo schema and rows, or its error.
type Answer = Result<(Schema, String), (tonic::Code, String)>;

/// The code and message of a refused call.
fn refused(s: tonic::Status) -> (tonic::Code, String) {
    (s.code(), s.message().to_string())
}

/// [`refused`] for the Flight SQL client's errors.
fn failed(e: arrow_flight::error::FlightError) -> (tonic::Code, String) {
    refused(quilldb_tests::to_status(e))
}

/// The FlightInfo's schema and the rows its ticket leads to.
async fn read(c: &mut Client, info: arrow_flight::FlightInfo) -> Answer {
    let schema = info.clone().try_decode_schema().unwrap();
    let rows = c.fetch(info).await.map_err(refused)?;
    Ok((schema, pretty(&rows)))
}

async fn answer(c: &mut Client, sql: &str) -> Answer {
    let info = c
        .inner
        .execute(sql.to_string(), None)
        .await
        .map_err(failed)?;
    read(c, info).await
}

async fn prepared(c: &mut Client, sql: &str, param: RecordBatch) -> Answer {
    let mut q = c.inner.prepare(sql.into(), None).await.map_err(failed)?;
    q.set_parameters(param).unwrap();
    let info = q.execute().await.map_err(failed);
    q.close().await.unwrap();
    read(c, info?).await
}

fn param(ty: DataType, v: i64) -> RecordBatch {
    let array: arrow::array::ArrayRef = match ty {
        DataType::Int32 => Arc::new(Int32Array::from(vec![v as i32])),
        _ => Arc::new(Int64Array::from(vec![v])),
    };
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", ty, false)])),
        vec![array],
    )
    .unwrap()
}

/// `sql` (a point read) and the same query made unplannable by the fast path (`AND TRUE`)
/// answer the same; the fast path answered `sql` when `fast`.
async fn same(server: &TestServer, c: &mut Client, sql: &str, fast: bool) -> Answer {
    let planned = match sql.split_once(" LIMIT ") {
        Some((head, limit)) => format!("{head} AND TRUE LIMIT {limit}"),
        None => format!("{sql} AND TRUE"),
    };
    let before = metric(server, "quill_point_reads_total");
    let quick = answer(c, sql).await;
    let taken = metric(server, "quill_point_reads_total") - before;
    let full = answer(c, &planned).await;
    assert_eq!(quick, full, "{sql}");
    assert_eq!(taken, if fast { 1.0 } else { 0.0 }, "fast path for {sql}");
    quick
}

async fn point_reads_answer_like_planned_queries(b: Backend) {
    let server = b.server().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.big (id BIGINT PRIMARY KEY, body TEXT, n INT DEFAULT 5)")
        .await;
    c.ok("CREATE TABLE app.small (id INT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("CREATE TABLE app.named (name TEXT PRIMARY KEY, score DOUBLE) WITH (ACCESS_LEVEL = 'PUBLIC')")
        .await;
    c.ok("CREATE TABLE app.secret (id BIGINT PRIMARY KEY) WITH (ACCESS_LEVEL = 'PRIVATE')")
        .await;
    c.ok("CREATE USER TABLE app.mine (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("CREATE STREAM TABLE app.events (id BIGINT PRIMARY KEY, body TEXT) WITH (TTL_SECONDS = 3600)")
        .await;
    c.ok("INSERT INTO app.big (id, body) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
        .await;
    c.ok("INSERT INTO app.small VALUES (1, 'one'), (2, 'two')")
        .await;
    c.ok("INSERT INTO app.named VALUES ('ann', 1.5), ('bob', 2.5)")
        .await;
    c.ok("INSERT INTO app.events VALUES (1, 'e1'), (2, 'e2')")
        .await;
    for t in ["app.big", "app.small", "app.named"] {
        b.settle(&mut c, t, 0).await;
    }
    // Versions over the flushed rows: an update, a delete, an added column's default.
    c.ok("UPDATE app.big SET body = 'c2' WHERE id = 3").await;
    c.ok("DELETE FROM app.big WHERE id = 4").await;
    c.ok("ALTER TABLE app.big ADD COLUMN m BIGINT DEFAULT 7")
        .await;
    c.ok("INSERT INTO app.big (id, body, m) VALUES (5, 'e', 8)")
        .await;
    b.settle(&mut c, "app.big", 1).await;

    for (sql, fast) in [
        ("SELECT * FROM app.big WHERE id = 3", true),
        ("SELECT * FROM app.big WHERE id = 1", true),
        ("SELECT body, id FROM app.big WHERE id = 5", true),
        ("SELECT m, _seq FROM app.big WHERE id = 2", true),
        ("SELECT * FROM app.big WHERE 3 = id", true),
        ("SELECT * FROM app.big WHERE id = 4", true), // deleted
        ("SELECT * FROM app.big WHERE id = 99", true), // never written
        ("SELECT BODY FROM APP.BIG WHERE ID = 3", true),
        ("SELECT * FROM quill.app.big WHERE id = 3", true),
        ("SELECT * FROM app.small WHERE id = 2", true),
        ("SELECT * FROM app.small WHERE id = 3000000000", false), // does not fit INT
        ("SELECT * FROM app.named WHERE name = 'bob'", true),
        ("SELECT * FROM app.named WHERE name = 'zed'", true),
        ("SELECT * FROM app.events WHERE id = 2", true),
        ("SELECT * FROM app.big WHERE id = '3'", false), // a cast the full path does
        ("SELECT * FROM app.big WHERE body = 'a'", false), // not the key
        ("SELECT * FROM app.big AS t WHERE id = 3", false),
        ("SELECT DISTINCT * FROM app.big WHERE id = 3", false),
        ("SELECT * FROM app.big WHERE id = 3 LIMIT 0", false),
        ("SELECT id, id FROM app.big WHERE id = 3", false),
        ("SELECT \"Body\" FROM app.big WHERE id = 3", false), // no such column: the error
        ("SELECT nope FROM app.big WHERE id = 3", false),
        ("SELECT * FROM app.nope WHERE id = 3", false),
        ("SELECT * FROM nope.big WHERE id = 3", false),
        ("SELECT * FROM system.users WHERE user_id = 'root'", false),
    ] {
        let _ = same(&server, &mut c, sql, fast).await;
    }
    assert!(
        same(
            &server,
            &mut c,
            "SELECT body FROM app.big WHERE id = 3",
            true
        )
        .await
        .unwrap()
        .1
        .contains("c2")
    );

    // The default namespace of the session.
    c.ok("USE app").await;
    let _ = same(&server, &mut c, "SELECT * FROM big WHERE id = 3", true).await;

    // Prepared: a parameter of the key's type goes the fast way; another type goes the full
    // way and answers what it answers.
    for (ty, fast) in [(DataType::Int64, 1.0), (DataType::Int32, 0.0)] {
        for id in [3, 4, 99] {
            let before = metric(&server, "quill_point_reads_total");
            let quick = prepared(
                &mut c,
                "SELECT * FROM app.big WHERE id = $1",
                param(ty.clone(), id),
            )
            .await;
            assert_eq!(
                metric(&server, "quill_point_reads_total") - before,
                fast,
                "{ty} {id}"
            );
            let full = prepared(
                &mut c,
                "SELECT * FROM app.big WHERE id = $1 AND TRUE",
                param(ty.clone(), id),
            )
            .await;
            assert_eq!(quick, full, "{ty} {id}");
        }
    }

    // USER tables: each user reads their own row under the same key.
    c.ok("CREATE USER alice WITH PASSWORD 'pw-alice-1'").await;
    c.ok("CREATE USER bob WITH PASSWORD 'pw-bob-12'").await;
    let mut users = [
        server.client_as("alice", "pw-alice-1").await.unwrap(),
        server.client_as("bob", "pw-bob-12").await.unwrap(),
    ];
    users[0]
        .ok("INSERT INTO app.mine VALUES (1, 'alice''s')")
        .await;
    users[1]
        .ok("INSERT INTO app.mine VALUES (1, 'bob''s')")
        .await;
    b.settle(&mut c, "app.mine", 0).await;
    // Each user reads their own row under the same key; a user reads a shared table as its
    // access level allows, the same either way.
    for (who, sql, fast, expected) in [
        (
            0,
            "SELECT body FROM app.mine WHERE id = 1",
            true,
            Ok("alice's"),
        ),
        (
            1,
            "SELECT body FROM app.mine WHERE id = 1",
            true,
            Ok("bob's"),
        ),
        (
            0,
            "SELECT * FROM app.named WHERE name = 'ann'",
            true,
            Ok("1.5"),
        ),
        (
            0,
            "SELECT * FROM app.secret WHERE id = 1",
            false,
            Err(tonic::Code::PermissionDenied),
        ),
    ] {
        match (same(&server, &mut users[who], sql, fast).await, expected) {
            (Ok((_, rows)), Ok(text)) => assert!(rows.contains(text), "{sql}: {rows}"),
            (Err((code, _)), Err(want)) => assert_eq!(code, want, "{sql}"),
            (got, want) => panic!("{sql}: {got:?}, expected {want:?}"),
        }
    }

    // A transaction's point read sees its own pending rows.
    c.ok("BEGIN").await;
    c.ok("INSERT INTO app.big (id, body) VALUES (100, 'pending')")
        .await;
    c.ok("DELETE FROM app.big WHERE id = 1").await;
    let p = same(
        &server,
        &mut c,
        "SELECT body FROM app.big WHERE id = 100",
        true,
    )
    .await;
    assert!(p.unwrap().1.contains("pending"));
    let gone = same(
        &server,
        &mut c,
        "SELECT body FROM app.big WHERE id = 1",
        true,
    )
    .await;
    assert!(!gone.unwrap().1.contains('a'));
    c.ok("ROLLBACK").await;
    let back = same(
        &server,
        &mut c,
        "SELECT body FROM app.big WHERE id = 1",
        true,
    )
    .await;
    assert!(back.unwrap().1.contains('a'));
}
