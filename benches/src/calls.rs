//! The cost of one small call: the server's CPU per call, read from its `/proc/<pid>/stat`, and
//! the client's latency, for a primary-key lookup, a single-row INSERT and `SELECT 1`, in the two
//! call patterns clients use:
//!
//! - **raw**: CommandStatementQuery (GetFlightInfo + DoGet) or CommandStatementUpdate (one DoPut),
//!   values written into the statement;
//! - **adbc**: what the ADBC Flight SQL driver sends for a statement with parameters:
//!   CreatePreparedStatement, DoPut of the parameter batch, GetFlightInfo + DoGet (or the DoPut
//!   update that carries the parameters), ClosePreparedStatement.
//!
//! A floor call (GetFlightInfo + DoGet of GetTableTypes: no SQL at all) shows what the transport
//! alone costs on the same connection.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandGetTableTypes, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutUpdateResult, ProstMessageExt,
};
use arrow_flight::{Action, FlightDescriptor, FlightInfo};
use futures::TryStreamExt;
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

use crate::{Row, cpu_seconds, percentile};
use quilldb_tests::{Client, TestServer};

/// A bare Flight client that sends a bearer token with every call.
pub struct Raw {
    inner: FlightServiceClient<Channel>,
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Raw {
    pub async fn new(server: &TestServer, token: &str) -> Self {
        let inner = server.raw_client().await;
        Self {
            inner,
            bearer: format!("Bearer {token}").parse().unwrap(),
        }
    }

    /// The same connection and token as a Flight SQL client.
    pub fn of(c: &Client) -> Self {
        Self {
            inner: c.inner.inner().clone(),
            bearer: format!("Bearer {}", c.inner.token().cloned().unwrap_or_default())
                .parse()
                .unwrap(),
        }
    }

    fn req<T>(&self, body: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(body);
        r.metadata_mut()
            .insert("authorization", self.bearer.clone());
        r
    }

    async fn info(&mut self, cmd: impl ProstMessageExt) -> FlightInfo {
        let d = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        self.inner
            .get_flight_info(self.req(d))
            .await
            .unwrap()
            .into_inner()
    }

    async fn get(&mut self, info: &FlightInfo) -> Vec<RecordBatch> {
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let stream = self
            .inner
            .do_get(self.req(ticket))
            .await
            .unwrap()
            .into_inner()
            .map_err(FlightError::from);
        FlightRecordBatchStream::new_from_flight_data(stream)
            .try_collect()
            .await
            .unwrap()
    }

    /// One DoPut of `cmd` with `batch` (if any); answers the first result's app_metadata.
    async fn put(&mut self, cmd: impl ProstMessageExt, batch: Option<RecordBatch>) -> bytes::Bytes {
        let d = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        let data: Vec<arrow_flight::FlightData> = match batch {
            Some(b) => FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(d))
                .build(futures::stream::iter([Ok(b)]))
                .try_collect()
                .await
                .unwrap(),
            None => vec![arrow_flight::FlightData {
                flight_descriptor: Some(d),
                ..Default::default()
            }],
        };
        let mut put = self
            .inner
            .do_put(self.req(futures::stream::iter(data)))
            .await
            .unwrap()
            .into_inner();
        put.message().await.unwrap().unwrap().app_metadata
    }

    async fn action(&mut self, r#type: &str, body: impl ProstMessageExt) -> Option<bytes::Bytes> {
        let a = Action {
            r#type: r#type.into(),
            body: body.as_any().encode_to_vec().into(),
        };
        let mut results = self
            .inner
            .do_action(self.req(a))
            .await
            .unwrap()
            .into_inner();
        let first = results.message().await.unwrap().map(|r| r.body);
        while results.message().await.unwrap().is_some() {}
        first
    }

    /// GetFlightInfo + DoGet of a statement.
    pub async fn query(&mut self, sql: &str) -> Vec<RecordBatch> {
        let info = self
            .info(CommandStatementQuery {
                query: sql.into(),
                transaction_id: None,
            })
            .await;
        self.get(&info).await
    }

