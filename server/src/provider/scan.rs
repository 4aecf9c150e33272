//! A table's cold rows filtered to live versions, beside its newer ones. A flushed version is live unless it is a
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

use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result as DfResult, Statistics};
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterPushdownResult, ChildPushdownResult, FilterDescription, FilterPushdownPhase,
    FilterPushdownPropagation,
};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use quilldb_storage::cold::Manifest;
use quilldb_storage::hot::SEQ_COLUMN;
use quilldb_storage::merge::SnapshotObserver;
use tokio::sync::watch;

use crate::engine::TableRead;
use crate::engine::fills::Fills;
use crate::metrics::Metrics;

use super::segments::{ColdPlans, GroupFacts};

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
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
