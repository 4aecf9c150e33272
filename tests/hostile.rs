//! Hostile input never takes the server down: deep and wide expressions of every shape in every
//! place a statement can carry them, huge literals and names, functions asked for gigabytes,
//! invalid UTF-8, malformed commands and parameter batches. Each gets a correct answer or a
//! clean error naming the limit; the server keeps answering, anonymous callers and root alike,
//! and its memory goes back to its idle figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::{Any, CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightDescriptor, Ticket};
use bytes::Bytes;
use prost::Message;
use quilldb_flight::EventKind;
use quilldb_tests::{Client, TestServer, column, to_status};
use tonic::Code;

/// The server's defaults (`limits.max_expression_depth`, `limits.max_sql_bytes`).
const MAX_DEPTH: usize = 1000;
const MAX_SQL: usize = 1 << 20;
/// Rows of app.t: ids 0 to 49.
const ROWS: usize = 50;
/// Every shape at this depth must answer correctly (nested subqueries cost the most: ten of
/// them are within the limit).
const ALWAYS_ANSWERED: usize = 10;

fn repeat(part: &str, n: usize) -> String {
    std::iter::repeat_n(part, n).collect()
}

/// `n` predicates `{compare}i`, one for each i from 0, joined by `join`.
fn chain(n: usize, compare: &str, join: &str) -> String {
    (0..n)
        .map(|i| format!("{compare}{i}"))
        .collect::<Vec<_>>()
        .join(join)
}

/// An expression `levels` deep and the value it has (`None`: not checked).
type Shape = fn(usize) -> (String, Option<String>);

/// Value expressions, each nesting one way.
const VALUES: [(&str, Shape); 11] = [
    ("chain of +", |n| {
        (
            format!("1{}", repeat("+1", n.saturating_sub(1))),
            Some(n.to_string()),
        )
    }),
    ("brackets", |n| {
        (
            format!("{}1{}", repeat("(", n), repeat(")", n)),
            Some("1".into()),
        )
    }),
    ("function calls", |n| {
        (
            format!("{}-1{}", repeat("abs(", n), repeat(")", n)),
            Some("1".into()),
        )
    }),
    ("CASE", |n| {
        let e = format!(
            "{}1{}",
            repeat("CASE WHEN true THEN ", n),
            repeat(" END", n)
        );
        (e, Some("1".into()))
    }),
    ("subqueries", |n| {
        (
            format!("{}1{}", repeat("(SELECT ", n), repeat(")", n)),
            Some("1".into()),
        )
    }),
    ("unary minus", |n| {
        let v = if n % 2 == 0 { "1" } else { "-1" };
        (format!("{}1", repeat("- ", n)), Some(v.into()))
    }),
    ("casts", |n| {
        (format!("1{}", repeat("::BIGINT", n)), Some("1".into()))
    }),
    ("array literal", |n| {
        (format!("{}1{}", repeat("[", n), repeat("]", n)), None)
    }),
    ("JSON text", |n| {
        let text = format!("{}1{}", repeat("{\"a\":", n), repeat("}", n));
        (format!("length('{text}')"), Some(text.len().to_string()))
    }),
    ("struct literal", |n| {
        (format!("{}1{}", repeat("{'a': ", n), repeat("}", n)), None)
    }),
    ("chain of ||", |n| {
        (
            format!("'x'{}", repeat(" || 'x'", n.saturating_sub(1))),
            Some("x".repeat(n)),
        )
    }),
];

