//! A subscription as the statement layer builds it from `SUBSCRIBE ...` (see `sql::subscribe`):
//! one table, plain columns, a filter as a DataFusion physical expression over the table's rows
//! and `_seq`, and its options.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;

use crate::catalog::TableDef;

/// Rows per message unless `batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// `OPTIONS (...)`.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Send only the newest N matching rows first.
    pub last_rows: Option<usize>,
    /// Rows per message at most.
    pub batch_size: usize,
    /// Resume after this `_seq`.
    pub from: Option<u64>,
    /// Every user's rows of a USER or STREAM table, with `_user_id`.
    pub all_users: bool,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            last_rows: None,
            batch_size: DEFAULT_BATCH_SIZE,
            from: None,
            all_users: false,
        }
    }
}

/// A parsed, authorized subscription.
#[derive(Debug, Clone)]
pub struct LiveQuery {
    /// The table.
    pub def: Arc<TableDef>,
    /// Positions (in `def.columns`) of the selected columns.
    pub columns: Vec<usize>,
    /// The filter over the table's query schema (columns, then `_seq`).
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// Options.
    pub options: LiveOptions,
    /// The text, for system.live_queries.
    pub text: String,
    rows: SchemaRef,
    out: SchemaRef,
}

impl LiveQuery {
    /// A subscription to `columns` (positions in `def.columns`) of `def`'s rows passing `filter`.
    pub fn new(
        def: Arc<TableDef>,
        columns: Vec<usize>,
        filter: Option<Arc<dyn PhysicalExpr>>,
        options: LiveOptions,
        text: String,
    ) -> Self {
        let (rows, out) = schemas(&def, &columns, options.all_users);
        Self {
            def,
            columns,
            filter,
            options,
            text,
            rows,
            out,
        }
    }

    /// The table's columns then `_seq`, all nullable: the rows changes are decoded into (a
    /// delete whose prior row is cold carries only its key).
    pub fn rows_schema(&self) -> SchemaRef {
        self.rows.clone()
    }

    /// The schema of every batch: the selected columns (nullable), `_seq`, `_op`, then
    /// `_user_id` for `all_users`.
    pub fn schema(&self) -> SchemaRef {
        self.out.clone()
    }
}

/// The two schemas of a subscription, made once (they are read for every change).
fn schemas(def: &TableDef, columns: &[usize], all_users: bool) -> (SchemaRef, SchemaRef) {
    let rows = Arc::new(Schema::new(
        def.query_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut fields: Vec<Field> = columns.iter().map(|i| rows.field(*i).clone()).collect();
    fields.push(Field::new("_seq", DataType::Int64, false));
    fields.push(Field::new("_op", DataType::Int8, false));
    if all_users {
        fields.push(Field::new("_user_id", DataType::Utf8, false));
    }
    (rows, Arc::new(Schema::new(fields)))
}