    /// One DoPut of a statement; answers the rows it changed.
    pub async fn update(&mut self, sql: &str) -> i64 {
        let meta = self
            .put(
                CommandStatementUpdate {
                    query: sql.into(),
                    transaction_id: None,
                },
                None,
            )
            .await;
        DoPutUpdateResult::decode(meta).unwrap().record_count
    }

    /// Creates a prepared statement; answers its handle.
    pub async fn prepare(&mut self, sql: &str) -> bytes::Bytes {
        let body = self
            .action(
                "CreatePreparedStatement",
                ActionCreatePreparedStatementRequest {
                    query: sql.into(),
                    transaction_id: None,
                },
            )
            .await
            .unwrap();
        let created: ActionCreatePreparedStatementResult =
            Any::decode(body).unwrap().unpack().unwrap().unwrap();
        created.prepared_statement_handle
    }

    async fn close(&mut self, handle: bytes::Bytes) {
        self.action(
            "ClosePreparedStatement",
            ActionClosePreparedStatementRequest {
                prepared_statement_handle: handle,
            },
        )
        .await;
    }

    /// The ADBC driver's query: create, bind by DoPut, GetFlightInfo, DoGet, close.
    pub async fn adbc_query(&mut self, sql: &str, params: Option<RecordBatch>) -> Vec<RecordBatch> {
        let handle = self.prepare(sql).await;
        let cmd = CommandPreparedStatementQuery {
            prepared_statement_handle: handle.clone(),
        };
        if let Some(p) = params {
            self.put(cmd.clone(), Some(p)).await;
        }
        let info = self.info(cmd).await;
        let out = self.get(&info).await;
        self.close(handle).await;
        out
    }

    /// Runs a prepared update once per row of `params`, in one DoPut that carries them (as the
    /// ADBC driver does); answers the rows changed.
    pub async fn prepared_update(&mut self, handle: &bytes::Bytes, params: RecordBatch) -> i64 {
        let cmd = CommandPreparedStatementUpdate {
            prepared_statement_handle: handle.clone(),
        };
        let meta = self.put(cmd, Some(params)).await;
        DoPutUpdateResult::decode(meta).unwrap().record_count
    }

    /// The ADBC driver's update: create, DoPut with the parameters, close.
    pub async fn adbc_update(&mut self, sql: &str, params: RecordBatch) -> i64 {
        let handle = self.prepare(sql).await;
        let n = self.prepared_update(&handle, params).await;
        self.close(handle).await;
        n
    }

    /// The floor: GetFlightInfo + DoGet of GetTableTypes, which runs no SQL.
    pub async fn floor(&mut self) -> Vec<RecordBatch> {
        let info = self.info(CommandGetTableTypes {}).await;
        self.get(&info).await
    }
}

fn one(name: &str, v: i64) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(name, DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![v]))],
    )
    .unwrap()
}

fn insert_params(id: i64) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Int64, false),
            Field::new("$2", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![id])),
            Arc::new(StringArray::from(vec![format!("row {id}")])),
        ],
    )
    .unwrap()
}

/// What one kind of call costs.
struct Cost {
    name: &'static str,
    calls: usize,
    seconds: f64,
    server_ms: f64,
    client_ms: f64,
    p50: f64,
    p99: f64,
}

/// Runs `call` `n` times (after `n / 10` to warm up) and measures it.
async fn measure<F>(
    server: &TestServer,
    filter: Option<&str>,
    name: &'static str,
    n: usize,
    mut call: F,
) -> Option<Cost>
where
    F: AsyncFnMut(usize),
{
    if filter.is_some_and(|f| !name.contains(f)) {
        return None;
    }
    for i in 0..n / 10 {
        call(1_000_000 + i).await;
    }
    let pid = server.pid().to_string();
    let (cpu0, own0) = (cpu_seconds(&pid), cpu_seconds("self"));
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        call(i).await;
        lat.push(t0.elapsed());
    }
    let seconds = start.elapsed().as_secs_f64();
    let server_ms = (cpu_seconds(&pid) - cpu0) * 1e3 / n as f64;
    let client_ms = (cpu_seconds("self") - own0) * 1e3 / n as f64;
    lat.sort();
    Some(Cost {
        name,
        calls: n,
        seconds,
        server_ms,
        client_ms,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    })
}

