//! Views: stored queries, read with the reader's rights, kept across restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{TestServer, column, count};
use tonic::Code;

/// The Arrow schema GetTables gives in row `row` of its reply.
fn table_schema(
    batches: &[arrow::record_batch::RecordBatch],
    row: usize,
) -> arrow::datatypes::Schema {
    let all = arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap();
    let col = all
        .column_by_name("table_schema")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::BinaryArray>()
        .unwrap();
    arrow::ipc::convert::try_schema_from_ipc_buffer(col.value(row)).unwrap()
}

#[tokio::test]
async fn views_are_created_replaced_listed_dropped_and_kept_across_restarts() {
    let mut server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.orders (id BIGINT PRIMARY KEY, customer TEXT, total DOUBLE)")
        .await;
    c.ok("INSERT INTO app.orders VALUES (1, 'ann', 10), (2, 'bob', 25), (3, 'ann', 5)")
        .await;
    c.ok("CREATE VIEW app.big AS SELECT id, customer FROM app.orders WHERE total > 6")
        .await;
    let rows = c.rows("SELECT * FROM app.big ORDER BY id").await;
    assert_eq!(column(&rows, "id"), vec!["1", "2"]);
    // A view follows its table: new rows show at once.
    c.ok("INSERT INTO app.orders VALUES (4, 'cy', 99)").await;
    assert_eq!(count(&c.rows("SELECT * FROM app.big").await), 3);
    // Names for its columns; views over views; joins and aggregates.
    c.ok("USE app").await;
    c.ok("CREATE VIEW per_customer (who, spent) AS SELECT customer, sum(total) FROM orders GROUP BY customer")
        .await;
    c.ok("CREATE VIEW app.top AS SELECT who FROM app.per_customer WHERE spent > 20")
        .await;
    let rows = c.rows("SELECT who FROM app.top ORDER BY who").await;
    assert_eq!(column(&rows, "who"), vec!["bob", "cy"]);

    // A name is a table's or a view's, never both.
    assert_eq!(
        c.err("CREATE VIEW app.orders AS SELECT 1 AS one").await.0,
        Code::AlreadyExists
    );
    assert_eq!(
        c.err("CREATE TABLE app.big (id BIGINT PRIMARY KEY)")
            .await
            .0,
        Code::AlreadyExists
    );
    assert_eq!(
        c.err("CREATE VIEW app.big AS SELECT 1 AS one").await.0,
        Code::AlreadyExists
    );
    c.ok("CREATE OR REPLACE VIEW app.big AS SELECT id, customer, total FROM app.orders WHERE total > 20")
        .await;
    assert_eq!(
        column(&c.rows("SELECT id FROM app.big ORDER BY id").await, "id"),
        vec!["2", "4"]
    );
    // A view that would read itself is refused, directly or through another view.
    let (code, msg) = c
        .err("CREATE OR REPLACE VIEW app.per_customer (who, spent) AS SELECT who, 1.0 FROM app.top")
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("itself"), "{msg}");
    // Bad definitions write nothing.
    assert_eq!(
        c.err("CREATE VIEW app.nope AS SELECT * FROM app.missing")
            .await
            .0,
        Code::NotFound
    );
    assert_eq!(
        c.err("CREATE VIEW app.nope (a, b) AS SELECT id FROM app.orders")
            .await
            .0,
        Code::InvalidArgument
    );
    assert_eq!(
        c.err("CREATE MATERIALIZED VIEW app.nope AS SELECT 1")
            .await
            .0,
        Code::Unimplemented
    );

    // Listed: SHOW TABLES, system.views, GetTables (as VIEW, with its columns).
    let shown = c.rows("SHOW TABLES IN app").await;
    assert_eq!(
        column(&shown, "table_name"),
        vec!["big", "orders", "per_customer", "top"]
    );
    assert_eq!(
        column(&shown, "table_type"),
        vec!["VIEW", "SHARED", "VIEW", "VIEW"]
    );
    let sys = c
        .rows("SELECT view_name, definition, owner FROM system.views ORDER BY view_name")
        .await;
    assert_eq!(
        column(&sys, "view_name"),
        vec!["big", "per_customer", "top"]
    );
    assert!(
        column(&sys, "definition")[1]
            .starts_with("CREATE VIEW app.per_customer (who, spent) AS SELECT")
    );
    let listed = c.tables("app", "VIEW", true).await;
    assert_eq!(
        column(&listed, "table_name"),
        vec!["big", "per_customer", "top"]
    );
    let schema = table_schema(&listed, 1);
    assert_eq!(
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        vec!["who", "spent"]
    );
    // information_schema too.
    let is = c
        .rows("SELECT table_name FROM information_schema.tables WHERE table_schema = 'app' AND table_type = 'VIEW' ORDER BY table_name")
        .await;
    assert_eq!(
        column(&is, "table_name"),
        vec!["big", "per_customer", "top"]
    );

    // Kept across a restart.
    drop(c);
    assert!(server.stop().success());
    server.launch(&[]);
    let mut c = server.client().await;
    assert_eq!(
        column(&c.rows("SELECT who FROM app.top ORDER BY who").await, "who"),
        vec!["bob", "cy"]
    );

    // Views are read-only and no table: writes, DESCRIBE, DROP TABLE say so.
    for sql in [
        "INSERT INTO app.big (id) VALUES (9)",
        "DELETE FROM app.big",
        "DESCRIBE TABLE app.big",
        "DROP TABLE app.big",
    ] {
        let (code, msg) = c.err(sql).await;
        assert_eq!(code, Code::InvalidArgument, "{sql}: {msg}");
        assert!(msg.contains("is a view"), "{sql}: {msg}");
    }
    assert!(c.err("DROP VIEW app.orders").await.1.contains("DROP TABLE"));
    c.ok("DROP VIEW app.top").await;
    c.ok("DROP VIEW IF EXISTS app.top").await;
    assert_eq!(c.err("DROP VIEW app.top").await.0, Code::NotFound);
    assert_eq!(c.err("SELECT * FROM app.top").await.0, Code::NotFound);
    // DROP NAMESPACE takes its views along.
    c.ok("DROP NAMESPACE app").await;
    c.ok("CREATE NAMESPACE app").await;
    assert_eq!(count(&c.rows("SELECT * FROM system.views").await), 0);
}

