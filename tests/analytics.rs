//! Analytics plans: cold segments read by DataFusion's Parquet scan on every core, filtered to
//! live versions, beside the hot ones. Answers are checked against an in-memory model after
//! writes, updates and deletes across flushes and compactions, with 1 and 4 target
//! partitions; a plain SELECT keeps its `_seq` order; a scan outlives the compaction that
//! retires its segments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use futures::TryStreamExt;
use quilldb_tests::{Client, TestServer, column, pretty, to_status};

/// A small deterministic generator: the seed is printed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let s = std::env::var("QUILLDB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        })
        | 1;
    eprintln!("seed {s} (QUILLDB_TEST_SEED={s} replays it)");
    s
}

async fn server(partitions: usize) -> (TestServer, Client) {
    let n = partitions.to_string();
    // Every partition gets a share of even these small tables.
    let server = TestServer::start_with(&[
        ("QUILLDB_QUERY__TARGET_PARTITIONS", n.as_str()),
        ("QUILLDB_QUERY__SCAN_PARTITION_MIN_BYTES", "1"),
    ])
    .await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE a").await;
    (server, c)
}

fn ints(batches: &[arrow::record_batch::RecordBatch], name: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for b in batches {
        let a = b.column_by_name(name).expect(name);
        let a = arrow::compute::cast(a, &arrow::datatypes::DataType::Int64).unwrap();
        let a = a.as_primitive::<Int64Type>();
        out.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
    }
    out
}

/// One group's `g, count, sum, min, max`.
type GroupRow = (i64, i64, i64, i64, i64);

/// The model's answers to the checked queries.
fn expected(model: &BTreeMap<i64, (i64, i64)>) -> (String, Vec<GroupRow>) {
    let xs: Vec<i64> = model.values().map(|(_, x)| *x).collect();
    let total = format!(
        "{} {} {:?} {:?}",
        xs.len(),
        xs.iter().sum::<i64>(),
        xs.iter().min(),
        xs.iter().max()
    );
    let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (g, x) in model.values() {
        groups.entry(*g).or_default().push(*x);
    }
    let groups = groups
        .into_iter()
        .map(|(g, xs)| {
            (
                g,
                xs.len() as i64,
                xs.iter().sum(),
                *xs.iter().min().unwrap(),
                *xs.iter().max().unwrap(),
            )
        })
        .collect();
    (total, groups)
}

