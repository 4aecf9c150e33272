//! Subscriptions over a WebSocket at `GET /v1/subscriptions`: the browser's DoExchange.
//!
//! The client sends text messages: `Bearer <token>` (unless the upgrade request carried an
//! `authorization` header), then the `SUBSCRIBE TO ...` text, then, if that text has `$n`
//! placeholders, one binary message holding an Arrow IPC stream with a one-row batch of their
//! values. The server answers binary messages, one per DoExchange FlightData: a little-endian
//! u32 length, that many bytes of serialized `SubscriptionEvent` (the FlightData's
//! `app_metadata`; none for the first message), then the FlightData as one encapsulated Arrow
//! IPC message (the schema first, then a record batch for INITIAL and CHANGE events). A
//! subscription that cannot open answers one ERROR event whose `code` is the gRPC code name.
//! Closing the socket ends the subscription.

use std::time::{Duration, Instant};

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::{EncodedData, IpcWriteOptions, write_message};
use arrow_flight::FlightData;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use tonic::{Code, Status};

use super::{Web, code_name, refuse};
use crate::auth::{Credentials, credentials};
use crate::backend::Backend;
use crate::error::Error;
use crate::live::{
    EventKind, SubscribeRequest, SubscriptionEvent, frames, has_placeholder, is_subscribe,
};

/// How long the server waits for each of the client's opening messages.
const OPENING_WAIT: Duration = Duration::from_secs(10);

/// The upgrade: refused for a page of another origin, and for a bad token in the header.
pub(super) async fn subscribe<B: Backend>(
    State(web): State<Web<B>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !web.origin_allowed(&headers) {
        return refuse(&Status::permission_denied(
            "subscriptions from a page of another origin are refused: list its origin in \
             server.cors_allowed_origins",
        ));
    }
    let caller = match credentials(&headers) {
        Ok(Credentials::None) => None,
        Ok(_) => match web.caller(&headers).await {
            Ok(c) => Some(c),
            Err(status) => return refuse(&status),
        },
        Err(status) => return refuse(&status),
    };
    upgrade.on_upgrade(move |socket| session(web, socket, caller))
}

async fn session<B: Backend>(web: Web<B>, mut socket: WebSocket, caller: Option<B::Caller>) {
    let started = Instant::now();
    let subscription = match open(&web, &mut socket, caller).await {
        Ok(s) => s,
        Err(status) => {
            web.observe("WebSubscribe", status.code(), started);
            let _ = socket
                .send(Message::Binary(error_frame(&status).into()))
                .await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    web.observe("WebSubscribe", Code::Ok, started);
    let (mut outbound, mut inbound) = socket.split();
    let mut messages = frames(subscription).boxed();
    loop {
        tokio::select! {
            next = messages.next() => {
                let bytes = match next {
                    Some(Ok(data)) => frame(&data.app_metadata.clone(), Some(data)),
                    Some(Err(status)) => error_frame(&status),
                    None => break,
                };
                if outbound.send(Message::Binary(bytes.into())).await.is_err() {
                    // The page went away: dropping the stream ends the subscription.
                    return;
                }
            }
            received = inbound.next() => match received {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = outbound.send(Message::Close(None)).await;
}

/// Reads the opening messages and opens the subscription.
async fn open<B: Backend>(
    web: &Web<B>,
    socket: &mut WebSocket,
    caller: Option<B::Caller>,
) -> Result<crate::live::Subscription, Status> {
    let caller = match caller {
        Some(c) => c,
        None => {
            let text = next_text(socket, "`Bearer <token>`").await?;
            let token = text.strip_prefix("Bearer ").ok_or_else(|| {
                Status::from(Error::Unauthenticated(
                    "the first message must be `Bearer <token>` (POST /v1/login answers one)"
                        .into(),
                ))
            })?;
            web.sql.backend().resume(token.trim()).await?
        }
    };
    let sql = next_text(socket, "the SUBSCRIBE TO ... text").await?;
    if !is_subscribe(&sql) {
        return Err(Status::from(Error::InvalidArgument(
            "send SUBSCRIBE TO ... text: other statements go to POST /v1/statements".into(),
        )));
    }
    let params = if has_placeholder(&sql) {
        Some(parameters(socket).await?)
    } else {
        None
    };
    web.sql
        .subscribe(&caller, SubscribeRequest { sql, params })
        .await
}

/// The next message, as text.
async fn next_text(socket: &mut WebSocket, what: &str) -> Result<String, Status> {
    loop {
        let received = tokio::time::timeout(OPENING_WAIT, socket.recv())
            .await
            .map_err(|_| {
                Status::from(Error::InvalidArgument(format!(
                    "nothing came within 10 s: send {what} as a text message"
                )))
            })?;
        match received {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(_)) => {
                return Err(Status::from(Error::InvalidArgument(format!(
                    "expected {what} as a text message"
                ))));
            }
            Some(Err(_)) | None => {
                return Err(Status::cancelled("the client closed the socket"));
            }
        }
    }
}

/// The parameter batch: one binary message holding an Arrow IPC stream with one row.
async fn parameters(socket: &mut WebSocket) -> Result<arrow::record_batch::RecordBatch, Status> {
    let invalid = |why: String| Status::from(Error::InvalidArgument(why));
    let received = tokio::time::timeout(OPENING_WAIT, socket.recv())
        .await
        .map_err(|_| {
            invalid(
                "the subscription has $n placeholders and no parameter batch came within 10 s"
                    .into(),
            )
        })?;
    let Some(Ok(Message::Binary(bytes))) = received else {
        return Err(invalid(
            "the subscription has $n placeholders: send their values as a binary message \
             holding an Arrow IPC stream with one row"
                .into(),
        ));
    };
    let mut reader =
        StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).map_err(|e| {
            invalid(format!(
                "the parameter batch is not an Arrow IPC stream: {e}"
            ))
        })?;
    match reader.next() {
        Some(Ok(batch)) => crate::params::check(&batch).map(|()| batch),
        Some(Err(e)) => Err(invalid(format!(
            "the parameter batch is not valid Arrow: {e}"
        ))),
        None => Err(invalid("the parameter stream holds no batch".into())),
    }
}

/// An ERROR event whose code is the gRPC code name.
fn error_frame(status: &Status) -> Vec<u8> {
    let event = SubscriptionEvent {
        kind: EventKind::Error as i32,
        code: code_name(status.code()).into(),
        message: status.message().into(),
        ..SubscriptionEvent::default()
    };
    frame(&event.encode_to_vec(), None)
}

/// One server message: the event's length and bytes, then the IPC message, if any.
fn frame(event: &[u8], data: Option<FlightData>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + event.len() + 64);
    out.extend_from_slice(&(event.len() as u32).to_le_bytes());
    out.extend_from_slice(event);
    if let Some(data) = data.filter(|d| !d.data_header.is_empty()) {
        let encoded = EncodedData {
            ipc_message: data.data_header.to_vec(),
            arrow_data: data.data_body.to_vec(),
        };
        // Writing into a Vec cannot fail.
        let _ = write_message(&mut out, encoded, &IpcWriteOptions::default());
    }
    out
}
