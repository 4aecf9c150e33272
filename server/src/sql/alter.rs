//! ALTER TABLE: ADD / DROP / RENAME COLUMN and SET (options). Each makes a new schema version
//! over stable column ids: stored rows (hot versions and Parquet segments alike) are never
//! rewritten, they are read through the current schema. Writers see the new definition from
//! the instant the catalog switches.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, StringArray};
use arrow::compute::kernels::cmp::lt_eq;
use arrow::compute::{and, is_null};
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{AlterTable, AlterTableOperation};

use super::ddl::{TableOption, check_options_apply, column_def, table_option};
use super::dml::cast_column;
use super::parser::normalize;
use crate::catalog::{ColumnDef, DefaultExpr, TableDef, TableType};
use crate::db::Database;
use crate::error::{Error, Result};
use crate::session::Caller;

/// Runs ALTER TABLE.
pub async fn alter_table(db: &Arc<Database>, caller: &Caller, stmt: &AlterTable) -> Result<()> {
    let (ns, table) = db.resolve_table_name(caller, &stmt.name)?;
    if !db.catalog.has_namespace(&ns) {
        return Err(Error::NotFound(format!("namespace {ns} does not exist")));
    }
    if db.catalog.table(&ns, &table).is_none() {
        return if stmt.if_exists {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "table {ns}.{table} does not exist"
            )))
        };
    }
    // Versions written before an added column existed read its default up to this `_seq`.
    let fill_before = db.hot.seq().last();
    let def = db
        .catalog
        .alter_table(&ns, &table, |current| {
            let mut def = current.clone();
            for op in &stmt.operations {
                apply(&mut def, op, fill_before)?;
            }
            Ok(def)
        })
        .await?;
    tracing::info!(table = %def.qualified(), schema_version = def.schema_version, "table altered");
    db.live.end_table(
        def.id,
        "schema_changed",
        &format!(
            "{} was altered (schema version {}): subscribe again",
            def.qualified(),
            def.schema_version
        ),
    );
    Ok(())
}

fn apply(def: &mut TableDef, op: &AlterTableOperation, fill_before: u64) -> Result<()> {
    match op {
        AlterTableOperation::AddColumn {
            column_def: c,
            if_not_exists,
            ..
        } => {
            let mut col = column_def(c, def.next_column_id)?;
            if def.column(&col.name).is_some() {
                return if *if_not_exists {
                    Ok(())
                } else {
                    Err(Error::AlreadyExists(format!(
                        "column {} already exists in {}",
                        col.name,
                        def.qualified()
                    )))
                };
            }
            if col.primary_key {
                return Err(Error::InvalidArgument(
                    "ALTER TABLE cannot add a PRIMARY KEY column: a table has exactly one, set at CREATE".into(),
                ));
            }
            match &col.default {
                Some(DefaultExpr::Literal(Some(v))) => {
                    // Checks the default fits the type now, not at the first read.
                    cast_column(
                        &(Arc::new(StringArray::from(vec![v.clone()])) as ArrayRef),
                        &col.name,
                        col.ty,
                    )?;
                    col.fill_before = Some(fill_before);
                }
                _ if !col.nullable => {
                    return Err(Error::InvalidArgument(format!(
                        "column {}: a NOT NULL column added to a table needs a constant DEFAULT \
                         for the rows already there",
                        col.name
                    )));
                }
                _ => {}
            }
            def.next_column_id += 1;
            def.columns.push(col);
        }
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            ..
        } => {
            for name in column_names {
                let name = normalize(name);
                let Some((i, c)) = def.column(&name) else {
                    if *if_exists {
                        continue;
                    }
                    return Err(Error::NotFound(format!(
                        "column {name} does not exist in {}",
                        def.qualified()
                    )));
                };
                if c.primary_key {
                    return Err(Error::InvalidArgument(format!(
                        "column {name} is the primary key and cannot be dropped"
                    )));
                }
                if def.columns.len() == 1 {
                    return Err(Error::InvalidArgument(
                        "a table needs at least one column".into(),
                    ));
                }
                def.columns.remove(i);
            }
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => {
            let old = normalize(old_column_name);
            let new = normalize(new_column_name);
            crate::catalog::names::validate(crate::catalog::names::NameKind::Column, &new)?;
            if def.column(&new).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "column {new} already exists in {}",
                    def.qualified()
                )));
            }
            let Some((i, _)) = def.column(&old) else {
                return Err(Error::NotFound(format!(
                    "column {old} does not exist in {}",
                    def.qualified()
                )));
            };
            def.columns[i].name = new;
        }
        AlterTableOperation::SetOptionsParens { options } => {
            for opt in options {
                let parsed = table_option(opt)?;
                let (ttl, access, flush) = match &parsed {
                    TableOption::Ttl(_) => (true, false, false),
                    TableOption::Access(_) => (false, true, false),
                    TableOption::FlushPolicy(_) => (false, false, true),
                    TableOption::Type(_) | TableOption::Storage(_) => (false, false, false),
                };
                check_options_apply(def.table_type, ttl, access, flush)?;
                match parsed {
                    TableOption::FlushPolicy(p) => def.flush_policy = p,
                    TableOption::Ttl(t) => def.ttl_seconds = Some(t),
                    TableOption::Access(a) => def.access_level = a,
                    TableOption::Type(_) => {
                        return Err(Error::InvalidArgument(
                            "option TYPE cannot be changed by ALTER TABLE".into(),
                        ));
                    }
                    TableOption::Storage(_) => {
                        return Err(Error::InvalidArgument(
                            "option STORAGE_ID cannot be changed by ALTER TABLE yet: existing \
                             segments would have to move"
                                .into(),
                        ));
                    }
                }
            }
            debug_assert!(def.table_type != TableType::Stream || def.ttl_seconds.is_some());
        }
        other => {
            return Err(Error::Unsupported(format!(
                "ALTER TABLE {other}: QuillDB supports ADD COLUMN, DROP COLUMN, RENAME COLUMN and SET (...)"
            )));
        }
    }
    Ok(())
}

