//! Queries in one call: DoExchange whose descriptor is a Flight SQL query command.
//!
//! Flight SQL runs a query in two calls (GetFlightInfo, then DoGet of its ticket) and a
//! parameterized one in three (DoPut to bind, GetFlightInfo, DoGet). For the small reads an app
//! makes all day, those round trips cost more than the query. QuillDB also accepts, on
//! DoExchange, a first message whose descriptor command is an `Any`-wrapped
//! `CommandStatementQuery` or `CommandPreparedStatementQuery`, followed (for a prepared
//! statement) by its parameter batch; the client then closes its side and the server answers
//! the result as it would on DoGet: the schema, then the batches. The parameters bind to this
//! call only, never to the statement's handle, so calls on one handle do not race. Anything
//! else on DoExchange is a subscription ([`crate::live`]).

use arrow_flight::FlightData;
use arrow_flight::sql::{Any, Command};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tonic::{Status, Streaming};

use super::{DoGetStream, QuillFlightSql};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;

use crate::backend::{Backend, BatchStream, CallerInfo, Outcome};
use crate::encode::{flight_stream, once, result_schema};
use crate::error::Error;

/// The query command a DoExchange descriptor carries, if it is one (not SUBSCRIBE text).
pub(super) fn query_command(first: &FlightData) -> Option<Command> {
    let cmd = &first.flight_descriptor.as_ref()?.cmd;
    if !cmd.starts_with(b"\x0a") {
        return None;
    }
    let any = Any::decode(cmd.as_ref()).ok()?;
    match Command::try_from(any).ok()? {
        c @ (Command::CommandStatementQuery(_) | Command::CommandPreparedStatementQuery(_)) => {
            Some(c)
        }
        _ => None,
    }
}

impl<B: Backend> QuillFlightSql<B> {
    /// The backend behind the service.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Runs one statement for `caller`, within the caller's time limit and the server's query
    /// slots, and answers its result schema and batches: the path of every one-call statement
    /// (DoExchange queries, the browser API). Dropping the stream cancels the query.
    pub async fn statement(
        &self,
        caller: &B::Caller,
        sql: &str,
    ) -> Result<(SchemaRef, BatchStream), Status> {
        let outcome = self
            .timed(caller, self.backend.run(caller, sql, None))
            .await?;
        self.result(caller, outcome).await
    }

    /// Opens a live query for `caller`, within the caller's time limit for the snapshot's start.
    pub async fn subscribe(
        &self,
        caller: &B::Caller,
        request: crate::live::SubscribeRequest,
    ) -> Result<crate::live::Subscription, Status> {
        self.timed(caller, self.backend.subscribe(caller, request))
            .await
    }

    /// The result of an outcome: a plan runs under the query limits (the call is the handle's
    /// lifetime, so cancelling the call cancels the query); rows answer as they are.
    async fn result(
        &self,
        caller: &B::Caller,
        outcome: Outcome<B::Plan>,
    ) -> Result<(SchemaRef, BatchStream), Status> {
        match outcome {
            Outcome::Query { schema, plan } => {
                let schema = result_schema(&schema);
                let limit = self.timeout(caller);
                let deadline = tokio::time::Instant::now() + limit;
                let mut id = [0u8; 16];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
                let handle = Bytes::copy_from_slice(&id);
                let start = self.backend.execute(caller, &plan);
                let stream = self
                    .queries
                    .run(handle, caller.principal(), (deadline, limit), start)
                    .await?;
                Ok((schema, stream))
            }
            other => {
                let batch = Self::outcome_batch(other)?;
                Ok((result_schema(&batch.schema()), once(batch)))
            }
        }
    }

    /// Runs the query of `command` for `caller` and streams its result.
    pub(super) async fn exchange_query(
        &self,
        caller: B::Caller,
        command: Command,
        first: FlightData,
        inbound: Streaming<FlightData>,
    ) -> Result<DoGetStream, Status> {
        let outcome = match command {
            Command::CommandStatementQuery(q) => {
                let caller = self.in_transaction(caller, q.transaction_id.as_ref())?;
                let (schema, stream) = self.statement(&caller, &q.query).await?;
                return Ok(flight_stream(schema, stream));
            }
            Command::CommandPreparedStatementQuery(cmd) => {
                let sent = futures::stream::once(async move { Ok(first) }).chain(inbound);
                self.run_prepared_sent(caller, &cmd.prepared_statement_handle, sent)
                    .await?
            }
            _ => {
                return Err(Status::from(Error::InvalidArgument(
                    "DoExchange runs CommandStatementQuery, CommandPreparedStatementQuery or \
                     SUBSCRIBE text"
                        .into(),
                )));
            }
        };
        let (caller, outcome) = outcome;
        let (schema, stream) = self.result(&caller, outcome).await?;
        Ok(flight_stream(schema, stream))
    }
}
