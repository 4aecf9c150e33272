//! Tables without a primary key: append-oriented, rows identified by `_seq`. Duplicates are
//! rows like any other; UPDATE and DELETE by predicate work on hot and cold versions, through
//! flushes and compaction; subscriptions see a delete with the deleted version's `_seq` and an
//! update as that delete then an insert; a bulk ingest appends without a key check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Int8Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use quilldb_flight::EventKind;
use quilldb_tests::{Client, Live, LiveEvent, TestServer, column, count};
use tonic::Code;

fn ints(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(name).expect(name);
        let a = arrow::compute::cast(a, &DataType::Int64).unwrap();
        out.extend(a.as_primitive::<Int64Type>().values().iter().copied());
    }
    out
}

async fn setup() -> (TestServer, Client) {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE f").await;
    c.ok("CREATE TABLE f.events (kind TEXT NOT NULL, n BIGINT)")
        .await;
    (server, c)
}

/// `(kind, n)` of every row, sorted.
async fn rows(c: &mut Client) -> Vec<(String, i64)> {
    let b = c
        .rows("SELECT kind, n FROM f.events ORDER BY kind, n")
        .await;
    column(&b, "kind").into_iter().zip(ints(&b, "n")).collect()
}

fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[tokio::test]
async fn duplicates_updates_and_deletes_across_flushes_and_compaction() {
    let (_server, mut c) = setup().await;
    // The same row twice is two rows.
    assert_eq!(
        c.ok("INSERT INTO f.events VALUES ('a', 1), ('a', 1), ('b', 2)")
            .await,
        3
    );
    assert_eq!(rows(&mut c).await, pairs(&[("a", 1), ("a", 1), ("b", 2)]));
    // DESCRIBE says there is no key; the rows still carry their `_seq`.
    let d = c.rows("DESCRIBE TABLE f.events").await;
    let keys = d[0].column_by_name("is_primary_key").unwrap().as_boolean();
    assert_eq!(keys.true_count(), 0);
    let seqs = ints(&c.rows("SELECT _seq FROM f.events").await, "_seq");
    assert_eq!(seqs.len(), 3);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Hot: an update by predicate changes both duplicates, a delete by predicate removes.
    assert_eq!(
        c.ok("UPDATE f.events SET n = n + 10 WHERE kind = 'a'")
            .await,
        2
    );
    assert_eq!(rows(&mut c).await, pairs(&[("a", 11), ("a", 11), ("b", 2)]));
    c.flush("f.events").await;
    assert_eq!(rows(&mut c).await, pairs(&[("a", 11), ("a", 11), ("b", 2)]));
    // Cold: the same, on versions only a segment holds.
    assert_eq!(c.ok("DELETE FROM f.events WHERE n = 2").await, 1);
    assert_eq!(
        c.ok("INSERT INTO f.events VALUES ('c', 3), ('c', 3)").await,
        2
    );
    assert_eq!(c.ok("UPDATE f.events SET n = 5 WHERE kind = 'a'").await, 2);
    let want = pairs(&[("a", 5), ("a", 5), ("c", 3), ("c", 3)]);
    assert_eq!(rows(&mut c).await, want);
    c.flush("f.events").await;
    assert_eq!(rows(&mut c).await, want);
    // (A flush may have queued a compaction already: then this one has nothing left to do.)
    let (status, msg) = c.compact("f.events").await;
    assert!(
        status == "completed" || status == "skipped",
        "{status} {msg}"
    );
    assert_eq!(rows(&mut c).await, want);
    // After compaction, one of two equal rows can still be told apart by its `_seq`.
    let b = c
        .rows("SELECT min(_seq) AS s FROM f.events WHERE kind = 'c'")
        .await;
    let first = ints(&b, "s")[0];
    assert_eq!(
        c.ok(&format!("DELETE FROM f.events WHERE _seq = {first}"))
            .await,
        1
    );
    assert_eq!(rows(&mut c).await, pairs(&[("a", 5), ("a", 5), ("c", 3)]));
    // Aggregates run on the segments' Parquet scan as for any table.
    let b = c
        .rows("SELECT kind, count(*) AS k, sum(n) AS s FROM f.events GROUP BY kind ORDER BY kind")
        .await;
    assert_eq!(column(&b, "kind"), vec!["a", "c"]);
    assert_eq!(ints(&b, "k"), vec![2, 1]);
    assert_eq!(ints(&b, "s"), vec![10, 3]);
}

