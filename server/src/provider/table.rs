//! The table provider: one partition of a table as DataFusion sees it, read through the
//! engine's [`TableRead`] (cold segments and hot versions merged, added columns filled), with
//! primary-key lookups, `_seq` ranges, statistics pruning, projections and limits pushed down.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::DFSchema;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result as DfResult, ScalarValue, Statistics};
use datafusion::datasource::TableType as DfTableType;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::{
    Boundedness, ChildrenPropertiesMode, EmissionType, ReplaceChildrenOptions,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use quilldb_storage::hot::{Overlay, SEQ_COLUMN};
use quilldb_storage::keys::PartitionKey;
use quilldb_storage::merge::SegmentPruner;

use super::prune::StatsPruner;
use super::scan::{VersionFilter, VersionFilterExec, reorder, seq_ordered};
use super::segments::{ColdScan, stored_value_filters};
use crate::catalog::TableDef;
use crate::engine::fills::Fills;
use crate::engine::keys::encode_pk_scalar;
use crate::engine::{Database, TableRead};
use crate::metrics::Metrics;

fn external(e: crate::error::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// One partition of a table as DataFusion sees it: its cold and hot rows.
pub struct PartitionTable {
    read: TableRead,
    metrics: Arc<Metrics>,
    schema: SchemaRef,
}

impl fmt::Debug for PartitionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionTable({})", self.read.table().qualified())
    }
}

impl PartitionTable {
    /// The provider of `def`'s partition `partition` (empty for SHARED tables).
    pub fn new(def: Arc<TableDef>, db: &Database, partition: &[u8]) -> DfResult<Self> {
        let partition = PartitionKey::new(def.id, partition).map_err(|e| external(e.into()))?;
        Ok(Self {
            schema: def.query_schema(),
            read: db.read(def, partition).map_err(external)?,
            metrics: db.metrics.clone(),
        })
    }

    /// The table this provider reads.
    pub fn definition(&self) -> &Arc<TableDef> {
        self.read.table()
    }

    /// The partition this provider reads.
    pub fn partition(&self) -> &PartitionKey {
        self.read.partition()
    }

    /// Reads `overlay` (a transaction's pending changes) in place of the stored versions.
    pub fn with_overlay(mut self, overlay: Option<Arc<Overlay>>) -> Self {
        self.read = self.read.overlay(overlay);
        self
    }
}

/// What the filters allow the scan to skip.
#[derive(Debug, Default)]
struct Pruning {
    keys: Option<Vec<Vec<u8>>>,
    min_seq: u64,
    max_seq: u64,
}

fn column_literal(e: &BinaryExpr) -> Option<(&str, Operator, &ScalarValue)> {
    match (e.left.as_ref(), e.right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => Some((c.name.as_str(), e.op, v)),
        (Expr::Literal(v, _), Expr::Column(c)) => Some((c.name.as_str(), e.op.swap()?, v)),
        _ => None,
    }
}

