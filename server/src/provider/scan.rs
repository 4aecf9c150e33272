//! Cold segments as DataFusion's own Parquet scan. A flushed version is live unless it is a
//! tombstone or the partition's dv marks name it (replaced or deleted after its flush): the hot
//! store keeps only the newest version of each key and a folder's segments have disjoint
//! `_seq` ranges, so the cold part of a table is a filter over files, not a merge.
//!
//! ```text
//!  VersionFilterExec  (partitions 0..n: segments; partition n: hot)
//!    ├─ 0..n  DataSourceExec (ParquetSource over one manifest's segments, file groups in
//!    │        _seq order; projection, row-group and page pruning, filter pushdown, columns
//!    │        matched by field id) ─► drop tombstones and dv-marked versions ─► Fills
//!    └─ n     TableRead of the versions above the manifest's max _seq (segments flushed since,
//!             then hot rows), which reads the dv marks in its snapshot and hands them to 0..n
//! ```
//! The dv marks and the hot versions come from one RocksDB snapshot, so a row replaced while
//! the query starts is seen once. The plan holds its manifest: compaction keeps the files (and
//! the dv marks of the versions in them) until the scan ends.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{ColumnStatistics, DFSchema, Result as DfResult, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileMetrics, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_expr_adapter::{PhysicalExprAdapter, PhysicalExprAdapterFactory};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterPushdownResult, ChildPushdownResult, FilterDescription, FilterPushdownPhase,
    FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use quilldb_storage::cold::{Manifest, SegmentFileReader, SegmentMeta};
use quilldb_storage::hot::{DELETED_COLUMN, SEQ_COLUMN};
use quilldb_storage::merge::{ColdSource, SnapshotObserver};
use tokio::sync::watch;

