//! TPC-H, side by side in one run: tpchgen's data (scale factor `--tpch-sf`) loaded into QuillDB
//! as written (benches/tpch/schema.sql: no primary keys, DECIMAL(15,2), DATE, CHAR(n)) through
//! CommandStatementIngest, the 22 queries (benches/tpch/queries) through Flight SQL, hot (before
//! any flush) and cold (after flushing every table), beside DataFusion in this process over the
//! Parquet files QuillDB's flush wrote and over tpchgen's own files, and DuckDB over tpchgen's
//! files (benches/tpch/tpch.py, in the Python test environment). Every QuillDB answer is
//! checked against DuckDB's (rows sorted, numbers to 2 places). Figures are medians of
//! `--tpch-rounds` runs after one warm-up; what counts is the ratio within this run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use quilldb_tests::{Client, TestServer};
use serde_json::json;

use crate::Row;

/// The tables, smallest first.
const TABLES: [&str; 8] = [
    "region", "nation", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// Rows per ingest call: `limits.max_rows_per_insert` is 1,000,000.
const INGEST_ROWS: usize = 1_000_000;

fn tpch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch")
}

/// The Python of the test environment (`python-client/.venv`), where tpchgen-cli and DuckDB
/// are installed by the test command.
fn venv_bin(name: &str) -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../python-client/.venv/bin");
    let beside = venv.join(name);
    if beside.exists() {
        beside
    } else {
        PathBuf::from(name)
    }
}

