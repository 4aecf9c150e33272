//! The flushed segments of one manifest as DataFusion's own Parquet scan: file groups in `_seq`
//! order over the cores, footers from the storage's cache, columns matched by stable column id
//! (the Parquet field id), and the scan's filters pushed where their meaning allows. What it
//! reads is filtered to live versions by `VersionFilterExec` (the scan module).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{ColumnStatistics, DFSchema, Result as DfResult, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileMetrics, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_expr_adapter::{PhysicalExprAdapter, PhysicalExprAdapterFactory};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use quilldb_storage::cold::{Manifest, SegmentFileReader, SegmentMeta};
use quilldb_storage::hot::{DELETED_COLUMN, SEQ_COLUMN};
use quilldb_storage::merge::ColdSource;

use crate::catalog::TableDef;

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The schema DataFusion's Parquet scan reads segments through: every column of the table
/// under its current name, tagged with its stable id (the field id in the files) and nullable
/// (tombstones carry only their key), then `_seq` and `_deleted`.
pub fn segment_table_schema(def: &TableDef) -> SchemaRef {
    let mut fields: Vec<Field> = def
        .columns
        .iter()
        .map(|c| {
            Field::new(c.name.clone(), c.ty.arrow(), true)
                .with_metadata([(PARQUET_FIELD_ID_META_KEY.to_string(), c.id.to_string())].into())
        })
        .collect();
    fields.push(Field::new(SEQ_COLUMN, DataType::Int64, false));
    fields.push(Field::new(DELETED_COLUMN, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// What a cold scan reads: the segments of one manifest, and which columns.
pub struct ColdScan<'a> {
    /// The table.
    pub def: &'a Arc<TableDef>,
    /// The partition's folder.
    pub source: &'a ColdSource,
    /// The manifest whose segments are read.
    pub manifest: Arc<Manifest>,
    /// The segments to read (pruned by statistics and `_seq` range), in `_seq` order.
    pub segments: Vec<SegmentMeta>,
    /// Positions of the table's columns to read.
    pub columns: &'a [usize],
    /// The scan's filters (pushed into the Parquet scan where their meaning allows).
    pub filters: &'a [Expr],
    /// Whether a lean read (the columns alone) may serve: no column to fill, `_seq` not asked.
    pub lean: bool,
}

/// Filters whose meaning is the same on a segment's stored values: none names a column added
/// with a default (stored rows from before the ALTER hold NULL there and read the default).
pub fn stored_value_filters(def: &TableDef, filters: &[Expr]) -> Vec<Expr> {
    let filled: Vec<&str> = def
        .columns
        .iter()
        .filter(|c| c.fill_before.is_some())
        .map(|c| c.name.as_str())
        .collect();
    filters
        .iter()
        .filter(|f| {
            f.column_refs()
                .iter()
                .all(|c| !filled.contains(&c.name.as_str()))
        })
        .cloned()
        .collect()
}

impl ColdScan<'_> {
    /// DataFusion's Parquet scan of the segments: batches of the asked columns, `_seq` and
    /// `_deleted`, each partition a run of segments (or parts of one) in `_seq` order.
    pub async fn plan(self, state: &dyn Session) -> DfResult<ColdPlans> {
        let store = &self.source.store;
        let url = storage_url(store.name())?;
        state
            .runtime_env()
            .register_object_store(url.as_ref(), store.object_store().clone());
        let table_schema = segment_table_schema(self.def);
        let mut readers = HashMap::new();
        for seg in &self.segments {
            let reader = store
                .segment_file(&self.source.folder, seg)
                .await
                .map_err(external)?;
            readers.insert(
                self.source
                    .folder
                    .clone()
                    .join(seg.path.as_str())
                    .to_string(),
                reader,
            );
        }
        let table_options = datafusion::config::TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..Default::default()
        };
        let mut source = ParquetSource::new(table_schema.clone())
            .with_table_parquet_options(table_options)
            .with_parquet_file_reader_factory(Arc::new(SegmentReaders(readers)));
        let pushed = stored_value_filters(self.def, self.filters);
        if let Some(predicate) = conjunction(pushed) {
            let df_schema = DFSchema::try_from(table_schema.as_ref().clone())?;
            if let Ok(p) = state.create_physical_expr(predicate, &df_schema) {
                source = source.with_predicate(p);
            }
        }
        let seq_at = self.def.columns.len();
        let mut projection = self.columns.to_vec();
        projection.extend([seq_at, seq_at + 1]);
        // As DataFusion splits files: no group smaller than `repartition_file_min_size`, so a
        // small table stays one partition.
        let total: u64 = self.segments.iter().map(|s| s.bytes).sum();
        let min_size = state
            .config_options()
            .optimizer
            .repartition_file_min_size
            .max(1) as u64;
        let target = state
            .config()
            .target_partitions()
            .min(total.div_ceil(min_size) as usize)
            .max(1);
        let (groups, facts) = file_groups(
            &self.source.folder,
            &self.segments,
            target,
            table_schema.fields().len(),
            seq_at,
        );
        let ordering = LexOrdering::new([PhysicalSortExpr::new_default(Arc::new(Column::new(
            SEQ_COLUMN, seq_at,
        )))]);
        // The whole scan's figures, from the manifest: without them DataFusion cannot tell
        // which side of a join is the smaller one.
        let whole = scan_statistics(
            (
                self.segments.iter().map(|s| s.min_seq).min().unwrap_or(0),
                self.segments.iter().map(|s| s.max_seq).max().unwrap_or(0),
            ),
            self.segments.iter().map(|s| s.rows as usize).sum(),
            total,
            table_schema.fields().len(),
            seq_at,
        );
        let source: Arc<ParquetSource> = Arc::new(source);
        // Each partition reads its own group and nothing else: DataFusion's work stealing
        // (a partition that goes idle reads a sibling's files) would break `facts`, and the
        // lean and full reads of one partition must cover the same versions. Declaring the
        // partitioning (unknown, so nothing else is promised) turns it off for this scan.
        let pinned = Some(Partitioning::UnknownPartitioning(groups.len()));
        let full = FileScanConfigBuilder::new(url.clone(), source.clone())
            .with_file_groups(groups.clone())
            .with_output_partitioning(pinned.clone())
            .with_statistics(whole.clone())
            .with_output_ordering(ordering.into_iter().collect())
            .with_expr_adapter(Some(Arc::new(FieldIds)))
            .with_projection_indices(Some(projection))?
            .build();
        let lean = if self.lean {
            let config = FileScanConfigBuilder::new(url, source)
                .with_file_groups(groups)
                .with_output_partitioning(pinned)
                .with_statistics(whole)
                .with_expr_adapter(Some(Arc::new(FieldIds)))
                .with_projection_indices(Some(self.columns.to_vec()))?
                .build();
            Some(DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>)
        } else {
            None
        };
        Ok(ColdPlans {
            full: DataSourceExec::from_data_source(full),
            lean,
            groups: facts,
        })
    }
}

