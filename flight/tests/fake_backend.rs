//! The Flight layer in process against a fake `Backend`: no database, so what is checked is
//! the protocol itself (login and bearer tokens, FlightInfo and DoGet with one schema,
//! prepared statements with bound parameters, errors keeping their codes, malformed input
//! refused, DoExchange framing) with arrow-flight's own client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{FlightData, Ticket};
use futures::{StreamExt, TryStreamExt};
use quilldb_flight::{
    AuthLayer, Backend, BatchStream, CallerInfo, EventKind, InFlight, IngestTarget, LiveMessage,
    Outcome, PreparedInfo, QuillFlightService, QuillFlightSql, ServerInfo, ServiceOptions,
    SubscribeRequest, Subscription, TableEntry,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::Layer;

#[derive(Debug, Clone)]
struct Caller(String);

impl CallerInfo for Caller {
    fn principal(&self) -> &str {
        &self.0
    }
}

fn numbers_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]))
}

/// `count N` answers the numbers below N; `fail` fails; `write` changes 3 rows.
struct Fake;

impl Fake {
    fn plan(sql: &str, params: Option<&RecordBatch>) -> Result<Outcome<i64>, Status> {
        match sql.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["count", "$1"] => {
                let p = params.ok_or_else(|| Status::invalid_argument("count $1 needs $1"))?;
                let n = p.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                Ok(Outcome::Query {
                    schema: numbers_schema(),
                    plan: n.value(0),
                })
            }
            ["count", n] => Ok(Outcome::Query {
                schema: numbers_schema(),
                plan: n
                    .parse()
                    .map_err(|_| Status::invalid_argument("not a count"))?,
            }),
            ["write"] => Ok(Outcome::Affected(3)),
            _ => Err(Status::invalid_argument(format!(
                "the fake cannot run {sql}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Backend for Fake {
    type Caller = Caller;
    type Plan = i64;
    type Prepared = String;

    async fn login(
        &self,
        user: &str,
        password: &str,
        _peer: Option<SocketAddr>,
    ) -> Result<(Caller, String), Status> {
        if user == "ann" && password == "pw" {
            Ok((Caller(user.into()), "token-ann".into()))
        } else {
            Err(Status::unauthenticated("wrong user or password"))
        }
    }

    async fn resume(&self, token: &str) -> Result<Caller, Status> {
        match token {
            "token-ann" => Ok(Caller("ann".into())),
            _ => Err(Status::unauthenticated("unknown token")),
        }
    }

    fn anonymous(&self) -> Caller {
        Caller("anonymous".into())
    }

    async fn run(
        &self,
        _caller: &Caller,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<i64>, Status> {
        Self::plan(sql, params.as_ref())
    }

    async fn prepare(&self, _caller: &Caller, sql: &str) -> Result<(PreparedInfo, String), Status> {
        let params = Schema::new(vec![Field::new("$1", DataType::Int64, true)]);
        Ok((
            PreparedInfo {
                dataset_schema: numbers_schema(),
                parameter_schema: Arc::new(params),
            },
            sql.to_string(),
        ))
    }

    async fn run_prepared(
        &self,
        _caller: &Caller,
        prepared: &String,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<i64>, Status> {
        Self::plan(prepared, params.as_ref())
    }

    async fn ingest(
        &self,
        _caller: &Caller,
        _target: IngestTarget,
        data: BatchStream,
    ) -> Result<i64, Status> {
        let batches: Vec<RecordBatch> = data.try_collect().await?;
        Ok(batches.iter().map(|b| b.num_rows() as i64).sum())
    }

    fn in_transaction(&self, _caller: &Caller, _id: &[u8]) -> Result<Caller, Status> {
        Err(Status::unimplemented("no transactions in the fake"))
    }

    async fn begin_transaction(&self, _caller: &Caller) -> Result<Vec<u8>, Status> {
        Err(Status::unimplemented("no transactions in the fake"))
    }

    async fn end_transaction(&self, _: &Caller, _: &[u8], _: bool) -> Result<(), Status> {
        Err(Status::unimplemented("no transactions in the fake"))
    }

    fn set_session_option(&self, _: &Caller, _: &str, _: Option<&str>) -> Result<(), Status> {
        Ok(())
    }

    fn session_options(&self, _caller: &Caller) -> Vec<(String, String)> {
        Vec::new()
    }

    fn close_session(&self, _caller: &Caller) -> Result<(), Status> {
        Ok(())
    }

    async fn execute(&self, _caller: &Caller, plan: &i64) -> Result<BatchStream, Status> {
        let n = *plan;
        let batches = (0..n).step_by(1000).map(move |start| {
            let values: Vec<i64> = (start..(start + 1000).min(n)).collect();
            Ok(
                RecordBatch::try_new(numbers_schema(), vec![Arc::new(Int64Array::from(values))])
                    .unwrap(),
            )
        });
        Ok(futures::stream::iter(batches).boxed())
    }

    async fn namespaces(&self, _caller: &Caller) -> Result<Vec<String>, Status> {
        Ok(vec!["main".into()])
    }

    async fn tables(&self, _caller: &Caller) -> Result<Vec<TableEntry>, Status> {
        Ok(vec![TableEntry {
            schema_name: "main".into(),
            table_name: "numbers".into(),
            table_type: "BASE TABLE".into(),
            kind: "SHARED".into(),
            schema: numbers_schema(),
            primary_key: Some("n".into()),
        }])
    }

    async fn subscribe(
        &self,
        caller: &Caller,
        request: SubscribeRequest,
    ) -> Result<Subscription, Status> {
        let sql = request.sql.trim_start_matches("SUBSCRIBE TO ");
        let Outcome::Query { plan: n, .. } = Self::plan(sql, None)? else {
            return Err(Status::invalid_argument("subscribe to a count"));
        };
        let rows = RecordBatch::try_new(
            numbers_schema(),
            vec![Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()))],
        )
        .unwrap();
        let messages = vec![
            LiveMessage::event(EventKind::Ack, 0),
            LiveMessage {
                batch: Some(rows),
                ..LiveMessage::event(EventKind::Initial, n)
            },
            LiveMessage::event(EventKind::InitialDone, n),
            LiveMessage::end(EventKind::Closed, n, "done", format!("bye {}", caller.0)),
        ];
        Ok(Subscription {
            id: "LQ-fake".into(),
            schema: numbers_schema(),
            messages: futures::stream::iter(messages).boxed(),
        })
    }

    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            name: "fake".into(),
            version: "0".into(),
        }
    }

    fn type_info(&self) -> Vec<arrow_flight::sql::metadata::XdbcTypeInfo> {
        Vec::new()
    }
}

/// The Flight layer over the fake on a loopback port; a connected channel.
async fn serve() -> Channel {
    let backend = Arc::new(Fake);
    let sql = QuillFlightSql::new(backend.clone(), ServiceOptions::default()).unwrap();
    let flight = FlightServiceServer::new(QuillFlightService::new(std::sync::Arc::new(sql)));
    let service = AuthLayer::new(backend, InFlight::default()).layer(flight);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn status(e: arrow_flight::error::FlightError) -> Status {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => *s,
        other => Status::unknown(other.to_string()),
    }
}

async fn signed_in() -> FlightSqlServiceClient<Channel> {
    let mut c = FlightSqlServiceClient::new(serve().await);
    c.handshake("ann", "pw").await.unwrap();
    c
}

async fn rows(c: &mut FlightSqlServiceClient<Channel>, info: arrow_flight::FlightInfo) -> usize {
    let schema = info.clone().try_decode_schema().unwrap();
    let mut n = 0;
    for ep in info.endpoint {
        let batches: Vec<RecordBatch> = c
            .do_get(ep.ticket.unwrap())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for b in batches {
            assert_eq!(
                b.schema().as_ref(),
                &schema,
                "one schema for FlightInfo and DoGet"
            );
            n += b.num_rows();
        }
    }
    n
}

#[tokio::test]
async fn statements_stream_what_their_flight_info_announces() {
    let mut c = signed_in().await;
    let info = c.execute("count 2500".into(), None).await.unwrap();
    assert_eq!(rows(&mut c, info).await, 2500);
    assert_eq!(c.execute_update("write".into(), None).await.unwrap(), 3);
}

#[tokio::test]
async fn prepared_statements_bind_their_parameters() {
    let mut c = signed_in().await;
    let mut p = c.prepare("count $1".into(), None).await.unwrap();
    assert_eq!(p.parameter_schema().unwrap().field(0).name(), "$1");
    let schema = Arc::new(Schema::new(vec![Field::new("$1", DataType::Int64, true)]));
    let params =
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1234]))]).unwrap();
    p.set_parameters(params).unwrap();
    let info = p.execute().await.unwrap();
    assert_eq!(rows(&mut c, info).await, 1234);
    p.close().await.unwrap();
}

