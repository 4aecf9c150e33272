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

/// Ingests `rows` rows with `v` of `width` bytes each into app.t.
async fn ingest(
    c: &mut quilldb_tests::Client,
    rows: i64,
    width: usize,
) -> Result<i64, tonic::Status> {
    let ids: Vec<i64> = (1000..1000 + rows).collect();
    let batch = quilldb_tests::id_v_batch(&ids, |_| "x".repeat(width));
    c.ingest("app", "t", vec![batch], None).await
}

#[tokio::test]
async fn statement_and_message_limits_refuse_and_write_nothing() {
    let server = TestServer::start_with(&[
        ("QUILLDB_LIMITS__MAX_SQL_BYTES", "2000"),
        ("QUILLDB_LIMITS__MAX_ROWS_PER_INSERT", "10"),
        ("QUILLDB_LIMITS__MAX_MESSAGE_BYTES", "1048576"),
    ])
    .await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    let refused = |code: Code| matches!(code, Code::ResourceExhausted | Code::InvalidArgument);

    let long = format!("INSERT INTO app.t VALUES (1, '{}')", "x".repeat(3000));
    let (code, msg) = c.err(&long).await;
    assert!(refused(code), "{code:?} {msg}");
    assert!(msg.contains("limit"), "{msg}");

    let values: Vec<String> = (0..11).map(|i| format!("({i}, 'v')")).collect();
    let (code, msg) = c
        .err(&format!("INSERT INTO app.t VALUES {}", values.join(", ")))
        .await;
    assert!(refused(code), "{code:?} {msg}");

    let err = ingest(&mut c, 11, 1).await.unwrap_err();
    assert!(refused(err.code()), "{err}");

    // A 2 MiB upload against a 1 MiB message limit.
    let err = ingest(&mut c, 2, 1 << 20).await.unwrap_err();
    assert!(
        refused(err.code()) || err.code() == Code::OutOfRange,
        "{err}"
    );
    // A 2 MiB answer is refused the same way.
    let (code, msg) = c.err("SELECT repeat('x', 2097152) AS big").await;
    assert!(refused(code) || code == Code::OutOfRange, "{code:?} {msg}");

    // Nothing was written, and the server serves on, within the limits.
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        vec!["0"]
    );
    assert_eq!(ingest(&mut c, 10, 10).await.unwrap(), 10);
    let mut other = server.client().await;
    assert_eq!(
        column(&other.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        vec!["10"]
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_server_serves_on() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow_flight::sql::{CommandStatementIngest, ProstMessageExt};
    use arrow_flight::{FlightData, FlightDescriptor};
    use prost::Message;

    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    let clear = |s: &tonic::Status| {
        matches!(
            s.code(),
            Code::InvalidArgument | Code::FailedPrecondition | Code::Unimplemented
        ) && !s.message().is_empty()
    };

    // Wrong parameter count, then a wrong type, for a prepared INSERT.
    let mut p = c
        .inner
        .prepare("INSERT INTO app.t (id, v) VALUES ($1, $2)".into(), None)
        .await
        .unwrap();
    let one = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    p.set_parameters(one).unwrap();
    let err = quilldb_tests::to_status(p.execute_update().await.unwrap_err());
    assert!(clear(&err), "{err}");
    let wrong = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, false),
            Field::new("$2", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["not a number"])),
            Arc::new(StringArray::from(vec!["v"])),
        ],
    )
    .unwrap();
    p.set_parameters(wrong).unwrap();
    let err = quilldb_tests::to_status(p.execute_update().await.unwrap_err());
    assert!(clear(&err), "{err}");

    // Malformed Arrow in DoPut: an ingest whose message is not Arrow IPC.
    let cmd = CommandStatementIngest {
        table: "t".into(),
        schema: Some("app".into()),
        ..Default::default()
    };
    let garbage = FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec())),
        data_header: bytes::Bytes::from_static(b"\x01\x02not a flatbuffer at all"),
        data_body: bytes::Bytes::from_static(b"garbage"),
        ..Default::default()
    };
    let result = match c.inner.do_put(futures::stream::iter(vec![garbage])).await {
        Ok(mut responses) => {
            use futures::StreamExt;
            match responses.next().await {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(quilldb_tests::to_status(e)),
    };
    let err = result.expect_err("malformed Arrow is refused");
    assert!(clear(&err), "{err}");

    // An unknown action.
    let err = c
        .inner
        .do_action(arrow_flight::Action::new("DropEverything", ""))
        .await
        .map(|_| ())
        .map_err(quilldb_tests::to_status)
        .unwrap_err();
    assert!(clear(&err) || err.code() == Code::NotFound, "{err}");

    // Nothing was written and the server serves on.
    assert_eq!(
        column(&c.rows("SELECT count(*) AS n FROM app.t").await, "n"),
        vec!["0"]
    );
    c.ok("INSERT INTO app.t VALUES (1, 'ok')").await;
}
