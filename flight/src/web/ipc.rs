//! Arrow IPC stream bodies. A result is one IPC stream: the schema (from
//! [`crate::encode::result_schema`], as in FlightInfo and DoGet), its batches, the end marker.
//! A failure after the first batch appends a second IPC stream whose schema metadata has
//! `quilldb.error` = `1` and whose one row holds the gRPC code name and the message, then breaks
//! the body off: a reader of the first stream alone sees a failed transfer, never a short
//! result that looks complete.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tonic::Status;

use super::{ARROW_STREAM, code_name};
use crate::backend::{BatchStream, TableEntry};
use crate::encode::to_wire;
use crate::error::Error;

/// The schema metadata key that marks an error stream.
pub const ERROR_METADATA: &str = "quilldb.error";

/// The field metadata key of a column's SQL type.
const TYPE_NAME: &str = "ARROW:FLIGHT:SQL:TYPE_NAME";

fn internal(what: &str, e: impl std::fmt::Display) -> Status {
    Status::from(Error::Internal(format!("{what}: {e}")))
}

/// One IPC stream holding `batches`, as bytes.
pub(crate) fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, Status> {
    let mut w =
        StreamWriter::try_new(Vec::new(), schema).map_err(|e| internal("encoding a schema", e))?;
    for b in batches {
        w.write(b).map_err(|e| internal("encoding a batch", e))?;
    }
    w.finish().map_err(|e| internal("ending a stream", e))?;
    w.into_inner().map_err(|e| internal("ending a stream", e))
}

/// The error stream that ends a failed result.
fn error_stream(status: &Status) -> Vec<u8> {
    let schema = Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("code", DataType::Utf8, false),
            Field::new("message", DataType::Utf8, false),
        ],
        [(ERROR_METADATA.to_string(), "1".to_string())].into(),
    ));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![code_name(status.code())])),
        Arc::new(StringArray::from(vec![status.message()])),
    ];
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| internal("building the error row", e))
        .and_then(|b| encode(&schema, &[b]))
        .unwrap_or_default()
}

enum State {
    Streaming(Box<StreamWriter<Vec<u8>>>, BatchStream),
    Failed(String),
    Done,
}

/// The body of a result: `first` (already read, to choose the status) and the rest.
pub(super) fn body(
    schema: SchemaRef,
    first: Option<Result<RecordBatch, Status>>,
    rest: BatchStream,
) -> Body {
    let batches = futures::stream::iter(first).chain(rest).boxed();
    let start = match StreamWriter::try_new(Vec::new(), &schema) {
        Ok(w) => State::Streaming(Box::new(w), batches),
        Err(e) => State::Failed(format!("encoding the result schema: {e}")),
    };
    let stream = futures::stream::unfold(start, move |state| {
        let schema = schema.clone();
        async move {
            match state {
                State::Streaming(mut w, mut batches) => {
                    let written = match batches.next().await {
                        Some(Ok(b)) => to_wire(&b, &schema)
                            .and_then(|b| w.write(&b).map_err(|e| internal("encoding a batch", e))),
                        Some(Err(e)) => Err(e),
                        None => {
                            let last = match w.finish() {
                                Ok(()) => Ok(Bytes::from(std::mem::take(w.get_mut()))),
                                Err(e) => Err(std::io::Error::other(format!(
                                    "ending the result stream: {e}"
                                ))),
                            };
                            return Some((last, State::Done));
                        }
                    };
                    let mut bytes = std::mem::take(w.get_mut());
                    match written {
                        Ok(()) => Some((Ok(Bytes::from(bytes)), State::Streaming(w, batches))),
                        Err(status) => {
                            // What was encoded, the end of the result, then the error.
                            if w.finish().is_ok() {
                                bytes.append(w.get_mut());
                            }
                            bytes.extend(error_stream(&status));
                            let failed = State::Failed(status.message().to_string());
                            Some((Ok(Bytes::from(bytes)), failed))
                        }
                    }
                }
                State::Failed(message) => {
                    // The server drops what it has not written when a body fails: give it a
                    // turn to send the error stream first.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::other(format!(
                            "the result failed after its first rows: {message}"
                        ))),
                        State::Done,
                    ))
                }
                State::Done => None,
            }
        }
    });
    Body::from_stream(stream)
}

/// A 200 answer carrying an IPC stream body.
pub(super) fn response(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, ARROW_STREAM),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// The catalog as one batch: a row per column (a table without columns the caller can read
/// has one row with null column fields), ordered by namespace, table and position.
pub(super) fn catalog(tables: &[TableEntry]) -> Result<RecordBatch, Status> {
    let mut entries: Vec<&TableEntry> = tables.iter().collect();
    entries.sort_by(|a, b| (&a.schema_name, &a.table_name).cmp(&(&b.schema_name, &b.table_name)));
    let mut namespace = Vec::new();
    let mut table = Vec::new();
    let mut kind = Vec::new();
    let mut column: Vec<Option<String>> = Vec::new();
    let mut data_type: Vec<Option<String>> = Vec::new();
    let mut nullable: Vec<Option<bool>> = Vec::new();
    let mut primary_key: Vec<Option<bool>> = Vec::new();
    for t in entries {
        let mut row = |c: Option<String>, ty: Option<String>, n: Option<bool>, pk: Option<bool>| {
            namespace.push(t.schema_name.clone());
            table.push(t.table_name.clone());
            kind.push(t.kind.clone());
            column.push(c);
            data_type.push(ty);
            nullable.push(n);
            primary_key.push(pk);
        };
        if t.schema.fields().is_empty() {
            row(None, None, None, None);
        }
        for f in t.schema.fields() {
            let ty = f
                .metadata()
                .get(TYPE_NAME)
                .cloned()
                .unwrap_or_else(|| f.data_type().to_string());
            let pk = t.primary_key.as_deref() == Some(f.name().as_str());
            row(
                Some(f.name().clone()),
                Some(ty),
                Some(f.is_nullable()),
                Some(pk),
            );
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("namespace", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("table_type", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, true),
        Field::new("data_type", DataType::Utf8, true),
        Field::new("is_nullable", DataType::Boolean, true),
        Field::new("is_primary_key", DataType::Boolean, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(namespace)),
        Arc::new(StringArray::from(table)),
        Arc::new(StringArray::from(kind)),
        Arc::new(StringArray::from(column)),
        Arc::new(StringArray::from(data_type)),
        Arc::new(BooleanArray::from(nullable)),
        Arc::new(BooleanArray::from(primary_key)),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| internal("building the catalog", e))
}
