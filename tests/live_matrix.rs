//! Every way of reading a table gives the same rows, over hot-only, cold-only and mixed data:
//! a SELECT, a subscription's snapshot folded with its changes, EXECUTE AS USER and a
//! primary-key lookup per key; also after `ADD COLUMN ... DEFAULT` and `DROP COLUMN`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use arrow::array::{Array, Int8Array, RecordBatch};
use quilldb_flight::EventKind;
use quilldb_tests::{Backend, Client, Live, TestServer, backend_matrix, column};

backend_matrix!(added_column_default_in_subscriptions, every_read_agrees);

/// Rows by id: every other column rendered as text (NULL as empty), in the schema's order.
type Rows = BTreeMap<String, Vec<String>>;

/// The rows of `batches` by `id`, over `columns`.
fn by_id(batches: &[RecordBatch], columns: &[&str]) -> Rows {
    let ids = column(batches, "id");
    let cols: Vec<Vec<String>> = columns.iter().map(|c| column(batches, c)).collect();
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| (id, cols.iter().map(|c| c[i].clone()).collect()))
        .collect()
}

/// `_op` of each row.
fn ops(b: &RecordBatch) -> Vec<i8> {
    let op = b.column_by_name("_op").unwrap();
    let op = op.as_any().downcast_ref::<Int8Array>().unwrap();
    (0..op.len()).map(|i| op.value(i)).collect()
}

fn token(c: &Client) -> String {
    c.inner.token().cloned().unwrap()
}

/// Opens `sql` and folds its snapshot into rows by id.
async fn open(server: &TestServer, c: &Client, sql: &str, columns: &[&str]) -> (Live, Rows) {
    let mut live = server.subscribe(Some(&token(c)), sql, None).await.unwrap();
    let mut rows = Rows::new();
    loop {
        let (event, batch) = live.next().await;
        match EventKind::try_from(event.kind).unwrap() {
            EventKind::Ack => {}
            EventKind::Initial => rows.extend(by_id(&[batch.unwrap()], columns)),
            EventKind::InitialDone => return (live, rows),
            other => panic!("unexpected {other:?} in the snapshot: {event:?}"),
        }
    }
}

/// Folds CHANGE messages into `rows` until they equal `expected` (a change that never comes
/// fails the wait for the next message).
async fn fold(live: &mut Live, rows: &mut Rows, columns: &[&str], expected: &Rows) {
    while rows != expected {
        apply_change(live, rows, columns).await;
    }
}

async fn apply_change(live: &mut Live, rows: &mut Rows, columns: &[&str]) {
    let (event, batch) = live.next().await;
    match EventKind::try_from(event.kind).unwrap() {
        EventKind::Heartbeat => {}
        EventKind::Change => {
            let b = batch.unwrap();
            let one = std::slice::from_ref(&b);
            // Rows by id hold the last values of the batch: the state after it.
            let changed = by_id(one, columns);
            for (id, op) in column(one, "id").into_iter().zip(ops(&b)) {
                if op == 3 {
                    rows.remove(&id);
                } else {
                    rows.insert(id.clone(), changed[&id].clone());
                }
            }
        }
        other => panic!("expected a CHANGE, got {other:?}: {event:?}"),
    }
}

/// A server with `app.t` of `table_type` holding three rows written by `writer` (root, or a
/// user for USER tables): root's client, the writer's client and the writer's name.
async fn setup(b: Backend, table_type: &str) -> (TestServer, Client, Client, &'static str) {
    let server = b.server().await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok(&format!(
        "CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT) WITH (TYPE = '{table_type}')"
    ))
    .await;
    let (mut writer, name) = if table_type == "USER" {
        root.ok("CREATE USER alice PASSWORD 'pw-alice-1' ROLE user")
            .await;
        (
            server.client_as("alice", "pw-alice-1").await.unwrap(),
            "alice",
        )
    } else {
        (server.client().await, "root")
    };
    writer
        .ok("INSERT INTO app.t VALUES (1, 'a'), (2, 'b')")
        .await;
    b.settle(&mut root, "app.t", 0).await;
    writer.ok("INSERT INTO app.t VALUES (3, 'c')").await;
    b.settle(&mut root, "app.t", 1).await;
    (server, root, writer, name)
}

