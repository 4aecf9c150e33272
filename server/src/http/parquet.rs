//! `POST /v1/parquet`: an Arrow IPC stream in, the same rows as a Parquet file out. The console
//! downloads a result it already holds as Parquet without running its statement again (which
//! for a DML would write twice); the browser has no Parquet writer of its own.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use quilldb_flight::web::refuse;
use tonic::Status;

use super::{HttpState, bearer};

/// The largest upload: a result the console holds in memory anyway.
pub(super) const MAX_UPLOAD_BYTES: usize = 256 << 20;

fn to_parquet(ipc: &[u8]) -> Result<Vec<u8>, String> {
    let reader = StreamReader::try_new(Cursor::new(ipc), None)
        .map_err(|e| format!("the body is not an Arrow IPC stream: {e}"))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), reader.schema(), Some(props))
        .map_err(|e| format!("this schema cannot be written as Parquet: {e}"))?;
    for batch in reader {
        let batch = batch.map_err(|e| format!("the body holds a bad batch: {e}"))?;
        writer
            .write(&batch)
            .map_err(|e| format!("writing Parquet: {e}"))?;
    }
    writer
        .into_inner()
        .map_err(|e| format!("ending the Parquet file: {e}"))
}

/// Converts the body, for a caller with a token.
pub(super) async fn convert(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(status) = bearer(&s, &headers) {
        return refuse(&status);
    }
    match tokio::task::spawn_blocking(move || to_parquet(&body)).await {
        Ok(Ok(file)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/vnd.apache.parquet"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"result.parquet\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            file,
        )
            .into_response(),
        Ok(Err(why)) => refuse(&Status::invalid_argument(why)),
        Err(e) => refuse(&Status::internal(format!("converting to Parquet: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn a_stream_becomes_the_same_rows_in_parquet() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("body", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .unwrap();
        let mut ipc = Vec::new();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        let file = to_parquet(&ipc).unwrap();
        let back: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, vec![batch]);
        assert!(
            to_parquet(b"not arrow")
                .unwrap_err()
                .contains("not an Arrow IPC")
        );
    }
}
