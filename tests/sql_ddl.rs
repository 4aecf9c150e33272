//! Namespaces, tables, their options and names, system tables, information_schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{TestServer, column, count};
use tonic::Code;

#[tokio::test]
async fn namespaces_lifecycle() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    assert_eq!(c.ok("CREATE NAMESPACE chat").await, 0);
    assert_eq!(c.err("CREATE NAMESPACE chat").await.0, Code::AlreadyExists);
    c.ok("CREATE NAMESPACE IF NOT EXISTS chat").await;
    c.ok("create namespace Other").await;
    let ns = column(&c.rows("SHOW NAMESPACES").await, "namespace");
    assert_eq!(ns, vec!["chat", "other"]);

    c.ok("CREATE TABLE chat.messages (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("INSERT INTO chat.messages (id, body) VALUES (1, 'old')")
        .await;
    c.ok("DROP NAMESPACE chat").await;
    assert_eq!(c.err("DROP NAMESPACE chat").await.0, Code::NotFound);
    c.ok("DROP NAMESPACE IF EXISTS chat").await;
    assert_eq!(c.err("SELECT * FROM chat.messages").await.0, Code::NotFound);

    // Recreated namespace and table are empty.
    c.ok("CREATE NAMESPACE chat").await;
    c.ok("CREATE TABLE chat.messages (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    assert_eq!(count(&c.rows("SELECT * FROM chat.messages").await), 0);
}

#[tokio::test]
async fn names_follow_the_rules() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    for (sql, needle) in [
        ("CREATE NAMESPACE system", "reserved namespace"),
        ("CREATE NAMESPACE information_schema", "reserved namespace"),
        ("CREATE NAMESPACE \"Bad\"", "lower-case"),
        ("CREATE NAMESPACE _x", "reserved for the system"),
        ("CREATE NAMESPACE abcdefghijabcdefghijabcdefghijabc", "32"),
    ] {
        let (code, msg) = c.err(sql).await;
        assert_eq!(code, Code::InvalidArgument, "{sql}");
        assert!(msg.contains(needle), "{sql}: {msg}");
    }
    c.ok("CREATE NAMESPACE app").await;
    let (code, msg) = c.err("CREATE TABLE app.t (_id BIGINT PRIMARY KEY)").await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("reserved"), "{msg}");
    let (code, msg) = c
        .err("CREATE TABLE app.\"select\" (id BIGINT PRIMARY KEY)")
        .await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("keyword"), "{msg}");
    let (code, _) = c
        .err("CREATE TABLE app.\"a/../b\" (id BIGINT PRIMARY KEY)")
        .await;
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test]
async fn create_table_options_are_validated() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    let cases = [
        (
            "CREATE TABLE app.a (id BIGINT, b TEXT, PRIMARY KEY (id, b))",
            "composite",
        ),
        (
            "CREATE TABLE app.a (id BIGINT PRIMARY KEY) WITH (COLOR = 'red')",
            "COLOR",
        ),
        (
            "CREATE TABLE app.a (id BIGINT PRIMARY KEY) WITH (TTL_SECONDS = 5)",
            "TTL_SECONDS",
        ),
        (
            "CREATE STREAM TABLE app.a (id BIGINT PRIMARY KEY)",
            "TTL_SECONDS",
        ),
        (
            "CREATE USER TABLE app.a (id BIGINT PRIMARY KEY) WITH (TYPE = 'SHARED')",
            "TYPE",
        ),
        (
            "CREATE USER TABLE app.a (id BIGINT PRIMARY KEY) WITH (ACCESS_LEVEL = 'PUBLIC')",
            "ACCESS_LEVEL",
        ),
        (
            "CREATE TABLE app.a (id BIGINT PRIMARY KEY) WITH (FLUSH_POLICY = 'rows:x')",
            "FLUSH_POLICY",
        ),
        (
            "CREATE TABLE app.a (id BIGINT PRIMARY KEY, v INT DEFAULT 'abc')",
            "default",
        ),
        (
            "CREATE TABLE app.a (id GEOMETRY PRIMARY KEY)",
            "unsupported column type",
        ),
    ];
    for (sql, needle) in cases {
        let (code, msg) = c.err(sql).await;
        assert_eq!(code, Code::InvalidArgument, "{sql}: {msg}");
        assert!(msg.contains(needle), "{sql}: {msg}");
    }
    // Nothing was created by the failures.
    assert_eq!(count(&c.rows("SHOW TABLES IN app").await), 0);
    // USER and STREAM tables are served.
    c.ok("CREATE USER TABLE app.u (id BIGINT PRIMARY KEY)")
        .await;
    c.ok("CREATE STREAM TABLE app.s (id BIGINT PRIMARY KEY) WITH (TTL_SECONDS = 30)")
        .await;
    c.ok("DROP TABLE app.u").await;
    c.ok("DROP TABLE app.s").await;

    c.ok(
        "CREATE SHARED TABLE IF NOT EXISTS app.items (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), \
         name TEXT NOT NULL, price DECIMAL(10,2) DEFAULT 0, at TIMESTAMP DEFAULT NOW()) \
         WITH (TYPE = 'SHARED', FLUSH_POLICY = 'rows:500,interval:60', ACCESS_LEVEL = 'PUBLIC', STORAGE_ID = 'local')",
    )
    .await;
    assert_eq!(
        c.err("CREATE TABLE app.items (id INT PRIMARY KEY)").await.0,
        Code::AlreadyExists
    );
    c.ok("CREATE TABLE IF NOT EXISTS app.items (id INT PRIMARY KEY)")
        .await;
    let d = c.rows("DESCRIBE TABLE app.items").await;
    assert_eq!(column(&d, "column_name"), vec!["id", "name", "price", "at"]);
    assert_eq!(
        column(&d, "data_type"),
        vec!["BIGINT", "TEXT", "DECIMAL(10,2)", "TIMESTAMP"]
    );
    assert_eq!(
        column(&d, "is_nullable"),
        vec!["false", "false", "true", "true"]
    );
    assert_eq!(column(&d, "is_primary_key")[0], "true");
    assert_eq!(column(&d, "column_default")[0], "SNOWFLAKE_ID()");
    assert_eq!(column(&d, "table_type")[0], "SHARED");
    assert!(column(&d, "options")[0].contains("rows:500,interval:60"));
    let t = c.rows("SHOW TABLES IN app").await;
    assert_eq!(column(&t, "table_name"), vec!["items"]);
    assert_eq!(c.err("DESCRIBE TABLE app.nope").await.0, Code::NotFound);

    c.ok("DROP TABLE app.items").await;
    assert_eq!(c.err("DROP TABLE app.items").await.0, Code::NotFound);
    c.ok("DROP TABLE IF EXISTS app.items").await;
}

