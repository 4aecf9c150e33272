//! INSERT, UPDATE, DELETE, upserts, defaults, types, `_seq` and parse errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use arrow::array::{Array, Int64Array};
use arrow::datatypes::DataType;
use quilldb_tests::{TestServer, column, count, pretty};
use tonic::Code;

async fn setup() -> (TestServer, quilldb_tests::Client) {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT DEFAULT 5)")
        .await;
    (server, c)
}

#[tokio::test]
async fn insert_is_atomic_and_names_the_duplicate_key() {
    let (_s, mut c) = setup().await;
    assert_eq!(
        c.ok("INSERT INTO app.t (id, body) VALUES (1, 'a'), (2, 'b')")
            .await,
        2
    );
    let (code, msg) = c
        .err("INSERT INTO app.t (id, body) VALUES (3, 'c'), (2, 'dup')")
        .await;
    assert_eq!(code, Code::AlreadyExists);
    assert!(msg.contains("id = 2"), "{msg}");
    // Nothing of the failed statement was written.
    assert_eq!(
        column(&c.rows("SELECT id FROM app.t ORDER BY id").await, "id"),
        vec!["1", "2"]
    );
    // A duplicate inside one statement fails it too.
    let (code, _) = c.err("INSERT INTO app.t (id) VALUES (9), (9)").await;
    assert_eq!(code, Code::AlreadyExists);
    assert_eq!(count(&c.rows("SELECT * FROM app.t WHERE id = 9").await), 0);
}

#[tokio::test]
async fn defaults_and_values() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok(
        "CREATE TABLE app.d (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), u UUID DEFAULT UUID_V7(), \
         at TIMESTAMP DEFAULT NOW(), who TEXT DEFAULT CURRENT_USER(), k INT DEFAULT 42, flag BOOLEAN)",
    )
    .await;
    c.ok("INSERT INTO app.d (flag) VALUES (true), (false)")
        .await;
    let b = c.rows("SELECT id, u, at, who, k, flag FROM app.d").await;
    assert_eq!(count(&b), 2);
    let ids = column(&b, "id");
    assert_ne!(ids[0], ids[1]);
    assert!(ids[0].parse::<i64>().unwrap() > 0);
    assert_eq!(column(&b, "u")[0].len(), 36);
    assert_eq!(column(&b, "who"), vec!["root", "root"]);
    assert_eq!(column(&b, "k"), vec!["42", "42"]);
    assert!(!column(&b, "at")[0].is_empty());
    // Explicit NULL stays NULL; NOT NULL and the key refuse it.
    c.ok("CREATE TABLE app.nn (id INT PRIMARY KEY, v TEXT NOT NULL)")
        .await;
    let (code, msg) = c.err("INSERT INTO app.nn (id, v) VALUES (1, NULL)").await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("NULL"), "{msg}");
    let (code, _) = c.err("INSERT INTO app.nn (id) VALUES (1)").await;
    assert_eq!(code, Code::InvalidArgument);
    let (code, msg) = c.err("INSERT INTO app.nn (id, v) VALUES ('x', 'a')").await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    let (code, _) = c.err("INSERT INTO app.nn (id, nope) VALUES (1, 'a')").await;
    assert_eq!(code, Code::NotFound);
    let (code, _) = c.err("INSERT INTO app.nn (id, _seq) VALUES (1, 5)").await;
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(count(&c.rows("SELECT * FROM app.nn").await), 0);
}

#[tokio::test]
async fn every_type_round_trips_exactly() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok(
        "CREATE TABLE app.types (id BIGINT PRIMARY KEY, b BOOLEAN, s SMALLINT, i INT, r REAL, \
         d DOUBLE, dec DECIMAL(20,4), t TEXT, v VARCHAR, by BYTEA, dt DATE, tm TIME, ts TIMESTAMP, \
         tz TIMESTAMPTZ, j JSON, u UUID)",
    )
    .await;
    c.ok(
        "INSERT INTO app.types VALUES (9223372036854775807, true, -32768, 2147483647, 1.5, \
         -2.25, 1234567890123456.7891, 'héllo', 'x', '\\xdeadbeef', '2024-02-29', '23:59:59.123456', \
         '2024-01-02 03:04:05.678901', '2024-01-02T03:04:05.5Z', '{\"a\": [1, 2]}', \
         '0190A6F0-7B3E-7C3E-9B1E-0123456789AB')",
    )
    .await;
    let b = c.rows("SELECT * FROM app.types").await;
    let schema = b[0].schema();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    assert_eq!(
        types,
        vec![
            "Int64",
            "Boolean",
            "Int16",
            "Int32",
            "Float32",
            "Float64",
            "Decimal128(20, 4)",
            "Utf8",
            "Utf8",
            "Binary",
            "Date32",
            "Time64(µs)",
            "Timestamp(µs)",
            "Timestamp(µs, \"UTC\")",
            "Utf8",
            "Utf8",
            "Int64"
        ]
    );
    let id = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap();
    assert_eq!(id.value(0), i64::MAX);
    let text = pretty(&b);
    for expected in [
        "-32768",
        "2147483647",
        "1234567890123456.7891",
        "héllo",
        "2024-02-29",
        "23:59:59.123456",
        "2024-01-02T03:04:05.678901",
        "2024-01-02T03:04:05.500Z",
        "0190a6f0-7b3e-7c3e-9b1e-0123456789ab",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    let (code, msg) = c
        .err("INSERT INTO app.types (id, j) VALUES (2, '{bad')")
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("JSON"), "{msg}");
    let (code, msg) = c
        .err("INSERT INTO app.types (id, u) VALUES (2, 'not-a-uuid')")
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("UUID"), "{msg}");
    let (code, _) = c
        .err("INSERT INTO app.types (id, s) VALUES (2, 40000)")
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert_eq!(count(&c.rows("SELECT * FROM app.types").await), 1);
}

