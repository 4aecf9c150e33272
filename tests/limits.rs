//! Limits: a query over its memory budget fails cleanly and the server goes on serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{TestServer, column};
use tonic::Code;

#[tokio::test]
async fn a_query_over_its_memory_budget_fails_cleanly() {
    let server = TestServer::start_with(&[("QUILLDB_LIMITS__MAX_QUERY_MEMORY_MB", "1")]).await;
    let mut c = server.client().await;
    let (code, msg) = c
        .err(
            "SELECT count(*) AS n FROM generate_series(1, 500000) a \
             JOIN generate_series(1, 500000) b ON a.value = b.value",
        )
        .await;
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(
        msg.to_lowercase().contains("memory") || msg.contains("resources"),
        "{msg}"
    );
    // Small queries still run, for this caller and the next.
    assert_eq!(
        column(
            &c.rows("SELECT count(*) AS n FROM generate_series(1, 1000)")
                .await,
            "n"
        ),
        vec!["1000"]
    );
    let mut other = server.client().await;
    assert_eq!(
        column(&other.rows("SELECT 1 AS one").await, "one"),
        vec!["1"]
    );
}
