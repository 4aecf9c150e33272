//! The result schema and the DoGet stream. Both FlightInfo and DoGet take their schema from
//! [`result_schema`], and every batch is rebuilt against it, so the two can never differ.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::backend::BatchStream;
use crate::error::Error;

/// Largest FlightData message we send; larger batches are split.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// The wire form of a type: no view types, everything else as it is.
fn wire_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(Arc::new(wire_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(wire_field(f))),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| Arc::new(wire_field(f))).collect())
        }
        other => other.clone(),
    }
}

fn wire_field(f: &Field) -> Field {
    f.clone().with_data_type(wire_type(f.data_type()))
}

/// The schema a result is sent with, in FlightInfo and in DoGet alike.
pub fn result_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| wire_field(f))
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// Rebuilds a batch against the wire schema: casts view types away and takes the wire schema's
/// names, nullability and metadata.
pub fn to_wire(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Status> {
    if batch.num_columns() != schema.fields().len() {
        return Err(Status::from(Error::Internal(format!(
            "result has {} columns, its schema {}",
            batch.num_columns(),
            schema.fields().len()
        ))));
    }
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()
        .map_err(|e| Status::from(Error::Internal(format!("converting a result column: {e}"))))?;
    let opts = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), cols, &opts)
        .map_err(|e| Status::from(Error::Internal(format!("building a result batch: {e}"))))
}

/// The FlightData stream of a result: the schema first (even with no rows), then each batch.
pub fn flight_stream(
    schema: SchemaRef,
    batches: BatchStream,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>
{
    let wire = schema.clone();
    let batches = batches
        .and_then(move |b| {
            let wire = wire.clone();
            async move { to_wire(&b, &wire) }
        })
        .map_err(FlightError::from);
    FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MAX_MESSAGE_BYTES)
        .build(batches)
        .map_err(Status::from)
        .boxed()
}

/// A one-batch stream.
pub fn once(batch: RecordBatch) -> BatchStream {
    futures::stream::once(async move { Ok(batch) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;

    #[test]
    fn views_become_plain_types() {
        let s = Schema::new(vec![Field::new("a", DataType::Utf8View, false)]);
        let w = result_schema(&s);
        assert_eq!(w.field(0).data_type(), &DataType::Utf8);
        let b = RecordBatch::try_new(
            Arc::new(s),
            vec![Arc::new(StringViewArray::from(vec!["x"]))],
        )
        .unwrap();
        let out = to_wire(&b, &w).unwrap();
        assert_eq!(out.schema(), w);
    }
}