impl Pruning {
    fn from_filters(def: &TableDef, filters: &[Expr]) -> Self {
        let mut p = Self {
            keys: None,
            min_seq: 0,
            max_seq: u64::MAX,
        };
        let Some((_, pk)) = def.key() else {
            return p;
        };
        let pk_type = pk.ty.arrow();
        let key_of = |v: &ScalarValue| -> Option<Vec<u8>> {
            let v = v.cast_to(&pk_type).ok()?;
            encode_pk_scalar(&v).ok().flatten()
        };
        for f in filters {
            match f {
                Expr::BinaryExpr(b) => {
                    let Some((col, op, v)) = column_literal(b) else {
                        continue;
                    };
                    if col == pk.name && op == Operator::Eq {
                        // A key that cannot be encoded (NULL) matches nothing.
                        p.keys = Some(key_of(v).into_iter().collect());
                    } else if col == SEQ_COLUMN {
                        let Ok(ScalarValue::Int64(Some(s))) =
                            v.cast_to(&arrow::datatypes::DataType::Int64)
                        else {
                            continue;
                        };
                        let s = s.max(0) as u64;
                        match op {
                            Operator::Eq => {
                                p.min_seq = p.min_seq.max(s);
                                p.max_seq = p.max_seq.min(s);
                            }
                            Operator::Gt => p.min_seq = p.min_seq.max(s.saturating_add(1)),
                            Operator::GtEq => p.min_seq = p.min_seq.max(s),
                            Operator::Lt => p.max_seq = p.max_seq.min(s.saturating_sub(1)),
                            Operator::LtEq => p.max_seq = p.max_seq.min(s),
                            _ => {}
                        }
                    }
                }
                Expr::InList(l) if !l.negated => {
                    if let Expr::Column(c) = l.expr.as_ref()
                        && c.name == pk.name
                    {
                        let keys: Option<Vec<Vec<u8>>> = l
                            .list
                            .iter()
                            .map(|e| match e {
                                Expr::Literal(v, _) => Some(key_of(v)),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()
                            .map(|ks| ks.into_iter().flatten().collect());
                        if let Some(keys) = keys {
                            p.keys = Some(keys);
                        }
                    }
                }
                _ => {}
            }
        }
        p
    }
}

#[async_trait]
impl TableProvider for PartitionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> DfTableType {
        DfTableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters prune the scan; DataFusion still applies them to what comes out.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.schema.fields().len()).collect();
        let projection = projection.cloned().unwrap_or(all);
        let def = self.read.table();
        let pruning = Pruning::from_filters(def, filters);
        // Statistics hold stored values: a filter on a column added with a default (NULL in
        // the versions from before the ALTER, which read the default) cannot prune.
        let stored = stored_value_filters(def, filters);
        let pruner = match conjunction(stored) {
            Some(predicate) if pruning.keys.is_none() => {
                let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
                state
                    .create_physical_expr(predicate, &df_schema)
                    .ok()
                    .and_then(|p| StatsPruner::new(def, p, self.schema.clone()))
                    .map(|p| Arc::new(p) as Arc<dyn SegmentPruner>)
            }
            _ => None,
        };
        let lookups = pruning.keys.is_some();
        let (read, out_schema, order) =
            self.projected(&projection, pruning, limit, pruner.clone())?;
        if !lookups
            && let Some(plan) = self
                .segments_scan(
                    state,
                    &read,
                    &projection,
                    filters,
                    pruner,
                    &out_schema,
                    &order,
                )
                .await?
        {
            return Ok(plan);
        }
        Ok(Arc::new(TableScanExec::new(
            read,
            self.metrics.clone(),
            out_schema,
            order,
        )))
    }
}

impl PartitionTable {
    /// The table's columns among the positions of `projection` (in [`TableProvider::schema`]),
    /// and whether `_seq` is among them.
    fn split(&self, projection: &[usize]) -> (Vec<usize>, bool) {
        let seq_index = self.read.table().columns.len();
        let columns = projection
            .iter()
            .copied()
            .filter(|i| *i != seq_index)
            .collect();
        (columns, projection.contains(&seq_index))
    }

    /// The read of the columns at `projection` (positions in [`TableProvider::schema`], `_seq`
    /// last), pruned as `pruning` says: the read, the projection's schema, and where each of
    /// its columns sits in the read's batches.
    fn projected(
        &self,
        projection: &[usize],
        pruning: Pruning,
        limit: Option<usize>,
        pruner: Option<Arc<dyn SegmentPruner>>,
    ) -> DfResult<(TableRead, SchemaRef, Vec<usize>)> {
        let seq_index = self.read.table().columns.len();
        let out_schema = Arc::new(self.schema.project(projection)?);
        let (columns, with_seq) = self.split(projection);
        // The read yields columns then _seq; `order` puts them back in the projection's order.
        let mut order = Vec::with_capacity(projection.len());
        let mut next_col = 0;
        for i in projection {
            if *i == seq_index {
                order.push(columns.len());
            } else {
                order.push(next_col);
                next_col += 1;
            }
        }
        let read = self
            .read
            .clone()
            .columns(&columns, with_seq)
            .seq_range(pruning.min_seq, pruning.max_seq)
            .keys(pruning.keys)
            .limit(limit)
            .pruner(pruner);
        Ok((read, out_schema, order))
    }

