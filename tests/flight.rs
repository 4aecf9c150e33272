//! The Flight SQL surface: schemas, prepared statements, updates, metadata and authentication.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::sql::{CommandGetDbSchemas, SqlInfo};
use futures::TryStreamExt;
use quilldb_tests::{TestServer, column, count, to_status};
use tonic::Code;

#[tokio::test]
async fn flight_info_schema_is_the_do_get_schema() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, body TEXT NOT NULL, price DECIMAL(8,2), at TIMESTAMPTZ)")
        .await;
    c.ok("INSERT INTO app.t VALUES (1, 'x', 1.25, '2024-05-01T00:00:00Z')")
        .await;
    for sql in [
        "SELECT * FROM app.t",
        "SELECT * FROM app.t WHERE id = 42",
        "SELECT body, CAST(body AS VARCHAR) AS b2, upper(body) AS u FROM app.t",
        "SELECT count(*) AS n FROM app.t",
        "INSERT INTO app.t (id, body) VALUES (2, 'y')",
        "SHOW TABLES IN app",
    ] {
        let info = c.inner.execute(sql.to_string(), None).await.unwrap();
        let declared = info.clone().try_decode_schema().unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut stream = c.inner.do_get(ticket).await.unwrap();
        let batches: Vec<RecordBatch> = (&mut stream).try_collect().await.unwrap();
        let streamed = stream.schema().cloned().expect("schema even without rows");
        assert_eq!(&declared, streamed.as_ref(), "{sql}");
        for f in declared.fields() {
            assert!(
                !matches!(f.data_type(), DataType::Utf8View | DataType::BinaryView),
                "{sql}: view type for {}",
                f.name()
            );
        }
        for b in &batches {
            assert_eq!(b.schema().as_ref(), &declared, "{sql}");
        }
    }
    // Empty results keep the real schema; nullability is the table's.
    let info = c
        .inner
        .execute("SELECT * FROM app.t WHERE id = 42".into(), None)
        .await
        .unwrap();
    let schema = info.try_decode_schema().unwrap();
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert!(!schema.field(1).is_nullable());
    assert_eq!(schema.field(2).data_type(), &DataType::Decimal128(8, 2));
    assert_eq!(
        schema.field(3).data_type().to_string(),
        "Timestamp(µs, \"UTC\")"
    );
    assert_eq!(
        schema
            .metadata()
            .get("quill.table_type")
            .map(String::as_str),
        Some("SHARED")
    );
}

#[tokio::test]
async fn statement_update_and_prepared_statements() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    assert_eq!(
        c.inner
            .execute_update("CREATE NAMESPACE app".into(), None)
            .await
            .unwrap(),
        0
    );
    c.inner
        .execute_update(
            "CREATE TABLE app.kv (k BIGINT PRIMARY KEY, v TEXT)".into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        c.inner
            .execute_update("INSERT INTO app.kv VALUES (1, 'a'), (2, 'b')".into(), None)
            .await
            .unwrap(),
        2
    );

    // Parameterized insert, several rows bound at once: one execution each, atomically.
    let mut insert = c
        .inner
        .prepare("INSERT INTO app.kv (k, v) VALUES ($1, $2)".into(), None)
        .await
        .unwrap();
    let params = insert.parameter_schema().unwrap().clone();
    assert_eq!(params.fields().len(), 2);
    assert_eq!(params.field(0).data_type(), &DataType::Int64);
    let schema = Arc::new(Schema::new(vec![
        Field::new("$1", DataType::Int64, false),
        Field::new("$2", DataType::Utf8, true),
    ]));
    let rows = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![10, 11, 12])),
            Arc::new(StringArray::from(vec!["x", "y", "z"])),
        ],
    )
    .unwrap();
    insert.set_parameters(rows).unwrap();
    assert_eq!(insert.execute_update().await.unwrap(), 3);
    // One bad row fails them all.
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![20, 1])),
            Arc::new(StringArray::from(vec!["p", "dup"])),
        ],
    )
    .unwrap();
    insert.set_parameters(rows).unwrap();
    let err = insert.execute_update().await.unwrap_err();
    assert_eq!(to_status(err).code(), Code::AlreadyExists);
    assert_eq!(count(&c.rows("SELECT * FROM app.kv WHERE k = 20").await), 0);
    insert.close().await.unwrap();

    // A prepared UPDATE types each parameter by what it is assigned to or compared with.
    let mut update = c
        .inner
        .prepare("UPDATE app.kv SET v = $1 WHERE k = $2".into(), None)
        .await
        .unwrap();
    let params = update.parameter_schema().unwrap().clone();
    assert_eq!(params.field(0).data_type(), &DataType::Utf8);
    assert_eq!(params.field(1).data_type(), &DataType::Int64);
    let p = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, false),
            Field::new("$2", DataType::Int64, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["y"])),
            Arc::new(Int64Array::from(vec![11])),
        ],
    )
    .unwrap();
    update.set_parameters(p).unwrap();
    assert_eq!(update.execute_update().await.unwrap(), 1);
    update.close().await.unwrap();

    // Parameterized query.
    let mut q = c
        .inner
        .prepare("SELECT v FROM app.kv WHERE k = $1".into(), None)
        .await
        .unwrap();
    assert_eq!(q.dataset_schema().unwrap().field(0).name(), "v");
    let p = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![11]))],
    )
    .unwrap();
    q.set_parameters(p).unwrap();
    let info = q.execute().await.unwrap();
    let batches = c.fetch(info).await.unwrap();
    assert_eq!(column(&batches, "v"), vec!["y"]);
}

