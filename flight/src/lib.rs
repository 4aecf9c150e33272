//! QuillDB's Flight SQL protocol layer.
//!
//! This crate does not know the database: it speaks Flight SQL on one side and calls a
//! [`Backend`] on the other, which the server implements.
//!
//! ```text
//!  client ──gRPC──► auth::AuthService ──► service::QuillFlightSql ──► Backend::run / execute
//!                   (Basic→Bearer,          (commands, tickets,          (catalog, SQL,
//!                    x-request-id)           prepared handles)            DataFusion, stores)
//!                                                  │
//!                                                  ▼
//!                                  encode::result_schema + encode::flight_stream
//!                                  (one schema for FlightInfo and DoGet, no view types)
//!
//!  errors: error::Error ─► one From<Error> for tonic::Status
//!  client::subscribe ──DoExchange──► live (SUBSCRIBE framing) ──► Backend::subscribe
//! ```

/// HTTP-level authentication and request ids around the Flight service.
pub mod auth;
/// The trait the database implements, and the values crossing it.
pub mod backend;
/// A Rust client of live queries over DoExchange.
pub mod client;
/// Query limits and cancellation.
pub mod control;
/// Wire schemas and the DoGet stream.
pub mod encode;
/// The gRPC Flight service: Flight SQL dispatch plus GetSchema and ListActions.
pub mod endpoint;
/// The Flight layer's errors and their gRPC codes.
pub mod error;
/// Live queries over DoExchange: framing and the `SubscriptionEvent` message.
pub mod live;
/// Parameter batches: the types the planner can take.
pub mod params;
/// The `FlightSqlService` implementation.
pub mod service;
/// Session-option messages.
pub mod session;
/// Tickets and prepared-statement handles.
pub mod tickets;
/// The browser API on the HTTP port: login, statements as Arrow IPC, the catalog, WebSocket
/// subscriptions.
pub mod web;

pub use auth::{AuthLayer, CallAuth, CallObserver, InFlight, panic_message};
pub use backend::{
    Backend, BatchStream, CallerInfo, IngestTarget, Outcome, PreparedInfo, ServerInfo, TableEntry,
};
pub use control::QueryLimits;
pub use endpoint::QuillFlightService;
pub use error::{Error, Result};
pub use live::{EventKind, LiveMessage, SubscribeRequest, Subscription, SubscriptionEvent};
pub use service::{QuillFlightSql, ServiceOptions};

/// The one Flight SQL catalog.
pub const CATALOG: &str = "quill";
