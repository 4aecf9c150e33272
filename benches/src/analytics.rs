//! Analytics against DataFusion itself: the same queries over the same flushed Parquet files,
//! once through QuillDB (Flight SQL, results to this client) and once by DataFusion in this
//! process reading the files directly. Each query runs in turns, QuillDB then DataFusion, and
//! the figure is the ratio of their medians (on a shared machine, only a ratio measured in one
//! run means anything). The same queries over an unflushed copy show the hot (RocksDB) path.

use std::path::Path;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use serde_json::json;

use crate::{Row, ingest};
use quilldb_tests::{Client, TestServer};

/// The queries: `{t}` is the table.
const QUERIES: [(&str, &str); 5] = [
    (
        "Analytics: GROUP BY 97 groups",
        "SELECT bucket, count(*) AS n, sum(score) AS s FROM {t} GROUP BY bucket",
    ),
    (
        "Analytics: filtered count",
        "SELECT count(*) AS n FROM {t} WHERE score > 250000.0",
    ),
    (
        "Analytics: aggregate all",
        "SELECT avg(score) AS a, max(name) AS m, min(id) AS i FROM {t}",
    ),
    (
        "Analytics: filtered scan 1%",
        "SELECT id, name, score FROM {t} WHERE bucket = 7",
    ),
    (
        "Analytics: top 10",
        "SELECT id, score FROM {t} ORDER BY score DESC LIMIT 10",
    ),
];

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// The `analytics` part over `n` rows, each query `rounds` times per side.
pub async fn run(server: &TestServer, c: &mut Client, n: usize, rounds: usize) -> Vec<Row> {
    crate::create(c, "facts").await;
    ingest(c, "facts", n).await;
    let job = c.flush_job("bench.facts").await;
    let (status, message) = c.wait_job(&job).await;
    assert_eq!(status, "completed", "{message}");
    crate::create(c, "facts_hot").await;
    ingest(c, "facts_hot", n).await;

    let folder = server.data_dir().join("storage/bench/facts");
    let files = std::fs::read_dir(&folder)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
        .count();
    let df = datafusion_over(&folder).await;
    println!(
        "analytics: {n} rows; DataFusion reads {files} Parquet file(s) in {}",
        folder.display()
    );

    let mut out = Vec::new();
    for (name, sql) in QUERIES {
        let cold_sql = sql.replace("{t}", "bench.facts");
        let hot_sql = sql.replace("{t}", "bench.facts_hot");
        let df_sql = sql.replace("{t}", "facts");
        let (mut cold, mut hot, mut own) = (Vec::new(), Vec::new(), Vec::new());
        let mut counts = (0, 0, 0);
        for round in 0..=rounds {
            let t0 = Instant::now();
            let q = c.rows(&cold_sql).await;
            let t1 = Instant::now();
            let d = df.sql(&df_sql).await.unwrap().collect().await.unwrap();
            let t2 = Instant::now();
            let h = c.rows(&hot_sql).await;
            let t3 = Instant::now();
            counts = (rows(&q), rows(&d), rows(&h));
            // The first round warms caches on both sides.
            if round > 0 {
                cold.push(t1 - t0);
                own.push(t2 - t1);
                hot.push(t3 - t2);
            }
        }
        assert_eq!(counts.0, counts.1, "{name}: QuillDB and DataFusion differ");
        assert_eq!(counts.0, counts.2, "{name}: hot and cold differ");
        let (cold, own, hot) = (median(cold), median(own), median(hot));
        println!(
            "{name:<30} QuillDB cold {cold:>8.2} ms, hot {hot:>8.2} ms; DataFusion {own:>8.2} ms: \
             cold {:.2}x, hot {:.2}x",
            cold / own,
            hot / own
        );
        out.push(Row {
            test: name,
            rows: n,
            seconds: cold / 1000.0,
            rate: format!("{:.2}x DataFusion (hot {:.2}x)", cold / own, hot / own),
            extra: json!({
                "quilldb_cold_ms": cold,
                "quilldb_hot_ms": hot,
                "datafusion_ms": own,
                "cold_over_datafusion": cold / own,
                "hot_over_datafusion": hot / own,
                "aim": 1.2,
                "result_rows": counts.0,
            }),
        });
    }
    out
}

/// DataFusion with its defaults (all cores) over the Parquet files of `folder` as `facts`.
async fn datafusion_over(folder: &Path) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new());
    ctx.register_parquet(
        "facts",
        folder.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    ctx
}
