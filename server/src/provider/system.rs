//! The `system` namespace: tables computed from the server's state when they are read.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMillisecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;

use crate::authz;
use crate::engine::Database;
use crate::session::Caller;

pub use crate::catalog::SYSTEM_SCHEMA;

/// Rows of the system tables.
pub mod batches;

const TABLES: &[&str] = &[
    "namespaces",
    "tables",
    "views",
    "columns",
    "stats",
    "jobs",
    "storages",
    "users",
    "live_queries",
];

/// The system schema for one caller.
#[derive(Debug)]
pub struct SystemSchema {
    db: Arc<Database>,
    caller: Caller,
}

impl SystemSchema {
    /// The schema as `caller` sees it.
    pub fn new(db: Arc<Database>, caller: Caller) -> Self {
        Self { db, caller }
    }

    /// The system tables the caller may read, with their schemas (for GetTables).
    pub fn listing(&self) -> Vec<(String, SchemaRef)> {
        TABLES
            .iter()
            .filter(|name| authz::require_system_table(self.caller.role, name).is_ok())
            .filter_map(|name| {
                let batch = self.batch(name).ok().flatten()?;
                Some((name.to_string(), batch.schema()))
            })
            .collect()
    }
}

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

fn utf8(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn millis(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC"))
}

impl SystemSchema {
    fn batch(&self, name: &str) -> DfResult<Option<RecordBatch>> {
        let catalog = &self.db.catalog;
        let (schema, cols): (SchemaRef, Vec<ArrayRef>) = match name {
            "namespaces" => {
                let ns = catalog.namespaces();
                let counts: Vec<i64> = ns
                    .iter()
                    .map(|n| catalog.tables(Some(&n.name)).len() as i64)
                    .collect();
                (
                    Arc::new(Schema::new(vec![
                        Field::new("namespace", DataType::Utf8, false),
                        Field::new("table_count", DataType::Int64, false),
                        ts_field("created_at"),
                    ])),
                    vec![
                        utf8(ns.iter().map(|n| n.name.clone()).collect()),
                        Arc::new(Int64Array::from(counts)),
                        millis(ns.iter().map(|n| n.created_at).collect()),
                    ],
                )
            }
            "tables" => {
                let t = catalog.tables(None);
                (
                    Arc::new(Schema::new(vec![
                        Field::new("namespace", DataType::Utf8, false),
                        Field::new("table_name", DataType::Utf8, false),
                        Field::new("table_type", DataType::Utf8, false),
                        Field::new("access_level", DataType::Utf8, true),
                        Field::new("storage_id", DataType::Utf8, false),
                        Field::new("flush_policy", DataType::Utf8, true),
                        Field::new("ttl_seconds", DataType::Int64, true),
                        Field::new("schema_version", DataType::Int64, false),
                        ts_field("created_at"),
                    ])),
                    vec![
                        utf8(t.iter().map(|t| t.namespace.clone()).collect()),
                        utf8(t.iter().map(|t| t.name.clone()).collect()),
                        utf8(t.iter().map(|t| t.table_type.to_string()).collect()),
                        Arc::new(StringArray::from(
                            t.iter()
                                .map(|t| {
                                    (t.table_type == crate::catalog::TableType::Shared)
                                        .then(|| t.access_level.to_string())
                                })
                                .collect::<Vec<_>>(),
                        )),
                        utf8(t.iter().map(|t| t.storage_id.clone()).collect()),
                        Arc::new(StringArray::from(
                            t.iter()
                                .map(|t| {
                                    (t.table_type != crate::catalog::TableType::Stream)
                                        .then(|| t.flush_policy.to_string())
                                })
                                .collect::<Vec<_>>(),
                        )),
                        Arc::new(Int64Array::from(
                            t.iter()
                                .map(|t| t.ttl_seconds.map(|s| s as i64))
                                .collect::<Vec<_>>(),
                        )),
                        Arc::new(Int64Array::from(
                            t.iter()
                                .map(|t| i64::from(t.schema_version))
                                .collect::<Vec<_>>(),
                        )),
                        millis(t.iter().map(|t| t.created_at).collect()),
                    ],
                )
            }
            "views" => {
                let v = catalog.views(None);
                (
                    Arc::new(Schema::new(vec![
                        Field::new("namespace", DataType::Utf8, false),
                        Field::new("view_name", DataType::Utf8, false),
                        Field::new("definition", DataType::Utf8, false),
                        Field::new("default_namespace", DataType::Utf8, false),
                        Field::new("owner", DataType::Utf8, false),
                        ts_field("created_at"),
                    ])),
                    vec![
                        utf8(v.iter().map(|v| v.namespace.clone()).collect()),
                        utf8(v.iter().map(|v| v.name.clone()).collect()),
                        utf8(v.iter().map(|v| v.definition()).collect()),
                        utf8(v.iter().map(|v| v.default_namespace.clone()).collect()),
                        utf8(v.iter().map(|v| v.owner.clone()).collect()),
                        millis(v.iter().map(|v| v.created_at).collect()),
                    ],
                )
            }
            "columns" => {
                let mut ns = Vec::new();
                let mut table = Vec::new();
                let mut column = Vec::new();
                let mut position = Vec::new();
                let mut data_type = Vec::new();
                let mut nullable = Vec::new();
                let mut default = Vec::new();
                let mut pk = Vec::new();
                let mut column_id = Vec::new();
                for t in catalog.tables(None) {
                    for (i, c) in t.columns.iter().enumerate() {
                        ns.push(t.namespace.clone());
                        table.push(t.name.clone());
                        column.push(c.name.clone());
                        position.push(i as i64 + 1);
                        data_type.push(c.ty.to_string());
                        nullable.push(c.nullable);
                        default.push(c.default.as_ref().map(|d| d.sql()));
                        pk.push(c.primary_key);
                        column_id.push(u64::from(c.id));
                    }
                }
                (
                    Arc::new(Schema::new(vec![
                        Field::new("namespace", DataType::Utf8, false),
                        Field::new("table_name", DataType::Utf8, false),
                        Field::new("column_name", DataType::Utf8, false),
                        Field::new("ordinal_position", DataType::Int64, false),
                        Field::new("data_type", DataType::Utf8, false),
                        Field::new("is_nullable", DataType::Boolean, false),
                        Field::new("column_default", DataType::Utf8, true),
                        Field::new("is_primary_key", DataType::Boolean, false),
                        Field::new("column_id", DataType::UInt64, false),
                    ])),
                    vec![
                        utf8(ns),
                        utf8(table),
                        utf8(column),
                        Arc::new(Int64Array::from(position)),
                        utf8(data_type),
                        Arc::new(BooleanArray::from(nullable)),
                        Arc::new(StringArray::from(default)),
                        Arc::new(BooleanArray::from(pk)),
                        Arc::new(UInt64Array::from(column_id)),
                    ],
                )
            }
            "stats" => {
                let stats = self.db.stats();
                (
                    Arc::new(Schema::new(vec![
                        Field::new("name", DataType::Utf8, false),
                        Field::new("value", DataType::Utf8, false),
                    ])),
                    vec![
                        utf8(stats.iter().map(|(k, _)| k.to_string()).collect()),
                        utf8(stats.into_iter().map(|(_, v)| v).collect()),
                    ],
                )
            }
            "jobs" => {
                return batches::jobs_batch(&self.db.jobs.list())
                    .map(Some)
                    .map_err(|e| DataFusionError::External(Box::new(e)));
            }
            "users" => {
                return batches::users_batch(&self.db)
                    .map(Some)
                    .map_err(|e| DataFusionError::External(Box::new(e)));
            }
            "live_queries" => {
                let own = authz::require_system_table(self.caller.role, name)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                let entries: Vec<_> = self
                    .db
                    .live_queries()
                    .into_iter()
                    .filter(|e| !own || e.user == self.caller.user)
                    .collect();
                return batches::live_queries_batch(&entries)
                    .map(Some)
                    .map_err(|e| DataFusionError::External(Box::new(e)));
            }
            "storages" => {
                return batches::storages_batch(&self.db)
                    .map(Some)
                    .map_err(|e| DataFusionError::External(Box::new(e)));
            }
            _ => return Ok(None),
        };
        Ok(Some(RecordBatch::try_new(schema, cols)?))
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES
            .iter()
            .filter(|name| authz::require_system_table(self.caller.role, name).is_ok())
            .map(|s| s.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        authz::require_system_table(self.caller.role, name)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some(batch) = self.batch(name)? else {
            return Ok(None);
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