/// Predicates over app.t, with the count of rows they keep.
const PREDICATES: [(&str, Shape); 5] = [
    ("AND chain", |n| {
        (
            chain(n, "id <> ", " AND "),
            Some(ROWS.saturating_sub(n).to_string()),
        )
    }),
    ("OR chain", |n| {
        (chain(n, "id = ", " OR "), Some(n.min(ROWS).to_string()))
    }),
    ("NOT chain", |n| {
        let v = if n % 2 == 0 { ROWS } else { 0 };
        (
            format!("{}(id >= 0)", repeat("NOT ", n)),
            Some(v.to_string()),
        )
    }),
    ("nested AND", |n| {
        let p = format!("{}id >= 0{}", repeat("(", n), repeat(" AND true)", n));
        (p, Some(ROWS.to_string()))
    }),
    ("IN list", |n| {
        let list = (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        (format!("id IN ({list})"), Some(n.min(ROWS).to_string()))
    }),
];

/// Depths to try for a shape whose text, in `place`, grows per level: 10 to 100,000, and the
/// deepest that fits in the largest statement.
fn depths(shape: Shape, place: &str) -> Vec<usize> {
    let size = |n: usize| place.replace("{}", &shape(n).0).len();
    let per_level = (size(11) - size(1)).div_ceil(10).max(1);
    let fit = (MAX_SQL - size(1)) / per_level;
    let mut out = vec![10, 100, MAX_DEPTH, MAX_DEPTH + 1, 10_000, 100_000, fit];
    out.sort_unstable();
    out.dedup();
    out
}

/// What a case must get: its value when it is within reach, else a clean error.
fn judge(what: &str, n: usize, expected: &Option<String>, got: Result<String, tonic::Status>) {
    match got {
        Ok(v) => {
            if let Some(e) = expected {
                assert_eq!(&v, e, "{what} at depth {n}: a wrong answer");
            }
        }
        Err(s) => {
            let clean = matches!(
                s.code(),
                Code::InvalidArgument | Code::ResourceExhausted | Code::Unimplemented
            ) && !s.message().is_empty();
            assert!(clean, "{what} at depth {n}: not a clean error: {s:?}");
            if expected.is_some() && n <= ALWAYS_ANSWERED {
                panic!("{what} at depth {n} must be answered: {s:?}");
            }
            if n > 2 * MAX_DEPTH && expected.is_some() && s.code() == Code::ResourceExhausted {
                assert!(s.message().contains("limits."), "{what}: {s:?}");
            }
        }
    }
}

/// The first value of the first column.
fn first(batches: &[RecordBatch]) -> String {
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    arrow::util::display::array_value_to_string(b.column(0), 0).expect("display")
}

async fn value(c: &mut Client, sql: &str) -> Result<String, tonic::Status> {
    c.query(sql).await.map(|b| first(&b))
}

async fn prepared_value(c: &mut Client, sql: &str) -> Result<String, tonic::Status> {
    let mut p = c
        .inner
        .prepare(sql.to_string(), None)
        .await
        .map_err(to_status)?;
    let info = p.execute().await.map_err(to_status);
    let answer = match info {
        Ok(info) => c.fetch(info).await.map(|b| first(&b)),
        Err(e) => Err(e),
    };
    p.close().await.map_err(to_status)?;
    answer
}

/// Opens a subscription and counts the rows of its snapshot.
async fn subscribed_rows(server: &TestServer, sql: &str) -> Result<String, tonic::Status> {
    let mut live = server.subscribe(None, sql, None).await?;
    live.schema().await;
    let mut rows = 0;
    loop {
        let (event, batch) = live.next().await;
        match EventKind::try_from(event.kind).unwrap() {
            EventKind::Ack | EventKind::Heartbeat => {}
            EventKind::Initial => rows += batch.map_or(0, |b| b.num_rows()),
            EventKind::InitialDone => return Ok(rows.to_string()),
            other => panic!("{other:?} in a snapshot: {event:?}"),
        }
    }
}

/// The server still answers at once, to anonymous callers and root.
async fn still_serving(server: &TestServer, what: &str) {
    let started = Instant::now();
    for mut c in [server.anonymous().await, server.client().await] {
        let r = tokio::time::timeout(Duration::from_secs(30), c.query("SELECT 1 AS one"))
            .await
            .unwrap_or_else(|_| panic!("after {what}: SELECT 1 hung"))
            .unwrap_or_else(|e| panic!("after {what}: SELECT 1 failed: {e}"));
        assert_eq!(column(&r, "one"), ["1"], "after {what}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "after {what}: SELECT 1 took {:?}",
        started.elapsed()
    );
}

/// Nothing was written to or lost from app.t, and the server still answers.
async fn unharmed(server: &TestServer, root: &mut Client, what: &str) {
    let rows = value(root, "SELECT count(*) FROM app.t").await;
    assert_eq!(rows.ok(), Some(ROWS.to_string()), "after {what}");
    still_serving(server, what).await;
}

/// A one-row parameter batch of one column.
fn one_param(ty: DataType, value: arrow::array::ArrayRef) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("$1", ty, true)]));
    RecordBatch::try_new(schema, vec![value]).unwrap()
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