#[tokio::test]
async fn a_dropped_table_under_a_view_makes_its_reads_fail_clearly() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    c.ok("CREATE VIEW app.v AS SELECT v FROM app.t").await;
    c.ok("DROP TABLE app.t").await;
    let (code, msg) = c.err("SELECT * FROM app.v").await;
    assert_eq!(code, Code::NotFound, "{msg}");
    assert!(msg.contains("view app.v cannot be read"), "{msg}");
    assert!(msg.contains("app.t"), "{msg}");
    // The view is still there and works again once the table is back.
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    c.ok("INSERT INTO app.t VALUES (1, 'back')").await;
    assert_eq!(
        column(&c.rows("SELECT v FROM app.v").await, "v"),
        vec!["back"]
    );
}

#[tokio::test]
async fn a_view_lends_no_rights_and_shows_each_reader_their_own_rows() {
    let server = TestServer::start().await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok(
        "CREATE TABLE app.secrets (id BIGINT PRIMARY KEY, s TEXT) WITH (ACCESS_LEVEL = 'PRIVATE')",
    )
    .await;
    root.ok("INSERT INTO app.secrets VALUES (1, 'x')").await;
    root.ok("CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    for u in ["alice", "bob"] {
        root.ok(&format!(
            "CREATE USER {u} WITH PASSWORD 'password-{u}' ROLE user"
        ))
        .await;
    }
    root.ok("CREATE USER svc WITH PASSWORD 'password-svc' ROLE service")
        .await;
    root.ok("CREATE VIEW app.leak AS SELECT s FROM app.secrets")
        .await;
    root.ok("CREATE VIEW app.mine AS SELECT id, body FROM app.notes")
        .await;

    let mut alice = server.client_as("alice", "password-alice").await.unwrap();
    let mut bob = server.client_as("bob", "password-bob").await.unwrap();
    alice
        .ok("INSERT INTO app.notes VALUES (1, 'alice note')")
        .await;
    bob.ok("INSERT INTO app.notes VALUES (1, 'bob note'), (2, 'bob again')")
        .await;
    // Not through a view what the reader cannot read directly.
    let direct = alice.err("SELECT * FROM app.secrets").await;
    assert_eq!(direct.0, Code::PermissionDenied);
    let through = alice.err("SELECT * FROM app.leak").await;
    assert_eq!(through.0, Code::PermissionDenied, "{}", through.1);
    // GetTables lists to a user only the views they can read.
    let listed = alice.tables("app", "VIEW", false).await;
    assert_eq!(column(&listed, "table_name"), vec!["mine"]);
    // USER tables through a view: each reader's own rows.
    assert_eq!(
        column(
            &alice.rows("SELECT body FROM app.mine ORDER BY id").await,
            "body"
        ),
        vec!["alice note"]
    );
    assert_eq!(
        column(
            &bob.rows("SELECT body FROM app.mine ORDER BY id").await,
            "body"
        ),
        vec!["bob note", "bob again"]
    );
    // Only services and up make views.
    assert_eq!(
        alice
            .err("CREATE VIEW app.mine2 AS SELECT 1 AS one")
            .await
            .0,
        Code::PermissionDenied
    );
    assert_eq!(
        alice.err("DROP VIEW app.mine").await.0,
        Code::PermissionDenied
    );
    let mut svc = server.client_as("svc", "password-svc").await.unwrap();
    svc.ok("CREATE VIEW app.svc_view AS SELECT id FROM app.secrets")
        .await;
    // A view made by a service is still read with the reader's rights.
    assert_eq!(
        alice.err("SELECT * FROM app.svc_view").await.0,
        Code::PermissionDenied
    );
    // EXECUTE AS USER reads a view as that user.
    assert_eq!(
        column(
            &svc.rows("EXECUTE AS USER 'bob' (SELECT count(*) AS n FROM app.mine)")
                .await,
            "n"
        ),
        vec!["2"]
    );
}

#[tokio::test]
async fn a_view_is_refused_as_a_subscription_target() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    c.ok("CREATE VIEW app.v AS SELECT id, v FROM app.t WHERE id > 1")
        .await;
    let token = c.inner.token().cloned().unwrap();
    let Err(err) = server
        .subscribe(Some(&token), "SUBSCRIBE TO app.v", None)
        .await
    else {
        panic!("a view is no subscription target");
    };
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    assert!(err.message().contains("is a view"), "{}", err.message());
    // The server serves on.
    c.ok("INSERT INTO app.t VALUES (2, 'x')").await;
    assert_eq!(count(&c.rows("SELECT * FROM app.v").await), 1);
}
