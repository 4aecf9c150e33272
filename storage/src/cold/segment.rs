//! One Parquet segment: the table's columns (each tagged with its stable column id as the
//! Parquet field id) plus `_seq` and `_deleted`, rows in `_seq` order, zstd.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, RecordBatchOptions,
    new_null_array,
};
use arrow::compute::{filter_record_batch, max, max_string, min, min_string};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Schema, SchemaRef, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{
    ArrowWriter, PARQUET_FIELD_ID_META_KEY, ParquetRecordBatchStreamBuilder, ProjectionMask,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::Statistics;
use serde_json::Value;

use super::{ColdStore, ColumnStats, SegmentMeta};
use crate::hot::{DELETED_COLUMN, Overlay, SEQ_COLUMN};
use crate::{Error, Result};

/// Rows per Parquet row group: the unit a point lookup decodes.
/// Small enough that a lookup, which finds its row group by `_seq` statistics, decodes little;
/// large enough that scans stream batches of full size.
const ROW_GROUP_ROWS: usize = 8 * 1024;
/// Rows per data page: a point lookup decodes the pages that can hold its version (by the
/// `_seq` column's page index), not its whole row group.
const PAGE_ROWS: usize = 1024;

/// Builds one segment in memory from batches of `[columns..., _seq, _deleted]`.
pub struct SegmentWriter {
    ids: Vec<u32>,
    names: Vec<String>,
    schema: SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
    stats: Vec<Stats>,
    rows: u64,
    deleted: u64,
    min_seq: u64,
    max_seq: u64,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentWriter({} rows)", self.rows)
    }
}

impl SegmentWriter {
    /// A writer for batches whose first columns have the stable ids `ids`, followed by `_seq`
    /// and `_deleted`.
    pub fn new(input: &Schema, ids: &[u32]) -> Result<Self> {
        let mut fields = Vec::with_capacity(input.fields().len());
        for (i, f) in input.fields().iter().enumerate() {
            let mut f = Field::new(f.name(), f.data_type().clone(), f.is_nullable());
            if let Some(id) = ids.get(i) {
                f = f.with_metadata(
                    [(PARQUET_FIELD_ID_META_KEY.to_string(), id.to_string())].into(),
                );
            }
            fields.push(f);
        }
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(1).map_err(|e| Error::parquet("segment", e))?,
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_data_page_row_count_limit(PAGE_ROWS)
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
            .map_err(|e| Error::parquet("segment", e))?;
        Ok(Self {
            ids: ids.to_vec(),
            names: input.fields().iter().map(|f| f.name().clone()).collect(),
            stats: vec![Stats::default(); ids.len()],
            schema,
            writer,
            rows: 0,
            deleted: 0,
            min_seq: u64::MAX,
            max_seq: 0,
        })
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends a batch (rows in `_seq` order, after those already written).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = self.ids.len();
        let seqs = batch
            .column(n)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| Error::corrupt("segment", "_seq is not BIGINT"))?;
        if let (Some(lo), Some(hi)) = (min(seqs), max(seqs)) {
            self.min_seq = self.min_seq.min(lo as u64);
            self.max_seq = self.max_seq.max(hi as u64);
        }
        let deleted = batch.column(n + 1).as_boolean();
        self.deleted += deleted.true_count() as u64;
        for (i, s) in self.stats.iter_mut().enumerate() {
            s.add(batch.column(i));
        }
        self.rows += batch.num_rows() as u64;
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::parquet("segment", e))
    }

    /// The file bytes and its manifest entry (the caller names the file).
    pub fn finish(
        self,
        path: String,
        schema_version: u32,
        now: i64,
    ) -> Result<(Bytes, SegmentMeta)> {
        let bytes = self
            .writer
            .into_inner()
            .map_err(|e| Error::parquet(&path, e))?;
        let mut stats = BTreeMap::new();
        for ((id, name), s) in self.ids.iter().zip(&self.names).zip(self.stats) {
            stats.insert(
                name.clone(),
                ColumnStats {
                    id: *id,
                    min: s.min,
                    max: s.max,
                    nulls: s.nulls,
                },
            );
        }
        let meta = SegmentMeta {
            path,
            min_seq: self.min_seq,
            max_seq: self.max_seq,
            rows: self.rows,
            deleted: self.deleted,
            bytes: bytes.len() as u64,
            schema_version,
            created_at: now,
            stats,
        };
        Ok((Bytes::from(bytes), meta))
    }
}

/// Running min, max and null count of one column, as manifest values.
#[derive(Debug, Clone, Default)]
struct Stats {
    min: Value,
    max: Value,
    nulls: u64,
    unsupported: bool,
}

