//! The Flight SQL service: decodes commands, keeps tickets and prepared statements, and calls
//! the [`Backend`].

/// SqlInfo, keys and type info.
pub mod metadata;

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
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest,
    ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndTransactionRequest, Any, CommandGetCatalogs, CommandGetCrossReference,
    CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, EndTransaction,
    ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::CATALOG;
use crate::auth::CallAuth;
use crate::backend::{Backend, BatchStream, CallerInfo, IngestTarget, Outcome, PreparedInfo};
use crate::control::{Queries, QueryLimits};
use crate::encode::{flight_stream, once, result_schema};
use crate::error::Error;
use crate::session::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionResult, CloseSessionStatus, ErrorValue,
    GET_SESSION_OPTIONS, GetSessionOptionsResult, OptionValue, SET_SESSION_OPTIONS,
    SessionOptionValue, SetSessionOptionsError, SetSessionOptionsRequest, SetSessionOptionsResult,
};
use crate::tickets::HandleStore;

/// What a ticket stands for until DoGet.
enum Pending<P> {
    Plan {
        schema: SchemaRef,
        plan: P,
        deadline: tokio::time::Instant,
        /// The caller's time limit, for the error past the deadline.
        limit: Duration,
    },
    Batch(RecordBatch),
}

/// A prepared statement: the backend's planned form, its transaction and bound parameters.
struct Prepared<Q> {
    statement: Q,
    dataset_schema: SchemaRef,
    transaction: Option<Bytes>,
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

/// How the service keeps handles and limits queries.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// How long a ticket waits for its DoGet.
    pub ticket_ttl: Duration,
    /// How long an unused prepared statement is kept.
    pub prepared_ttl: Duration,
    /// Concurrency and time limits of queries.
    pub limits: QueryLimits,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            ticket_ttl: Duration::from_secs(300),
            prepared_ttl: Duration::from_secs(24 * 3600),
            limits: QueryLimits::default(),
        }
    }
}

/// The Flight SQL service over a backend.
pub struct QuillFlightSql<B: Backend> {
    backend: Arc<B>,
    tickets: HandleStore<Pending<B::Plan>>,
    prepared: HandleStore<Prepared<B::Prepared>>,
    queries: Queries,
    sql_info: SqlInfoData,
    type_info: XdbcTypeInfoData,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;
type ActionStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send + 'static>>;

fn internal(e: impl std::fmt::Display) -> Status {
    Status::from(Error::Internal(e.to_string()))
}

impl<B: Backend> QuillFlightSql<B> {
    /// The service.
    pub fn new(backend: Arc<B>, options: ServiceOptions) -> Result<Self, Status> {
        let sql_info = metadata::sql_info(&backend.server_info())?;
        let mut types = XdbcTypeInfoDataBuilder::new();
        for t in backend.type_info() {
            types.append(t);
        }
        let type_info = types.build().map_err(internal)?;
        Ok(Self {
            backend,
            tickets: HandleStore::new("ticket", options.ticket_ttl, 10_000),
            prepared: HandleStore::new("prepared statement", options.prepared_ttl, 100_000),
            queries: Queries::new(options.limits),
            sql_info,
            type_info,
        })
    }

    fn caller<T>(&self, req: &Request<T>) -> B::Caller {
        req.extensions()
            .get::<CallAuth<B::Caller>>()
            .map(|a| a.caller.clone())
            .unwrap_or_else(|| self.backend.anonymous())
    }

    /// The caller, inside the transaction `txn` when the command names one.
    fn caller_in<T>(&self, req: &Request<T>, txn: Option<&Bytes>) -> Result<B::Caller, Status> {
        let caller = self.caller(req);
        match txn {
            Some(id) if !id.is_empty() => self.backend.in_transaction(&caller, id),
            _ => Ok(caller),
        }
    }

    /// The time limit of `caller`'s statements: the backend's word for the caller, else the
    /// service-wide limit.
    fn timeout(&self, caller: &B::Caller) -> Duration {
        self.backend
            .query_timeout(caller)
            .unwrap_or_else(|| self.queries.timeout())
    }

