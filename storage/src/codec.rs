//! The row codec. A row is a sequence of `(column id, tagged value)` pairs; NULL columns are left
//! out. Column ids are the catalog's stable ids, so a row written under an older schema decodes
//! under a newer one: dropped columns are skipped, added ones read as NULL, renames change nothing.
//!
//! ```text
//! row   := pair*
//! pair  := col_id:varint tag:u8 value
//! value := bool:u8 | i16 LE | i32 LE | i64 LE | f32 LE | f64 LE | i128 LE | len:varint bytes
//! ```
//! Decoding appends straight into Arrow builders: no intermediate value objects.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float32Array, Float32Builder, Float64Array,
    Float64Builder, Int8Array, Int8Builder, Int16Array, Int16Builder, Int32Array, Int32Builder,
    Int64Array, Int64Builder, LargeBinaryArray, LargeStringArray, StringArray, StringBuilder,
    Time64MicrosecondArray, Time64MicrosecondBuilder, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::{Error, Result};

const TAG_BOOL: u8 = 0;
const TAG_I8: u8 = 1;
const TAG_I16: u8 = 2;
const TAG_I32: u8 = 3;
const TAG_I64: u8 = 4;
const TAG_F32: u8 = 5;
const TAG_F64: u8 = 6;
const TAG_I128: u8 = 7;
const TAG_BYTES: u8 = 8;

/// Appends `v` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*pos`, advancing it.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| Error::corrupt("varint", "truncated"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(Error::corrupt("varint", "too long"));
        }
    }
}

/// Whether the codec can store columns of this type.
pub fn is_supported(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Date32
            | DataType::Time64(TimeUnit::Microsecond)
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    )
}