async fn check(c: &mut Client, model: &BTreeMap<i64, (i64, i64)>, when: &str) {
    let (want_total, want_groups) = expected(model);
    let b = c
        .rows("SELECT count(*) AS n, sum(x) AS s, min(x) AS lo, max(x) AS hi FROM a.t")
        .await;
    let one = |name| ints(&b, name)[0];
    let got = format!(
        "{} {} {:?} {:?}",
        one("n").unwrap(),
        one("s").unwrap_or(0),
        one("lo"),
        one("hi")
    );
    assert_eq!(got, want_total, "count/sum/min/max {when}");
    let b = c
        .rows(
            "SELECT g, count(*) AS n, sum(x) AS s, min(x) AS lo, max(x) AS hi \
             FROM a.t GROUP BY g ORDER BY g",
        )
        .await;
    let cols: Vec<Vec<Option<i64>>> = ["g", "n", "s", "lo", "hi"]
        .iter()
        .map(|n| ints(&b, n))
        .collect();
    let got: Vec<GroupRow> = (0..cols[0].len())
        .map(|i| {
            (
                cols[0][i].unwrap(),
                cols[1][i].unwrap(),
                cols[2][i].unwrap(),
                cols[3][i].unwrap(),
                cols[4][i].unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want_groups, "GROUP BY {when}");
    // A filter that the Parquet scan may push down, and the keys it leaves.
    let b = c
        .rows("SELECT id FROM a.t WHERE x >= 500 ORDER BY id")
        .await;
    let want: Vec<Option<i64>> = model
        .iter()
        .filter(|(_, (_, x))| *x >= 500)
        .map(|(id, _)| Some(*id))
        .collect();
    assert_eq!(ints(&b, "id"), want, "filtered keys {when}");
    // A top-k, whose dynamic filter prunes the Parquet scan but not the newer versions.
    let b = c
        .rows("SELECT id, x FROM a.t ORDER BY x DESC, id LIMIT 3")
        .await;
    let mut top: Vec<(i64, i64)> = model.iter().map(|(id, (_, x))| (-*x, *id)).collect();
    top.sort_unstable();
    let want: Vec<Option<i64>> = top.iter().take(3).map(|(_, id)| Some(*id)).collect();
    assert_eq!(ints(&b, "id"), want, "top 3 {when}");
}

/// With `keyed` false the table has no primary key: the test keeps `id` unique itself, and
/// UPDATE and DELETE find rows by predicate, as on any table.
async fn randomized_against_model(partitions: usize, keyed: bool) {
    let (mut server, mut c) = server(partitions).await;
    let key = if keyed { " PRIMARY KEY" } else { "" };
    c.ok(&format!(
        "CREATE TABLE a.t (id BIGINT{key}, g INT NOT NULL, x BIGINT NOT NULL)"
    ))
    .await;
    let mut rng = Rng(seed());
    let mut model: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for round in 0..12 {
        // A batch of new rows, updates of random rows (hot or cold) and deletes.
        let mut values = Vec::new();
        for _ in 0..(20 + rng.below(40)) {
            let id = rng.below(400) as i64;
            if model.contains_key(&id) || values.iter().any(|(i, _, _)| *i == id) {
                continue;
            }
            let (g, x) = (rng.below(5) as i64, rng.below(1000) as i64);
            values.push((id, g, x));
        }
        if !values.is_empty() {
            let sql: Vec<String> = values
                .iter()
                .map(|(id, g, x)| format!("({id}, {g}, {x})"))
                .collect();
            c.ok(&format!(
                "INSERT INTO a.t (id, g, x) VALUES {}",
                sql.join(", ")
            ))
            .await;
            for (id, g, x) in values {
                model.insert(id, (g, x));
            }
        }
        let keys: Vec<i64> = model.keys().copied().collect();
        for _ in 0..rng.below(15) {
            let id = keys[rng.below(keys.len() as u64) as usize];
            let x = rng.below(1000) as i64;
            c.ok(&format!("UPDATE a.t SET x = {x} WHERE id = {id}"))
                .await;
            if let Some(v) = model.get_mut(&id) {
                v.1 = x;
            }
        }
        let lo = rng.below(400) as i64;
        c.ok(&format!(
            "DELETE FROM a.t WHERE id BETWEEN {lo} AND {}",
            lo + 6
        ))
        .await;
        model.retain(|id, _| !(lo..=lo + 6).contains(id));
        // An update by predicate over many rows, hot and cold alike.
        if round % 4 == 3 {
            c.ok("UPDATE a.t SET x = x + 1 WHERE g = 2").await;
            for v in model.values_mut().filter(|v| v.0 == 2) {
                v.1 += 1;
            }
        }
        check(&mut c, &model, &format!("round {round} before its flush")).await;
        match round % 3 {
            0 => c.flush("a.t").await,
            1 => {
                c.flush("a.t").await;
                let (status, msg) = c.compact("a.t").await;
                assert!(
                    status == "completed" || status == "skipped",
                    "compaction: {status} {msg}"
                );
            }
            _ => {}
        }
        check(&mut c, &model, &format!("round {round}")).await;
    }
    // The plan reads the segments through DataFusion's Parquet scan, on every partition.
    let plan = pretty(&c.rows("EXPLAIN SELECT g, sum(x) FROM a.t GROUP BY g").await);
    assert!(plan.contains("VersionFilterExec"), "{plan}");
    assert!(plan.contains("DataSourceExec"), "{plan}");
    // An aggregate needs neither `_seq` nor `_deleted` where nothing in a segment is dead.
    assert!(plan.contains("lean=true"), "{plan}");
    server.stop();
}

#[tokio::test]
async fn randomized_against_model_one_partition() {
    randomized_against_model(1, true).await;
}

#[tokio::test]
async fn randomized_against_model_four_partitions() {
    randomized_against_model(4, true).await;
}

#[tokio::test]
async fn randomized_against_model_without_a_key() {
    randomized_against_model(4, false).await;
}

#[tokio::test]
async fn plain_select_keeps_seq_order_on_four_partitions() {
    let (_server, mut c) = server(4).await;
    c.ok("CREATE TABLE a.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    // Several segments, then updates that move old rows to the end of the _seq order.
    let mut order: Vec<i64> = Vec::new();
    for batch in 0..6 {
        let rows: Vec<String> = (0..500)
            .map(|i| {
                let id = 10_000 - (batch * 500 + i);
                format!("({id}, 'v{id}')")
            })
            .collect();
        c.ok(&format!("INSERT INTO a.t VALUES {}", rows.join(", ")))
            .await;
        order.extend((0..500).map(|i| 10_000 - (batch * 500 + i)));
        if batch < 5 {
            c.flush("a.t").await;
        }
    }
    for id in [9_990, 8_000, 7_777] {
        c.ok(&format!("UPDATE a.t SET v = 'moved' WHERE id = {id}"))
            .await;
        order.retain(|i| *i != id);
        order.push(id);
    }
    let want: Vec<Option<i64>> = order.iter().map(|i| Some(*i)).collect();
    assert_eq!(ints(&c.rows("SELECT id FROM a.t").await, "id"), want);
    assert_eq!(
        ints(&c.rows("SELECT id, v FROM a.t WHERE v <> 'x'").await, "id"),
        want,
        "a filter keeps the order"
    );
    let page = ints(
        &c.rows("SELECT id FROM a.t LIMIT 5 OFFSET 2498").await,
        "id",
    );
    assert_eq!(page, want[2498..2503].to_vec(), "a page across segments");
    let tail = ints(
        &c.rows("SELECT id FROM a.t LIMIT 4 OFFSET 2998").await,
        "id",
    );
    assert_eq!(
        tail,
        want[2998..].to_vec(),
        "the last page reaches the hot rows"
    );
    // Aggregates have no order to keep and run on every partition.
    let plan = pretty(
        &c.rows("EXPLAIN SELECT count(*), v FROM a.t GROUP BY v")
            .await,
    );
    assert!(!plan.contains("SortPreservingMergeExec"), "{plan}");
    let plan = pretty(&c.rows("EXPLAIN SELECT id FROM a.t").await);
    assert!(plan.contains("SortPreservingMergeExec"), "{plan}");
    assert!(
        !plan.contains("SortExec"),
        "sorted partitions need no sort: {plan}"
    );
}

#[tokio::test]
async fn scan_outlives_the_compaction_that_retires_its_segments() {
    let (_server, mut c) = server(2).await;
    c.ok("CREATE TABLE a.t (id BIGINT PRIMARY KEY, pad TEXT)")
        .await;
    let pad = "p".repeat(200);
    for batch in 0..8 {
        let rows: Vec<String> = (0..2_000)
            .map(|i| format!("({}, '{pad}')", batch * 2_000 + i))
            .collect();
        c.ok(&format!("INSERT INTO a.t VALUES {}", rows.join(", ")))
            .await;
        c.flush("a.t").await;
    }
    // Replace some flushed rows, so the compaction also forgets dv marks.
    c.ok("UPDATE a.t SET pad = 'new' WHERE id % 100 = 0").await;
    c.flush("a.t").await;
    // Start a scan and read only its first batch.
    let info = c
        .inner
        .execute("SELECT id, pad FROM a.t".to_string(), None)
        .await
        .map_err(to_status)
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = c.inner.do_get(ticket).await.map_err(to_status).unwrap();
    let first = stream.try_next().await.map_err(to_status).unwrap().unwrap();
    let mut ids: Vec<i64> = ints(&[first], "id").into_iter().flatten().collect();
    // Compaction replaces every segment while the scan is open.
    let mut other = _server.client().await;
    let job = column(&other.rows("STORAGE COMPACT TABLE a.t").await, "job_id")
        .pop()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut pads = 0;
    while let Some(b) = stream.try_next().await.map_err(to_status).unwrap() {
        pads += b
            .column_by_name("pad")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .filter(|p| *p == Some("new"))
            .count();
        ids.extend(ints(&[b], "id").into_iter().flatten());
    }
    drop(stream);
    ids.sort_unstable();
    assert_eq!(ids, (0..16_000).collect::<Vec<i64>>(), "every row once");
    assert_eq!(pads, 160, "the replaced rows read their new values");
    let (status, msg) = other.wait_job(&job).await;
    assert_eq!(status, "completed", "{msg}");
    let b = c
        .rows("SELECT count(*) AS n, count(DISTINCT id) AS d FROM a.t")
        .await;
    assert_eq!(ints(&b, "n"), vec![Some(16_000)]);
    assert_eq!(ints(&b, "d"), vec![Some(16_000)]);
}
