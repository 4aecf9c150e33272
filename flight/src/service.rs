//! The Flight SQL service: decodes commands, keeps tickets and prepared statements, and calls
//! the [`Backend`].

/// The service's own work around the Flight SQL calls: callers, limits, FlightInfo, tickets,
/// cancellation, session options, parameter batches.
mod calls;
mod exchange;
/// SqlInfo, keys and type info.
pub mod metadata;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::XdbcTypeInfoData;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest,
    ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndTransactionRequest, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas,
    CommandGetExportedKeys, CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
    CommandStatementUpdate, DoPutPreparedStatementResult, EndTransaction, SqlInfo,
    TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, FlightDescriptor,
    FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::CATALOG;
use crate::auth::CallAuth;
use crate::backend::{Backend, CallerInfo, IngestTarget, PreparedInfo};
use crate::control::{Queries, QueryLimits};
use crate::encode::{flight_stream, result_schema};
use crate::error::Error;
use crate::session::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionResult, CloseSessionStatus, GET_SESSION_OPTIONS,
    GetSessionOptionsResult, OptionValue, SET_SESSION_OPTIONS, SessionOptionValue,
    SetSessionOptionsRequest,
};
use crate::tickets::HandleStore;
use calls::{decode, internal, ipc_schema, put_batches, read_batches};

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

/// Decodes the Arrow IPC messages of a parameter upload (DoPut of a prepared statement, the
/// parameters of a DoExchange query) into one batch: the server's own path, public for the
/// fuzz targets.
pub async fn decode_parameters(
    messages: impl Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static,
) -> Result<Option<RecordBatch>, Status> {
    read_batches(messages).await
}

/// The Flight SQL service over a backend.
pub struct QuillFlightSql<B: Backend> {
    backend: Arc<B>,
    tickets: HandleStore<Pending<B::Plan>>,
    prepared: HandleStore<Prepared<B::Prepared>>,
    queries: Queries,
    sql_info: metadata::ServerSqlInfo,
    type_info: XdbcTypeInfoData,
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;
type ActionStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send + 'static>>;

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
        let (_, outcome) = self
            .run_prepared_sent(caller, &cmd.prepared_statement_handle, request.into_inner())
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
    /// the subscription by closing its side or cancelling the call. A query command instead
    /// runs that query in this one call (see [`exchange`]).
    async fn do_exchange_fallback(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> Result<Response<<Self as FlightService>::DoExchangeStream>, Status> {
        let caller = self.caller(&request);
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::from(Error::InvalidArgument(
                "DoExchange: the client sent nothing".into(),
            ))
        })?;
        if let Some(command) = exchange::query_command(&first) {
            let stream = self.exchange_query(caller, command, first, inbound).await?;
            return Ok(Response::new(stream));
        }
        let wanted = crate::live::read_request(first, &mut inbound).await?;
        let subscription = self.subscribe(&caller, wanted).await?;
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
        let schema = self.sql_info.schema();
        self.command_info(&schema, query, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let batch = self.sql_info.reply(query.info)?;
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