/// Rows written before `ADD COLUMN ... DEFAULT` read the default in a subscription's snapshot,
/// in its filter, and in the rows its changes carry, as they do in a SELECT.
async fn added_column_default_in_subscriptions(b: Backend) {
    let (server, _root, mut c, _) = setup(b, "SHARED").await;
    c.ok("ALTER TABLE app.t ADD COLUMN n BIGINT DEFAULT 7")
        .await;
    let cols = ["body", "n"];
    let select = by_id(&c.rows("SELECT * FROM app.t").await, &cols);
    assert_eq!(select["1"], vec!["a", "7"]);
    assert_eq!(select.len(), 3);

    let (mut all, snapshot_all) = open(&server, &c, "SUBSCRIBE TO app.t", &cols).await;
    assert_eq!(snapshot_all, select, "the snapshot reads the default");
    let (mut sevens, snapshot) = open(&server, &c, "SUBSCRIBE TO app.t WHERE n = 7", &cols).await;
    assert_eq!(snapshot, select, "the filter sees the default");

    // A delete of a row from before the ALTER carries the row as it reads (n = 7), and a
    // filter on n sees it leave.
    c.ok("DELETE FROM app.t WHERE id = 2").await;
    let (event, batch) = sevens.next().await;
    assert_eq!(EventKind::try_from(event.kind).unwrap(), EventKind::Change);
    let batch = batch.unwrap();
    assert_eq!(ops(&batch), vec![3]);
    assert_eq!(column(&[batch], "n"), vec!["7"]);
    // An update of such a row moves it out of the filter: a delete carrying n = 7.
    c.ok("UPDATE app.t SET n = 8 WHERE id = 3").await;
    let (_, batch) = sevens.next().await;
    let batch = batch.unwrap();
    assert_eq!(ops(&batch), vec![3]);
    assert_eq!(column(&[batch], "n"), vec!["7"]);

    let select = by_id(&c.rows("SELECT * FROM app.t").await, &cols);
    assert_eq!(select["3"], vec!["c", "8"]);
    let mut folded = by_id(&[], &cols);
    folded.extend(snapshot_all);
    fold(&mut all, &mut folded, &cols, &select).await;
}

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random writes, flushes, compactions and schema changes; after each round every way of
/// reading agrees with SELECT.
async fn every_read_agrees(b: Backend) {
    for table_type in ["SHARED", "USER"] {
        // USER tables are written and read by their user; root changes the schema.
        let (server, mut root, mut user, name) = setup(b, table_type).await;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ table_type.len() as u64);
        let mut columns: Vec<(String, String)> = vec![("body".into(), "TEXT".into())];
        let mut next_col = 0;
        for round in 0..4 {
            // A schema change first: subscriptions opened below see the schema that follows.
            match round {
                1 | 3 => {
                    let name = format!("c{next_col}");
                    next_col += 1;
                    root.ok(&format!(
                        "ALTER TABLE app.t ADD COLUMN {name} BIGINT DEFAULT {}",
                        10 + round
                    ))
                    .await;
                    columns.push((name, "BIGINT".into()));
                }
                2 if columns.len() > 2 => {
                    let (name, _) = columns.remove(1);
                    root.ok(&format!("ALTER TABLE app.t DROP COLUMN {name}"))
                        .await;
                }
                _ => {}
            }
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let select = by_id(&user.rows("SELECT * FROM app.t").await, &names);
            let (mut live, mut folded) = open(&server, &user, "SUBSCRIBE TO app.t", &names).await;
            assert_eq!(
                folded, select,
                "{table_type} round {round}: snapshot = SELECT"
            );
            for step in 0..6 {
                let id = 1 + rng.below(12);
                let sql = match rng.below(4) {
                    0 => format!("DELETE FROM app.t WHERE id = {id}"),
                    1 => format!("UPDATE app.t SET body = 'u{round}{step}' WHERE id = {id}"),
                    _ => format!(
                        "INSERT INTO app.t (id, body) VALUES ({id}, 'i{round}{step}') \
                         ON CONFLICT (id) DO UPDATE SET body = excluded.body"
                    ),
                };
                user.ok(&sql).await;
                b.settle(&mut root, "app.t", step).await;
            }
            if round == 2 && b != Backend::Hot {
                root.compact("app.t").await;
            }
            let select = by_id(&user.rows("SELECT * FROM app.t").await, &names);
            fold(&mut live, &mut folded, &names, &select).await;
            for (id, values) in &select {
                let one = by_id(
                    &user
                        .rows(&format!("SELECT * FROM app.t WHERE id = {id}"))
                        .await,
                    &names,
                );
                assert_eq!(one.get(id), Some(values), "{table_type}: lookup of {id}");
            }
            let as_user = root
                .rows(&format!("EXECUTE AS USER '{name}' (SELECT * FROM app.t)"))
                .await;
            assert_eq!(
                by_id(&as_user, &names),
                select,
                "{table_type}: EXECUTE AS USER"
            );
        }
    }
}