impl Stats {
    fn add(&mut self, a: &ArrayRef) {
        self.nulls += a.null_count() as u64;
        if self.unsupported {
            return;
        }
        let (lo, hi): (Value, Value) = match a.data_type() {
            DataType::Int16 => num(
                min(a.as_primitive::<Int16Type>()),
                max(a.as_primitive::<Int16Type>()),
            ),
            DataType::Int32 => num(
                min(a.as_primitive::<Int32Type>()),
                max(a.as_primitive::<Int32Type>()),
            ),
            DataType::Int64 => num(
                min(a.as_primitive::<Int64Type>()),
                max(a.as_primitive::<Int64Type>()),
            ),
            DataType::Date32 => num(
                min(a.as_primitive::<Date32Type>()),
                max(a.as_primitive::<Date32Type>()),
            ),
            DataType::Time64(TimeUnit::Microsecond) => num(
                min(a.as_primitive::<Time64MicrosecondType>()),
                max(a.as_primitive::<Time64MicrosecondType>()),
            ),
            DataType::Timestamp(TimeUnit::Microsecond, _) => num(
                min(a.as_primitive::<TimestampMicrosecondType>()),
                max(a.as_primitive::<TimestampMicrosecondType>()),
            ),
            DataType::Float32 => float(
                min(a.as_primitive::<Float32Type>()).map(f64::from),
                max(a.as_primitive::<Float32Type>()).map(f64::from),
            ),
            DataType::Float64 => float(
                min(a.as_primitive::<Float64Type>()),
                max(a.as_primitive::<Float64Type>()),
            ),
            DataType::Decimal128(_, _) => (
                min(a.as_primitive::<Decimal128Type>())
                    .map_or(Value::Null, |v| Value::String(v.to_string())),
                max(a.as_primitive::<Decimal128Type>())
                    .map_or(Value::Null, |v| Value::String(v.to_string())),
            ),
            DataType::Utf8 => (
                min_string(a.as_string::<i32>()).map_or(Value::Null, |v| Value::String(v.into())),
                max_string(a.as_string::<i32>()).map_or(Value::Null, |v| Value::String(v.into())),
            ),
            _ => {
                self.unsupported = true;
                return;
            }
        };
        self.min = pick(&self.min, lo, true);
        self.max = pick(&self.max, hi, false);
    }
}

fn num<T: Into<Value>>(lo: Option<T>, hi: Option<T>) -> (Value, Value) {
    (
        lo.map_or(Value::Null, Into::into),
        hi.map_or(Value::Null, Into::into),
    )
}

fn float(lo: Option<f64>, hi: Option<f64>) -> (Value, Value) {
    // NaN has no JSON form: such a column gets no bounds.
    let v = |x: Option<f64>| {
        x.and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    };
    (v(lo), v(hi))
}

/// The smaller (or greater) of two manifest values of one column type.
fn pick(old: &Value, new: Value, smaller: bool) -> Value {
    let ord = match (old, &new) {
        (Value::Null, _) => return new,
        (_, Value::Null) => return old.clone(),
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => a
                .as_f64()
                .partial_cmp(&b.as_f64())
                .unwrap_or(std::cmp::Ordering::Equal),
        },
        (Value::String(a), Value::String(b)) => match (a.parse::<i128>(), b.parse::<i128>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => a.cmp(b),
        },
        _ => std::cmp::Ordering::Equal,
    };
    let keep_old = if smaller { ord.is_le() } else { ord.is_ge() };
    if keep_old { old.clone() } else { new }
}

/// What to read from one segment.
#[derive(Debug)]
pub struct SegmentRead<'a> {
    /// Output columns: stable id and output field. A column missing from the file (added
    /// later) reads as NULL.
    pub columns: &'a [(u32, Field)],
    /// Whether `_seq` follows the columns.
    pub with_seq: bool,
    /// Only versions with `min_seq <= _seq <= max_seq`.
    pub min_seq: u64,
    /// See `min_seq`.
    pub max_seq: u64,
    /// Point lookups: only these versions.
    pub seqs: Option<&'a HashSet<u64>>,
    /// Versions replaced or deleted since they were flushed.
    pub deleted: &'a HashSet<u64>,
    /// Row groups left after statistics pruning (`None`: all).
    pub row_groups: Option<Vec<usize>>,
    /// A transaction's pending rows and the key column's id: rows with those keys are skipped.
    pub overlay: Option<(u32, &'a Overlay)>,
    /// Rows per batch.
    pub batch_size: usize,
    /// Compaction: keep tombstones with `_seq` at or above this and add `_deleted` after
    /// `_seq`.
    pub tombstones_from: Option<u64>,
}