#[tokio::test]
async fn what_needs_a_key_says_so() {
    let (_server, mut c) = setup().await;
    let (code, msg) = c
        .err("CREATE TABLE f.pairs (a INT, b INT, PRIMARY KEY (a, b))")
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("one PRIMARY KEY column, or none"), "{msg}");
    let (code, msg) = c
        .err("INSERT INTO f.events VALUES ('a', 1) ON CONFLICT (kind) DO UPDATE SET n = 2")
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("no primary key"), "{msg}");
    // ON CONFLICT DO NOTHING has nothing to conflict with: the row goes in.
    assert_eq!(
        c.ok("INSERT INTO f.events VALUES ('a', 1) ON CONFLICT DO NOTHING")
            .await,
        1
    );
    c.ok("BEGIN").await;
    let (code, msg) = c.err("INSERT INTO f.events VALUES ('b', 2)").await;
    assert_eq!(code, Code::Unimplemented, "{msg}");
    assert!(msg.contains("without a primary key"), "{msg}");
    c.ok("ROLLBACK").await;
    assert_eq!(rows(&mut c).await, pairs(&[("a", 1)]));
}

/// Rows `(kind, n)` with `n` from `from` on and `kind` `k{n % kinds}`.
fn kinds_and_ns(from: i64, len: i64, kinds: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("n", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (from..from + len).map(|i| format!("k{}", i % kinds)),
            )),
            Arc::new(Int64Array::from_iter_values(from..from + len)),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn a_bulk_ingest_appends_without_a_key_check() {
    let (_server, mut c) = setup().await;
    let batch = |from, len| kinds_and_ns(from, len, 7);
    // Large enough for the writer's bulk path; the second load repeats the first one's rows.
    let n = c
        .ingest(
            "f",
            "events",
            vec![batch(0, 30_000), batch(30_000, 20_000)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(n, 50_000);
    let n = c
        .ingest("f", "events", vec![batch(0, 10_000)], None)
        .await
        .unwrap();
    assert_eq!(n, 10_000);
    let total = |b: &[RecordBatch]| ints(b, "c")[0];
    let b = c
        .rows("SELECT count(*) AS c FROM f.events WHERE n < 10000")
        .await;
    assert_eq!(total(&b), 20_000);
    c.flush("f.events").await;
    let b = c.rows("SELECT count(*) AS c FROM f.events").await;
    assert_eq!(total(&b), 60_000);
    assert_eq!(c.ok("DELETE FROM f.events WHERE n < 10000").await, 20_000);
    let b = c
        .rows("SELECT count(*) AS c, sum(n) AS s FROM f.events")
        .await;
    assert_eq!(total(&b), 40_000);
    assert_eq!(ints(&b, "s")[0], (10_000..50_000).sum::<i64>());
}

fn kind(e: &LiveEvent) -> EventKind {
    EventKind::try_from(e.0.kind).unwrap()
}

/// `(n, _seq, _op)` of each row of a batch.
fn events(b: &RecordBatch) -> Vec<(i64, i64, i8)> {
    let n = b.column_by_name("n").unwrap();
    let n = n.as_any().downcast_ref::<Int64Array>().unwrap();
    let seq = b.column_by_name("_seq").unwrap();
    let seq = seq.as_any().downcast_ref::<Int64Array>().unwrap();
    let op = b.column_by_name("_op").unwrap();
    let op = op.as_any().downcast_ref::<Int8Array>().unwrap();
    (0..b.num_rows())
        .map(|i| {
            (
                if n.is_valid(i) { n.value(i) } else { -1 },
                seq.value(i),
                op.value(i),
            )
        })
        .collect()
}

/// The rows of the next messages up to and including INITIAL_DONE or one CHANGE batch.
async fn next_rows(live: &mut Live) -> (EventKind, Vec<(i64, i64, i8)>) {
    let mut rows = Vec::new();
    loop {
        let e = live.next().await;
        match kind(&e) {
            EventKind::Ack | EventKind::Heartbeat => continue,
            EventKind::Initial => rows.extend(events(e.1.as_ref().unwrap())),
            k @ (EventKind::InitialDone | EventKind::Change) => {
                if let Some(b) = &e.1 {
                    rows.extend(events(b));
                }
                return (k, rows);
            }
            other => panic!("unexpected {other:?}: {:?}", e.0),
        }
    }
}

/// A subscriber's view folded by `_seq`: what identifies a row of a table without a key.
fn fold(view: &mut BTreeMap<i64, i64>, rows: &[(i64, i64, i8)]) {
    for (n, seq, op) in rows {
        match op {
            0 | 1 => {
                view.insert(*seq, *n);
            }
            3 => {
                assert!(view.remove(seq).is_some(), "a delete of {seq}, not in view");
            }
            other => panic!("a table without a key has no update events ({other})"),
        }
    }
}

#[tokio::test]
async fn subscriptions_identify_rows_by_seq() {
    let (server, mut c) = setup().await;
    c.ok("INSERT INTO f.events VALUES ('a', 1), ('a', 2), ('b', 3)")
        .await;
    c.flush("f.events").await;
    c.ok("INSERT INTO f.events VALUES ('a', 4)").await;
    let token = c.inner.token().cloned().unwrap();
    let mut live = server
        .subscribe(Some(&token), "SUBSCRIBE TO f.events WHERE kind = 'a'", None)
        .await
        .unwrap();
    live.schema().await;
    let mut view = BTreeMap::new();
    let (k, snapshot) = next_rows(&mut live).await;
    assert_eq!(k, EventKind::InitialDone);
    fold(&mut view, &snapshot);
    assert_eq!(view.values().copied().collect::<Vec<_>>(), vec![1, 2, 4]);
    let check = |view: &BTreeMap<i64, i64>, c: Vec<RecordBatch>| {
        let mut want: Vec<(i64, i64)> = ints(&c, "_seq").into_iter().zip(ints(&c, "n")).collect();
        want.sort_unstable();
        let got: Vec<(i64, i64)> = view.iter().map(|(s, n)| (*s, *n)).collect();
        assert_eq!(got, want);
    };
    // An update of a cold and a hot row: each a delete of its version, then an insert.
    c.ok("UPDATE f.events SET n = n * 10 WHERE n IN (2, 4)")
        .await;
    let mut changed = Vec::new();
    while changed.len() < 4 {
        let (k, rows) = next_rows(&mut live).await;
        assert_eq!(k, EventKind::Change);
        changed.extend(rows);
    }
    let ops: Vec<i8> = changed.iter().map(|r| r.2).collect();
    assert_eq!(ops.iter().filter(|o| **o == 3).count(), 2, "{changed:?}");
    assert_eq!(ops.iter().filter(|o| **o == 1).count(), 2, "{changed:?}");
    fold(&mut view, &changed);
    check(
        &view,
        c.rows("SELECT _seq, n FROM f.events WHERE kind = 'a'")
            .await,
    );
    // A delete carries the row as it was, with its own `_seq`.
    c.ok("DELETE FROM f.events WHERE n = 1").await;
    let (_, deleted) = next_rows(&mut live).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!((deleted[0].0, deleted[0].2), (1, 3));
    fold(&mut view, &deleted);
    check(
        &view,
        c.rows("SELECT _seq, n FROM f.events WHERE kind = 'a'")
            .await,
    );
    // Resuming after the last message: nothing new; after an earlier point, the delete of a
    // hot row comes back with its version's `_seq`.
    let (_, before) = {
        c.ok("INSERT INTO f.events VALUES ('a', 7)").await;
        next_rows(&mut live).await
    };
    let resume_from = before[0].1;
    c.ok("DELETE FROM f.events WHERE n = 7").await;
    let mut again = server
        .subscribe(
            Some(&token),
            &format!("SUBSCRIBE TO f.events WHERE kind = 'a' OPTIONS (from = {resume_from})"),
            None,
        )
        .await
        .unwrap();
    again.schema().await;
    let mut resumed = Vec::new();
    loop {
        let e = again.next().await;
        match kind(&e) {
            EventKind::Change => resumed.extend(events(e.1.as_ref().unwrap())),
            EventKind::Ack | EventKind::InitialDone | EventKind::Heartbeat => {}
            other => panic!("unexpected {other:?}: {:?}", e.0),
        }
        if !resumed.is_empty() {
            break;
        }
    }
    assert_eq!(resumed, vec![(-1, resume_from, 3)]);
    // After a flush, deletes are no longer kept for a table without a key: start over.
    c.flush("f.events").await;
    let mut old = server
        .subscribe(
            Some(&token),
            &format!("SUBSCRIBE TO f.events OPTIONS (from = {resume_from})"),
            None,
        )
        .await
        .unwrap();
    old.schema().await;
    let code = loop {
        let e = old
            .next_within(Duration::from_secs(10))
            .await
            .expect("an end");
        if kind(&e) == EventKind::Error {
            break e.0.code;
        }
    };
    assert_eq!(code, "resume_too_old");
    assert!(count(&c.rows("SELECT * FROM f.events").await) > 0);
}

/// `count(*)`, `sum(n)` and how many notes say 'x'.
async fn totals(c: &mut Client) -> (i64, i64, i64) {
    let b = c
        .rows(
            "SELECT count(*) AS k, sum(n) AS s, count(CASE WHEN note = 'x' THEN 1 END) AS x \
             FROM f.events",
        )
        .await;
    (ints(&b, "k")[0], ints(&b, "s")[0], ints(&b, "x")[0])
}

#[tokio::test]
async fn a_large_ingest_goes_straight_to_cold_segments() {
    let mut server =
        TestServer::start_with(&[("QUILLDB_STORAGE__DIRECT_INGEST_ROWS", "1000")]).await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE f").await;
    c.ok("CREATE TABLE f.events (kind TEXT NOT NULL, n BIGINT, note TEXT DEFAULT 'none')")
        .await;
    // Hot rows first: the load flushes them before its own, so `_seq` order stays the
    // order of writing.
    c.ok("INSERT INTO f.events (kind, n) VALUES ('hot', -2), ('hot', -1)")
        .await;
    let batch = |from, len| kinds_and_ns(from, len, 3);
    let n = c
        .ingest("f", "events", vec![batch(0, 3000), batch(3000, 2000)], None)
        .await
        .unwrap();
    assert_eq!(n, 5000);
    // Nothing stayed hot: the rows are in segments, read by the Parquet scan.
    let d = c.rows("DESCRIBE TABLE f.events").await;
    assert_eq!(ints(&d, "hot_rows")[0], 0);
    c.ok("INSERT INTO f.events (kind, n) VALUES ('after', 5000)")
        .await;
    let b = c.rows("SELECT n, note FROM f.events").await;
    let ns = ints(&b, "n");
    assert_eq!(ns.len(), 5003);
    assert_eq!(
        ns,
        (-2..=5000).collect::<Vec<_>>(),
        "rows in the order written"
    );
    assert!(column(&b, "note").iter().all(|v| v == "none"));
    // Loaded rows change like any cold row.
    assert_eq!(
        c.ok("UPDATE f.events SET note = 'x' WHERE n < 100 AND n >= 0")
            .await,
        100
    );
    assert_eq!(c.ok("DELETE FROM f.events WHERE kind = 'k0'").await, 1667);
    let want_sum: i64 = (-2..=5000)
        .filter(|i| !(0..5000).contains(i) || i % 3 != 0)
        .sum();
    let before = totals(&mut c).await;
    assert_eq!(before, (5003 - 1667, want_sum, 66));
    // A killed server keeps all of it.
    server.kill();
    server.launch(&[]);
    let mut c = server.client().await;
    assert_eq!(totals(&mut c).await, before);
    // With a subscriber on the table, a large ingest is written hot, so it sees every row.
    let token = c.inner.token().cloned().unwrap();
    let mut live = server
        .subscribe(
            Some(&token),
            "SUBSCRIBE TO f.events WHERE kind = 'new'",
            None,
        )
        .await
        .unwrap();
    live.schema().await;
    let (k, _) = next_rows(&mut live).await;
    assert_eq!(k, EventKind::InitialDone);
    let fresh = RecordBatch::try_new(
        kinds_and_ns(0, 0, 1).schema(),
        vec![
            Arc::new(StringArray::from_iter_values((0..2000).map(|_| "new"))),
            Arc::new(Int64Array::from_iter_values(10_000..12_000)),
        ],
    )
    .unwrap();
    assert_eq!(
        c.ingest("f", "events", vec![fresh], None).await.unwrap(),
        2000
    );
    let mut seen = 0;
    while seen < 2000 {
        let (_, rows) = next_rows(&mut live).await;
        assert!(rows.iter().all(|r| r.2 == 1));
        seen += rows.len();
    }
    assert_eq!(seen, 2000);
}
