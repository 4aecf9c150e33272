//! Segment and row-group pruning with DataFusion's `PruningPredicate`: manifest statistics
//! decide which segments a scan opens, Parquet row-group statistics which parts of a file it
//! decodes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt64Array};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, ScalarValue};
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::PhysicalExpr;
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use quilldb_storage::cold::{Manifest, SegmentMeta};
use quilldb_storage::hot::SEQ_COLUMN;
use quilldb_storage::merge::SegmentPruner;
use serde_json::Value;

use crate::catalog::TableDef;

/// Prunes a table's segments for one scan's filters.
#[derive(Debug)]
pub struct StatsPruner {
    predicate: Arc<PruningPredicate>,
    /// Column name (as the query sees it) to stable id and type.
    columns: HashMap<String, (u32, DataType)>,
}

impl StatsPruner {
    /// A pruner for `predicate` over `schema` (the table's query schema), or `None` when the
    /// predicate can never prune.
    pub fn new(
        def: &TableDef,
        predicate: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
    ) -> Option<Self> {
        let predicate = PruningPredicateBuilder::new()
            .with_file_schema(schema)
            .build(predicate)?;
        let columns = def
            .columns
            .iter()
            .map(|c| (c.name.clone(), (c.id, c.ty.arrow())))
            .collect();
        Some(Self { predicate, columns })
    }
}

impl SegmentPruner for StatsPruner {
    fn segments(&self, manifest: &Manifest) -> Vec<bool> {
        let stats = ManifestStats {
            segments: &manifest.segments,
            columns: &self.columns,
        };
        self.predicate
            .prune(&stats)
            .unwrap_or_else(|_| vec![true; manifest.segments.len()])
    }

    fn row_groups(&self, _seg: &SegmentMeta, footer: &ArrowReaderMetadata) -> Option<Vec<usize>> {
        let stats = RowGroupStats {
            footer,
            columns: &self.columns,
        };
        let keep = self.predicate.prune(&stats).ok()?;
        Some(
            keep.iter()
                .enumerate()
                .filter(|(_, k)| **k)
                .map(|(i, _)| i)
                .collect(),
        )
    }
}

/// The manifest's per-segment statistics, as DataFusion asks for them.
struct ManifestStats<'a> {
    segments: &'a [SegmentMeta],
    columns: &'a HashMap<String, (u32, DataType)>,
}

fn json_scalar(v: &Value, ty: &DataType) -> ScalarValue {
    let null = ScalarValue::try_from(ty).unwrap_or(ScalarValue::Null);
    let s = match (v, ty) {
        (Value::Number(n), DataType::Float32 | DataType::Float64) => {
            n.as_f64().map(|f| ScalarValue::Float64(Some(f)))
        }
        (Value::Number(n), DataType::Timestamp(TimeUnit::Microsecond, tz)) => n
            .as_i64()
            .map(|i| ScalarValue::TimestampMicrosecond(Some(i), tz.clone())),
        (Value::Number(n), DataType::Date32) => {
            n.as_i64().map(|i| ScalarValue::Date32(Some(i as i32)))
        }
        (Value::Number(n), DataType::Time64(TimeUnit::Microsecond)) => {
            n.as_i64().map(|i| ScalarValue::Time64Microsecond(Some(i)))
        }
        (Value::Number(n), _) => n.as_i64().map(|i| ScalarValue::Int64(Some(i))),
        (Value::String(s), DataType::Decimal128(p, sc)) => s
            .parse::<i128>()
            .ok()
            .map(|i| ScalarValue::Decimal128(Some(i), *p, *sc)),
        (Value::String(s), _) => Some(ScalarValue::Utf8(Some(s.clone()))),
        _ => None,
    };
    s.and_then(|s| s.cast_to(ty).ok()).unwrap_or(null)
}

impl ManifestStats<'_> {
    fn bound(&self, column: &Column, min: bool) -> Option<ArrayRef> {
        if column.name == SEQ_COLUMN {
            let v: Vec<i64> = self
                .segments
                .iter()
                .map(|s| {
                    if min {
                        s.min_seq as i64
                    } else {
                        s.max_seq as i64
                    }
                })
                .collect();
            return Some(Arc::new(arrow::array::Int64Array::from(v)));
        }
        let (id, ty) = self.columns.get(&column.name)?;
        let values: Vec<ScalarValue> = self
            .segments
            .iter()
            .map(|s| {
                let st = s.stats.values().find(|c| c.id == *id);
                match st {
                    Some(c) => json_scalar(if min { &c.min } else { &c.max }, ty),
                    None => ScalarValue::try_from(ty).unwrap_or(ScalarValue::Null),
                }
            })
            .collect();
        ScalarValue::iter_to_array(values).ok()
    }
}

impl PruningStatistics for ManifestStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, true)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bound(column, false)
    }

    fn num_containers(&self) -> usize {
        self.segments.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        if column.name == SEQ_COLUMN {
            return Some(Arc::new(UInt64Array::from(vec![0u64; self.segments.len()])));
        }
        let (id, _) = self.columns.get(&column.name)?;
        let v: Vec<Option<u64>> = self
            .segments
            .iter()
            .map(|s| s.stats.values().find(|c| c.id == *id).map(|c| c.nulls))
            .collect();
        Some(Arc::new(UInt64Array::from(v)))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from(
            self.segments.iter().map(|s| s.rows).collect::<Vec<_>>(),
        )))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

/// A segment's row-group statistics, columns found by their stable id.
struct RowGroupStats<'a> {
    footer: &'a ArrowReaderMetadata,
    columns: &'a HashMap<String, (u32, DataType)>,
}

impl RowGroupStats<'_> {
    fn converter(&self, column: &Column) -> Option<StatisticsConverter<'_>> {
        let schema = self.footer.schema();
        let name = if column.name == SEQ_COLUMN {
            SEQ_COLUMN.to_string()
        } else {
            let (id, _) = self.columns.get(&column.name)?;
            schema
                .fields()
                .iter()
                .find(|f| {
                    f.metadata()
                        .get(PARQUET_FIELD_ID_META_KEY)
                        .and_then(|v| v.parse::<u32>().ok())
                        == Some(*id)
                })?
                .name()
                .clone()
        };
        StatisticsConverter::try_new(
            &name,
            schema,
            self.footer.metadata().file_metadata().schema_descr(),
        )
        .ok()
    }
}

impl PruningStatistics for RowGroupStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.converter(column)?
            .row_group_mins(self.footer.metadata().row_groups().iter())
            .ok()
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.converter(column)?
            .row_group_maxes(self.footer.metadata().row_groups().iter())
            .ok()
    }

    fn num_containers(&self) -> usize {
        self.footer.metadata().num_row_groups()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        let a = self
            .converter(column)?
            .row_group_null_counts(self.footer.metadata().row_groups().iter())
            .ok()?;
        Some(Arc::new(a))
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        let v: Vec<u64> = self
            .footer
            .metadata()
            .row_groups()
            .iter()
            .map(|r| r.num_rows() as u64)
            .collect();
        Some(Arc::new(UInt64Array::from(v)))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}