/// Statements of a SQL file, comment lines dropped.
fn statements(text: &str) -> Vec<String> {
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn queries() -> Vec<(String, String)> {
    (1..=22)
        .map(|n| {
            let text = std::fs::read_to_string(tpch_dir().join(format!("queries/q{n}.sql")))
                .expect("query file");
            (format!("q{n}"), statements(&text).remove(0))
        })
        .collect()
}

/// tpchgen's Parquet files at `sf` (generated once, kept in the temp dir).
fn generate(sf: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quilldb-tpch-sf{sf}"));
    if TABLES
        .iter()
        .all(|t| dir.join(format!("{t}.parquet")).exists())
    {
        return dir;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let t0 = Instant::now();
    let status = Command::new(venv_bin("tpchgen-cli"))
        .args(["-s", sf, "--format", "parquet", "-o"])
        .arg(&dir)
        .status()
        .expect("tpchgen-cli (pip install tpchgen-cli, or run the test command once)");
    assert!(status.success(), "tpchgen-cli failed");
    println!(
        "tpch: generated scale factor {sf} in {:.1} s into {}",
        t0.elapsed().as_secs_f64(),
        dir.display()
    );
    dir
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .with_batch_size(65_536)
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Loads every table; answers lineitem's rows and load time.
async fn load(c: &mut Client, data: &Path) -> (usize, Duration) {
    for stmt in statements(&std::fs::read_to_string(tpch_dir().join("schema.sql")).unwrap()) {
        c.ok(&stmt).await;
    }
    let mut lineitem = (0, Duration::ZERO);
    for t in TABLES {
        // Hot until the benchmark flushes.
        c.ok(&format!(
            "ALTER TABLE tpch.{t} SET (FLUSH_POLICY = 'interval:86400')"
        ))
        .await;
        let batches = read_parquet(&data.join(format!("{t}.parquet")));
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut calls: Vec<Vec<RecordBatch>> = vec![Vec::new()];
        let mut in_call = 0;
        for b in batches {
            if in_call + b.num_rows() > INGEST_ROWS {
                calls.push(Vec::new());
                in_call = 0;
            }
            in_call += b.num_rows();
            calls.last_mut().unwrap().push(b);
        }
        let t0 = Instant::now();
        let mut loaded = 0;
        for call in calls {
            loaded += c.ingest("tpch", t, call, None).await.unwrap() as usize;
        }
        let took = t0.elapsed();
        assert_eq!(loaded, rows, "{t}");
        println!(
            "tpch: loaded {t:<9} {rows:>9} rows in {:>7.2} s ({:>9.0} rows/s)",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64()
        );
        if t == "lineitem" {
            lineitem = (rows, took);
        }
    }
    lineitem
}

/// A result as sorted rows of text: numbers to 2 places, dates ISO, text trimmed.
fn normalize(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let opts = FormatOptions::default().with_null("NULL");
    for b in batches {
        let cols: Vec<Vec<String>> = b
            .columns()
            .iter()
            .map(|a| {
                if a.data_type().is_numeric() {
                    let f = arrow::compute::cast(a, &DataType::Float64).unwrap();
                    let f = f
                        .as_any()
                        .downcast_ref::<arrow::array::Float64Array>()
                        .unwrap()
                        .clone();
                    (0..f.len())
                        .map(|i| {
                            if f.is_null(i) {
                                "NULL".to_string()
                            } else {
                                format!("{:.2}", f.value(i))
                            }
                        })
                        .collect()
                } else {
                    let f = ArrayFormatter::try_new(a.as_ref(), &opts).unwrap();
                    (0..a.len())
                        .map(|i| f.value(i).to_string().trim_end().to_string())
                        .collect()
                }
            })
            .collect();
        for i in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    rows.sort();
    rows
}

/// `None` if the answers agree (numbers may differ by one in the last place: a decimal and a
/// double can round either side of a half).
fn differs(got: &[Vec<String>], want: &[Vec<String>]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} rows, DuckDB {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.len() == w.len()
            && g.iter().zip(w).all(|(a, b)| {
                a == b
                    || matches!((a.parse::<f64>(), b.parse::<f64>()),
                        (Ok(x), Ok(y)) if (x - y).abs() <= 0.0101 + 1e-12 * y.abs())
            });
        if !same {
            return Some(format!("row {i}: {g:?} != DuckDB {w:?}"));
        }
    }
    None
}

/// Adds to `wrong` how query `name`'s answer `got` (at `stage`) differs from DuckDB's.
fn check(got: &[RecordBatch], answers: &Path, name: &str, stage: &str, wrong: &mut Vec<String>) {
    let want = read_answer(&answers.join(format!("{name}.tsv")));
    if let Some(d) = differs(&normalize(got), &want) {
        wrong.push(format!("{name} {stage}: {d}"));
    }
}

fn read_answer(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// DuckDB over tpchgen's files: best times by query, answers written beside the data.
fn duckdb(data: &Path, rounds: usize) -> (BTreeMap<String, f64>, PathBuf) {
    let out = data.join("duckdb-answers");
    let run = Command::new(venv_bin("python"))
        .arg(tpch_dir().join("tpch.py"))
        .args(["duckdb", "--repeat", &rounds.to_string(), "--data"])
        .arg(data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("python with duckdb (run the test command once)");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let times = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter_map(|l| {
            let (q, s) = l.split_once(' ')?;
            Some((q.to_string(), s.parse::<f64>().ok()? * 1000.0))
        })
        .collect();
    (times, out)
}

/// DataFusion with its defaults over one Parquet folder or file per table, as `tpch.<table>`.
async fn datafusion_over(paths: impl Fn(&str) -> PathBuf) -> SessionContext {
    let ctx = SessionContext::new_with_config(SessionConfig::new());
    ctx.sql("CREATE SCHEMA tpch").await.unwrap();
    for t in TABLES {
        let path = paths(t);
        ctx.register_parquet(
            format!("tpch.{t}"),
            path.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    ctx
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

async fn time_quilldb(c: &mut Client, sql: &str, rounds: usize) -> (f64, Vec<RecordBatch>) {
    let mut times = Vec::new();
    let mut last = Vec::new();
    for round in 0..=rounds {
        let t0 = Instant::now();
        last = c.rows(sql).await;
        if round > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    (median(times), last)
}

async fn time_datafusion(ctx: &SessionContext, sql: &str, rounds: usize) -> f64 {
    let mut times = Vec::new();
    for round in 0..=rounds {
        let t0 = Instant::now();
        ctx.sql(sql).await.unwrap().collect().await.unwrap();
        if round > 0 {
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    median(times)
}

/// PostgreSQL's COPY of lineitem from CSV in a throwaway cluster, if PostgreSQL is installed:
/// rows per second.
fn postgres_copy(data: &Path) -> Option<f64> {
    let initdb = ["/usr/local/bin/initdb", "/usr/lib/postgresql/15/bin/initdb"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
    let bin = initdb.parent()?.to_path_buf();
    let csv = data.join("lineitem.csv");
    if !csv.exists() {
        let status = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(format!(
                "import pyarrow.parquet as pq, pyarrow.csv as pc; \
                 pc.write_csv(pq.read_table('{}'), '{}', pc.WriteOptions(include_header=False))",
                data.join("lineitem.parquet").display(),
                csv.display()
            ))
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
    }
    let dir = std::env::temp_dir().join(format!("quilldb-tpch-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // PostgreSQL refuses to run as root: run it as `postgres` when this is root.
    let as_pg = |cmd: &Path| -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    };
    std::fs::create_dir_all(&dir).ok()?;
    Command::new("chown")
        .args(["-R", "postgres"])
        .arg(&dir)
        .status()
        .ok()?;
    let pgdata = dir.join("data");
    let ok = as_pg(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&pgdata)
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let port = "55432";
    as_pg(&bin.join("pg_ctl"))
        .args(["-D"])
        .arg(&pgdata)
        .args(["-o", &format!("-p {port} -k {}", dir.display()), "-w", "-l"])
        .arg(dir.join("log"))
        .arg("start")
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    let psql = |sql: &str| {
        Command::new("psql")
            .args([
                "-h",
                dir.to_str().unwrap(),
                "-p",
                port,
                "-U",
                "postgres",
                "-q",
                "-c",
                sql,
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ddl = "CREATE TABLE lineitem (l_orderkey BIGINT, l_partkey BIGINT, l_suppkey BIGINT, \
               l_linenumber INT, l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), \
               l_discount DECIMAL(15,2), l_tax DECIMAL(15,2), l_returnflag CHAR(1), \
               l_linestatus CHAR(1), l_shipdate DATE, l_commitdate DATE, l_receiptdate DATE, \
               l_shipinstruct CHAR(25), l_shipmode CHAR(10), l_comment VARCHAR(44))";
    let mut rate = None;
    if psql(ddl) {
        std::fs::set_permissions(&csv, std::os::unix::fs::PermissionsExt::from_mode(0o644)).ok();
        let rows = std::fs::read_to_string(&csv).ok()?.lines().count();
        let t0 = Instant::now();
        if psql(&format!(
            "COPY lineitem FROM '{}' WITH (FORMAT csv)",
            csv.display()
        )) {
            rate = Some(rows as f64 / t0.elapsed().as_secs_f64());
        }
    }
    as_pg(&bin.join("pg_ctl"))
        .args(["-D"])
        .arg(&pgdata)
        .args(["-m", "fast", "stop"])
        .stdout(std::process::Stdio::null())
        .status()
        .ok();
    let _ = std::fs::remove_dir_all(&dir);
    rate
}

/// The `tpch` part, scale factor `sf`: one server loads through hot writes and answers the
/// hot queries; a second one loads as configured by default (large ingests straight to cold
/// segments), flushes the rest and answers the cold queries. Nothing else runs beside.
pub async fn run(sf: &str, rounds: usize) -> Vec<Row> {
    let data = generate(sf);
    let (duck_ms, duck_answers) = duckdb(&data, rounds);
    let queries = queries();
    let mut wrong = Vec::new();

    // Hot: every row written to the hot store, nothing flushed.
    let (hot, hot_load) = {
        let server = TestServer::start_with(&[
            ("QUILLDB_STORAGE__DURABILITY", "sync"),
            ("QUILLDB_STORAGE__DIRECT_INGEST_ROWS", "0"),
        ])
        .await;
        let mut c = server.client().await;
        let (rows, took) = load(&mut c, &data).await;
        let mut hot = BTreeMap::new();
        for (name, sql) in &queries {
            let (ms, got) = time_quilldb(&mut c, sql, rounds).await;
            check(&got, &duck_answers, name, "hot", &mut wrong);
            hot.insert(name.clone(), ms);
        }
        (hot, rows as f64 / took.as_secs_f64())
    };

    let server = TestServer::start_with(&[("QUILLDB_STORAGE__DURABILITY", "sync")]).await;
    let mut c = server.client().await;
    let (lineitem_rows, lineitem_time) = load(&mut c, &data).await;
    let load_rate = lineitem_rows as f64 / lineitem_time.as_secs_f64();
    let pg_rate = postgres_copy(&data);
    match pg_rate {
        Some(r) => println!(
            "tpch: lineitem load {load_rate:.0} rows/s (through hot writes {hot_load:.0}); \
             PostgreSQL COPY of the same CSV {r:.0} rows/s"
        ),
        None => println!(
            "tpch: lineitem load {load_rate:.0} rows/s (through hot writes {hot_load:.0}); \
             PostgreSQL not available"
        ),
    }
    for t in TABLES {
        let job = c.flush_job(&format!("tpch.{t}")).await;
        let (status, message) = c.wait_job(&job).await;
        // Tables loaded straight to cold segments have nothing left to flush.
        assert!(
            status == "completed" || status == "skipped",
            "flush of {t}: {status} {message}"
        );
    }
    let storage = server.data_dir().join("storage/tpch");
    let on_segments = datafusion_over(|t| storage.join(t)).await;
    let on_tpchgen = datafusion_over(|t| data.join(format!("{t}.parquet"))).await;

    let mut out = Vec::new();
    let (mut cold_ratios, mut hot_ratios, mut gen_ratios, mut duck_ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    println!(
        "{:<4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "", "cold ms", "hot ms", "DF seg ms", "DF gen ms", "DuckDB ms", "cold/DF", "hot/DF"
    );
    for (name, sql) in &queries {
        let (cold, got) = time_quilldb(&mut c, sql, rounds).await;
        check(&got, &duck_answers, name, "cold", &mut wrong);
        let df = time_datafusion(&on_segments, sql, rounds).await;
        let gen_ms = time_datafusion(&on_tpchgen, sql, rounds).await;
        let duck = duck_ms.get(name).copied().unwrap_or(f64::NAN);
        let hot_ms = hot[name];
        println!(
            "{name:<4} {cold:>10.1} {hot_ms:>10.1} {df:>10.1} {gen_ms:>10.1} {duck:>10.1} {:>7.2}x {:>7.2}x",
            cold / df,
            hot_ms / df
        );
        cold_ratios.push(cold / df);
        hot_ratios.push(hot_ms / df);
        gen_ratios.push(cold / gen_ms);
        duck_ratios.push(cold / duck);
        out.push(json!({
            "query": name, "quilldb_cold_ms": cold, "quilldb_hot_ms": hot_ms,
            "datafusion_segments_ms": df, "datafusion_tpchgen_ms": gen_ms, "duckdb_ms": duck,
        }));
    }
    let worst = cold_ratios.iter().copied().fold(0.0, f64::max);
    let (cold_g, hot_g, gen_g, duck_g) = (
        geomean(&cold_ratios),
        geomean(&hot_ratios),
        geomean(&gen_ratios),
        geomean(&duck_ratios),
    );
    println!(
        "tpch sf {sf}: cold {cold_g:.2}x DataFusion on QuillDB's segments (geomean; worst \
         {worst:.2}x), {gen_g:.2}x DataFusion on tpchgen's files, {duck_g:.2}x DuckDB; hot \
         {hot_g:.2}x; answers {}",
        if wrong.is_empty() {
            "all equal to DuckDB's".to_string()
        } else {
            format!("WRONG: {}", wrong.join("; "))
        }
    );
    let rows = vec![
        Row {
            test: "TPC-H load lineitem",
            rows: lineitem_rows,
            seconds: lineitem_time.as_secs_f64(),
            rate: format!("{load_rate:.0} rows/s"),
            extra: json!({
                "aim_rows_per_second": 1_500_000,
                "through_hot_writes_rows_per_second": hot_load,
                "postgres_copy_rows_per_second": pg_rate,
            }),
        },
        Row {
            test: "TPC-H 22 queries",
            rows: 22,
            seconds: out
                .iter()
                .map(|q| q["quilldb_cold_ms"].as_f64().unwrap_or(0.0))
                .sum::<f64>()
                / 1000.0,
            rate: format!("{cold_g:.2}x DF (max {worst:.2}x, hot {hot_g:.2}x)"),
            extra: json!({
                "scale_factor": sf,
                "cold_over_datafusion_geomean": cold_g,
                "cold_over_datafusion_max": worst,
                "hot_over_datafusion_geomean": hot_g,
                "cold_over_datafusion_tpchgen_geomean": gen_g,
                "cold_over_duckdb_geomean": duck_g,
                "aims": { "cold_geomean": 1.15, "cold_max": 1.5, "hot_geomean": 2.0 },
                "answers_equal_duckdb": wrong.is_empty(),
                "wrong": wrong,
                "queries": out,
            }),
        },
    ];
    drop(server);
    rows
}