async fn setup(env: &[(&str, &str)]) -> (TestServer, Client) {
    let server = TestServer::start_with(env).await;
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) WITH (ACCESS_LEVEL = 'PUBLIC')")
        .await;
    let ids: Vec<i64> = (0..ROWS as i64).collect();
    root.ingest(
        "app",
        "t",
        vec![quilldb_tests::id_v_batch(&ids, |i| format!("v{i}"))],
        None,
    )
    .await
    .unwrap();
    root.ok("CREATE USER alice WITH PASSWORD 'alice-password' ROLE user")
        .await;
    (server, root)
}

#[tokio::test]
async fn deep_and_wide_expressions_get_an_answer_or_a_clean_error() {
    let (server, mut root) = setup(&[]).await;
    let mut anon = server.anonymous().await;
    // Warm up the code paths, then take the idle figure.
    for _ in 0..3 {
        value(&mut anon, "SELECT count(*) FROM app.t WHERE id < 10")
            .await
            .unwrap();
    }
    let idle = rss(server.pid());

    for (name, shape) in VALUES {
        let places = [
            ("SELECT list", "SELECT {} AS v"),
            (
                "ORDER BY",
                "SELECT {} AS v FROM app.t WHERE id = 0 ORDER BY {}",
            ),
            ("prepared", "SELECT {} AS v"),
            (
                "EXECUTE AS USER",
                "EXECUTE AS USER 'alice' (SELECT {} AS v)",
            ),
        ];
        for (place, text) in places {
            for n in depths(shape, text) {
                let (e, expected) = shape(n);
                let sql = text.replace("{}", &e);
                let what = format!("{name} in {place} ({} bytes)", sql.len());
                let started = Instant::now();
                let got = match place {
                    "prepared" => prepared_value(&mut anon, &sql).await,
                    "EXECUTE AS USER" => value(&mut root, &sql).await,
                    _ => value(&mut anon, &sql).await,
                };
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{what} at depth {n} took {:?}",
                    started.elapsed()
                );
                // A value too big for its own statement is a clean error too.
                judge(&what, n, &expected.filter(|_| sql.len() <= MAX_SQL), got);
                if n >= MAX_DEPTH {
                    still_serving(&server, &what).await;
                }
            }
        }
    }
    for (name, shape) in PREDICATES {
        let places = [
            ("WHERE", "SELECT count(*) AS v FROM app.t WHERE {}"),
            ("SUBSCRIBE", "SUBSCRIBE TO app.t WHERE {}"),
            ("DELETE", "DELETE FROM app.t WHERE id < 0 AND ({})"),
        ];
        for (place, text) in places {
            for n in depths(shape, text) {
                let (p, expected) = shape(n);
                let sql = text.replace("{}", &p);
                let what = format!("{name} in {place} ({} bytes)", sql.len());
                let expected = expected.filter(|_| sql.len() <= MAX_SQL);
                let got = match place {
                    "SUBSCRIBE" => subscribed_rows(&server, &sql).await,
                    "DELETE" => root.exec(&sql).await.map(|n| n.to_string()),
                    _ => value(&mut anon, &sql).await,
                };
                let expected = if place == "DELETE" {
                    expected.map(|_| "0".into())
                } else {
                    expected
                };
                judge(&what, n, &expected, got);
                if n >= MAX_DEPTH {
                    still_serving(&server, &what).await;
                }
            }
        }
    }
    unharmed(&server, &mut root, "deep and wide expressions").await;
    assert_back_to_idle(&server, idle).await;
}

