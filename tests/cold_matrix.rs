//! The SQL behaviour of tables run against hot-only, cold-only and mixed data: each scenario
//! runs three times, and flushed data must answer exactly like unflushed data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{Backend, Client, TestServer, backend_matrix, column, count};
use tonic::Code;

backend_matrix!(
    inserts_and_duplicate_keys,
    updates_and_deletes,
    upserts,
    filters_aggregates_and_pages,
    transactions_over_flushed_rows,
    alter_table_over_stored_rows,
);

async fn setup(b: Backend) -> (TestServer, Client) {
    let server = b.server().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT, n INT DEFAULT 5)")
        .await;
    (server, c)
}

async fn ids(c: &mut Client, sql: &str) -> Vec<String> {
    column(&c.rows(sql).await, "id")
}

async fn inserts_and_duplicate_keys(b: Backend) {
    let (_s, mut c) = setup(b).await;
    c.ok("INSERT INTO app.t (id, body) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    b.settle(&mut c, "app.t", 0).await;
    c.ok("INSERT INTO app.t (id, body) VALUES (4, 'd'), (5, 'e')")
        .await;
    b.settle(&mut c, "app.t", 1).await;
    // A key that exists, hot or cold, fails the whole statement and is named.
    let (code, msg) = c
        .err("INSERT INTO app.t (id, body) VALUES (6, 'f'), (2, 'dup')")
        .await;
    assert_eq!(code, Code::AlreadyExists, "{msg}");
    assert!(msg.contains("id = 2"), "{msg}");
    assert_eq!(count(&c.rows("SELECT * FROM app.t WHERE id = 6").await), 0);
    c.ok("INSERT INTO app.t (id, body) VALUES (6, 'f')").await;
    b.settle(&mut c, "app.t", 2).await;
    // A plain SELECT comes back in _seq order; LIMIT/OFFSET pages are stable.
    assert_eq!(
        ids(&mut c, "SELECT id FROM app.t").await,
        vec!["1", "2", "3", "4", "5", "6"]
    );
    assert_eq!(
        ids(&mut c, "SELECT id FROM app.t LIMIT 2 OFFSET 2").await,
        vec!["3", "4"]
    );
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t WHERE id = 5").await, "body"),
        vec!["e"]
    );
    assert_eq!(
        column(&c.rows("SELECT n FROM app.t WHERE id = 1").await, "n"),
        vec!["5"]
    );
}

async fn updates_and_deletes(b: Backend) {
    let (_s, mut c) = setup(b).await;
    c.ok(
        "INSERT INTO app.t (id, body, n) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3), (4, 'd', 4)",
    )
    .await;
    b.settle(&mut c, "app.t", 0).await;
    assert_eq!(c.ok("UPDATE app.t SET body = 'B' WHERE id = 2").await, 1);
    b.settle(&mut c, "app.t", 1).await;
    assert_eq!(c.ok("DELETE FROM app.t WHERE id = 3").await, 1);
    b.settle(&mut c, "app.t", 2).await;
    assert_eq!(c.ok("UPDATE app.t SET n = n * 10 WHERE n >= 2").await, 2);
    b.settle(&mut c, "app.t", 3).await;
    // A deleted row never comes back, from hot or cold.
    assert_eq!(count(&c.rows("SELECT * FROM app.t WHERE id = 3").await), 0);
    assert_eq!(c.ok("DELETE FROM app.t WHERE id = 3").await, 0);
    let rows = c.rows("SELECT id, body, n FROM app.t ORDER BY id").await;
    assert_eq!(column(&rows, "id"), vec!["1", "2", "4"]);
    assert_eq!(column(&rows, "body"), vec!["a", "B", "d"]);
    assert_eq!(column(&rows, "n"), vec!["1", "20", "40"]);
    // Updated rows move to the end of _seq order (one statement updates in scan order).
    assert_eq!(
        ids(&mut c, "SELECT id FROM app.t").await,
        vec!["1", "4", "2"]
    );
    // The deleted key can be inserted again.
    c.ok("INSERT INTO app.t (id, body) VALUES (3, 'again')")
        .await;
    b.settle(&mut c, "app.t", 4).await;
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t WHERE id = 3").await, "body"),
        vec!["again"]
    );
    assert_eq!(
        column(&c.rows("SELECT count(*) AS c FROM app.t").await, "c"),
        vec!["4"]
    );
}