#[tokio::test]
async fn errors_keep_their_codes_and_bad_input_is_refused() {
    let mut anonymous = FlightSqlServiceClient::new(serve().await);
    // arrow-flight's client folds the status of a failed handshake into its text.
    let e = anonymous
        .handshake("ann", "nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("valid authentication credentials"), "{e}");
    assert!(e.contains("wrong user or password"), "{e}");

    let mut c = signed_in().await;
    let e = status(c.execute("fail".into(), None).await.unwrap_err());
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("the fake cannot run fail"), "{e}");
    // A ticket that was never issued, and one that is not a ticket at all.
    for ticket in [vec![1, 2, 3], b"not a ticket".to_vec()] {
        let e = c.do_get(Ticket::new(ticket)).await.unwrap_err();
        let code = status(e).code();
        assert!(
            matches!(code, Code::InvalidArgument | Code::NotFound),
            "{code:?}"
        );
    }
    // The service keeps serving.
    let info = c.execute("count 3".into(), None).await.unwrap();
    assert_eq!(rows(&mut c, info).await, 3);
}

#[tokio::test]
async fn subscriptions_frame_events_and_rows() {
    let channel = serve().await;
    let mut live = quilldb_flight::client::subscribe(
        channel.clone(),
        Some("token-ann"),
        "SUBSCRIBE TO count 5",
        None,
    )
    .await
    .unwrap();
    let mut kinds = Vec::new();
    let mut got = 0;
    while let Some((event, batch)) = live.next_within(Duration::from_secs(5)).await.unwrap() {
        kinds.push(EventKind::try_from(event.kind).unwrap());
        got += batch.map_or(0, |b| b.num_rows());
        if event.kind == EventKind::Closed as i32 {
            assert_eq!(event.code, "done");
            assert_eq!(event.message, "bye ann", "the caller came from the token");
        }
    }
    assert_eq!(
        kinds,
        vec![
            EventKind::Ack,
            EventKind::Initial,
            EventKind::InitialDone,
            EventKind::Closed
        ]
    );
    assert_eq!(got, 5);
    // A first message without a descriptor is refused before the backend is asked.
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    let request = futures::stream::iter(vec![FlightData::default()]);
    let e = match raw.do_exchange(request).await {
        Ok(resp) => resp.into_inner().next().await.unwrap().unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
}
