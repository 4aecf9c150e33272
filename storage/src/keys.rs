//! Key layout. Every table, whatever its kind, lives in the same two column families, so that
//! thousands of tables cost nothing extra:
//!
//! ```text
//! rows CF: [table_id u64 BE][partition_len u8][partition][seq u64 BE]  -> [kind][pk_len varint][pk][row]
//! pk   CF: [table_id u64 BE][partition_len u8][partition][pk bytes]    -> [seq u64 BE][kind]
//! meta CF: utf-8 keys ("catalog/...", "seq_hwm")                      -> bytes
//! ```
//! The partition is empty for SHARED tables and the user id for USER and STREAM tables, so that one
//! user's rows are one contiguous range. Within a partition, rows sort by `_seq`, which is also the
//! order of a plain SELECT, and a STREAM table's expired rows are one range at its start.

use crate::{Error, Result};

/// Length of the `[table_id][partition_len][partition]` prefix for a partition name.
fn prefix_len(partition: &[u8]) -> usize {
    9 + partition.len()
}

/// The key prefix of one partition of one table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey(Vec<u8>);

impl PartitionKey {
    /// The partition `partition` (empty for shared tables) of table `table_id`.
    /// Partition names are at most 255 bytes: user ids are at most 64 characters.
    pub fn new(table_id: u64, partition: &[u8]) -> Result<Self> {
        let len = u8::try_from(partition.len())
            .map_err(|_| Error::corrupt("partition", "partition names are at most 255 bytes"))?;
        let mut k = Vec::with_capacity(prefix_len(partition));
        k.extend_from_slice(&table_id.to_be_bytes());
        k.push(len);
        k.extend_from_slice(partition);
        Ok(Self(k))
    }

    /// The prefix of every partition of a table.
    pub fn table_prefix(table_id: u64) -> Vec<u8> {
        table_id.to_be_bytes().to_vec()
    }

    /// The raw prefix bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The partition name (empty for SHARED tables, the user id for USER and STREAM tables).
    pub fn name(&self) -> &[u8] {
        &self.0[9..]
    }

    /// The table id.
    pub fn table_id(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// Key of the row version with `seq`.
    pub fn row_key(&self, seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.0.len() + 8);
        k.extend_from_slice(&self.0);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// Key of the primary-key index entry for `pk`.
    pub fn pk_key(&self, pk: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.0.len() + pk.len());
        k.extend_from_slice(&self.0);
        k.extend_from_slice(pk);
        k
    }
}

/// The smallest key strictly greater than every key starting with `prefix`, if any.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Order-preserving encodings of primary-key values: byte order equals value order.
pub mod pk {
    /// A signed integer key.
    pub fn int(v: i64) -> Vec<u8> {
        ((v as u64) ^ (1 << 63)).to_be_bytes().to_vec()
    }

    /// Decodes [`int`].
    pub fn decode_int(b: &[u8]) -> Option<i64> {
        let arr: [u8; 8] = b.try_into().ok()?;
        Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
    }

    /// A text or binary key: the bytes themselves (a key is the last part of its index key).
    pub fn bytes(v: &[u8]) -> Vec<u8> {
        v.to_vec()
    }

    /// The key column of `keys` (as [`encode_array`] made them), of type `dt`.
    pub fn decode_array(
        keys: &[&[u8]],
        dt: &arrow::datatypes::DataType,
    ) -> crate::Result<arrow::array::ArrayRef> {
        use std::sync::Arc;

        use arrow::array::{BinaryArray, Int16Array, Int32Array, Int64Array, StringArray};
        use arrow::datatypes::DataType;
        let ints = || {
            keys.iter()
                .map(|k| decode_int(k).ok_or_else(|| crate::Error::corrupt("key", "not 8 bytes")))
                .collect::<crate::Result<Vec<i64>>>()
        };
        let narrow = |v: i64| crate::Error::corrupt("key", format!("{v} out of range"));
        Ok(match dt {
            DataType::Int16 => Arc::new(Int16Array::from(
                ints()?
                    .into_iter()
                    .map(|v| i16::try_from(v).map_err(|_| narrow(v)))
                    .collect::<crate::Result<Vec<_>>>()?,
            )),
            DataType::Int32 => Arc::new(Int32Array::from(
                ints()?
                    .into_iter()
                    .map(|v| i32::try_from(v).map_err(|_| narrow(v)))
                    .collect::<crate::Result<Vec<_>>>()?,
            )),
            DataType::Int64 => Arc::new(Int64Array::from(ints()?)),
            DataType::Utf8 => Arc::new(StringArray::from(
                keys.iter()
                    .map(|k| {
                        std::str::from_utf8(k)
                            .map_err(|_| crate::Error::corrupt("key", "not UTF-8"))
                    })
                    .collect::<crate::Result<Vec<_>>>()?,
            )),
            DataType::Binary => Arc::new(BinaryArray::from(keys.to_vec())),
            other => return Err(crate::Error::UnsupportedType(other.to_string())),
        })
    }

    /// Key bytes of every row of a key column (which holds no NULLs).
    pub fn encode_array(a: &arrow::array::ArrayRef) -> crate::Result<Vec<Vec<u8>>> {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type};
        if a.null_count() > 0 {
            return Err(crate::Error::corrupt(
                "key",
                "the primary key cannot be NULL",
            ));
        }
        Ok(match a.data_type() {
            DataType::Int16 => a
                .as_primitive::<Int16Type>()
                .values()
                .iter()
                .map(|v| int(i64::from(*v)))
                .collect(),
            DataType::Int32 => a
                .as_primitive::<Int32Type>()
                .values()
                .iter()
                .map(|v| int(i64::from(*v)))
                .collect(),
            DataType::Int64 => a
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|v| int(*v))
                .collect(),
            DataType::Utf8 => a
                .as_string::<i32>()
                .iter()
                .map(|v| bytes(v.unwrap_or_default().as_bytes()))
                .collect(),
            DataType::Binary => a
                .as_binary::<i32>()
                .iter()
                .map(|v| bytes(v.unwrap_or_default()))
                .collect(),
            other => return Err(crate::Error::UnsupportedType(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_keys_sort_like_numbers() {
        let vals = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let enc: Vec<_> = vals.iter().map(|v| pk::int(*v)).collect();
        let mut sorted = enc.clone();
        sorted.sort();
        assert_eq!(enc, sorted);
        for v in vals {
            assert_eq!(pk::decode_int(&pk::int(v)), Some(v));
        }
    }

    #[test]
    fn prefix_end_is_exclusive_bound() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255]), None);
    }

    #[test]
    fn partitions_do_not_overlap() {
        let a = PartitionKey::new(1, b"ab").unwrap();
        let b = PartitionKey::new(1, b"a").unwrap();
        assert!(!a.as_bytes().starts_with(b.as_bytes()));
        assert_eq!(a.table_id(), 1);
    }
}