async fn upserts(b: Backend) {
    let (_s, mut c) = setup(b).await;
    c.ok("INSERT INTO app.t (id, body) VALUES (1, 'a'), (2, 'b')")
        .await;
    b.settle(&mut c, "app.t", 0).await;
    assert_eq!(
        c.ok("INSERT INTO app.t (id, body) VALUES (2, 'B'), (3, 'C') \
              ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body")
            .await,
        2
    );
    b.settle(&mut c, "app.t", 1).await;
    assert_eq!(
        c.ok("INSERT INTO app.t (id, body) VALUES (1, 'x'), (4, 'D') ON CONFLICT (id) DO NOTHING")
            .await,
        1
    );
    b.settle(&mut c, "app.t", 2).await;
    let rows = c.rows("SELECT id, body FROM app.t ORDER BY id").await;
    assert_eq!(column(&rows, "body"), vec!["a", "B", "C", "D"]);
}

async fn filters_aggregates_and_pages(b: Backend) {
    let (_s, mut c) = setup(b).await;
    for step in 0..4 {
        let values: Vec<String> = (0..25)
            .map(|i| {
                let id = step * 25 + i;
                format!("({id}, 'g{}', {id})", id % 3)
            })
            .collect();
        c.ok(&format!(
            "INSERT INTO app.t (id, body, n) VALUES {}",
            values.join(", ")
        ))
        .await;
        b.settle(&mut c, "app.t", step).await;
    }
    assert_eq!(
        column(
            &c.rows("SELECT count(*) AS c FROM app.t WHERE n BETWEEN 10 AND 59")
                .await,
            "c"
        ),
        vec!["50"]
    );
    assert_eq!(
        column(
            &c.rows("SELECT body, count(*) AS c FROM app.t GROUP BY body ORDER BY body")
                .await,
            "c"
        ),
        vec!["34", "33", "33"]
    );
    assert_eq!(
        ids(
            &mut c,
            "SELECT id FROM app.t WHERE id IN (3, 50, 99, 1000) ORDER BY id"
        )
        .await,
        vec!["3", "50", "99"]
    );
    assert_eq!(
        ids(&mut c, "SELECT id FROM app.t WHERE body = 'g1' AND n > 90").await,
        vec!["91", "94", "97"]
    );
    assert_eq!(
        ids(&mut c, "SELECT id FROM app.t LIMIT 3 OFFSET 48").await,
        vec!["48", "49", "50"]
    );
    // _seq can be filtered on: everything after the 50th row's version.
    let seq = column(
        &c.rows("SELECT _seq FROM app.t WHERE id = 49").await,
        "_seq",
    )
    .pop()
    .unwrap();
    assert_eq!(
        count(
            &c.rows(&format!("SELECT id FROM app.t WHERE _seq > {seq}"))
                .await
        ),
        50
    );
    let joined = c
        .rows(
            "SELECT a.id FROM app.t a JOIN app.t b ON a.id = b.n + 1 WHERE b.id < 3 ORDER BY a.id",
        )
        .await;
    assert_eq!(column(&joined, "id"), vec!["1", "2", "3"]);
}

