//! Helpers of the crate's unit tests: a hot store in a temp folder and row writes of a
//! two-column table `(id BIGINT id 1, v TEXT id 2)`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::codec::encode_rows;
use crate::hot::{Durability, HotOptions, HotStore, RowOp, WriteMode, WriteRequest};
use crate::keys::{PartitionKey, pk};

/// The table's columns: stable id and field.
pub(crate) fn fields() -> Vec<(u32, Field)> {
    vec![
        (1, Field::new("id", DataType::Int64, false)),
        (2, Field::new("v", DataType::Utf8, true)),
    ]
}

/// A hot store under `dir`.
pub(crate) fn open_hot(dir: &std::path::Path) -> HotStore {
    HotStore::open(&HotOptions {
        path: dir.join("hot"),
        node_id: 1,
        durability: Durability::Sync,
        block_cache_bytes: 8 << 20,
    })
    .unwrap()
}

/// One write of rows `ids` with `v = "{tag}{id}"`.
pub(crate) fn writes(
    part: &Arc<PartitionKey>,
    ids: &[i64],
    tag: &str,
    mode: WriteMode,
) -> WriteRequest {
    let schema = Arc::new(Schema::new(
        fields().into_iter().map(|(_, f)| f).collect::<Vec<_>>(),
    ));
    let values: Vec<String> = ids.iter().map(|i| format!("{tag}{i}")).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(values)),
        ],
    )
    .unwrap();
    let rows = encode_rows(&batch, &[1, 2]).unwrap();
    WriteRequest {
        rows: ids
            .iter()
            .zip(rows)
            .map(|(id, row)| RowOp {
                partition: part.clone(),
                pk: pk::int(*id),
                row: Some(row),
                mode,
                live_from: 0,
            })
            .collect(),
        ..Default::default()
    }
}