/// The object-store URL DataFusion reaches a storage by.
fn storage_url(storage: &str) -> DfResult<ObjectStoreUrl> {
    let host: String = storage.bytes().map(|b| format!("{b:02x}")).collect();
    // A storage name is an identifier; hex makes any name a valid host.
    ObjectStoreUrl::parse(format!("quilldb://s{host}"))
}

/// Splits the segments (in `_seq` order) into at most `target` groups of about equal bytes,
/// cutting a large segment into byte ranges (DataFusion reads the row groups whose middle
/// falls in a range), so that every core has a share and each group stays in `_seq` order.
fn file_groups(
    folder: &object_store::path::Path,
    segments: &[SegmentMeta],
    target: usize,
    columns: usize,
    seq_at: usize,
) -> (Vec<FileGroup>, Vec<GroupFacts>) {
    let total: u64 = segments.iter().map(|s| s.bytes).sum();
    let share = total.div_ceil(target as u64).max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new()];
    let mut facts: Vec<GroupFacts> = vec![GroupFacts::default()];
    let mut filled = 0u64;
    for seg in segments {
        let path = folder.clone().join(seg.path.as_str()).to_string();
        let mut start = 0u64;
        while start < seg.bytes {
            if filled >= share && groups.len() < target {
                groups.push(Vec::new());
                facts.push(GroupFacts::default());
                filled = 0;
            }
            let take = (share - filled.min(share)).max(1).min(seg.bytes - start);
            let take = if groups.len() == target {
                seg.bytes - start
            } else {
                take
            };
            let end = start + take;
            let mut file = PartitionedFile::new(path.clone(), seg.bytes);
            if start > 0 || end < seg.bytes {
                file = file.with_range(start as i64, end as i64);
            }
            let rows = (seg.rows as u128 * take as u128 / seg.bytes.max(1) as u128) as usize;
            file = file.with_statistics(Arc::new(segment_statistics(
                seg, rows, take, columns, seq_at,
            )));
            if let Some(g) = groups.last_mut() {
                g.push(file);
            }
            if let Some(f) = facts.last_mut() {
                f.ranges.push((seg.min_seq, seg.max_seq));
                f.tombstones |= seg.deleted > 0;
            }
            filled += take;
            start = end;
        }
    }
    let (groups, facts): (Vec<_>, Vec<_>) = groups
        .into_iter()
        .zip(facts)
        .filter(|(g, _)| !g.is_empty())
        .unzip();
    (groups.into_iter().map(FileGroup::new).collect(), facts)
}

/// What one partition of a cold scan reads: its segments' `_seq` ranges, and whether any of
/// them holds tombstones.
#[derive(Debug, Clone, Default)]
pub struct GroupFacts {
    ranges: Vec<(u64, u64)>,
    tombstones: bool,
}