async fn transactions_over_flushed_rows(b: Backend) {
    let server = b.server().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("INSERT INTO app.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    b.settle(&mut c, "app.t", 0).await;
    let mut other = server.client().await;
    c.ok("BEGIN").await;
    c.ok("UPDATE app.t SET body = 'A' WHERE id = 1").await;
    c.ok("DELETE FROM app.t WHERE id = 2").await;
    // The transaction reads its own changes over cold rows; others do not see them.
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t ORDER BY id").await, "body"),
        vec!["A", "c"]
    );
    assert_eq!(
        column(
            &other.rows("SELECT body FROM app.t ORDER BY id").await,
            "body"
        ),
        vec!["a", "b", "c"]
    );
    c.ok("COMMIT").await;
    b.settle(&mut c, "app.t", 1).await;
    assert_eq!(
        column(
            &other.rows("SELECT body FROM app.t ORDER BY id").await,
            "body"
        ),
        vec!["A", "c"]
    );
    // A key changed by another commit since BEGIN aborts the transaction, flushed or not.
    c.ok("BEGIN").await;
    c.ok("UPDATE app.t SET body = 'mine' WHERE id = 3").await;
    other
        .ok("UPDATE app.t SET body = 'theirs' WHERE id = 3")
        .await;
    b.settle(&mut other, "app.t", 2).await;
    let (code, _) = c.err("COMMIT").await;
    assert_eq!(code, Code::Aborted);
    assert_eq!(
        column(&c.rows("SELECT body FROM app.t WHERE id = 3").await, "body"),
        vec!["theirs"]
    );
}

async fn alter_table_over_stored_rows(b: Backend) {
    let (_s, mut c) = setup(b).await;
    c.ok("INSERT INTO app.t (id, body, n) VALUES (1, 'a', 1), (2, 'b', 2)")
        .await;
    b.settle(&mut c, "app.t", 0).await;
    c.ok("ALTER TABLE app.t ADD COLUMN tag TEXT DEFAULT 'old'")
        .await;
    c.ok("ALTER TABLE app.t ADD COLUMN score INT").await;
    c.ok("INSERT INTO app.t (id, body, n, tag, score) VALUES (3, 'c', 3, NULL, 30)")
        .await;
    c.ok("INSERT INTO app.t (id, body, n) VALUES (4, 'd', 4)")
        .await;
    b.settle(&mut c, "app.t", 1).await;
    c.ok("ALTER TABLE app.t RENAME COLUMN body TO text").await;
    c.ok("ALTER TABLE app.t DROP COLUMN n").await;
    b.settle(&mut c, "app.t", 2).await;
    c.ok("UPDATE app.t SET score = 20 WHERE id = 2").await;
    b.settle(&mut c, "app.t", 3).await;
    let rows = c.rows("SELECT * FROM app.t ORDER BY id").await;
    let names: Vec<String> = rows[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["id", "text", "tag", "score", "_seq"]);
    assert_eq!(column(&rows, "text"), vec!["a", "b", "c", "d"]);
    // Rows from before ADD COLUMN read its default; an explicit NULL stays NULL.
    assert_eq!(column(&rows, "tag"), vec!["old", "old", "", "old"]);
    assert_eq!(column(&rows, "score"), vec!["", "20", "30", ""]);
    assert_eq!(
        ids(&mut c, "SELECT id FROM app.t WHERE tag = 'old' ORDER BY id").await,
        vec!["1", "2", "4"]
    );
    assert_eq!(
        c.err("SELECT n FROM app.t").await.0,
        Code::NotFound,
        "a dropped column is gone"
    );
    // Dropping and adding a column of the same name does not bring old values back.
    c.ok("ALTER TABLE app.t ADD COLUMN n INT").await;
    assert_eq!(
        column(&c.rows("SELECT n FROM app.t ORDER BY id").await, "n"),
        vec!["", "", "", ""]
    );
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "schema_version")[0], "6");
    c.ok("ALTER TABLE app.t SET (FLUSH_POLICY = 'rows:5')")
        .await;
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert!(column(&d, "options")[0].contains("rows:5"));
    for (sql, code) in [
        ("ALTER TABLE app.t DROP COLUMN id", Code::InvalidArgument),
        (
            "ALTER TABLE app.t ADD COLUMN z INT NOT NULL",
            Code::InvalidArgument,
        ),
        ("ALTER TABLE app.t ADD COLUMN tag TEXT", Code::AlreadyExists),
        ("ALTER TABLE app.t RENAME COLUMN nope TO x", Code::NotFound),
        (
            "ALTER TABLE app.t SET (TTL_SECONDS = 5)",
            Code::InvalidArgument,
        ),
        ("ALTER TABLE app.nope ADD COLUMN x INT", Code::NotFound),
    ] {
        assert_eq!(c.err(sql).await.0, code, "{sql}");
    }
}