use crate::catalog::TableDef;
use crate::engine::TableRead;
use crate::engine::fills::Fills;
use crate::metrics::Metrics;

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
        let url = storage_url(store.name());
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
        let source: Arc<ParquetSource> = Arc::new(source);
        let full = FileScanConfigBuilder::new(url.clone(), source.clone())
            .with_file_groups(groups.clone())
            .with_output_ordering(ordering.into_iter().collect())
            .with_expr_adapter(Some(Arc::new(FieldIds)))
            .with_projection_indices(Some(projection))?
            .build();
        let lean = if self.lean {
            let config = FileScanConfigBuilder::new(url, source)
                .with_file_groups(groups)
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
fn storage_url(storage: &str) -> ObjectStoreUrl {
    let host: String = storage.bytes().map(|b| format!("{b:02x}")).collect();
    // A storage name is an identifier; hex makes any name a valid host.
    ObjectStoreUrl::parse(format!("quilldb://s{host}"))
        .unwrap_or_else(|_| ObjectStoreUrl::local_filesystem())
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
    fn all_live(&self, marks: &[u64]) -> bool {
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
    let mut column_statistics = vec![ColumnStatistics::new_unknown(); columns];
    column_statistics[seq_at] = ColumnStatistics::new_unknown()
        .with_min_value(Precision::Exact(ScalarValue::Int64(Some(
            seg.min_seq as i64,
        ))))
        .with_max_value(Precision::Exact(ScalarValue::Int64(Some(
            seg.max_seq as i64,
        ))))
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

/// The dv marks of one execution, from the hot read's snapshot.
type Marks = Option<Result<Arc<Vec<u64>>, String>>;

#[derive(Debug)]
struct PublishMarks(watch::Sender<Marks>);

impl SnapshotObserver for PublishMarks {
    fn deleted(&self, deleted: Arc<std::collections::HashSet<u64>>) {
        let mut sorted: Vec<u64> = deleted.iter().copied().collect();
        sorted.sort_unstable();
        self.0.send_replace(Some(Ok(Arc::new(sorted))));
    }
}

/// One execution: the dv marks for the segment partitions, the hot partition's stream.
struct Execution {
    marks: watch::Receiver<Marks>,
    hot: parking_lot::Mutex<Option<SendableRecordBatchStream>>,
}

/// A table's cold segments (through DataFusion's Parquet scan) filtered to live versions,
/// and its newer versions as one more partition.
pub struct VersionFilterExec {
    input: Arc<dyn ExecutionPlan>,
    /// The same file groups read without `_seq` and `_deleted`, for partitions all live.
    lean: Option<Arc<dyn ExecutionPlan>>,
    groups: Arc<Vec<GroupFacts>>,
    hot: TableRead,
    manifest: Arc<Manifest>,
    fills: Fills,
    /// Columns read (before `_seq` and `_deleted` in the input).
    columns: usize,
    with_seq: bool,
    schema: SchemaRef,
    order: Vec<usize>,
    metrics: Arc<Metrics>,
    /// Segments read and pruned, counted in the metrics when the scan starts.
    segments: (u64, u64),
    props: Arc<PlanProperties>,
    execution: OnceLock<Execution>,
}

impl fmt::Debug for VersionFilterExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionFilterExec({})", self.hot.table().qualified())
    }
}

/// What [`VersionFilterExec::new`] takes besides its input.
pub struct VersionFilter {
    /// The read of the versions above the manifest (columns as the input's, `_seq` if asked).
    pub hot: TableRead,
    /// The manifest the input reads.
    pub manifest: Arc<Manifest>,
    /// Stable ids of the columns read, in order.
    pub column_ids: Vec<u32>,
    /// Whether `_seq` is output.
    pub with_seq: bool,
    /// The output schema.
    pub schema: SchemaRef,
    /// Where each output column sits in the read's batches (columns, then `_seq`).
    pub order: Vec<usize>,
    /// Server metrics.
    pub metrics: Arc<Metrics>,
    /// Segments the input reads.
    pub segments_read: u64,
    /// Segments of the manifest that statistics ruled out.
    pub segments_pruned: u64,
}

impl VersionFilterExec {
    /// The filter over a cold scan's `plans`.
    pub fn new(plans: ColdPlans, f: VersionFilter) -> Self {
        let input = plans.full;
        let fills = Fills::new(f.hot.table(), &f.column_ids);
        let props = Self::properties_for(&input, &f.schema);
        Self {
            input,
            lean: plans.lean,
            groups: Arc::new(plans.groups),
            fills,
            columns: f.column_ids.len(),
            hot: f.hot,
            manifest: f.manifest,
            with_seq: f.with_seq,
            schema: f.schema,
            order: f.order,
            metrics: f.metrics,
            segments: (f.segments_read, f.segments_pruned),
            props: Arc::new(props),
            execution: OnceLock::new(),
        }
    }

    fn properties_for(input: &Arc<dyn ExecutionPlan>, schema: &SchemaRef) -> PlanProperties {
        // Every partition is in `_seq` order: segments of a group, then the newer versions.
        PlanProperties::new(
            seq_ordered(schema),
            Partitioning::UnknownPartitioning(
                input.properties().partitioning.partition_count() + 1,
            ),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
    }

    /// The same scan over other inputs, not started.
    fn rebuilt(&self, input: Arc<dyn ExecutionPlan>, lean: Option<Arc<dyn ExecutionPlan>>) -> Self {
        Self {
            props: Arc::new(Self::properties_for(&input, &self.schema)),
            input,
            lean,
            groups: self.groups.clone(),
            hot: self.hot.clone(),
            manifest: self.manifest.clone(),
            fills: self.fills.clone(),
            columns: self.columns,
            with_seq: self.with_seq,
            schema: self.schema.clone(),
            order: self.order.clone(),
            metrics: self.metrics.clone(),
            segments: self.segments,
            execution: OnceLock::new(),
        }
    }

    fn segment_partitions(&self) -> usize {
        self.input.properties().partitioning.partition_count()
    }

    /// Starts the execution on first use: the hot read takes its snapshot and publishes the
    /// dv marks the segment partitions filter with.
    fn execution(&self) -> &Execution {
        self.execution.get_or_init(|| {
            self.metrics.segments_read.inc_by(self.segments.0);
            self.metrics.segments_pruned.inc_by(self.segments.1);
            let (tx, rx) = watch::channel(None);
            let hot = self.hot.clone().observer(Some(Arc::new(PublishMarks(tx))));
            let metrics = self.metrics.clone();
            let schema = self.schema.clone();
            let order = self.order.clone();
            let batches = hot.stream(move |stats| {
                metrics.segments_read.inc_by(stats.segments_read);
                metrics
                    .segments_pruned
                    .inc_by(stats.segments_total.saturating_sub(stats.segments_read));
            });
            let out = schema.clone();
            let batches =
                batches.map(move |b| b.map_err(external).and_then(|b| reorder(b, &out, &order)));
            Execution {
                marks: rx,
                hot: parking_lot::Mutex::new(Some(Box::pin(RecordBatchStreamAdapter::new(
                    schema, batches,
                )))),
            }
        })
    }
}

/// `filter` over the columns of `schema` (found by name), if it names only those.
fn onto(filter: &Arc<dyn PhysicalExpr>, schema: &SchemaRef) -> Option<Arc<dyn PhysicalExpr>> {
    let mut all = true;
    let mapped = filter
        .clone()
        .transform_down(|e| match e.downcast_ref::<Column>() {
            Some(c) => match schema.index_of(c.name()) {
                Ok(at) => Ok(Transformed::yes(
                    Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>
                )),
                Err(_) => {
                    all = false;
                    Ok(Transformed::complete(e))
                }
            },
            None => Ok(Transformed::no(e)),
        })
        .ok()?
        .data;
    all.then_some(mapped)
}

/// The plan properties of a partition's rows in `_seq` order (when `_seq` is among them).
pub fn seq_ordered(schema: &SchemaRef) -> EquivalenceProperties {
    match schema.index_of(SEQ_COLUMN) {
        Ok(at) => {
            let seq: Arc<dyn PhysicalExpr> = Arc::new(Column::new(SEQ_COLUMN, at));
            EquivalenceProperties::new_with_orderings(
                schema.clone(),
                [[PhysicalSortExpr::new_default(seq)]],
            )
        }
        Err(_) => EquivalenceProperties::new(schema.clone()),
    }
}

/// The columns of `batch` at `order`, as `schema`.
pub fn reorder(batch: RecordBatch, schema: &SchemaRef, order: &[usize]) -> DfResult<RecordBatch> {
    let cols = order.iter().map(|i| batch.column(*i).clone()).collect();
    let opts =
        arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        cols,
        &opts,
    )?)
}