/// Grafana's Flight SQL editor asks GetSqlInfo with no ids and reads the
/// keyword and function lists (ids 508..=512) by position, rows 17 to 21.
#[tokio::test]
async fn sql_info_without_ids_puts_the_lists_where_grafana_reads_them() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let info = c.inner.get_sql_info(vec![]).await.unwrap();
    let batches = c.fetch(info).await.unwrap();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let ids = all
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt32Array>()
        .unwrap();
    let listed: Vec<u32> = (17..22).map(|row| ids.value(row)).collect();
    assert_eq!(listed, vec![508, 509, 510, 511, 512]);
    // Every id once, so a client that reads by id sees the same reply.
    let mut sorted: Vec<u32> = ids.values().to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), all.num_rows());

    // The keyword list Grafana reads at row 17 is the one asked for by id.
    let keywords = all.slice(17, 1);
    let info = c
        .inner
        .get_sql_info(vec![SqlInfo::SqlKeywords])
        .await
        .unwrap();
    let by_id = c.fetch(info).await.unwrap();
    assert_eq!(
        quilldb_tests::pretty(&[keywords]),
        quilldb_tests::pretty(&by_id)
    );
    assert!(quilldb_tests::pretty(&by_id).contains("NAMESPACE"));
}

#[tokio::test]
async fn metadata_calls() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;

    let info = c
        .inner
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .unwrap();
    let b = c.fetch(info).await.unwrap();
    assert!(quilldb_tests::pretty(&b).contains("QuillDB"));

    let info = c.inner.get_catalogs().await.unwrap();
    let b = c.fetch(info).await.unwrap();
    assert_eq!(column(&b, "catalog_name"), vec!["quill"]);

    let info = c
        .inner
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let b = c.fetch(info).await.unwrap();
    assert!(column(&b, "db_schema_name").contains(&"app".to_string()));

    let b = c.tables("app", "BASE TABLE", true).await;
    assert_eq!(column(&b, "table_name"), vec!["t"]);

    let info = c.inner.get_table_types().await.unwrap();
    let b = c.fetch(info).await.unwrap();
    let mut types = column(&b, "table_type");
    types.sort();
    assert_eq!(types, vec!["BASE TABLE", "SYSTEM TABLE", "VIEW"]);
}

#[tokio::test]
async fn authentication_and_roles() {
    let server = TestServer::start().await;
    let mut anon = server.anonymous().await;
    assert_eq!(
        server.login("root", "wrong").await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        server.login("alice", "").await.unwrap_err().code(),
        Code::Unauthenticated
    );
    server.login("root", "").await.unwrap();

    // No credentials: the anonymous role, which may not change anything.
    let (code, _) = anon.err("CREATE NAMESPACE x").await;
    assert_eq!(code, Code::PermissionDenied);
    let mut root = server.client().await;
    root.ok("CREATE NAMESPACE app").await;
    root.ok("CREATE TABLE app.secret (id INT PRIMARY KEY)")
        .await;
    root.ok("CREATE TABLE app.open (id INT PRIMARY KEY) WITH (ACCESS_LEVEL = 'PUBLIC')")
        .await;
    root.ok("INSERT INTO app.open VALUES (1)").await;
    assert_eq!(
        anon.err("SELECT * FROM app.secret").await.0,
        Code::PermissionDenied
    );
    assert_eq!(
        anon.err("INSERT INTO app.open VALUES (2)").await.0,
        Code::PermissionDenied
    );
    // Permission is checked before existence: no way to learn what exists.
    assert_eq!(
        anon.err("DROP TABLE app.nope").await.0,
        Code::PermissionDenied
    );
    assert_eq!(
        anon.err("SELECT * FROM system.tables").await.0,
        Code::PermissionDenied
    );
    assert_eq!(
        column(&anon.rows("SELECT id FROM app.open").await, "id"),
        vec!["1"]
    );

    // A bad token is UNAUTHENTICATED, never anonymous.
    let mut forged = server.anonymous().await;
    forged.inner.set_token("not-a-token".into());
    assert_eq!(forged.err("SELECT 1").await.0, Code::Unauthenticated);
}