impl SegmentRead<'_> {
    /// The schema of the batches produced.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(|(_, f)| f.clone()).collect();
        if self.with_seq || self.tombstones_from.is_some() {
            fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
        }
        if self.tombstones_from.is_some() {
            fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
        }
        Arc::new(Schema::new(fields))
    }
}

fn field_id(f: &Field) -> Option<u32> {
    f.metadata().get(PARQUET_FIELD_ID_META_KEY)?.parse().ok()
}

fn seq_bounds(stats: Option<&Statistics>) -> Option<(u64, u64)> {
    match stats? {
        Statistics::Int64(s) => Some((*s.min_opt()? as u64, *s.max_opt()? as u64)),
        _ => None,
    }
}

/// The rows of one segment, batch by batch (see [`ColdStore::open_segment`]).
pub struct SegmentStream {
    /// The segment and its storage, for errors.
    path: String,
    stream: ParquetRecordBatchStream<super::reader::ObjectReader>,
    out_schema: SchemaRef,
    /// Per output column, its position in the projected batches (`None`: added later).
    columns: Vec<Option<usize>>,
    seq_pos: usize,
    del_pos: usize,
    pk_pos: Option<usize>,
    whole: bool,
}

impl std::fmt::Debug for SegmentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentStream({})", self.path)
    }
}

impl ColdStore {
    /// Opens one segment for the rows `read` asks for, or `None` when statistics rule out
    /// every row group (the file is then not opened at all).
    pub async fn open_segment(
        &self,
        folder: &Path,
        seg: &SegmentMeta,
        read: &SegmentRead<'_>,
    ) -> Result<Option<SegmentStream>> {
        let path = folder.clone().join(seg.path.as_str());
        let meta = self.footer(folder, seg).await?;
        let file_schema = meta.schema().clone();
        let index_of = |name: &str| {
            file_schema
                .index_of(name)
                .map_err(|_| Error::corrupt("segment", format!("{path} has no {name}")))
        };
        let seq_idx = index_of(SEQ_COLUMN)?;
        let del_idx = index_of(DELETED_COLUMN)?;
        let by_id: Vec<Option<usize>> = read
            .columns
            .iter()
            .map(|(id, _)| {
                file_schema
                    .fields()
                    .iter()
                    .position(|f| field_id(f) == Some(*id))
            })
            .collect();
        let pk_idx = match read.overlay {
            Some((id, o)) if !o.rows.is_empty() => file_schema
                .fields()
                .iter()
                .position(|f| field_id(f) == Some(id)),
            _ => None,
        };

        // Row groups: those statistics left, narrowed by `_seq`.
        let parquet_meta = meta.metadata().clone();
        let mut groups = Vec::new();
        for (i, rg) in parquet_meta.row_groups().iter().enumerate() {
            if let Some(sel) = &read.row_groups
                && !sel.contains(&i)
            {
                continue;
            }
            if let Some((lo, hi)) = seq_bounds(rg.column(seq_idx).statistics()) {
                if hi < read.min_seq || lo > read.max_seq {
                    continue;
                }
                if let Some(s) = read.seqs
                    && !s.iter().any(|q| *q >= lo && *q <= hi)
                {
                    continue;
                }
            }
            groups.push(i);
        }
        if groups.is_empty() {
            return Ok(None);
        }

        let mut roots: Vec<usize> = by_id.iter().flatten().copied().collect();
        roots.extend([seq_idx, del_idx]);
        roots.extend(pk_idx);
        roots.sort_unstable();
        roots.dedup();
        let mask = ProjectionMask::roots(
            parquet_meta.file_metadata().schema_descr(),
            roots.iter().copied(),
        );
        // Positions of file columns inside the projected batches.
        let pos = |file_idx: usize| roots.iter().position(|r| *r == file_idx);

        let reader =
            super::reader::ObjectReader::new(self.object_store().clone(), path.clone(), seg.bytes);
        let selection = read
            .seqs
            .and_then(|seqs| seq_pages(&parquet_meta, &groups, seq_idx, seqs));
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
            .with_projection(mask)
            .with_row_groups(groups)
            .with_batch_size(read.batch_size);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let path = format!("{path} in storage {}", self.name());
        let stream = builder.build().map_err(|e| Error::parquet(&path, e))?;
        let out_schema = read.schema();
        let whole = seg.deleted == 0
            && read.deleted.is_empty()
            && read.seqs.is_none()
            && pk_idx.is_none()
            && read.min_seq <= seg.min_seq
            && read.max_seq >= seg.max_seq;
        let corrupt = || Error::corrupt("segment", format!("{path}: projection"));
        Ok(Some(SegmentStream {
            columns: by_id.iter().map(|i| i.and_then(pos)).collect(),
            seq_pos: pos(seq_idx).ok_or_else(corrupt)?,
            del_pos: pos(del_idx).ok_or_else(corrupt)?,
            pk_pos: pk_idx.and_then(pos),
            path,
            stream,
            out_schema,
            whole,
        }))
    }
}