/// Columns added with a constant default, among `columns` (stable ids of a read): the position,
/// the `_seq` bound and the value.
pub fn fills(def: &TableDef, columns: &[u32]) -> Vec<(usize, u64, ScalarValue)> {
    columns
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let c: &ColumnDef = def.columns.iter().find(|c| c.id == *id)?;
            let bound = c.fill_before?;
            let Some(DefaultExpr::Literal(Some(v))) = &c.default else {
                return None;
            };
            let a = cast_column(
                &(Arc::new(StringArray::from(vec![v.clone()])) as ArrayRef),
                &c.name,
                c.ty,
            )
            .ok()?;
            Some((i, bound, ScalarValue::try_from_array(&a, 0).ok()?))
        })
        .collect()
}

/// Gives rows written before a column was added its default: NULLs in versions at or below the
/// bound. `seq` is the batch's `_seq` column.
pub fn apply_fills(
    batch: RecordBatch,
    seq: usize,
    fills: &[(usize, u64, ScalarValue)],
) -> Result<RecordBatch> {
    if fills.is_empty() || batch.num_rows() == 0 {
        return Ok(batch);
    }
    let seqs = batch
        .column(seq)
        .as_any()
        .downcast_ref::<arrow::array::PrimitiveArray<Int64Type>>()
        .ok_or_else(|| Error::Internal("_seq is not BIGINT".into()))?
        .clone();
    let mut cols = batch.columns().to_vec();
    for (i, bound, value) in fills {
        let old = arrow::array::Int64Array::new_scalar(*bound as i64);
        let before: BooleanArray = lt_eq(&seqs, &old)?;
        let mask = and(&is_null(&cols[*i])?, &before)?;
        if mask.true_count() == 0 {
            continue;
        }
        let filled = value.to_array_of_size(batch.num_rows())?;
        cols[*i] = arrow::compute::kernels::zip::zip(&mask, &filled, &cols[*i])?;
    }
    debug_assert!(matches!(
        batch.schema().field(seq).data_type(),
        DataType::Int64
    ));
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}