    /// Runs `work` within `caller`'s time limit.
    async fn timed<T>(
        &self,
        caller: &B::Caller,
        work: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let limit = self.timeout(caller);
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| crate::control::deadline_exceeded(limit))?
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
                let limit = self.timeout(caller);
                let deadline = tokio::time::Instant::now() + limit;
                let pending = Pending::Plan {
                    schema: schema.clone(),
                    plan,
                    deadline,
                    limit,
                };
                (schema, pending, -1)
            }
            Outcome::Affected(n) => {
                let schema = rows_affected_schema();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(arrow::array::Int64Array::from(vec![n]))],
                )
                .map_err(internal)?;
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
            .map_err(|e| Status::from(Error::Internal(format!("encoding the result schema: {e}"))))?
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
            .map_err(|e| Status::from(Error::Internal(format!("encoding the result schema: {e}"))))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn batch_response(batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        Response::new(flight_stream(schema, once(batch)))
    }

    fn affected(outcome: Outcome<B::Plan>) -> Result<i64, Status> {
        match outcome {
            Outcome::Affected(n) => Ok(n),
            Outcome::Rows(b) => Ok(b.num_rows() as i64),
            Outcome::Query { .. } => Err(Status::from(Error::InvalidArgument(
                "a query cannot run as an update: send it as CommandStatementQuery".into(),
            ))),
        }
    }

    /// The ticket handles in a FlightInfo's endpoints.
    fn handles(info: &FlightInfo) -> Vec<Bytes> {
        info.endpoint
            .iter()
            .filter_map(|e| e.ticket.as_ref())
            .filter_map(|t| Any::decode(t.ticket.clone()).ok())
            .filter_map(|a| a.unpack::<TicketStatementQuery>().ok().flatten())
            .map(|t| t.statement_handle)
            .collect()
    }

    /// Cancels the queries of a FlightInfo: a ticket not yet read is dropped, a running stream
    /// ends with CANCELLED.
    fn cancel(&self, caller: &B::Caller, info: &FlightInfo) -> Result<CancelStatus, Status> {
        let mut found = false;
        for handle in Self::handles(info) {
            if self.tickets.take(caller.principal(), &handle).is_ok()
                || self.queries.cancel(caller.principal(), &handle)
            {
                found = true;
            }
        }
        if found {
            Ok(CancelStatus::Cancelled)
        } else {
            Err(Status::from(Error::NotFound(
                "no such query: it finished, expired or was never started".into(),
            )))
        }
    }

    /// The result schema of a command without running it (GetSchema): the schema its
    /// FlightInfo would carry.
    pub async fn schema_for(&self, request: Request<FlightDescriptor>) -> Result<Schema, Status> {
        use arrow_flight::sql::Command;
        let any = Any::decode(request.get_ref().cmd.clone())
            .map_err(|e| Status::from(Error::InvalidArgument(format!("malformed command: {e}"))))?;
        let cmd = Command::try_from(any)
            .map_err(|e| Status::from(Error::InvalidArgument(e.to_string())))?;
        let schema = match cmd {
            Command::CommandStatementQuery(q) => {
                let caller = self.caller_in(&request, q.transaction_id.as_ref())?;
                let (info, _) = self
                    .timed(&caller, self.backend.prepare(&caller, &q.query))
                    .await?;
                result_schema(&info.dataset_schema).as_ref().clone()
            }
            Command::CommandPreparedStatementQuery(q) => {
                let caller = self.caller(&request);
                let prepared = self
                    .prepared
                    .get(caller.principal(), &q.prepared_statement_handle)?;
                prepared.dataset_schema.as_ref().clone()
            }
            Command::CommandGetCatalogs(q) => q.into_builder().schema().as_ref().clone(),
            Command::CommandGetDbSchemas(q) => q.into_builder().schema().as_ref().clone(),
            Command::CommandGetTables(q) => q.into_builder().schema().as_ref().clone(),
            Command::CommandGetTableTypes(q) => q.into_builder().schema().as_ref().clone(),
            Command::CommandGetSqlInfo(q) => {
                q.into_builder(&self.sql_info).schema().as_ref().clone()
            }
            Command::CommandGetXdbcTypeInfo(q) => {
                q.into_builder(&self.type_info).schema().as_ref().clone()
            }
            Command::CommandGetPrimaryKeys(_) => metadata::primary_keys_schema().as_ref().clone(),
            Command::CommandGetExportedKeys(_)
            | Command::CommandGetImportedKeys(_)
            | Command::CommandGetCrossReference(_) => {
                metadata::foreign_keys_schema().as_ref().clone()
            }
            other => {
                return Err(Status::from(Error::InvalidArgument(format!(
                    "GetSchema does not serve {}",
                    other.type_url()
                ))));
            }
        };
        Ok(schema)
    }

    fn action_result(body: Vec<u8>) -> Response<ActionStream> {
        let out = arrow_flight::Result { body: body.into() };
        Response::new(futures::stream::iter(vec![Ok(out)]).boxed())
    }

    fn set_session_options(
        &self,
        caller: &B::Caller,
        req: SetSessionOptionsRequest,
    ) -> SetSessionOptionsResult {
        let mut result = SetSessionOptionsResult::default();
        for (name, value) in req.session_options {
            let outcome = match value.option_value {
                None => self.backend.set_session_option(caller, &name, None),
                Some(OptionValue::StringValue(v)) => {
                    self.backend.set_session_option(caller, &name, Some(&v))
                }
                Some(_) => Err(Status::from(Error::InvalidArgument(
                    "session options take strings".into(),
                ))),
            };
            if let Err(e) = outcome {
                let value = if e.code() == tonic::Code::NotFound {
                    ErrorValue::InvalidName
                } else {
                    ErrorValue::InvalidValue
                };
                result.errors.insert(
                    name,
                    SetSessionOptionsError {
                        value: value as i32,
                    },
                );
            }
        }
        result
    }
}