#[tokio::test]
async fn update_delete_and_upsert() {
    let (_s, mut c) = setup().await;
    c.ok("INSERT INTO app.t (id, body) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    assert_eq!(
        c.ok("UPDATE app.t SET body = upper(body), n = n + 1 WHERE id >= 2")
            .await,
        2
    );
    assert_eq!(c.ok("UPDATE app.t SET body = 'zzz' WHERE id = 99").await, 0);
    let b = c.rows("SELECT id, body, n FROM app.t ORDER BY id").await;
    assert_eq!(column(&b, "body"), vec!["a", "B", "C"]);
    assert_eq!(column(&b, "n"), vec!["5", "6", "6"]);
    let (code, _) = c.err("UPDATE app.t SET id = 10 WHERE id = 1").await;
    assert_eq!(code, Code::InvalidArgument);

    assert_eq!(c.ok("DELETE FROM app.t WHERE id = 1").await, 1);
    assert_eq!(c.ok("DELETE FROM app.t WHERE id = 1").await, 0);
    assert_eq!(
        column(&c.rows("SELECT id FROM app.t ORDER BY id").await, "id"),
        vec!["2", "3"]
    );
    // A deleted key can be inserted again.
    c.ok("INSERT INTO app.t (id, body) VALUES (1, 'again')")
        .await;

    let n = c
        .ok("INSERT INTO app.t (id, body) VALUES (1, 'x'), (4, 'new') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body || '!'")
        .await;
    assert_eq!(n, 2);
    let n = c
        .ok("INSERT INTO app.t (id, body) VALUES (2, 'ignored'), (5, 'five') ON CONFLICT (id) DO NOTHING")
        .await;
    assert_eq!(n, 1);
    let b = c.rows("SELECT id, body FROM app.t ORDER BY id").await;
    assert_eq!(column(&b, "body"), vec!["x!", "B", "C", "new", "five"]);
    let (code, _) = c
        .err("INSERT INTO app.t (id, body) VALUES (1, 'p'), (1, 'q') ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body")
        .await;
    assert_eq!(code, Code::InvalidArgument);

    assert_eq!(c.ok("DELETE FROM app.t").await, 5);
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 0);
}

#[tokio::test]
async fn insert_select_and_joins() {
    let (_s, mut c) = setup().await;
    c.ok("CREATE TABLE app.copy (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("INSERT INTO app.t (id, body) VALUES (1, 'a'), (2, 'b')")
        .await;
    assert_eq!(
        c.ok("INSERT INTO app.copy SELECT id * 10, body FROM app.t")
            .await,
        2
    );
    let b = c
        .rows("SELECT t.id, c.id AS cid FROM app.t t JOIN app.copy c ON c.id = t.id * 10 ORDER BY t.id")
        .await;
    assert_eq!(column(&b, "cid"), vec!["10", "20"]);
    let agg = c
        .rows("SELECT count(*) AS n, max(id) AS m FROM app.copy")
        .await;
    assert_eq!(column(&agg, "n"), vec!["2"]);
}

#[tokio::test]
async fn seq_orders_plain_selects_and_can_be_filtered() {
    let (_s, mut c) = setup().await;
    for id in [5, 3, 9, 1] {
        c.ok(&format!("INSERT INTO app.t (id) VALUES ({id})")).await;
    }
    c.ok("UPDATE app.t SET body = 'moved' WHERE id = 3").await;
    let b = c.rows("SELECT * FROM app.t").await;
    let names: Vec<String> = b[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["id", "body", "n", "_seq"]);
    assert_eq!(column(&b, "id"), vec!["5", "9", "1", "3"]);
    let seqs: Vec<i64> = column(&b, "_seq")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let after = c
        .rows(&format!("SELECT id FROM app.t WHERE _seq > {}", seqs[1]))
        .await;
    assert_eq!(column(&after, "id"), vec!["1", "3"]);
    let page = c.rows("SELECT id FROM app.t LIMIT 2 OFFSET 1").await;
    assert_eq!(column(&page, "id"), vec!["9", "1"]);
    let typed = c.rows("SELECT _seq FROM app.t LIMIT 1").await;
    assert_eq!(typed[0].schema().field(0).data_type(), &DataType::Int64);
    let point = c.rows("SELECT id FROM app.t WHERE id IN (1, 9, 77)").await;
    assert_eq!(column(&point, "id"), vec!["9", "1"]);
}

#[tokio::test]
async fn parse_errors_give_line_and_column() {
    let (_s, mut c) = setup().await;
    let (code, msg) = c.err("SELECT *\nFROM app.t\nWHERE (id = ").await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("Line: 3"), "{msg}");
    assert!(msg.contains("Expected"), "{msg}");
    let (code, msg) = c.err("SUBSCRIBE TO app.t").await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("DoExchange"), "{msg}");
    let (code, _) = c.err("SELECT nope FROM app.t").await;
    assert!(
        matches!(code, Code::NotFound | Code::InvalidArgument),
        "{code:?}"
    );
    assert_eq!(c.err("SELECT * FROM app.missing").await.0, Code::NotFound);
    // The server keeps serving.
    assert_eq!(count(&c.rows("SELECT * FROM app.t").await), 0);
    let one = c.rows("SELECT 1 AS one").await;
    assert_eq!(one[0].column(0).len(), 1);
}
