//! Row order where the SQL reference promises one: a plain `SELECT` of one table without
//! ORDER BY returns its rows in `_seq` order (stable LIMIT/OFFSET pagination). The analyzer
//! rule below makes that promise part of the plan, as `ORDER BY _seq` over the table's scan,
//! so DataFusion keeps it however many partitions read the table: each partition is in `_seq`
//! order already, and the sort becomes a merge of sorted streams. Plans with aggregates, joins,
//! windows, DISTINCT or their own ORDER BY get nothing added and run on every core.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, Result as DfResult};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::AnalyzerRule;
use quilldb_storage::hot::SEQ_COLUMN;

use crate::catalog::TABLE_TYPE_METADATA;

/// Adds `ORDER BY _seq` to plain one-table queries.
#[derive(Debug, Default)]
pub struct SeqOrder;

impl AnalyzerRule for SeqOrder {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        with_seq_order(plan).data()
    }

    fn name(&self) -> &str {
        "quill_seq_order"
    }
}

fn with_seq_order(plan: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    match &plan {
        LogicalPlan::Explain(_)
        | LogicalPlan::Analyze(_)
        | LogicalPlan::Projection(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_) => plan.map_children(with_seq_order),
        LogicalPlan::Filter(_) | LogicalPlan::TableScan(_) => match table_seq(&plan) {
            Some(seq) => {
                let sorted = LogicalPlanBuilder::from(plan)
                    .sort(vec![Expr::Column(seq).sort(true, false)])?
                    .build()?;
                Ok(Transformed::yes(sorted))
            }
            None => Ok(Transformed::no(plan)),
        },
        _ => Ok(Transformed::no(plan)),
    }
}

/// The `_seq` column of the QuillDB table under a chain of filters, if that is what `plan` is.
fn table_seq(plan: &LogicalPlan) -> Option<Column> {
    match plan {
        LogicalPlan::Filter(f) => table_seq(&f.input),
        LogicalPlan::TableScan(scan) => {
            let source = scan.source.schema();
            if !source.metadata().contains_key(TABLE_TYPE_METADATA) {
                return None;
            }
            let (qualifier, _) = scan
                .projected_schema
                .qualified_field_with_unqualified_name(SEQ_COLUMN)
                .ok()?;
            Some(Column::new(qualifier.cloned(), SEQ_COLUMN))
        }
        _ => None,
    }
}
