//! A small Rust client of QuillDB's live queries: opens `SUBSCRIBE ...` over DoExchange and
//! reads its messages as `(SubscriptionEvent, Option<RecordBatch>)`. Used by the integration
//! tests, the benchmark and the CLI.
//!
//! Messages without rows carry an empty `data_header` (as Flight's metadata-only messages do),
//! so they are told apart here rather than by arrow-flight's decoder, which expects a batch.

use std::collections::HashMap;
use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightData, FlightDescriptor};
use futures::StreamExt;
use futures::stream::BoxStream;
use prost::Message;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::live::SubscriptionEvent;

/// One message of a subscription: its event and its rows, if any.
pub type LiveEvent = (SubscriptionEvent, Option<RecordBatch>);

/// An open subscription, read message by message. Dropping it ends the subscription.
pub struct LiveStream {
    stream: BoxStream<'static, Result<FlightData, tonic::Status>>,
    schema: Option<SchemaRef>,
    /// Keeps the client's side open.
    _requests: mpsc::Sender<FlightData>,
}

impl std::fmt::Debug for LiveStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveStream")
    }
}

/// Opens `sql` (`SUBSCRIBE ...`) on `channel`, as the holder of `token` (anonymous if `None`),
/// sending `params` as the parameter batch.
pub async fn subscribe(
    channel: Channel,
    token: Option<&str>,
    sql: &str,
    params: Option<RecordBatch>,
) -> std::result::Result<LiveStream, tonic::Status> {
    let (tx, mut rx) = mpsc::channel(4);
    let mut first = FlightData {
        flight_descriptor: Some(FlightDescriptor::new_cmd(sql.to_string())),
        ..Default::default()
    };
    let mut rest = Vec::new();
    if let Some(p) = params {
        let encoded = arrow_flight::utils::batches_to_flight_data(&p.schema(), vec![p])
            .map_err(|e| Error::InvalidArgument(format!("encoding the parameters: {e}")))?;
        let mut it = encoded.into_iter();
        if let Some(schema) = it.next() {
            first.data_header = schema.data_header;
            first.data_body = schema.data_body;
        }
        rest.extend(it);
    }
    let closed = || Error::Internal("the request queue closed".into());
    tx.send(first).await.map_err(|_| closed())?;
    for m in rest {
        tx.send(m).await.map_err(|_| closed())?;
    }
    let requests = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut req = tonic::Request::new(requests);
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| Error::InvalidArgument("the token is not a valid header".into()))?;
        req.metadata_mut().insert("authorization", value);
    }
    let resp = FlightServiceClient::new(channel).do_exchange(req).await?;
    Ok(LiveStream {
        stream: resp.into_inner().boxed(),
        schema: None,
        _requests: tx,
    })
}

impl LiveStream {
    async fn raw(&mut self, limit: Duration) -> Result<Option<FlightData>, tonic::Status> {
        match tokio::time::timeout(limit, self.stream.next()).await {
            Err(_) | Ok(None) => Ok(None),
            Ok(Some(item)) => item.map(Some),
        }
    }

    /// The schema, sent first (waiting at most `limit`).
    pub async fn schema_within(
        &mut self,
        limit: Duration,
    ) -> Result<Option<SchemaRef>, tonic::Status> {
        if let Some(s) = &self.schema {
            return Ok(Some(s.clone()));
        }
        let Some(data) = self.raw(limit).await? else {
            return Ok(None);
        };
        let schema = Schema::try_from(&data)
            .map_err(|e| Error::Internal(format!("the first message is not a schema: {e}")))?;
        let schema = SchemaRef::new(schema);
        self.schema = Some(schema.clone());
        Ok(Some(schema))
    }

    /// The next message, waiting at most `limit`; `None` when none came or the stream ended.
    pub async fn next_within(
        &mut self,
        limit: Duration,
    ) -> Result<Option<LiveEvent>, tonic::Status> {
        let Some(schema) = self.schema_within(limit).await? else {
            return Ok(None);
        };
        let Some(data) = self.raw(limit).await? else {
            return Ok(None);
        };
        let event = SubscriptionEvent::decode(data.app_metadata.clone())
            .map_err(|e| Error::Internal(format!("not a SubscriptionEvent: {e}")))?;
        if data.data_header.is_empty() {
            return Ok(Some((event, None)));
        }
        let batch = arrow_flight::utils::flight_data_to_arrow_batch(&data, schema, &HashMap::new())
            .map_err(|e| Error::Internal(format!("not a record batch: {e}")))?;
        Ok(Some((event, Some(batch))))
    }
}