/// Reads the Arrow batches of a DoPut as a stream; malformed data is INVALID_ARGUMENT.
fn put_batches(stream: PeekableFlightDataStream) -> BatchStream {
    // The first message may carry only the command descriptor; it holds no Arrow data.
    let data = stream
        .try_filter(|m| futures::future::ready(!m.data_header.is_empty()))
        .map_err(FlightError::from);
    FlightRecordBatchStream::new_from_flight_data(data)
        .map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => Status::from(Error::InvalidArgument(format!(
                "malformed Arrow data: {other}"
            ))),
        })
        .boxed()
}

/// Reads all the Arrow batches of a DoPut into one (prepared-statement parameters).
async fn read_batches(stream: PeekableFlightDataStream) -> Result<Option<RecordBatch>, Status> {
    let batches: Vec<RecordBatch> = put_batches(stream).try_collect().await?;
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let batch = concat_batches(&schema, &batches).map_err(|e| {
        Status::from(Error::InvalidArgument(format!(
            "parameter batches differ: {e}"
        )))
    })?;
    Ok(Some(batch))
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| internal(e))?;
    Ok(message.0)
}

fn decode<M: Message + Default>(what: &str, body: &[u8]) -> Result<M, Status> {
    M::decode(body)
        .map_err(|e| Status::from(Error::InvalidArgument(format!("malformed {what}: {e}"))))
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
                Status::from(Error::Unauthenticated(
                    "Handshake needs `authorization: Basic` credentials".into(),
                ))
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
        let caller = self.caller_in(&request, query.transaction_id.as_ref())?;
        let outcome = self
            .timed(&caller, self.backend.run(&caller, &query.query, None))
            .await?;
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
        let caller = self.caller_in(&request, prepared.transaction.as_ref())?;
        let params = prepared.params.lock().clone();
        let outcome = self
            .timed(
                &caller,
                self.backend
                    .run_prepared(&caller, &prepared.statement, params),
            )
            .await?;
        self.flight_info(&caller, outcome, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request);
        // Tickets are single use: a planned query holds memory until it runs or expires.
        let handle = ticket.statement_handle;
        let pending = self.tickets.take(caller.principal(), &handle)?;
        match pending.as_ref() {
            Pending::Plan {
                schema,
                plan,
                deadline,
                limit,
            } => {
                let start = self.backend.execute(&caller, plan);
                let stream = self
                    .queries
                    .run(handle, caller.principal(), (*deadline, *limit), start)
                    .await?;
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
        let caller = self.caller_in(&request, cmd.transaction_id.as_ref())?;
        let outcome = self
            .timed(&caller, self.backend.run(&caller, &cmd.query, None))
            .await?;
        Self::affected(outcome)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let caller = self.caller_in(&request, cmd.transaction_id.as_ref())?;
        if cmd.temporary {
            return Err(Status::from(Error::InvalidArgument(
                "ingest into a temporary table is not supported: QuillDB has no temporary tables"
                    .into(),
            )));
        }
        if let Some(c) = cmd.catalog.as_deref().filter(|c| *c != CATALOG) {
            return Err(Status::from(Error::NotFound(format!(
                "catalog {c} does not exist: the one catalog is {CATALOG}"
            ))));
        }
        if let Some(opts) = &cmd.table_definition_options {
            if opts.if_exists == TableExistsOption::Replace as i32 {
                return Err(Status::from(Error::InvalidArgument(
                    "ingest cannot replace a table (mode replace): QuillDB appends to existing \
                     tables only; empty it with DELETE and ingest with mode append"
                        .into(),
                )));
            }
            if opts.if_exists == TableExistsOption::Fail as i32
                && opts.if_not_exist == TableNotExistOption::Create as i32
            {
                return Err(Status::from(Error::InvalidArgument(
                    "ingest cannot create a table (mode create): create it with CREATE TABLE, \
                     then ingest with mode append"
                        .into(),
                )));
            }
        }
        let target = IngestTarget {
            schema: cmd.schema.clone().filter(|s| !s.is_empty()),
            table: cmd.table.clone(),
        };
        let data = put_batches(request.into_inner());
        self.backend.ingest(&caller, target, data).await
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
        let caller = self.caller_in(&request, prepared.transaction.as_ref())?;
        let params = match read_batches(request.into_inner()).await? {
            Some(p) => Some(p),
            None => prepared.params.lock().clone(),
        };
        let outcome = self
            .timed(
                &caller,
                self.backend
                    .run_prepared(&caller, &prepared.statement, params),
            )
            .await?;
        Self::affected(outcome)
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller_in(&request, query.transaction_id.as_ref())?;
        let (
            PreparedInfo {
                dataset_schema,
                parameter_schema,
            },
            statement,
        ) = self
            .timed(&caller, self.backend.prepare(&caller, &query.query))
            .await?;
        let dataset_schema = result_schema(&dataset_schema);
        let handle = self.prepared.insert(
            caller.principal(),
            Prepared {
                statement,
                dataset_schema: dataset_schema.clone(),
                transaction: query.transaction_id.filter(|t| !t.is_empty()),
                params: parking_lot::Mutex::new(None),
            },
        )?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle,
            dataset_schema: ipc_schema(&dataset_schema)?,
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

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let caller = self.caller(&request);
        let id = self.backend.begin_transaction(&caller).await?;
        Ok(ActionBeginTransactionResult {
            transaction_id: id.into(),
        })
    }

    async fn do_action_end_transaction(
        &self,
        query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request);
        let commit = match EndTransaction::try_from(query.action) {
            Ok(EndTransaction::Commit) => true,
            Ok(EndTransaction::Rollback) => false,
            _ => {
                return Err(Status::from(Error::InvalidArgument(
                    "EndTransaction needs COMMIT or ROLLBACK".into(),
                )));
            }
        };
        self.backend
            .end_transaction(&caller, &query.transaction_id, commit)
            .await
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.caller(&request);
        let info: FlightInfo = decode("FlightInfo", &query.info)?;
        let status = self.cancel(&caller, &info)?;
        Ok(ActionCancelQueryResult {
            result: status as i32,
        })
    }

    /// Live queries: `SUBSCRIBE TO ...` over DoExchange (see [`crate::live`]). The client ends
    /// the subscription by closing its side or cancelling the call.
    async fn do_exchange_fallback(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> Result<Response<<Self as FlightService>::DoExchangeStream>, Status> {
        let caller = self.caller(&request);
        let mut inbound = request.into_inner();
        let wanted = crate::live::read_request(&mut inbound).await?;
        let subscription = self
            .timed(&caller, self.backend.subscribe(&caller, wanted))
            .await?;
        let closed = async move { while let Ok(Some(_)) = inbound.message().await {} };
        let frames = crate::live::frames(subscription).take_until(closed);
        Ok(Response::new(frames.boxed()))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = self.caller(&request);
        let action = request.get_ref();
        match action.r#type.as_str() {
            CANCEL_FLIGHT_INFO => {
                let req: CancelFlightInfoRequest = decode("CancelFlightInfoRequest", &action.body)?;
                let info = req.info.ok_or_else(|| {
                    Status::from(Error::InvalidArgument(
                        "CancelFlightInfo needs the info".into(),
                    ))
                })?;
                let status = self.cancel(&caller, &info)?;
                let result = CancelFlightInfoResult {
                    status: status as i32,
                };
                Ok(Self::action_result(result.encode_to_vec()))
            }
            SET_SESSION_OPTIONS => {
                let req: SetSessionOptionsRequest =
                    decode("SetSessionOptionsRequest", &action.body)?;
                let result = self.set_session_options(&caller, req);
                Ok(Self::action_result(result.encode_to_vec()))
            }
            GET_SESSION_OPTIONS => {
                let session_options = self
                    .backend
                    .session_options(&caller)
                    .into_iter()
                    .map(|(k, v)| {
                        let value = SessionOptionValue {
                            option_value: Some(OptionValue::StringValue(v)),
                        };
                        (k, value)
                    })
                    .collect();
                let result = GetSessionOptionsResult { session_options };
                Ok(Self::action_result(result.encode_to_vec()))
            }
            CLOSE_SESSION => {
                self.backend.close_session(&caller)?;
                let result = CloseSessionResult {
                    status: CloseSessionStatus::Closed as i32,
                };
                Ok(Self::action_result(result.encode_to_vec()))
            }
            other => Err(Status::from(Error::InvalidArgument(format!(
                "unknown action {other:?}: ListActions lists the actions this server serves"
            )))),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |t: &str, d: &str| {
            Ok(ActionType {
                r#type: t.to_string(),
                description: d.to_string(),
            })
        };
        Some(vec![
            action(
                CANCEL_FLIGHT_INFO,
                "Cancels a query: its ticket is dropped or its running stream ends.",
            ),
            action(
                SET_SESSION_OPTIONS,
                "Sets session options: catalog (quill) and schema (the default namespace).",
            ),
            action(GET_SESSION_OPTIONS, "Answers the session options."),
            action(
                CLOSE_SESSION,
                "Closes the session: its token stops working, its transaction rolls back.",
            ),
        ])
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
            .map_err(internal)?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.type_info).schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = query
            .into_builder(&self.type_info)
            .build()
            .map_err(internal)?;
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
        let batch = b.build().map_err(internal)?;
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
        let batch = b.build().map_err(internal)?;
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
            .map_err(internal)?;
        }
        let batch = b.build().map_err(internal)?;
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
        let batch = b.build().map_err(internal)?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(
            &metadata::primary_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request);
        let tables = self.backend.tables(&caller).await?;
        let batch = metadata::primary_keys(
            &tables,
            query.catalog.as_deref(),
            query.db_schema.as_deref(),
            &query.table,
        )?;
        Ok(Self::batch_response(batch))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(
            &metadata::foreign_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Self::batch_response(metadata::foreign_keys()?))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(
            &metadata::foreign_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Self::batch_response(metadata::foreign_keys()?))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(
            &metadata::foreign_keys_schema(),
            query,
            request.into_inner(),
        )
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Self::batch_response(metadata::foreign_keys()?))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