/// The rows of `batch` (columns, `_seq` at `seq_at`, `_deleted`) that are live versions.
fn live_rows(batch: RecordBatch, seq_at: usize, marks: &[u64]) -> DfResult<RecordBatch> {
    let seqs = batch.column(seq_at).as_primitive::<Int64Type>();
    let deleted = batch.column(seq_at + 1).as_boolean();
    let (lo, hi) = match (arrow::compute::min(seqs), arrow::compute::max(seqs)) {
        (Some(lo), Some(hi)) => (lo as u64, hi as u64),
        _ => return Ok(batch),
    };
    let first = marks.partition_point(|m| *m < lo);
    let marked = marks.get(first).is_some_and(|m| *m <= hi);
    if !marked && deleted.true_count() == 0 {
        return Ok(batch);
    }
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|i| {
            let live = !deleted.value(i)
                && (!marked || marks.binary_search(&(seqs.value(i) as u64)).is_err());
            Some(live)
        })
        .collect();
    Ok(arrow::compute::filter_record_batch(&batch, &keep)?)
}

impl DisplayAs for VersionFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "VersionFilterExec: table={}, manifest_version={}, segments={}, lean={}, newer=[{}]",
            self.hot.table().qualified(),
            self.manifest.version,
            self.manifest.segments.len(),
            self.lean.is_some(),
            self.hot.describe().trim_start_matches(", ")
        )
    }
}