#[tokio::test]
async fn root_password_from_the_environment() {
    let server = TestServer::start_with(&[("QUILLDB_ROOT_PASSWORD", "s3cret-pass")]).await;
    let mut c = server.anonymous().await;
    assert_eq!(
        server.login("root", "").await.unwrap_err().code(),
        Code::Unauthenticated
    );
    c.inner.handshake("root", "s3cret-pass").await.unwrap();
    c.ok("CREATE NAMESPACE app").await;
}

#[tokio::test]
async fn garbage_tickets_are_refused_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let err = c
        .inner
        .do_get(arrow_flight::Ticket::new("garbage"))
        .await
        .unwrap_err();
    let code = to_status(err).code();
    assert!(
        matches!(
            code,
            Code::InvalidArgument | Code::NotFound | Code::Unimplemented
        ),
        "{code:?}"
    );
    // A ticket of another caller is unknown to this one.
    let info = c.inner.execute("SELECT 1 AS x".into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut anon = server.anonymous().await;
    let err = anon.inner.do_get(ticket).await.unwrap_err();
    assert_eq!(to_status(err).code(), Code::NotFound);
    assert_eq!(column(&c.rows("SELECT 1 AS x").await, "x"), vec!["1"]);
}

#[tokio::test]
async fn request_ids_are_echoed_and_logged() {
    let server = TestServer::start().await;
    let mut raw = server.raw_client().await;
    let mut req2 = tonic::Request::new(arrow_flight::Empty {});
    req2.metadata_mut()
        .insert("x-request-id", "req-4242".parse().unwrap());
    let resp = raw.list_actions(req2).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "req-4242");
    assert!(server.log().contains("req-4242"), "{}", server.log());
}

/// Creating the same statement again (the ADBC driver does for every execution) reuses what
/// was made for that caller: the answers stay each caller's own, and DDL remakes it.
#[tokio::test]
async fn prepared_statements_made_again_are_per_caller_and_follow_ddl() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.kv (k BIGINT PRIMARY KEY, v TEXT)")
        .await;
    c.ok("CREATE USER TABLE app.mine (id BIGINT PRIMARY KEY, body TEXT)")
        .await;
    c.ok("INSERT INTO app.kv VALUES (1, 'a')").await;
    let sql = "SELECT * FROM app.kv WHERE k = $1";
    let fields = |c: &mut quilldb_tests::Client| {
        let mut c = c.inner.clone();
        async move {
            let q = c.prepare(sql.into(), None).await.unwrap();
            let n = q.dataset_schema().unwrap().fields().len();
            q.close().await.unwrap();
            n
        }
    };
    assert_eq!(fields(&mut c).await, 3); // k, v, _seq
    assert_eq!(fields(&mut c).await, 3);
    c.ok("ALTER TABLE app.kv ADD COLUMN w BIGINT DEFAULT 7")
        .await;
    assert_eq!(fields(&mut c).await, 4, "made again after the ALTER");

    // Two users prepare the same text on a USER table: each reads their own row.
    for u in ["alice", "bob"] {
        c.ok(&format!("CREATE USER {u} WITH PASSWORD 'pw-{u}-123'"))
            .await;
        let mut uc = server.client_as(u, &format!("pw-{u}-123")).await.unwrap();
        uc.ok(&format!("INSERT INTO app.mine VALUES (1, '{u}')"))
            .await;
    }
    for u in ["alice", "bob", "alice"] {
        let mut uc = server.client_as(u, &format!("pw-{u}-123")).await.unwrap();
        for text in [
            "SELECT body FROM app.mine WHERE id = $1",
            "SELECT body FROM app.mine WHERE id = $1 AND TRUE",
        ] {
            let mut q = uc.inner.prepare(text.into(), None).await.unwrap();
            let p = RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, false)])),
                vec![Arc::new(Int64Array::from(vec![1]))],
            )
            .unwrap();
            q.set_parameters(p).unwrap();
            let info = q.execute().await.unwrap();
            q.close().await.unwrap();
            let batches = uc.fetch(info).await.unwrap();
            assert_eq!(column(&batches, "body"), vec![u], "{text}");
        }
    }
}

