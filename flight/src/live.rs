//! Live queries over DoExchange: the `SubscriptionEvent` of `proto/subscription.proto` and the
//! framing of spec/flight.md. The client's first message names the subscription (`SUBSCRIBE TO
//! ...` as the descriptor's command); if it has placeholders, a schema and a one-row batch
//! follow with their values. The server answers the schema, then one FlightData per event, its
//! `app_metadata` the serialized event, with rows for INITIAL and CHANGE.

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightData, SchemaAsIpc};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Status, Streaming};

use crate::encode::{result_schema, to_wire};
use crate::error::Error;

/// `SubscriptionEvent` of `proto/subscription.proto`.
#[derive(Clone, PartialEq, Message)]
pub struct SubscriptionEvent {
    /// What this message is.
    #[prost(enumeration = "EventKind", tag = "1")]
    pub kind: i32,
    /// The live id, as in system.live_queries and KILL LIVE QUERY.
    #[prost(string, tag = "2")]
    pub subscription_id: String,
    /// The greatest `_seq` delivered so far.
    #[prost(int64, tag = "3")]
    pub last_seq: i64,
    /// CLOSED / ERROR: why.
    #[prost(string, tag = "4")]
    pub code: String,
    /// Human-readable.
    #[prost(string, tag = "5")]
    pub message: String,
}

/// `SubscriptionEvent.Kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventKind {
    /// Subscribed; the snapshot follows.
    Ack = 0,
    /// Snapshot rows.
    Initial = 1,
    /// The snapshot is complete.
    InitialDone = 2,
    /// Changes committed after the snapshot.
    Change = 3,
    /// The server ended the subscription (see `code`).
    Closed = 4,
    /// The subscription failed (see `code`).
    Error = 5,
    /// Nothing happened for a while.
    Heartbeat = 6,
}

/// One message of a subscription, as the backend produces it.
#[derive(Debug, Clone)]
pub struct LiveMessage {
    /// What it is.
    pub kind: EventKind,
    /// Rows, for INITIAL and CHANGE.
    pub batch: Option<RecordBatch>,
    /// The rows already encoded by [`encode_rows`] (shared between subscriptions that send the
    /// same rows); `None` encodes `batch` here.
    pub encoded: Option<FlightData>,
    /// The greatest `_seq` delivered so far, this message included.
    pub last_seq: i64,
    /// CLOSED / ERROR reason.
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

impl LiveMessage {
    /// A message without rows.
    pub fn event(kind: EventKind, last_seq: i64) -> Self {
        Self {
            kind,
            batch: None,
            encoded: None,
            last_seq,
            code: String::new(),
            message: String::new(),
        }
    }

    /// A CLOSED or ERROR message.
    pub fn end(kind: EventKind, last_seq: i64, code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            ..Self::event(kind, last_seq)
        }
    }
}

/// An open subscription: its id, its row schema and its messages (ACK first, CLOSED or ERROR
/// last). Dropping the stream ends the subscription.
pub struct Subscription {
    /// The live id.
    pub id: String,
    /// The schema of its batches.
    pub schema: SchemaRef,
    /// The messages.
    pub messages: BoxStream<'static, LiveMessage>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({})", self.id)
    }
}

/// What the client's first messages ask for.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// The `SUBSCRIBE TO ...` text.
    pub sql: String,
    /// The values of `$1..$n`, if the client sent a batch.
    pub params: Option<RecordBatch>,
}