/// Memory goes back near its idle figure once the hostile calls are over (allocators keep some
/// freed memory: the margin is generous, a leak of the large inputs is not).
async fn assert_back_to_idle(server: &TestServer, idle: u64) {
    let margin = 256 << 20;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = rss(server.pid());
        if now <= idle + margin {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "resident memory stayed at {} MiB after the hostile calls (idle: {} MiB)",
            now >> 20,
            idle >> 20
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_reported_crashes_get_clear_answers_for_anonymous_and_root() {
    let (server, mut root) = setup(&[]).await;
    let mut anon = server.anonymous().await;
    for c in [&mut anon, &mut root] {
        // 1,000 terms (about 4 KB): answered.
        let sum = format!("SELECT 1{} AS v", repeat("+1", 999));
        assert_eq!(value(c, &sum).await.unwrap(), "1000");
        // 10,000 terms: refused, naming the limit.
        let (code, msg) = c
            .err(&format!("SELECT 1{} AS v", repeat("+1", 9_999)))
            .await;
        assert_eq!(code, Code::ResourceExhausted, "{msg}");
        assert!(
            msg.contains("limits.max_expression_depth") && msg.contains("1000"),
            "{msg}"
        );
        // 1,000 predicates: just over the limit (each adds a level to the chain).
        let preds = chain(1000, "id <> ", " AND ");
        let (code, msg) = c.err(&format!("SELECT * FROM app.t WHERE {preds}")).await;
        assert_eq!(code, Code::ResourceExhausted, "{msg}");
        assert!(msg.contains("limits.max_expression_depth"), "{msg}");
        // ... and 900 are answered.
        let preds = chain(900, "id <> ", " AND ");
        assert_eq!(
            value(c, &format!("SELECT count(*) FROM app.t WHERE {preds}"))
                .await
                .unwrap(),
            "0"
        );
        // 50 nested CASE: answered; 200: the depth limit, not a misleading parse error.
        let case = |n| {
            format!(
                "SELECT {}1{} AS v",
                repeat("CASE WHEN true THEN ", n),
                repeat(" END", n)
            )
        };
        assert_eq!(value(c, &case(50)).await.unwrap(), "1");
        let (code, msg) = c.err(&case(200)).await;
        assert_eq!(code, Code::ResourceExhausted, "{msg}");
        assert!(msg.contains("limits.max_expression_depth"), "{msg}");
        assert!(!msg.contains("one statement per call"), "{msg}");
        still_serving(&server, "the reported shapes").await;
    }
}

#[tokio::test]
async fn functions_asked_for_gigabytes_are_refused_before_they_allocate() {
    let (server, mut root) = setup(&[]).await;
    let mut anon = server.anonymous().await;
    let idle = rss(server.pid());
    for c in [&mut anon, &mut root] {
        for sql in [
            "SELECT length(repeat('x', 2000000000)) AS v",
            "SELECT count(*) AS v FROM unnest(range(0, 2000000000))",
            "SELECT length(lpad('x', 2000000000)) AS v",
            "SELECT length(rpad('x', 2000000000, 'ab')) AS v",
            "SELECT cardinality(array_repeat(1, 2000000000)) AS v",
            "SELECT cardinality(generate_series(1, 2000000000)) AS v",
            "SELECT cardinality(range(DATE '0001-01-01', DATE '9999-12-31', INTERVAL '1 second')) AS v",
            "SELECT length(replace(repeat('x', 1000000), 'x', repeat('y', 10000))) AS v",
            "SELECT length(regexp_replace(repeat('x', 1000000), 'x', repeat('y', 10000), 'g')) AS v",
            "SELECT length(repeat(repeat('x', 100000), 100000)) AS v",
            "SELECT length(repeat(v, 100000000)) AS v FROM app.t",
        ] {
            let started = Instant::now();
            let (code, msg) = c.err(sql).await;
            assert_eq!(code, Code::ResourceExhausted, "{sql}: {msg}");
            assert!(msg.contains("limits.max_query_memory_mb"), "{sql}: {msg}");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{sql}: {:?}",
                started.elapsed()
            );
            still_serving(&server, sql).await;
        }
        // Within the limit the same functions answer.
        assert_eq!(
            value(c, "SELECT length(repeat('x', 1000000)) AS v")
                .await
                .unwrap(),
            "1000000"
        );
        assert_eq!(
            value(c, "SELECT count(*) AS v FROM unnest(range(0, 100000))")
                .await
                .unwrap(),
            "100000"
        );
    }
    assert_back_to_idle(&server, idle).await;
}

#[tokio::test]
async fn each_role_has_its_time_limit_and_others_go_on_meanwhile() {
    let (server, mut root) = setup(&[
        ("QUILLDB_LIMITS__ROLE_QUERY_TIMEOUT_SECONDS__ANONYMOUS", "2"),
        ("QUILLDB_LIMITS__ROLE_QUERY_TIMEOUT_SECONDS__USER", "3"),
        ("QUILLDB_LIMITS__QUERY_TIMEOUT_SECONDS", "6"),
    ])
    .await;
    // 50^7 rows: hours of counting, without a memory cost.
    let cross = "SELECT count(*) AS v FROM app.t a, app.t b, app.t c, app.t d, app.t e, \
                 app.t f, app.t g";
    let endless = cross;
    let mut alice = server.client_as("alice", "alice-password").await.unwrap();
    let anon = server.anonymous().await;
    // While the anonymous query runs, root's small calls go on at normal speed.
    let slow = tokio::spawn(async move {
        let mut anon = anon;
        let started = Instant::now();
        let err = anon.query(endless).await.expect_err("runs past its limit");
        (err, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(value(&mut root, "SELECT 1 AS v").await.unwrap(), "1");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "SELECT 1 took {:?} beside a running query",
            started.elapsed()
        );
    }
    let (err, took) = slow.await.unwrap();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(err.message().contains("2 s"), "{err}");
    assert!(
        took < Duration::from_secs(6),
        "the anonymous limit is 2 s: {took:?}"
    );
    for (who, c, limit) in [("user", &mut alice, 3), ("root", &mut root, 6)] {
        let started = Instant::now();
        let err = c.query(cross).await.expect_err("runs past its limit");
        assert_eq!(err.code(), Code::DeadlineExceeded, "{who}: {err}");
        assert!(
            err.message().contains(&format!("{limit} s")),
            "{who}: {err}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(limit - 1) && took < Duration::from_secs(limit + 4),
            "{who}: {took:?}"
        );
    }
    still_serving(&server, "the timed-out queries").await;
}

#[tokio::test]
async fn huge_literals_and_names_get_clean_answers() {
    let (server, mut root) = setup(&[]).await;
    let mut anon = server.anonymous().await;
    let text = "x".repeat(MAX_SQL - 100);
    assert_eq!(
        value(&mut anon, &format!("SELECT length('{text}') AS v"))
            .await
            .unwrap(),
        text.len().to_string()
    );
    let too_long = "x".repeat(MAX_SQL + 1);
    let (code, msg) = anon.err(&format!("SELECT '{too_long}'")).await;
    assert_eq!(code, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("limits.max_sql_bytes"), "{msg}");
    let name = "a".repeat(MAX_SQL - 100);
    for sql in [
        format!("SELECT {name} FROM app.t"),
        format!("SELECT \"{name}\" FROM app.t"),
        format!("SELECT * FROM app.{name}"),
        format!("CREATE TABLE app.{name} (id BIGINT PRIMARY KEY)"),
        format!("CREATE TABLE app.t2 ({name} BIGINT PRIMARY KEY)"),
        format!("CREATE NAMESPACE {name}"),
        format!("CREATE USER {name} WITH PASSWORD 'long-enough-pw'"),
    ] {
        let (code, msg) = root.err(&sql).await;
        assert!(
            matches!(
                code,
                Code::InvalidArgument | Code::NotFound | Code::PermissionDenied
            ),
            "{code:?} {msg}"
        );
        assert!(
            msg.len() < 5000,
            "the error repeats the whole name: {} bytes",
            msg.len()
        );
    }
    // A number no integer type holds is read as a float (as PostgreSQL reads it as numeric),
    // and a huge IN list is wide, not deep.
    let big = value(&mut anon, &format!("SELECT {} AS v", "9".repeat(5000))).await;
    if let Err(e) = big {
        assert!(
            matches!(e.code(), Code::InvalidArgument | Code::ResourceExhausted),
            "{e:?}"
        );
    }
    let list = (0..100_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        value(
            &mut anon,
            &format!("SELECT count(*) FROM app.t WHERE id IN ({list})")
        )
        .await
        .unwrap(),
        ROWS.to_string()
    );
    still_serving(&server, "huge literals").await;
}

#[tokio::test]
async fn malformed_commands_and_parameter_batches_get_clean_errors() {
    let (server, mut root) = setup(&[]).await;
    let mut raw = server.raw_client().await;
    let clean = |s: &tonic::Status| {
        matches!(
            s.code(),
            Code::InvalidArgument | Code::NotFound | Code::Unimplemented | Code::Unauthenticated
        ) && !s.message().is_empty()
    };
    // Invalid UTF-8 in the SQL of a CommandStatementQuery: field 1, length-delimited.
    let mut query = vec![0x0a, 4, b'S', 0xff, 0xfe, b'1'];
    let any = Any {
        type_url: CommandStatementQuery::type_url().to_string(),
        value: Bytes::from(std::mem::take(&mut query)),
    };
    let garbage: Vec<Bytes> = vec![
        any.encode_to_vec().into(),
        Bytes::from_static(b"\xff\xff\xff\xff\xff"),
        Bytes::from_static(b""),
        Any {
            type_url: "type.googleapis.com/nothing.Such".into(),
            value: Bytes::new(),
        }
        .encode_to_vec()
        .into(),
        // A length prefix far past the end.
        Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x']),
    ];
    for cmd in &garbage {
        let err = raw
            .get_flight_info(FlightDescriptor::new_cmd(cmd.clone()))
            .await
            .expect_err("a malformed command");
        assert!(clean(&err), "{err:?}");
        let err = raw
            .do_get(Ticket {
                ticket: cmd.clone(),
            })
            .await
            .expect_err("a bad ticket");
        assert!(clean(&err), "{err:?}");
        let err = server
            .subscribe(None, &String::from_utf8_lossy(cmd), None)
            .await
            .expect_err("a bad subscription");
        assert!(clean(&err), "{err:?}");
    }
    // Parameter batches of the wrong schema or size.
    let mut c = server.client().await;
    let mut p = c
        .inner
        .prepare("SELECT v FROM app.t WHERE id = $1".into(), None)
        .await
        .unwrap();
    let text = one_param(
        DataType::Utf8,
        Arc::new(StringArray::from(vec!["not a number"])),
    );
    let wide = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, true),
            Field::new("$2", DataType::Int64, true),
            Field::new("$3", DataType::Int64, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Int64Array::from(vec![2])),
            Arc::new(Int64Array::from(vec![3])),
        ],
    )
    .unwrap();
    let empty = RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new(
        "$1",
        DataType::Int64,
        true,
    )])));
    let many = one_param(
        DataType::Int64,
        Arc::new(Int64Array::from((0..1_000_000).collect::<Vec<i64>>())),
    );
    for params in [text, wide, empty, many] {
        let shape = format!("{:?} x {}", params.schema().fields(), params.num_rows());
        p.set_parameters(params).unwrap();
        match p.execute().await {
            Ok(info) => {
                // Answered: the first row's parameters, or none.
                if let Err(e) = c.fetch(info).await {
                    assert!(clean(&e), "{shape}: {e:?}");
                }
            }
            Err(e) => {
                let e = to_status(e);
                assert!(clean(&e), "{shape}: {e:?}");
            }
        }
    }
    let mut insert = c
        .inner
        .prepare("INSERT INTO app.t (id, v) VALUES ($1, $2)".into(), None)
        .await
        .unwrap();
    let wrong = one_param(DataType::Utf8, Arc::new(StringArray::from(vec!["x"])));
    insert.set_parameters(wrong).unwrap();
    let e = to_status(insert.execute_update().await.expect_err("wrong parameters"));
    assert!(clean(&e), "{e:?}");
    unharmed(&server, &mut root, "malformed commands").await;
}

