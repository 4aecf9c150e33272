//! INSERT ... ON CONFLICT (pk) DO UPDATE: the conflicting rows are read by key, and the
//! assignments run over them and the new rows (`excluded`) as a query of their own, planned from
//! the statement's AST.

//! writer applies atomically; row selection and expressions are DataFusion's.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr, Ident, visit_expressions_mut};
use quilldb_storage::hot::WriteMode;
use quilldb_storage::keys::PartitionKey;

use crate::catalog::TableDef;
use crate::engine::Database;
use crate::engine::keys::{display_key, encode_pk_array};
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::sql::parser::normalize;
use crate::sql::select::table;

use super::change::{assignments, changed_rows, push_updates};
use super::{Planned, ops_for};

#[allow(clippy::too_many_arguments)]
pub(super) async fn upsert(
    db: &Arc<Database>,
    caller: &Caller,
    def: &Arc<TableDef>,
    partition: &Arc<PartitionKey>,
    batch: RecordBatch,
    du: &datafusion::sql::sqlparser::ast::DoUpdate,
    params: &[ScalarValue],
    out: &mut Planned,
) -> Result<()> {
    let (pk_index, pk) = def.pk()?;
    let keys = encode_pk_array(batch.column(pk_index))?;
    let mut seen = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        if seen.insert(k.clone(), i).is_some() {
            return Err(Error::InvalidArgument(format!(
                "ON CONFLICT DO UPDATE cannot change the row {} = {} twice in one statement",
                pk.name,
                display_key(batch.column(pk_index), i)
            )));
        }
    }
    let (_, found) = db
        .read(def.clone(), (**partition).clone())?
        .keys(Some(keys.clone()))
        .collect()
        .await?;
    let existing = concat_batches(&def.query_schema(), &found)?;
    let existing_keys = encode_pk_array(existing.column(pk_index))?;
    let at: HashMap<&[u8], usize> = existing_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_slice(), i))
        .collect();
    let (mut fresh, mut conflicting, mut old_rows) = (Vec::new(), Vec::new(), Vec::new());
    for (i, k) in keys.iter().enumerate() {
        match at.get(k.as_slice()) {
            Some(j) => {
                conflicting.push(i as u32);
                old_rows.push(*j as u32);
            }
            None => fresh.push(i as u32),
        }
    }
    if !fresh.is_empty() {
        let idx = UInt32Array::from(fresh);
        let cols = batch
            .columns()
            .iter()
            .map(|c| take(c, &idx, None))
            .collect::<Result<Vec<_>, _>>()?;
        ops_for(
            def,
            partition,
            &RecordBatch::try_new(batch.schema(), cols)?,
            |_| WriteMode::InsertNew,
            false,
            out,
        )?;
    }
    if conflicting.is_empty() {
        return Ok(());
    }
    // Scratch rows: the existing row's columns and _seq, then EXCLUDED's as __excluded_<col>.
    let old_idx = UInt32Array::from(old_rows);
    let new_idx = UInt32Array::from(conflicting);
    let mut fields: Vec<arrow::datatypes::Field> = existing
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut cols: Vec<ArrayRef> = existing
        .columns()
        .iter()
        .map(|c| take(c, &old_idx, None))
        .collect::<Result<_, _>>()?;
    for (i, c) in def.columns.iter().enumerate() {
        fields.push(arrow::datatypes::Field::new(
            format!("__excluded_{}", c.name),
            c.ty.arrow(),
            true,
        ));
        cols.push(take(batch.column(i), &new_idx, None)?);
    }
    let scratch = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), cols)?;
    let mut assignments = assignments(def, &du.assignments)?;
    for e in assignments.values_mut() {
        rewrite_excluded(e);
    }
    let mut selection = du.selection.clone();
    if let Some(s) = selection.as_mut() {
        rewrite_excluded(s);
    }
    let stmt = changed_rows(def, table(&[&def.name]), &assignments, selection);
    let updated =
        crate::sql::plan::scratch_query(db, caller, &def.name, scratch, stmt, params).await?;
    push_updates(def, partition, updated, out)
}

pub(super) fn rewrite_excluded(e: &mut Expr) {
    let _ = visit_expressions_mut(e, |x: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = x
            && parts.len() == 2
            && parts[0].value.eq_ignore_ascii_case("excluded")
        {
            *x = Expr::Identifier(Ident::new(format!("__excluded_{}", normalize(&parts[1]))));
        }
        ControlFlow::<()>::Continue(())
    });
}