impl GroupFacts {
    /// Whether every version the partition reads is live under `marks` (sorted): then it
    /// needs neither `_seq` nor `_deleted`.
    pub fn all_live(&self, marks: &[u64]) -> bool {
        !self.tombstones
            && self.ranges.iter().all(|(lo, hi)| {
                let first = marks.partition_point(|m| m < lo);
                marks.get(first).is_none_or(|m| m > hi)
            })
    }
}

/// A cold scan as planned: the full read (columns, `_seq`, `_deleted`), and where no column
/// needs filling and `_seq` is not asked for, a lean read of the columns alone over the same
/// file groups, for the partitions whose segments hold no tombstone and no marked version.
pub struct ColdPlans {
    /// Columns, `_seq` and `_deleted`.
    pub full: Arc<dyn ExecutionPlan>,
    /// The columns alone.
    pub lean: Option<Arc<dyn ExecutionPlan>>,
    /// Per partition, what it reads.
    pub groups: Vec<GroupFacts>,
}

/// What the manifest tells of (a part of) a segment: rows and bytes, roughly, and its `_seq`
/// range exactly (DataFusion checks a group's files are in `_seq` order by it).
fn segment_statistics(
    seg: &SegmentMeta,
    rows: usize,
    bytes: u64,
    columns: usize,
    seq_at: usize,
) -> Statistics {
    scan_statistics((seg.min_seq, seg.max_seq), rows, bytes, columns, seq_at)
}

/// Rows and bytes (inexact) and the exact `_seq` range of (a part of) a scan: what DataFusion
/// orders joins by (the smaller side builds the hash table) and sorts by.
fn scan_statistics(
    (min_seq, max_seq): (u64, u64),
    rows: usize,
    bytes: u64,
    columns: usize,
    seq_at: usize,
) -> Statistics {
    let mut column_statistics = vec![ColumnStatistics::new_unknown(); columns];
    column_statistics[seq_at] = ColumnStatistics::new_unknown()
        .with_min_value(Precision::Exact(ScalarValue::Int64(Some(min_seq as i64))))
        .with_max_value(Precision::Exact(ScalarValue::Int64(Some(max_seq as i64))))
        .with_null_count(Precision::Exact(0));
    Statistics {
        num_rows: Precision::Inexact(rows),
        total_byte_size: Precision::Inexact(bytes as usize),
        column_statistics,
    }
}

/// Opens segments with the footers the storage has cached.
#[derive(Debug)]
struct SegmentReaders(HashMap<String, SegmentFileReader>);

impl ParquetFileReaderFactory for SegmentReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        _metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let path = file.object_meta.location.to_string();
        // Registered with the metrics for the scan's EXPLAIN ANALYZE.
        let _ = ParquetFileMetrics::new(partition_index, &path, metrics);
        let reader = self.0.get(&path).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!("segment {path} is not in the scan's manifest"))
        })?;
        Ok(Box::new(reader))
    }
}

/// Maps the table's columns to a segment's by stable column id (the Parquet field id): a
/// renamed column reads under its new name, a dropped one is never read, a column added
/// after the segment was written reads NULL (and `Fills` gives it its default).
#[derive(Debug)]
struct FieldIds;

impl PhysicalExprAdapterFactory for FieldIds {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> DfResult<Arc<dyn PhysicalExprAdapter>> {
        Ok(Arc::new(FieldIdAdapter {
            logical: logical_file_schema,
            physical: physical_file_schema,
        }))
    }
}

#[derive(Debug)]
struct FieldIdAdapter {
    logical: SchemaRef,
    physical: SchemaRef,
}

fn field_id(f: &Field) -> Option<&str> {
    f.metadata()
        .get(PARQUET_FIELD_ID_META_KEY)
        .map(String::as_str)
}

impl FieldIdAdapter {
    fn map(&self, column: &Column) -> DfResult<Arc<dyn PhysicalExpr>> {
        let logical = self.logical.field_with_name(column.name())?;
        let found = match field_id(logical) {
            Some(id) => self
                .physical
                .fields()
                .iter()
                .position(|f| field_id(f) == Some(id)),
            None => self.physical.index_of(column.name()).ok(),
        };
        let Some(at) = found else {
            return Ok(Arc::new(Literal::new(ScalarValue::try_from(
                logical.data_type(),
            )?)));
        };
        let physical = self.physical.field(at);
        let read: Arc<dyn PhysicalExpr> = Arc::new(Column::new(physical.name(), at));
        if physical.data_type() == logical.data_type() {
            Ok(read)
        } else {
            Ok(Arc::new(CastExpr::new(
                read,
                logical.data_type().clone(),
                None,
            )))
        }
    }
}

impl PhysicalExprAdapter for FieldIdAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DfResult<Arc<dyn PhysicalExpr>> {
        expr.transform(|e| match e.downcast_ref::<Column>() {
            Some(c) => Ok(Transformed::yes(self.map(c)?)),
            None => Ok(Transformed::no(e)),
        })
        .data()
    }
}
