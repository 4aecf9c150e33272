//! The gRPC `FlightService` QuillDB serves: arrow-flight's Flight SQL dispatch, plus GetSchema
//! and a ListActions that names only the actions this server carries out.

use std::sync::Arc;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, PollInfo, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::Backend;
use crate::error::Error;
use crate::service::QuillFlightSql;

/// Actions arrow-flight lists by default that QuillDB does not carry out.
const UNSERVED_ACTIONS: [&str; 3] = [
    "CreatePreparedSubstraitPlan",
    "BeginSavepoint",
    "EndSavepoint",
];

/// The Flight service.
pub struct QuillFlightService<B: Backend> {
    sql: Arc<QuillFlightSql<B>>,
}

impl<B: Backend> QuillFlightService<B> {
    /// Serves `sql` (which the browser API may share).
    pub fn new(sql: Arc<QuillFlightSql<B>>) -> Self {
        Self { sql }
    }
}

type Inner<B> = QuillFlightSql<B>;

/// arrow-flight's dispatch answers a command whose `Any` decodes but whose inner message does
/// not (invalid UTF-8 in a query's text, a truncated field) with INTERNAL and the Debug form
/// of an Arrow `ParseError`: it is the client's input, so it becomes INVALID_ARGUMENT.
fn client_input<T>(r: Result<T, Status>) -> Result<T, Status> {
    r.map_err(|s| match s.message().strip_prefix("ParseError(") {
        Some(rest) if s.code() == tonic::Code::Internal => {
            Status::from(Error::InvalidArgument(format!(
                "malformed command: {}",
                rest.trim_end_matches(')').trim_matches('"')
            )))
        }
        _ => s,
    })
}

#[tonic::async_trait]
impl<B: Backend> FlightService for QuillFlightService<B> {
    type HandshakeStream = <Inner<B> as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner<B> as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner<B> as FlightService>::DoGetStream;
    type DoPutStream = <Inner<B> as FlightService>::DoPutStream;
    type DoExchangeStream = <Inner<B> as FlightService>::DoExchangeStream;
    type DoActionStream = <Inner<B> as FlightService>::DoActionStream;
    type ListActionsStream = <Inner<B> as FlightService>::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(self.sql.as_ref(), request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(self.sql.as_ref(), request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        client_input(FlightService::get_flight_info(self.sql.as_ref(), request).await)
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        client_input(FlightService::poll_flight_info(self.sql.as_ref(), request).await)
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let schema = self.sql.schema_for(request).await?;
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::from(Error::Internal(e.to_string())))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        client_input(FlightService::do_get(self.sql.as_ref(), request).await)
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        client_input(FlightService::do_put(self.sql.as_ref(), request).await)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        client_input(FlightService::do_exchange(self.sql.as_ref(), request).await)
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        client_input(FlightService::do_action(self.sql.as_ref(), request).await)
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let all = FlightService::list_actions(self.sql.as_ref(), request).await?;
        let served = all.into_inner().filter(|a: &Result<ActionType, Status>| {
            let keep = a
                .as_ref()
                .map_or(true, |a| !UNSERVED_ACTIONS.contains(&a.r#type.as_str()));
            futures::future::ready(keep)
        });
        Ok(Response::new(served.boxed()))
    }
}