    /// The scan as DataFusion's Parquet scan of the flushed segments, filtered to live
    /// versions, beside the newer versions; `None` where the one-partition read serves better
    /// (nothing flushed, a transaction's own changes, key lookups).
    #[allow(clippy::too_many_arguments)]
    async fn segments_scan(
        &self,
        state: &dyn Session,
        read: &TableRead,
        projection: &[usize],
        filters: &[Expr],
        pruner: Option<Arc<dyn SegmentPruner>>,
        schema: &SchemaRef,
        order: &[usize],
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        if read.has_overlay() {
            return Ok(None);
        }
        let Some(source) = read.cold() else {
            return Ok(None);
        };
        let Some(manifest) = source
            .store
            .manifest(&source.folder)
            .await
            .map_err(|e| external(e.into()))?
        else {
            return Ok(None);
        };
        if manifest.table_id != source.table_id {
            return Ok(None);
        }
        let (min_seq, max_seq) = read.seq_bounds();
        let keep = pruner.as_ref().map_or_else(
            || vec![true; manifest.segments.len()],
            |p| p.segments(&manifest),
        );
        let segments: Vec<_> = manifest
            .segments
            .iter()
            .zip(keep)
            .filter(|(s, keep)| *keep && s.max_seq >= min_seq && s.min_seq <= max_seq)
            .map(|(s, _)| s.clone())
            .collect();
        if segments.is_empty() {
            return Ok(None);
        }
        let def = self.read.table();
        let (columns, with_seq) = self.split(projection);
        let segments_read = segments.len() as u64;
        let input = ColdScan {
            def,
            source,
            manifest: manifest.clone(),
            segments,
            columns: &columns,
            filters,
            lean: !with_seq && Fills::new(def, &read.column_ids()).is_empty(),
        }
        .plan(state)
        .await?;
        let horizon = manifest.max_seq();
        let hot = read
            .clone()
            .seq_range(min_seq.max(horizon.saturating_add(1)), max_seq);
        let column_ids = hot.column_ids();
        let segments_total = manifest.segments.len() as u64;
        Ok(Some(Arc::new(VersionFilterExec::new(
            input,
            VersionFilter {
                hot,
                manifest,
                column_ids,
                with_seq,
                schema: schema.clone(),
                order: order.to_vec(),
                metrics: self.metrics.clone(),
                segments_read,
                segments_pruned: segments_total - segments_read,
            },
        ))))
    }

    /// The row whose primary key is `key`, if any, as the columns at `projection`: what a scan
    /// of this table filtered by `pk = key` answers, without planning one.
    pub async fn point(&self, projection: &[usize], key: &ScalarValue) -> DfResult<RecordBatch> {
        let def = self.read.table();
        let pk = def.pk().map_err(external)?.1.name.clone();
        let filter = Expr::Column(datafusion::common::Column::from_name(pk))
            .eq(Expr::Literal(key.clone(), None));
        let pruning = Pruning::from_filters(def, &[filter]);
        let (read, schema, order) = self.projected(projection, pruning, None, None)?;
        let (stats, batches) = read.collect().await.map_err(external)?;
        self.metrics.segments_read.inc_by(stats.segments_read);
        self.metrics
            .segments_pruned
            .inc_by(stats.segments_total.saturating_sub(stats.segments_read));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        self.metrics.rows_streamed.inc_by(rows as u64);
        self.metrics.point_reads.inc();
        let batches = batches
            .into_iter()
            .map(|b| reorder(b, &schema, &order))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(arrow::compute::concat_batches(&schema, &batches)?)
    }
}

/// Reads one table partition: cold segments, then hot versions.
pub struct TableScanExec {
    read: TableRead,
    metrics: Arc<Metrics>,
    exec_metrics: ExecutionPlanMetricsSet,
    schema: SchemaRef,
    order: Vec<usize>,
    props: Arc<PlanProperties>,
}

impl fmt::Debug for TableScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableScanExec({})", self.read.table().qualified())
    }
}

impl TableScanExec {
    fn new(read: TableRead, metrics: Arc<Metrics>, schema: SchemaRef, order: Vec<usize>) -> Self {
        // Rows come in `_seq` order.
        let props = PlanProperties::new(
            seq_ordered(&schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            read,
            metrics,
            exec_metrics: ExecutionPlanMetricsSet::new(),
            schema,
            order,
            props: Arc::new(props),
        }
    }
}

impl DisplayAs for TableScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let table = self.read.table().qualified();
        write!(f, "TableScanExec: table={table}{}", self.read.describe())
    }
}

impl ExecutionPlan for TableScanExec {
    fn name(&self) -> &'static str {
        "TableScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
        _: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
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

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.exec_metrics.clone_inner())
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        // A key lookup yields at most one row per key: too few to spread over the cores. A
        // scan of hot rows says about how many it holds, so that joins build on the smaller side.
        let mut stats = Statistics::new_unknown(&self.schema);
        stats.num_rows = Precision::Inexact(self.read.row_estimate());
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let order = self.order.clone();
        let metrics = self.metrics.clone();
        let segments_read =
            MetricBuilder::new(&self.exec_metrics).counter("segments_read", partition);
        let segments_total =
            MetricBuilder::new(&self.exec_metrics).counter("segments_total", partition);
        let batches = self.read.clone().stream(move |stats| {
            segments_read.add(stats.segments_read as usize);
            segments_total.add(stats.segments_total as usize);
            metrics.segments_read.inc_by(stats.segments_read);
            metrics
                .segments_pruned
                .inc_by(stats.segments_total.saturating_sub(stats.segments_read));
        });
        let out_schema = schema.clone();
        let batches = batches.map(move |b| {
            b.map_err(external)
                .and_then(|b| reorder(b, &out_schema, &order))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}
