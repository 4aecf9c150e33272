//! The Flight SQL service: decodes commands, keeps tickets and prepared statements, and calls
//! the [`Backend`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlSupportedTransaction,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::CATALOG;
use crate::auth::CallAuth;
use crate::backend::{Backend, CallerInfo, Outcome, PreparedInfo};
use crate::encode::{flight_stream, once, result_schema};
use crate::tickets::HandleStore;

/// What a ticket stands for until DoGet.
enum Pending<P> {
    Plan(SchemaRef, P),
    Batch(RecordBatch),
}

/// A prepared statement: its text, schemas and bound parameters.
struct Prepared {
    sql: String,
    params: parking_lot::Mutex<Option<RecordBatch>>,
}

/// Table types listed by GetTableTypes.
pub const TABLE_TYPES: [&str; 3] = ["BASE TABLE", "VIEW", "SYSTEM TABLE"];

/// The schema of a statement that answers with a row count.
pub fn rows_affected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "rows_affected",
        DataType::Int64,
        false,
    )]))
}

/// The Flight SQL service over a backend.
pub struct QuillFlightSql<B: Backend> {
    backend: Arc<B>,
    tickets: HandleStore<Pending<B::Plan>>,
    prepared: HandleStore<Prepared>,
    sql_info: SqlInfoData,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

impl<B: Backend> QuillFlightSql<B> {
    /// The service; tickets expire after `ticket_ttl`.
    pub fn new(backend: Arc<B>, ticket_ttl: Duration) -> Result<Self, Status> {
        let info = backend.server_info();
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, info.name.as_str());
        b.append(SqlInfo::FlightSqlServerVersion, info.version.as_str());
        b.append(SqlInfo::FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        // Transactions and cancellation are not served yet: saying so lets ADBC run in
        // autocommit mode instead of failing on BeginTransaction.
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, true);
        b.append(SqlInfo::SqlDdlTable, true);
        // 1 = case insensitive (unquoted identifiers fold to lower case).
        b.append(SqlInfo::SqlIdentifierCase, 1i64);
        b.append(SqlInfo::SqlQuotedIdentifierCase, 0i64);
        b.append(SqlInfo::SqlMaxColumnNameLength, 64i64);
        b.append(SqlInfo::SqlDbSchemaNameLength, 32i64);
        b.append(SqlInfo::SqlMaxTableNameLength, 64i64);
        b.append(SqlInfo::SqlMaxUsernameLength, 64i64);
        b.append(SqlInfo::SqlKeywords, KEYWORDS);
        b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
        b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
        b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
        b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
        let sql_info = b
            .build()
            .map_err(|e| Status::internal(format!("building SqlInfo: {e}")))?;
        Ok(Self {
            backend,
            tickets: HandleStore::new("ticket", ticket_ttl, 10_000),
            prepared: HandleStore::new(
                "prepared statement",
                Duration::from_secs(24 * 3600),
                100_000,
            ),
            sql_info,
        })
    }

    fn caller<T>(&self, req: &Request<T>) -> B::Caller {
        req.extensions()
            .get::<CallAuth<B::Caller>>()
            .map(|a| a.caller.clone())
            .unwrap_or_else(|| self.backend.anonymous())
    }

    /// Turns an outcome into a FlightInfo whose one endpoint's ticket leads to the result.
    fn flight_info(
        &self,
        caller: &B::Caller,
        outcome: Outcome<B::Plan>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let (schema, pending, rows) = match outcome {
            Outcome::Query { schema, plan } => {
                let schema = result_schema(&schema);
                (schema.clone(), Pending::Plan(schema, plan), -1)
            }
            Outcome::Affected(n) => {
                let schema = rows_affected_schema();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(arrow::array::Int64Array::from(vec![n]))],
                )
                .map_err(|e| Status::internal(e.to_string()))?;
                (schema, Pending::Batch(batch), 1)
            }
            Outcome::Rows(batch) => {
                let schema = result_schema(&batch.schema());
                let rows = batch.num_rows() as i64;
                (schema, Pending::Batch(batch), rows)
            }
        };
        let handle = self.tickets.insert(caller.principal(), pending)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle,
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding the result schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_total_records(rows)
            .with_ordered(true);
        Ok(Response::new(info))
    }

    /// A FlightInfo for a metadata command whose ticket is the command itself.
    fn command_info(
        &self,
        schema: &Schema,
        cmd: impl ProstMessageExt,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(cmd.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the result schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn batch_response(batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        Response::new(flight_stream(schema, once(batch)))
    }

    async fn run_update(
        &self,
        caller: &B::Caller,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<i64, Status> {
        match self.backend.run(caller, sql, params).await? {
            Outcome::Affected(n) => Ok(n),
            Outcome::Rows(b) => Ok(b.num_rows() as i64),
            Outcome::Query { .. } => Err(Status::invalid_argument(
                "a query cannot run as an update: send it as CommandStatementQuery",
            )),
        }
    }
}

/// Reads the Arrow batches of a DoPut; malformed data is INVALID_ARGUMENT.
async fn read_batches(stream: PeekableFlightDataStream) -> Result<Option<RecordBatch>, Status> {
    // The first message may carry only the command descriptor; it holds no Arrow data.
    let data = stream
        .try_filter(|m| futures::future::ready(!m.data_header.is_empty()))
        .map_err(FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("malformed Arrow data: {e}")))?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let batch = concat_batches(&schema, &batches)
        .map_err(|e| Status::invalid_argument(format!("parameter batches differ: {e}")))?;
    Ok(Some(batch))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message.0)
}