/// How long the server waits for the parameter batch of a subscription with placeholders.
const PARAMS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the command of the first message, and the parameter batch if the text has
/// placeholders.
pub async fn read_request(
    first: FlightData,
    inbound: &mut Streaming<FlightData>,
) -> Result<SubscribeRequest, Status> {
    let descriptor = first.flight_descriptor.clone().ok_or_else(|| {
        Status::from(Error::InvalidArgument(
            "DoExchange: the first message must carry a FlightDescriptor".into(),
        ))
    })?;
    let sql = String::from_utf8(descriptor.cmd.to_vec()).map_err(|_| {
        Status::from(Error::InvalidArgument(
            "DoExchange: the command must be UTF-8 SUBSCRIBE TO ... text".into(),
        ))
    })?;
    if !is_subscribe(&sql) {
        return Err(Status::from(Error::InvalidArgument(
            "DoExchange serves subscriptions only: send SUBSCRIBE TO ... as the command".into(),
        )));
    }
    if !has_placeholder(&sql) {
        return Ok(SubscribeRequest { sql, params: None });
    }
    // Schema then one batch; the schema may ride on the first message.
    let mut messages = Vec::new();
    if !first.data_header.is_empty() {
        messages.push(first);
    }
    while messages.len() < 2 {
        let next = tokio::time::timeout(PARAMS_WAIT, inbound.message())
            .await
            .map_err(|_| {
                Status::from(Error::InvalidArgument(
                    "the subscription has $n placeholders and no parameter batch came within \
                     10 s: send their values as a one-row batch after the command"
                        .into(),
                ))
            })?;
        match next? {
            Some(m) if m.data_header.is_empty() && m.data_body.is_empty() => continue,
            Some(m) => messages.push(m),
            None => {
                return Err(Status::from(Error::InvalidArgument(
                    "the subscription has $n placeholders: send their values as a one-row batch"
                        .into(),
                )));
            }
        }
    }
    let batches = arrow_flight::utils::flight_data_to_batches(&messages).map_err(|e| {
        Status::from(Error::InvalidArgument(format!(
            "the parameter batch is not valid Arrow: {e}"
        )))
    })?;
    let params = batches.into_iter().next().ok_or_else(|| {
        Status::from(Error::InvalidArgument(
            "the parameter message holds no batch".into(),
        ))
    })?;
    crate::params::check(&params)?;
    Ok(SubscribeRequest {
        sql,
        params: Some(params),
    })
}

/// Whether SQL text is a `SUBSCRIBE ...` statement.
pub(crate) fn is_subscribe(sql: &str) -> bool {
    sql.trim_start()
        .get(..9)
        .is_some_and(|w| w.eq_ignore_ascii_case("SUBSCRIBE"))
}

/// Whether SQL text uses `$n` placeholders outside string literals.
pub(crate) fn has_placeholder(sql: &str) -> bool {
    let mut quoted = false;
    let b = sql.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match c {
            b'\'' => quoted = !quoted,
            b'$' if !quoted && b.get(i + 1).is_some_and(u8::is_ascii_digit) => return true,
            _ => {}
        }
    }
    false
}

/// A batch of a subscription whose schema is `schema`, as the FlightData it travels in (no
/// `app_metadata` yet): the one encoding path of subscription rows.
pub fn encode_rows(schema: &SchemaRef, batch: &RecordBatch) -> Result<FlightData, Status> {
    let wire = result_schema(schema);
    let b = to_wire(batch, &wire)?;
    let (_, encoded) = IpcDataGenerator::default()
        .encode(
            &b,
            &mut DictionaryTracker::new(false),
            &IpcWriteOptions::default(),
            &mut IpcWriteContext::default(),
        )
        .map_err(|e| Status::from(Error::Internal(format!("encoding a change batch: {e}"))))?;
    Ok(FlightData::from(encoded))
}

/// The server's side of the exchange: the schema message, then one FlightData per event.
pub fn frames(
    sub: Subscription,
) -> impl Stream<Item = Result<FlightData, Status>> + Send + 'static {
    let wire = result_schema(&sub.schema);
    let options = IpcWriteOptions::default();
    let schema_message: FlightData = SchemaAsIpc::new(&wire, &options).into();
    let id = sub.id;
    let schema = sub.schema;
    let events = sub.messages.map(move |m| {
        let event = SubscriptionEvent {
            kind: m.kind as i32,
            subscription_id: id.clone(),
            last_seq: m.last_seq,
            code: m.code,
            message: m.message,
        };
        let mut data = match (m.encoded, &m.batch) {
            (Some(encoded), _) => encoded,
            (None, Some(b)) => encode_rows(&schema, b)?,
            (None, None) => FlightData::default(),
        };
        data.app_metadata = event.encode_to_vec().into();
        Ok(data)
    });
    futures::stream::once(async move { Ok(schema_message) }).chain(events)
}
