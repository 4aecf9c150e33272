//! Primary-key values to the hot store's order-preserving key bytes.

use arrow::array::{Array, ArrayRef};
use arrow::util::display::array_value_to_string;
use datafusion::common::ScalarValue;
use quilldb_storage::keys::pk;

use crate::error::{Error, Result};

/// Key bytes of a scalar; `None` for NULL.
pub fn encode_pk_scalar(v: &ScalarValue) -> Result<Option<Vec<u8>>> {
    Ok(match v {
        ScalarValue::Int16(v) => v.map(|v| pk::int(i64::from(v))),
        ScalarValue::Int32(v) => v.map(|v| pk::int(i64::from(v))),
        ScalarValue::Int64(v) => v.map(pk::int),
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_ref().map(|s| pk::bytes(s.as_bytes()))
        }
        ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => {
            v.as_ref().map(|b| pk::bytes(b))
        }
        other => {
            return Err(Error::Internal(format!(
                "primary key of type {} cannot be encoded",
                other.data_type()
            )));
        }
    })
}

/// Key bytes of every row of a key column (which has no NULLs: checked before).
pub fn encode_pk_array(a: &ArrayRef) -> Result<Vec<Vec<u8>>> {
    if a.null_count() > 0 {
        return Err(Error::InvalidArgument(
            "the primary key cannot be NULL".into(),
        ));
    }
    pk::encode_array(a).map_err(|e| Error::Internal(format!("primary key: {e}")))
}

/// A key as the duplicate-key error shows it.
pub fn display_key(a: &ArrayRef, row: usize) -> String {
    array_value_to_string(a, row).unwrap_or_else(|_| "?".into())
}