#[tokio::test]
async fn storage_paths_stay_inside_the_allowed_roots() {
    let (server, mut root) = setup(&[]).await;
    let data = server.data_dir();
    for (path, why) in [
        ("../../../../etc".to_string(), "absolute"),
        ("/etc".to_string(), "outside"),
        (format!("{}/../escape", data.display()), ".."),
        (data.display().to_string(), "data folder itself"),
        (format!("{}/hot/x", data.display()), "server's own"),
        (format!("{}/storage", data.display()), "server's own"),
    ] {
        let (code, msg) = root
            .err(&format!(
                "CREATE STORAGE evil TYPE 'filesystem' PATH '{path}'"
            ))
            .await;
        assert_eq!(code, Code::InvalidArgument, "{path}: {msg}");
        assert!(msg.contains(why), "{path}: {msg}");
    }
    // A symbolic link inside the data folder that leads out of it is seen through.
    let link = data.join("link");
    std::os::unix::fs::symlink("/tmp", &link).unwrap();
    let (code, msg) = root
        .err(&format!(
            "CREATE STORAGE evil TYPE 'filesystem' PATH '{}/cold'",
            link.display()
        ))
        .await;
    assert_eq!(code, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("outside"), "{msg}");
    // Anonymous callers may not create storages at all, wherever they point.
    let (code, msg) = server
        .anonymous()
        .await
        .err("CREATE STORAGE evil TYPE 'filesystem' PATH '../../../../etc'")
        .await;
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert_eq!(
        column(&root.rows("SHOW STORAGES").await, "storage_id"),
        ["local"]
    );
    // Inside the data folder is fine.
    root.ok(&format!(
        "CREATE STORAGE cold2 TYPE 'filesystem' PATH '{}/cold2'",
        data.display()
    ))
    .await;
    still_serving(&server, "storage paths").await;
}