/// The rows of `groups` that lie on pages of the `_seq` column (at `seq_idx`) whose bounds can
/// hold one of `seqs`; `None` when the file has no page index to tell (all rows are read).
fn seq_pages(
    meta: &ParquetMetaData,
    groups: &[usize],
    seq_idx: usize,
    seqs: &HashSet<u64>,
) -> Option<RowSelection> {
    let offsets = meta.offset_index()?;
    let bounds = meta.column_index()?;
    let mut selectors = Vec::new();
    for &g in groups {
        let rows = usize::try_from(meta.row_group(g).num_rows()).ok()?;
        let pages = offsets.get(g)?.get(seq_idx)?.page_locations();
        let ColumnIndexMetaData::INT64(index) = bounds.get(g)?.get(seq_idx)? else {
            return None;
        };
        for (p, page) in pages.iter().enumerate() {
            let start = usize::try_from(page.first_row_index).ok()?;
            let end = match pages.get(p + 1) {
                Some(next) => usize::try_from(next.first_row_index).ok()?,
                None => rows,
            };
            let holds = match (index.min_value(p), index.max_value(p)) {
                (Some(lo), Some(hi)) => seqs
                    .iter()
                    .any(|q| i64::try_from(*q).is_ok_and(|q| q >= *lo && q <= *hi)),
                _ => true,
            };
            selectors.push(if holds {
                RowSelector::select(end - start)
            } else {
                RowSelector::skip(end - start)
            });
        }
    }
    Some(RowSelection::from(selectors))
}

impl SegmentStream {
    /// The next non-empty batch of live, wanted rows.
    pub async fn next(&mut self, read: &SegmentRead<'_>) -> Result<Option<RecordBatch>> {
        loop {
            let Some(batch) = self
                .stream
                .try_next()
                .await
                .map_err(|e| Error::parquet(&self.path, e))?
            else {
                return Ok(None);
            };
            // Drop what is not wanted before the batch takes the output schema: a tombstone
            // holds NULL in columns that are NOT NULL in the table.
            let batch = if self.whole {
                batch
            } else {
                let seqs = self.seqs_of(&batch)?;
                let keep = keep_mask(
                    &seqs,
                    batch.column(self.del_pos).as_boolean(),
                    read,
                    self.pk_pos.map(|p| batch.column(p)),
                )?;
                filter_record_batch(&batch, &keep)?
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let seqs = self.seqs_of(&batch)?;
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.out_schema.fields().len());
            for (i, (_, f)) in read.columns.iter().enumerate() {
                cols.push(match self.columns.get(i).copied().flatten() {
                    Some(p) => batch.column(p).clone(),
                    None => new_null_array(f.data_type(), batch.num_rows()),
                });
            }
            if read.with_seq || read.tombstones_from.is_some() {
                cols.push(Arc::new(seqs));
            }
            if read.tombstones_from.is_some() {
                cols.push(batch.column(self.del_pos).clone());
            }
            let opts = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            let out = RecordBatch::try_new_with_options(self.out_schema.clone(), cols, &opts)?;
            if out.num_rows() > 0 {
                return Ok(Some(out));
            }
        }
    }
}

impl SegmentStream {
    fn seqs_of(&self, batch: &RecordBatch) -> Result<Int64Array> {
        Ok(batch
            .column(self.seq_pos)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| Error::corrupt("segment", format!("{}: _seq is not BIGINT", self.path)))?
            .clone())
    }
}

/// Which rows of a batch are live, wanted and not shadowed.
fn keep_mask(
    seqs: &Int64Array,
    deleted: &BooleanArray,
    read: &SegmentRead<'_>,
    keys: Option<&ArrayRef>,
) -> Result<BooleanArray> {
    let shadow: Option<Vec<Vec<u8>>> = match (keys, read.overlay) {
        (Some(k), Some(_)) => Some(crate::keys::pk::encode_array(k)?),
        _ => None,
    };
    Ok(seqs
        .values()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = *s as u64;
            let kept_tombstone = read.tombstones_from.is_some_and(|floor| s >= floor);
            let live = (!deleted.value(i) || kept_tombstone) && !read.deleted.contains(&s);
            let wanted =
                s >= read.min_seq && s <= read.max_seq && read.seqs.is_none_or(|w| w.contains(&s));
            let shadowed = match (&shadow, read.overlay) {
                (Some(k), Some((_, o))) => o.rows.contains_key(&k[i]),
                _ => false,
            };
            Some(live && wanted && !shadowed)
        })
        .collect())
}
