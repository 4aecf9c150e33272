//! Columns added after rows were written. `ALTER TABLE ... ADD COLUMN c ... DEFAULT x` never
//! rewrites stored rows: versions written before the ALTER (at or below its `_seq` bound) hold
//! no value for `c` and read `x`; versions written after it hold what was written, NULL
//! included. Every reader gets this from [`super::read::TableRead`] or, for decoded change
//! rows, from [`Fills::apply`].

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use arrow::compute::kernels::cmp::lt_eq;
use arrow::compute::{and, is_null};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::catalog::types::cast_column;
use crate::catalog::{DefaultExpr, TableDef};
use crate::error::{Error, Result};

/// One added column of a read.
#[derive(Debug, Clone)]
struct Fill {
    /// Its position in the batch.
    at: usize,
    /// Versions at or below this `_seq` were written before the column existed.
    before: u64,
    value: ScalarValue,
}

/// The added columns with a constant default among the columns of a read.
#[derive(Debug, Clone, Default)]
pub struct Fills(Arc<Vec<Fill>>);

impl Fills {
    /// The fills of a read of `columns` (stable ids, in the batch's order) of `def`.
    pub fn new(def: &TableDef, columns: &[u32]) -> Self {
        let fills = columns
            .iter()
            .enumerate()
            .filter_map(|(at, id)| {
                let c = def.columns.iter().find(|c| c.id == *id)?;
                let before = c.fill_before?;
                let Some(DefaultExpr::Literal(Some(v))) = &c.default else {
                    return None;
                };
                let text = Arc::new(StringArray::from(vec![v.clone()])) as ArrayRef;
                let a = cast_column(&text, &c.name, c.ty).ok()?;
                let value = ScalarValue::try_from_array(&a, 0).ok()?;
                Some(Fill { at, before, value })
            })
            .collect();
        Self(Arc::new(fills))
    }

    /// Whether no column needs filling (a read then needs no `_seq` for it).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives the rows of `batch` written before each added column its default; `seq` is the
    /// position of the batch's `_seq` column.
    pub fn apply(&self, batch: RecordBatch, seq: usize) -> Result<RecordBatch> {
        if self.0.is_empty() || batch.num_rows() == 0 {
            return Ok(batch);
        }
        let seqs = seq_column(&batch, seq)?.clone();
        let mut cols = batch.columns().to_vec();
        for fill in self.0.iter() {
            let bound = Int64Array::new_scalar(fill.before as i64);
            let before: BooleanArray = lt_eq(&seqs, &bound)?;
            let mask = and(&is_null(&cols[fill.at])?, &before)?;
            if mask.true_count() == 0 {
                continue;
            }
            let filled = fill.value.to_array_of_size(batch.num_rows())?;
            cols[fill.at] = arrow::compute::kernels::zip::zip(&mask, &filled, &cols[fill.at])?;
        }
        Ok(RecordBatch::try_new(batch.schema(), cols)?)
    }
}

/// The `_seq` column of `batch`, at position `at`.
pub fn seq_column(batch: &RecordBatch, at: usize) -> Result<&Int64Array> {
    batch
        .column(at)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Internal("_seq is not BIGINT".into()))
}