/// The `calls` part: each kind of small call `n` times on one connection (those whose name
/// contains `filter`, if given: to profile one).
pub async fn run(
    server: &TestServer,
    root_token: &str,
    n: usize,
    filter: Option<&str>,
) -> Vec<Row> {
    let mut raw = Raw::new(server, root_token).await;
    raw.update(
        "CREATE TABLE bench.calls (id BIGINT PRIMARY KEY, body TEXT) \
         WITH (FLUSH_POLICY = 'interval:86400')",
    )
    .await;
    raw.update(
        "INSERT INTO bench.calls SELECT value, 'row ' || value FROM generate_series(0, 9999)",
    )
    .await;
    let r = &mut raw;
    let mut costs = Vec::new();
    costs.push(
        measure(server, filter, "Floor: GetTableTypes", n, async |_| {
            assert_eq!(r.floor().await[0].num_rows(), 3);
        })
        .await,
    );
    costs.push(
        measure(server, filter, "SELECT 1 (raw)", n, async |_| {
            assert_eq!(r.query("SELECT 1").await[0].num_rows(), 1);
        })
        .await,
    );
    costs.push(
        measure(server, filter, "SELECT 1 (adbc)", n, async |_| {
            let b = r.adbc_query("SELECT 1", None).await;
            assert_eq!(b[0].num_rows(), 1);
        })
        .await,
    );
    costs.push(
        measure(server, filter, "PK lookup (raw)", n, async |i| {
            let id = (i * 7919) % 10_000;
            let b = r
                .query(&format!("SELECT * FROM bench.calls WHERE id = {id}"))
                .await;
            assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        })
        .await,
    );
    costs.push(
        measure(server, filter, "PK lookup (adbc)", n, async |i| {
            let id = ((i * 7919) % 10_000) as i64;
            let b = r
                .adbc_query(
                    "SELECT * FROM bench.calls WHERE id = $1",
                    Some(one("$1", id)),
                )
                .await;
            assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        })
        .await,
    );
    costs.push(
        measure(server, filter, "INSERT 1 row (raw)", n, async |i| {
            let id = 100_000 + i;
            let sql = format!("INSERT INTO bench.calls (id, body) VALUES ({id}, 'row {id}')");
            assert_eq!(r.update(&sql).await, 1);
        })
        .await,
    );
    costs.push(
        measure(server, filter, "INSERT 1 row (adbc)", n, async |i| {
            let id = 10_000_000 + i as i64;
            let sql = "INSERT INTO bench.calls (id, body) VALUES ($1, $2)";
            assert_eq!(r.adbc_update(sql, insert_params(id)).await, 1);
        })
        .await,
    );
    let costs: Vec<Cost> = costs.into_iter().flatten().collect();
    let floor = costs
        .iter()
        .find(|c| c.name.starts_with("Floor"))
        .map_or(f64::NAN, |c| c.server_ms);
    println!(
        "{:<22} {:>7} {:>12} {:>12} {:>9} {:>9}",
        "call", "calls", "server ms", "client ms", "p50 ms", "p99 ms"
    );
    costs
        .iter()
        .map(|c| {
            println!(
                "{:<22} {:>7} {:>12.4} {:>12.4} {:>9.3} {:>9.3}",
                c.name, c.calls, c.server_ms, c.client_ms, c.p50, c.p99
            );
            Row {
                test: c.name,
                rows: c.calls,
                seconds: c.seconds,
                rate: format!("{:.3} ms CPU/call, p50 {:.3} ms", c.server_ms, c.p50),
                extra: json!({
                    "server_cpu_ms_per_call": c.server_ms,
                    "client_cpu_ms_per_call": c.client_ms,
                    "over_floor": c.server_ms / floor,
                    "aim_ms": 0.06,
                    "p50_ms": c.p50,
                    "p99_ms": c.p99,
                }),
            }
        })
        .collect()
}