/// A typed view of one input column, downcast once per batch.
enum ColRef<'a> {
    Bool(&'a BooleanArray),
    I8(&'a Int8Array),
    I16(&'a Int16Array),
    I32(&'a Int32Array),
    I64(&'a Int64Array),
    F32(&'a Float32Array),
    F64(&'a Float64Array),
    Dec(&'a Decimal128Array),
    Str(&'a StringArray),
    LStr(&'a LargeStringArray),
    Bin(&'a BinaryArray),
    LBin(&'a LargeBinaryArray),
    Date(&'a Date32Array),
    Time(&'a Time64MicrosecondArray),
    Ts(&'a TimestampMicrosecondArray),
}

fn downcast<T: 'static>(a: &dyn Array) -> Result<&T> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::UnsupportedType(a.data_type().to_string()))
}

impl<'a> ColRef<'a> {
    fn new(a: &'a dyn Array) -> Result<Self> {
        Ok(match a.data_type() {
            DataType::Boolean => Self::Bool(downcast(a)?),
            DataType::Int8 => Self::I8(downcast(a)?),
            DataType::Int16 => Self::I16(downcast(a)?),
            DataType::Int32 => Self::I32(downcast(a)?),
            DataType::Int64 => Self::I64(downcast(a)?),
            DataType::Float32 => Self::F32(downcast(a)?),
            DataType::Float64 => Self::F64(downcast(a)?),
            DataType::Decimal128(_, _) => Self::Dec(downcast(a)?),
            DataType::Utf8 => Self::Str(downcast(a)?),
            DataType::LargeUtf8 => Self::LStr(downcast(a)?),
            DataType::Binary => Self::Bin(downcast(a)?),
            DataType::LargeBinary => Self::LBin(downcast(a)?),
            DataType::Date32 => Self::Date(downcast(a)?),
            DataType::Time64(TimeUnit::Microsecond) => Self::Time(downcast(a)?),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Self::Ts(downcast(a)?),
            other => return Err(Error::UnsupportedType(other.to_string())),
        })
    }

    fn write(&self, row: usize, out: &mut Vec<u8>) {
        match self {
            Self::Bool(a) => {
                out.push(TAG_BOOL);
                out.push(u8::from(a.value(row)));
            }
            Self::I8(a) => {
                out.push(TAG_I8);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::I16(a) => {
                out.push(TAG_I16);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::I32(a) => {
                out.push(TAG_I32);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::Date(a) => {
                out.push(TAG_I32);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::I64(a) => {
                out.push(TAG_I64);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::Time(a) => {
                out.push(TAG_I64);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::Ts(a) => {
                out.push(TAG_I64);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::F32(a) => {
                out.push(TAG_F32);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::F64(a) => {
                out.push(TAG_F64);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::Dec(a) => {
                out.push(TAG_I128);
                out.extend_from_slice(&a.value(row).to_le_bytes());
            }
            Self::Str(a) => put_bytes(out, a.value(row).as_bytes()),
            Self::LStr(a) => put_bytes(out, a.value(row).as_bytes()),
            Self::Bin(a) => put_bytes(out, a.value(row)),
            Self::LBin(a) => put_bytes(out, a.value(row)),
        }
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.push(TAG_BYTES);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes every row of `batch`; `col_ids[i]` is the stable id of the batch's column `i`.
pub fn encode_rows(batch: &RecordBatch, col_ids: &[u32]) -> Result<Vec<Vec<u8>>> {
    let cols = batch
        .columns()
        .iter()
        .map(|c| ColRef::new(c.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let arrays = batch.columns();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut out = Vec::with_capacity(16 * cols.len());
        for (i, col) in cols.iter().enumerate() {
            if arrays[i].is_null(row) {
                continue;
            }
            put_varint(&mut out, u64::from(col_ids[i]));
            col.write(row, &mut out);
        }
        rows.push(out);
    }
    Ok(rows)
}

enum Builder {
    Bool(BooleanBuilder),
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Dec(Decimal128Builder, u8, i8),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
}

impl Builder {
    fn new(dt: &DataType, cap: usize) -> Result<Self> {
        Ok(match dt {
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(cap)),
            DataType::Int8 => Self::I8(Int8Builder::with_capacity(cap)),
            DataType::Int16 => Self::I16(Int16Builder::with_capacity(cap)),
            DataType::Int32 => Self::I32(Int32Builder::with_capacity(cap)),
            DataType::Int64 => Self::I64(Int64Builder::with_capacity(cap)),
            DataType::Float32 => Self::F32(Float32Builder::with_capacity(cap)),
            DataType::Float64 => Self::F64(Float64Builder::with_capacity(cap)),
            DataType::Decimal128(p, s) => Self::Dec(Decimal128Builder::with_capacity(cap), *p, *s),
            DataType::Utf8 => Self::Str(StringBuilder::with_capacity(cap, cap * 16)),
            DataType::Binary => Self::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            DataType::Date32 => Self::Date(Date32Builder::with_capacity(cap)),
            DataType::Time64(TimeUnit::Microsecond) => {
                Self::Time(Time64MicrosecondBuilder::with_capacity(cap))
            }
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Self::Ts(TimestampMicrosecondBuilder::with_capacity(cap), tz.clone())
            }
            other => return Err(Error::UnsupportedType(other.to_string())),
        })
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::I8(b) => b.append_null(),
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Dec(b, _, _) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Bin(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Ts(b, _) => b.append_null(),
        }
    }

    /// Appends the value at `buf[*pos..]` with `tag`, advancing `pos`.
    fn append(&mut self, tag: u8, buf: &[u8], pos: &mut usize) -> Result<()> {
        let mismatch = || Error::corrupt("row", format!("value tag {tag} does not fit its column"));
        match (self, tag) {
            (Self::Bool(b), TAG_BOOL) => b.append_value(take::<1>(buf, pos)?[0] != 0),
            (Self::I8(b), TAG_I8) => b.append_value(i8::from_le_bytes(take(buf, pos)?)),
            (Self::I16(b), TAG_I16) => b.append_value(i16::from_le_bytes(take(buf, pos)?)),
            (Self::I32(b), TAG_I32) => b.append_value(i32::from_le_bytes(take(buf, pos)?)),
            (Self::Date(b), TAG_I32) => b.append_value(i32::from_le_bytes(take(buf, pos)?)),
            (Self::I64(b), TAG_I64) => b.append_value(i64::from_le_bytes(take(buf, pos)?)),
            (Self::Time(b), TAG_I64) => b.append_value(i64::from_le_bytes(take(buf, pos)?)),
            (Self::Ts(b, _), TAG_I64) => b.append_value(i64::from_le_bytes(take(buf, pos)?)),
            (Self::F32(b), TAG_F32) => b.append_value(f32::from_le_bytes(take(buf, pos)?)),
            (Self::F64(b), TAG_F64) => b.append_value(f64::from_le_bytes(take(buf, pos)?)),
            (Self::Dec(b, _, _), TAG_I128) => b.append_value(i128::from_le_bytes(take(buf, pos)?)),
            (Self::Str(b), TAG_BYTES) => {
                let bytes = take_bytes(buf, pos)?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| Error::corrupt("row", "text value is not UTF-8"))?;
                b.append_value(s);
            }
            (Self::Bin(b), TAG_BYTES) => b.append_value(take_bytes(buf, pos)?),
            _ => return Err(mismatch()),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::I8(b) => Arc::new(b.finish()),
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Dec(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Bin(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
        })
    }
}

/// Skips the value at `buf[*pos..]` with `tag`.
fn skip(tag: u8, buf: &[u8], pos: &mut usize) -> Result<()> {
    let width = match tag {
        TAG_BOOL | TAG_I8 => 1,
        TAG_I16 => 2,
        TAG_I32 | TAG_F32 => 4,
        TAG_I64 | TAG_F64 => 8,
        TAG_I128 => 16,
        TAG_BYTES => get_varint(buf, pos)? as usize,
        other => return Err(Error::corrupt("row", format!("unknown value tag {other}"))),
    };
    // A corrupt length may be any u64: no addition may overflow.
    match pos.checked_add(width) {
        Some(end) if end <= buf.len() => {
            *pos = end;
            Ok(())
        }
        _ => Err(Error::corrupt("row", "truncated value")),
    }
}

fn take<const N: usize>(buf: &[u8], pos: &mut usize) -> Result<[u8; N]> {
    let end = pos.saturating_add(N);
    let bytes: [u8; N] = buf
        .get(*pos..end)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Error::corrupt("row", "truncated value"))?;
    *pos = end;
    Ok(bytes)
}

fn take_bytes<'b>(buf: &'b [u8], pos: &mut usize) -> Result<&'b [u8]> {
    let len = get_varint(buf, pos)? as usize;
    let bytes = pos
        .checked_add(len)
        .and_then(|end| buf.get(*pos..end))
        .ok_or_else(|| Error::corrupt("row", "truncated bytes"))?;
    let end = *pos + bytes.len();
    *pos = end;
    Ok(bytes)
}

/// Decodes encoded rows into Arrow arrays for a chosen list of columns.
pub struct RowDecoder {
    /// `slot[col_id]` is the output column of that id, if projected.
    slot: Vec<Option<usize>>,
    builders: Vec<Builder>,
    seen: Vec<bool>,
    rows: usize,
}

impl RowDecoder {
    /// A decoder producing `columns` (stable id and Arrow type), in that order.
    pub fn new(columns: &[(u32, DataType)], capacity: usize) -> Result<Self> {
        let max_id = columns
            .iter()
            .map(|(id, _)| *id as usize)
            .max()
            .unwrap_or(0);
        let mut slot = vec![None; max_id + 1];
        let mut builders = Vec::with_capacity(columns.len());
        for (i, (id, dt)) in columns.iter().enumerate() {
            slot[*id as usize] = Some(i);
            builders.push(Builder::new(dt, capacity)?);
        }
        Ok(Self {
            slot,
            seen: vec![false; builders.len()],
            builders,
            rows: 0,
        })
    }

    /// Appends one encoded row.
    pub fn push(&mut self, row: &[u8]) -> Result<()> {
        self.seen.fill(false);
        let mut pos = 0;
        while pos < row.len() {
            let id = get_varint(row, &mut pos)? as usize;
            let tag = *row
                .get(pos)
                .ok_or_else(|| Error::corrupt("row", "missing tag"))?;
            pos += 1;
            match self.slot.get(id).copied().flatten() {
                Some(out) if !self.seen[out] => {
                    self.builders[out].append(tag, row, &mut pos)?;
                    self.seen[out] = true;
                }
                _ => skip(tag, row, &mut pos)?,
            }
        }
        for (b, seen) in self.builders.iter_mut().zip(&self.seen) {
            if !seen {
                b.append_null();
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows appended since the last [`RowDecoder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The pending rows as arrays, one per requested column; the decoder starts over.
    pub fn finish(&mut self) -> Result<Vec<ArrayRef>> {
        self.rows = 0;
        self.builders.iter_mut().map(Builder::finish).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn round_trip_with_nulls_and_schema_change() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("d", DataType::Decimal128(10, 2), true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![i64::MAX, -3])),
                Arc::new(StringArray::from(vec![Some("héllo"), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_700_000_000_000_001), None])
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), Some(-1)])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let rows = encode_rows(&batch, &[1, 2, 3, 4]).unwrap();
        // Read back name, d and a column 9 that did not exist when the rows were written.
        let mut dec = RowDecoder::new(
            &[
                (4, DataType::Decimal128(10, 2)),
                (2, DataType::Utf8),
                (9, DataType::Int32),
            ],
            2,
        )
        .unwrap();
        for r in &rows {
            dec.push(r).unwrap();
        }
        let cols = dec.finish().unwrap();
        let d = cols[0]
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .unwrap_or_else(|| panic!());
        assert_eq!(d.value(0), 12345);
        assert_eq!(d.value(1), -1);
        let n = cols[1]
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap_or_else(|| panic!());
        assert_eq!(n.value(0), "héllo");
        assert!(n.is_null(1));
        assert_eq!(cols[2].null_count(), 2);
    }

    #[test]
    fn truncated_rows_are_errors_not_panics() {
        let mut dec = RowDecoder::new(&[(1, DataType::Utf8)], 1).unwrap();
        assert!(dec.push(&[1, TAG_BYTES, 10, b'a']).is_err());
        assert!(dec.push(&[1, TAG_I64, 1]).is_err());
    }
}