#[tonic::async_trait]
impl<B: Backend> FlightSqlService for QuillFlightSql<B> {
    type FlightService = Self;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let issued = request
            .extensions()
            .get::<CallAuth<B::Caller>>()
            .and_then(|a| a.issued_token.clone())
            .ok_or_else(|| {
                Status::unauthenticated("Handshake needs `authorization: Basic` credentials")
            })?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: issued.clone().into(),
        };
        let stream = futures::stream::iter(vec![Ok(reply)]).boxed();
        Ok(Response::new(stream))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request);
        let outcome = self.backend.run(&caller, &query.query, None).await?;
        self.flight_info(&caller, outcome, request.into_inner())
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request);
        let prepared = self
            .prepared
            .get(caller.principal(), &cmd.prepared_statement_handle)?;
        let params = prepared.params.lock().clone();
        let outcome = self.backend.run(&caller, &prepared.sql, params).await?;
        self.flight_info(&caller, outcome, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request);
        // Tickets are single use: a planned query holds memory until it runs or expires.
        let pending = self
            .tickets
            .take(caller.principal(), &ticket.statement_handle)?;
        match pending.as_ref() {
            Pending::Plan(schema, plan) => {
                let stream = self.backend.execute(&caller, plan).await?;
                Ok(Response::new(flight_stream(schema.clone(), stream)))
            }
            Pending::Batch(batch) => Ok(Self::batch_response(batch.clone())),
        }
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request);
        self.run_update(&caller, &cmd.query, None).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(&request);
        let prepared = self
            .prepared
            .get(caller.principal(), &cmd.prepared_statement_handle)?;
        let params = read_batches(request.into_inner()).await?;
        *prepared.params.lock() = params;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(cmd.prepared_statement_handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller(&request);
        let prepared = self
            .prepared
            .get(caller.principal(), &cmd.prepared_statement_handle)?;
        let params = match read_batches(request.into_inner()).await? {
            Some(p) => Some(p),
            None => prepared.params.lock().clone(),
        };
        self.run_update(&caller, &prepared.sql, params).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request);
        let PreparedInfo {
            dataset_schema,
            parameter_schema,
        } = self.backend.prepare(&caller, &query.query).await?;
        let handle = self.prepared.insert(
            caller.principal(),
            Prepared {
                sql: query.query,
                params: parking_lot::Mutex::new(None),
            },
        )?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc_schema(&result_schema(&dataset_schema))?,
            parameter_schema: ipc_schema(&parameter_schema)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request);
        self.prepared
            .remove(caller.principal(), &query.prepared_statement_handle)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut b = query.into_builder();
        b.append(CATALOG);
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request);
        let mut b = query.into_builder();
        for ns in self.backend.namespaces(&caller).await? {
            b.append(CATALOG, ns);
        }
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request);
        let mut b = query.into_builder();
        for t in self.backend.tables(&caller).await? {
            b.append(
                CATALOG,
                &t.schema_name,
                &t.table_name,
                &t.table_type,
                &t.schema,
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        }
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut b = query.into_builder();
        for t in TABLE_TYPES {
            b.append(t);
        }
        let batch = b.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self::batch_response(batch))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

const KEYWORDS: &[&str] = &[
    "NAMESPACE",
    "STORAGE",
    "FLUSH",
    "COMPACT",
    "MANIFEST",
    "SUBSCRIBE",
    "LIVE",
    "STREAM",
    "SHARED",
    "TTL_SECONDS",
    "FLUSH_POLICY",
    "ACCESS_LEVEL",
    "STORAGE_ID",
    "IMPERSONATE",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "ceil", "floor", "round", "trunc", "sqrt", "power", "exp", "ln", "log", "log10", "mod",
    "random", "sin", "cos", "tan", "pi", "signum",
];
const STRING_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "length",
    "char_length",
    "concat",
    "substr",
    "substring",
    "trim",
    "ltrim",
    "rtrim",
    "replace",
    "split_part",
    "starts_with",
    "strpos",
    "lpad",
    "rpad",
    "left",
    "right",
    "regexp_replace",
    "regexp_match",
    "md5",
    "sha256",
];
const SYSTEM_FUNCTIONS: &[&str] = &[
    "snowflake_id",
    "uuid_v7",
    "current_user",
    "current_role",
    "arrow_typeof",
    "version",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "date_trunc",
    "date_part",
    "extract",
    "to_timestamp",
    "to_date",
    "from_unixtime",
    "date_bin",
];
