//! The service's own work around the Flight SQL calls: resolving callers, applying limits,
//! building FlightInfo and tickets, cancelling, session options, and reading parameter batches.

use std::sync::Arc;
use std::time::Duration;

use arrow::compute::concat_batches;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::XdbcTypeInfoDataBuilder;
use arrow_flight::sql::{Any, ProstMessageExt, TicketStatementQuery};
use arrow_flight::{
    CancelStatus, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::auth::CallAuth;
use crate::backend::{Backend, BatchStream, CallerInfo, Outcome};
use crate::control::Queries;
use crate::encode::{flight_stream, once, result_schema};
use crate::error::Error;
use crate::session::{
    ErrorValue, OptionValue, SetSessionOptionsError, SetSessionOptionsRequest,
    SetSessionOptionsResult,
};
use crate::tickets::HandleStore;

use super::{
    ActionStream, DoGetStream, Pending, QuillFlightSql, ServiceOptions, metadata,
    rows_affected_schema,
};

pub(super) fn internal(e: impl std::fmt::Display) -> Status {
    Status::from(Error::Internal(e.to_string()))
}

impl<B: Backend> QuillFlightSql<B> {
    /// The service.
    pub fn new(backend: Arc<B>, options: ServiceOptions) -> Result<Self, Status> {
        let sql_info = metadata::ServerSqlInfo::new(&backend.server_info())?;
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

    pub(super) fn caller<T>(&self, req: &Request<T>) -> B::Caller {
        req.extensions()
            .get::<CallAuth<B::Caller>>()
            .map(|a| a.caller.clone())
            .unwrap_or_else(|| self.backend.anonymous())
    }

    /// The caller, inside the transaction `txn` when the command names one.
    pub(super) fn caller_in<T>(
        &self,
        req: &Request<T>,
        txn: Option<&Bytes>,
    ) -> Result<B::Caller, Status> {
        self.in_transaction(self.caller(req), txn)
    }

    /// `caller` inside the transaction `txn`, when there is one.
    pub(super) fn in_transaction(
        &self,
        caller: B::Caller,
        txn: Option<&Bytes>,
    ) -> Result<B::Caller, Status> {
        match txn {
            Some(id) if !id.is_empty() => self.backend.in_transaction(&caller, id),
            _ => Ok(caller),
        }
    }

    /// The time limit of `caller`'s statements: the backend's word for the caller, else the
    /// service-wide limit.
    pub(super) fn timeout(&self, caller: &B::Caller) -> Duration {
        self.backend
            .query_timeout(caller)
            .unwrap_or_else(|| self.queries.timeout())
    }

    /// Runs `work` within `caller`'s time limit.
    pub(super) async fn timed<T>(
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
    pub(super) fn flight_info(
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
            rows => {
                let batch = Self::outcome_batch(rows)?;
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

    /// Runs the prepared statement `handle` of `caller` (in its transaction, if it was prepared
    /// in one) with the parameter batch in `sent`, or, when `sent` carries none, the batch bound
    /// to the handle.
    pub(super) async fn run_prepared_sent(
        &self,
        caller: B::Caller,
        handle: &Bytes,
        sent: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
    ) -> Result<(B::Caller, Outcome<B::Plan>), Status> {
        let prepared = self.prepared.get(caller.principal(), handle)?;
        let caller = self.in_transaction(caller, prepared.transaction.as_ref())?;
        let params = match read_batches(sent).await? {
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
        Ok((caller, outcome))
    }

    /// The rows of an outcome that is not a plan: its own, or the affected-rows count.
    pub(super) fn outcome_batch(outcome: Outcome<B::Plan>) -> Result<RecordBatch, Status> {
        match outcome {
            Outcome::Rows(batch) => Ok(batch),
            Outcome::Affected(n) => RecordBatch::try_new(
                rows_affected_schema(),
                vec![Arc::new(arrow::array::Int64Array::from(vec![n]))],
            )
            .map_err(internal),
            Outcome::Query { .. } => Err(Status::from(Error::Internal(
                "a planned query has no rows until it runs".into(),
            ))),
        }
    }

    /// A FlightInfo for a metadata command whose ticket is the command itself.
    pub(super) fn command_info(
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

    pub(super) fn batch_response(batch: RecordBatch) -> Response<DoGetStream> {
        let schema = batch.schema();
        Response::new(flight_stream(schema, once(batch)))
    }

    pub(super) fn affected(outcome: Outcome<B::Plan>) -> Result<i64, Status> {
        match outcome {
            Outcome::Affected(n) => Ok(n),
            Outcome::Rows(b) => Ok(b.num_rows() as i64),
            Outcome::Query { .. } => Err(Status::from(Error::InvalidArgument(
                "a query cannot run as an update: send it as CommandStatementQuery".into(),
            ))),
        }
    }

    /// The ticket handles in a FlightInfo's endpoints.
    pub(super) fn handles(info: &FlightInfo) -> Vec<Bytes> {
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
    pub(super) fn cancel(
        &self,
        caller: &B::Caller,
        info: &FlightInfo,
    ) -> Result<CancelStatus, Status> {
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
            Command::CommandGetSqlInfo(_) => self.sql_info.schema().as_ref().clone(),
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

    pub(super) fn action_result(body: Vec<u8>) -> Response<ActionStream> {
        let out = arrow_flight::Result { body: body.into() };
        Response::new(futures::stream::iter(vec![Ok(out)]).boxed())
    }

    pub(super) fn set_session_options(
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
pub(super) fn put_batches(
    stream: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> BatchStream {
    // The first message may carry only the command descriptor; it holds no Arrow data.
    let data = stream
        .try_filter(|m| futures::future::ready(!m.data_header.is_empty()))
        .and_then(|m| futures::future::ready(check_ipc_body(&m).map(|()| m)))
        .map_err(FlightError::from);
    // Arrow's decoder panics on some malformed input that `check_ipc_body` does not foresee: a
    // panic ends the upload with INVALID_ARGUMENT, never the call or the server.
    std::panic::AssertUnwindSafe(FlightRecordBatchStream::new_from_flight_data(data))
        .catch_unwind()
        .map(|polled| {
            polled.unwrap_or_else(|panic| {
                Err(FlightError::ProtocolError(format!(
                    "the Arrow decoder failed: {}",
                    crate::auth::panic_message(panic.as_ref())
                )))
            })
        })
        .map_err(|e| match e {
            FlightError::Tonic(s) => *s,
            other => Status::from(Error::InvalidArgument(format!(
                "malformed Arrow data: {other}"
            ))),
        })
        .boxed()
}

/// The most one upload message may say its compressed buffers hold once decompressed: Arrow
/// allocates what the message declares before it decompresses.
const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// Checks what Arrow's decoder trusts in an IPC message: every buffer of a record or
/// dictionary batch lies inside the message body, and compressed buffers declare a bounded
/// size. A header that does not parse is left to the decoder, which reports it.
fn check_ipc_body(m: &FlightData) -> Result<(), Status> {
    use arrow::ipc::MessageHeader;
    let Ok(message) = arrow::ipc::root_as_message(&m.data_header) else {
        return Ok(());
    };
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => {
            message.header_as_dictionary_batch().and_then(|d| d.data())
        }
        _ => None,
    };
    let Some(batch) = batch else {
        return Ok(());
    };
    let body = m.data_body.len() as u64;
    let malformed = |what: String| {
        Status::from(Error::InvalidArgument(format!(
            "malformed Arrow data: {what}"
        )))
    };
    let mut declared = 0u64;
    for (i, b) in batch.buffers().into_iter().flatten().enumerate() {
        let (offset, length) = (b.offset(), b.length());
        let end = u64::try_from(offset)
            .ok()
            .zip(u64::try_from(length).ok())
            .and_then(|(o, l)| o.checked_add(l));
        if end.is_none_or(|end| end > body) {
            return Err(malformed(format!(
                "buffer {i} (offset {offset}, length {length}) lies outside the message body \
                 of {body} bytes"
            )));
        }
        if batch.compression().is_some() && length >= 8 {
            let start = offset as usize;
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&m.data_body[start..start + 8]);
            // -1: the buffer is stored uncompressed.
            let size = i64::from_le_bytes(prefix);
            declared = declared.saturating_add(u64::try_from(size).unwrap_or(0));
            if declared > MAX_DECOMPRESSED_BYTES {
                return Err(malformed(format!(
                    "its compressed buffers declare more than {MAX_DECOMPRESSED_BYTES} bytes"
                )));
            }
        }
    }
    Ok(())
}

/// Reads all the Arrow batches of a DoPut into one (prepared-statement parameters).
pub(super) async fn read_batches(
    stream: impl futures::Stream<Item = Result<FlightData, Status>> + Send + 'static,
) -> Result<Option<RecordBatch>, Status> {
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
    crate::params::check(&batch)?;
    Ok(Some(batch))
}

pub(super) fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let message: IpcMessage = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| internal(e))?;
    Ok(message.0)
}

pub(super) fn decode<M: Message + Default>(what: &str, body: &[u8]) -> Result<M, Status> {
    M::decode(body)
        .map_err(|e| Status::from(Error::InvalidArgument(format!("malformed {what}: {e}"))))
}