impl ExecutionPlan for VersionFilterExec {
    fn name(&self) -> &'static str {
        "VersionFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        // The last partition is not the input's: no order of the input is kept as such (a
        // sort pushed below this node would not sort its output). Its own `_seq` order is in
        // its properties.
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.into_iter().next() else {
            return Ok(self);
        };
        Ok(Arc::new(self.rebuilt(input, self.lean.clone())))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> DfResult<FilterDescription> {
        // Dropping dead versions commutes with any filter on stored values, so the Parquet scan
        // may prune with the parent's filters (a TopK's or a join's dynamic ones included).
        // Filled columns read a default where the files hold NULL: nothing is passed on then.
        if !self.fills.is_empty() {
            return Ok(FilterDescription::all_unsupported(
                &parent_filters,
                &self.children(),
            ));
        }
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        // The lean read prunes with the same filters, those that name only its columns.
        let lean = match &self.lean {
            Some(lean) if self.fills.is_empty() => {
                let schema = lean.schema();
                let filters = child_pushdown_result
                    .parent_filters
                    .iter()
                    .filter_map(|f| onto(&f.filter, &schema))
                    .map(|filter| ChildFilterPushdownResult {
                        filter,
                        child_results: vec![],
                    })
                    .collect::<Vec<_>>();
                if filters.is_empty() {
                    None
                } else {
                    lean.handle_child_pushdown_result(
                        phase,
                        ChildPushdownResult {
                            parent_filters: filters,
                            self_filters: vec![],
                        },
                        config,
                    )?
                    .updated_node
                }
            }
            _ => None,
        };
        // The newer versions' partition never sees these filters: the parent keeps them all.
        let mut out = FilterPushdownPropagation::all_unsupported(child_pushdown_result);
        if let Some(lean) = lean {
            out = out
                .with_updated_node(Arc::new(self.rebuilt(self.input.clone(), Some(lean)))
                    as Arc<dyn ExecutionPlan>);
        }
        Ok(out)
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        // The whole table's figures come from the segments' (the manifest's row counts).
        match partition {
            None => vec![ChildStats::At(None)],
            Some(_) => vec![ChildStats::Skip],
        }
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.schema);
        if let (None, Some(input)) = (args.partition(), input_stats.first()) {
            stats.num_rows = input.num_rows.to_inexact();
            stats.total_byte_size = input.total_byte_size.to_inexact();
        }
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let execution = self.execution();
        if partition == self.segment_partitions() {
            return execution.hot.lock().take().ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "the newer versions of {} were read already",
                    self.hot.table().qualified()
                ))
            });
        }
        let input = self.input.clone();
        // The lean read serves only over the same partitions as the full one.
        let lean = self
            .lean
            .clone()
            .filter(|l| l.properties().partitioning.partition_count() == self.segment_partitions());
        let facts = self.groups.get(partition).cloned();
        let mut marks = execution.marks.clone();
        let manifest = self.manifest.clone();
        let fills = self.fills.clone();
        let seq_at = self.columns;
        let keep = if self.with_seq { seq_at + 1 } else { seq_at };
        let order = self.order.clone();
        let schema = self.schema.clone();
        let out = schema.clone();
        let table = self.hot.table().qualified();
        let start = async move {
            let marks = match marks.wait_for(Option::is_some).await {
                Ok(m) => match m.as_ref() {
                    Some(Ok(m)) => m.clone(),
                    Some(Err(e)) => return Err(DataFusionError::Execution(e.clone())),
                    None => Arc::new(Vec::new()),
                },
                Err(_) => {
                    return Err(DataFusionError::Execution(format!(
                        "the snapshot of {table} could not be read"
                    )));
                }
            };
            // The scan holds its manifest: compaction keeps these files until it ends.
            let held = manifest;
            if let Some(lean) = lean
                && facts.is_some_and(|f| f.all_live(&marks))
            {
                let batches = lean.execute(partition, context)?.map(move |b| {
                    let _held = &held;
                    reorder(b?, &out, &order)
                });
                return Ok(batches.boxed());
            }
            let batches = input.execute(partition, context)?.map(move |b| {
                let _held = &held;
                let b = live_rows(b?, seq_at, &marks)?;
                let b = fills.apply(b, seq_at).map_err(external)?;
                let b = b.project(&(0..keep).collect::<Vec<_>>())?;
                reorder(b, &out, &order)
            });
            Ok(batches.boxed())
        };
        let stream = futures::stream::once(start).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