#[tokio::test]
async fn system_tables_and_information_schema() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE shop").await;
    c.ok(
        "CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, total DOUBLE, note TEXT DEFAULT 'none')",
    )
    .await;
    let ns = c.rows("SELECT namespace FROM system.namespaces").await;
    assert_eq!(column(&ns, "namespace"), vec!["shop"]);
    let t = c
        .rows("SELECT namespace, table_name, table_type, storage_id, schema_version FROM system.tables")
        .await;
    assert_eq!(column(&t, "table_name"), vec!["orders"]);
    assert_eq!(column(&t, "table_type"), vec!["SHARED"]);
    let cols = c
        .rows("SELECT column_name, data_type, column_default FROM system.columns WHERE table_name = 'orders' ORDER BY ordinal_position")
        .await;
    assert_eq!(column(&cols, "column_name"), vec!["id", "total", "note"]);
    assert_eq!(column(&cols, "data_type"), vec!["BIGINT", "DOUBLE", "TEXT"]);
    let info = c
        .rows("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'shop'")
        .await;
    assert_eq!(column(&info, "table_name"), vec!["orders"]);
    let info_cols = c
        .rows("SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position")
        .await;
    assert_eq!(
        column(&info_cols, "column_name"),
        vec!["id", "total", "note", "_seq"]
    );
}

#[tokio::test]
async fn use_sets_the_default_namespace() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE a").await;
    let (code, msg) = c.err("CREATE TABLE t (id INT PRIMARY KEY)").await;
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("USE"), "{msg}");
    assert_eq!(c.err("USE nope").await.0, Code::NotFound);
    c.ok("USE a").await;
    c.ok("CREATE TABLE t (id INT PRIMARY KEY)").await;
    c.ok("INSERT INTO t (id) VALUES (7)").await;
    assert_eq!(column(&c.rows("SELECT id FROM t").await, "id"), vec!["7"]);
    assert_eq!(
        column(&c.rows("SHOW TABLES").await, "table_name"),
        vec!["t"]
    );
    c.ok("SET NAMESPACE a").await;
    assert_eq!(column(&c.rows("SELECT id FROM a.t").await, "id"), vec!["7"]);
}
