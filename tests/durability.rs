//! Restarts: clean and SIGKILL. Every acknowledged row is there afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use quilldb_tests::{TestServer, column, count};

#[tokio::test]
async fn catalog_and_rows_survive_a_clean_restart() {
    let mut server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY DEFAULT SNOWFLAKE_ID(), v TEXT DEFAULT 'd', price DECIMAL(10,3))")
        .await;
    c.ok("INSERT INTO app.t (v, price) VALUES ('a', 1.125), ('b', NULL)")
        .await;
    c.ok("INSERT INTO app.t (v) VALUES ('c')").await;
    c.ok("DELETE FROM app.t WHERE v = 'b'").await;
    let before = c.rows("SELECT id, v, price, _seq FROM app.t").await;
    drop(c);
    assert!(server.stop().success());

    server.launch(&[]);
    let mut c = server.client().await;
    let after = c.rows("SELECT id, v, price, _seq FROM app.t").await;
    assert_eq!(
        quilldb_tests::pretty(&before),
        quilldb_tests::pretty(&after)
    );
    let d = c.rows("DESCRIBE TABLE app.t").await;
    assert_eq!(column(&d, "column_default")[1], "'d'");
    // New ids and _seq keep growing after the restart.
    c.ok("INSERT INTO app.t (v) VALUES ('after')").await;
    let seqs: Vec<i64> = column(&c.rows("SELECT _seq FROM app.t").await, "_seq")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(
        count(&c.rows("SELECT * FROM app.t WHERE v = 'after'").await),
        1
    );
}

#[tokio::test]
async fn every_acknowledged_row_survives_sigkill() {
    let mut server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.log (id BIGINT PRIMARY KEY, body TEXT)")
        .await;

    // Four writers insert as fast as they can; the server is killed while they run.
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let mut c = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..100_000i64 {
                let id = w * 1_000_000 + i;
                match c
                    .exec(&format!(
                        "INSERT INTO app.log (id, body) VALUES ({id}, 'row {id}')"
                    ))
                    .await
                {
                    Ok(1) => acked.push(id),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.kill();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 10,
        "too few writes before the kill: {}",
        acked.len()
    );

    server.launch(&[]);
    let mut c = server.client().await;
    let ids: std::collections::HashSet<i64> = column(&c.rows("SELECT id FROM app.log").await, "id")
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let missing: Vec<_> = acked.iter().filter(|id| !ids.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged rows lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Writes go on after recovery.
    c.ok("INSERT INTO app.log (id, body) VALUES (-1, 'after')")
        .await;
}