/// A prepared query over a system table reads it at each execution, whether the statement is
/// executed again or created again (system tables hold the rows of the moment they are
/// planned, so their plans are never kept).
#[tokio::test]
async fn prepared_queries_over_system_tables_see_new_rows() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    // The server's uptime moves without any catalog change.
    let sql = "SELECT value FROM system.stats WHERE name = 'uptime_seconds'";
    let uptime = |batches: &[RecordBatch]| column(batches, "value")[0].parse::<u64>().unwrap();
    let mut kept = c.inner.prepare(sql.into(), None).await.unwrap();
    let info = kept.execute().await.unwrap();
    let first = uptime(&c.fetch(info).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let info = kept.execute().await.unwrap();
    assert!(
        uptime(&c.fetch(info).await.unwrap()) >= first + 2,
        "executed again"
    );
    let mut again = c.inner.prepare(sql.into(), None).await.unwrap();
    let info = again.execute().await.unwrap();
    assert!(
        uptime(&c.fetch(info).await.unwrap()) >= first + 2,
        "created again"
    );
}

/// Runs a query in one DoExchange call (QuillDB's extension): the descriptor carries `command`,
/// then the parameter batch if any; answers the result's batches.
async fn exchange_query(
    server: &TestServer,
    token: &str,
    command: Vec<u8>,
    params: Option<RecordBatch>,
) -> Result<Vec<RecordBatch>, tonic::Status> {
    use arrow_flight::{FlightData, FlightDescriptor};
    let mut messages = match &params {
        Some(p) => {
            arrow_flight::utils::batches_to_flight_data(&p.schema(), vec![p.clone()]).unwrap()
        }
        None => vec![FlightData::default()],
    };
    messages[0].flight_descriptor = Some(FlightDescriptor::new_cmd(command));
    let mut req = tonic::Request::new(futures::stream::iter(messages));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let resp = server.raw_client().await.do_exchange(req).await?;
    let data = resp
        .into_inner()
        .map_err(arrow_flight::error::FlightError::from);
    arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await
        .map_err(to_status)
}

#[tokio::test]
async fn a_query_runs_in_one_exchange_call_with_its_own_parameters() {
    use arrow_flight::sql::{
        ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
        CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt,
    };
    use prost::Message;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    c.ok("CREATE NAMESPACE app").await;
    c.ok("CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT)")
        .await;
    c.ok("INSERT INTO app.t VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        .await;
    let token = c.inner.token().unwrap().clone();

    let plain = CommandStatementQuery {
        query: "SELECT count(*) AS n FROM app.t".into(),
        transaction_id: None,
    };
    let rows = exchange_query(&server, &token, plain.as_any().encode_to_vec(), None)
        .await
        .unwrap();
    assert_eq!(column(&rows, "n"), ["3"]);

    let request = ActionCreatePreparedStatementRequest {
        query: "SELECT v FROM app.t WHERE id = $1".into(),
        transaction_id: None,
    };
    let action =
        arrow_flight::Action::new("CreatePreparedStatement", request.as_any().encode_to_vec());
    let result: Vec<arrow_flight::Result> = c
        .inner
        .do_action(action)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let any = Any::decode(result[0].body.clone()).unwrap();
    let prepared: ActionCreatePreparedStatementResult = any.unpack().unwrap().unwrap();
    let command = CommandPreparedStatementQuery {
        prepared_statement_handle: prepared.prepared_statement_handle.clone(),
    }
    .as_any()
    .encode_to_vec();
    let param = |id: i64| {
        let schema = Arc::new(Schema::new(vec![Field::new("1", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![id]))]).unwrap()
    };
    // Calls on one handle at once each see their own parameters.
    let runs = futures::future::join_all(
        (1..=3).map(|id| exchange_query(&server, &token, command.clone(), Some(param(id)))),
    )
    .await;
    let got: Vec<String> = runs
        .into_iter()
        .map(|r| column(&r.unwrap(), "v").concat())
        .collect();
    assert_eq!(got, ["one", "two", "three"]);

    // Errors keep their codes; another caller cannot use the handle.
    let bad = CommandStatementQuery {
        query: "SELECT * FROM app.nope".into(),
        transaction_id: None,
    };
    let err = exchange_query(&server, &token, bad.as_any().encode_to_vec(), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    c.ok("CREATE USER eve WITH PASSWORD 'eve-pass-123' ROLE dba")
        .await;
    let eve = server.client_as("eve", "eve-pass-123").await.unwrap();
    let eve_token = eve.inner.token().unwrap().clone();
    let err = exchange_query(&server, &eve_token, command.clone(), Some(param(1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    // Subscriptions still share DoExchange.
    let mut live = quilldb_flight::client::subscribe(
        server.channel().await,
        Some(&token),
        "SUBSCRIBE TO app.t",
        None,
    )
    .await
    .unwrap();
    let (ack, _) = live
        .next_within(std::time::Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack.kind(), quilldb_flight::EventKind::Ack);
}
