//! UPDATE and DELETE: the rows they change are selected by a query planned from the statement's
//! AST (its table, alias and WHERE), then written back only if no one changed them since.

//! writer applies atomically; row selection and expressions are DataFusion's.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Assignment, AssignmentTarget, Delete, Expr, FromTable, ObjectName, SelectItem, Statement,
    TableAlias, TableFactor, Update,
};
use quilldb_storage::hot::{SEQ_COLUMN, WriteMode};
use quilldb_storage::keys::PartitionKey;

use crate::authz::Access;
use crate::catalog::TableDef;
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::sql::select::{column, from, named, select, table};

use super::{Planned, no_system_column, ops_for, seqs, validate_rows};

/// `SET col = expr, ...` by column name: each a column of `def`, none a system column or the
/// primary key.
pub(super) fn assignments(def: &TableDef, list: &[Assignment]) -> Result<HashMap<String, Expr>> {
    let pk = def.key().map(|(_, c)| c.name.as_str());
    let mut out = HashMap::with_capacity(list.len());
    for a in list {
        let AssignmentTarget::ColumnName(n) = &a.target else {
            return Err(Error::InvalidArgument(
                "tuple assignments are not supported".into(),
            ));
        };
        let col = crate::sql::parser::name_parts(n)?
            .last()
            .cloned()
            .unwrap_or_default();
        no_system_column(&col)?;
        if def.column(&col).is_none() {
            return Err(Error::NotFound(format!(
                "column {col} does not exist in {}",
                def.qualified()
            )));
        }
        if Some(col.as_str()) == pk {
            return Err(Error::InvalidArgument(format!(
                "the primary key {col} cannot be updated: delete the row and insert it again"
            )));
        }
        out.insert(col, a.value.clone());
    }
    Ok(out)
}

/// `SELECT <every column, assigned or kept>, _seq FROM <relation> [WHERE ...]`.
pub(super) fn changed_rows(
    def: &TableDef,
    relation: TableFactor,
    assignments: &HashMap<String, Expr>,
    selection: Option<Expr>,
) -> Statement {
    let mut projection: Vec<SelectItem> = def
        .columns
        .iter()
        .map(|c| match assignments.get(&c.name) {
            Some(e) => named(Expr::Nested(Box::new(e.clone())), &c.name),
            None => SelectItem::UnnamedExpr(column(&c.name)),
        })
        .collect();
    projection.push(SelectItem::UnnamedExpr(column(SEQ_COLUMN)));
    select(projection, from(relation), selection)
}

pub(super) fn push_updates(
    def: &TableDef,
    partition: &Arc<PartitionKey>,
    batches: Vec<RecordBatch>,
    out: &mut Planned,
) -> Result<()> {
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        let seq = seqs(&b)?;
        let cols = def
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| crate::catalog::types::cast_column(b.column(i), &c.name, c.ty))
            .collect::<Result<Vec<_>>>()?;
        let batch = validate_rows(def, cols)?;
        ops_for(
            def,
            partition,
            &batch,
            |i| WriteMode::IfSeq(seq[i]),
            false,
            out,
        )?;
    }
    Ok(())
}

/// The table a statement changes and its alias.
pub(super) fn table_factor(f: &TableFactor) -> Result<(&ObjectName, Option<TableAlias>)> {
    match f {
        TableFactor::Table { name, alias, .. } => Ok((name, alias.clone())),
        other => Err(Error::InvalidArgument(format!(
            "cannot change rows of {other}"
        ))),
    }
}

/// `def` named in full, with the statement's alias.
pub(super) fn qualified(def: &TableDef, alias: Option<TableAlias>) -> TableFactor {
    let mut relation = table(&[&def.namespace, &def.name]);
    if let TableFactor::Table { alias: a, .. } = &mut relation {
        *a = alias;
    }
    relation
}

pub(super) async fn update(
    db: &Arc<Database>,
    caller: &Caller,
    u: &Update,
    params: &[ScalarValue],
) -> Result<Planned> {
    if !u.table.joins.is_empty() || u.from.is_some() {
        return Err(Error::Unsupported("UPDATE with joins or FROM".into()));
    }
    let (name, alias) = table_factor(&u.table.relation)?;
    let def = db.table_for(caller, name, Access::Write)?;
    let relation = qualified(&def, alias);
    let assignments = assignments(&def, &u.assignments)?;
    let stmt = changed_rows(&def, relation, &assignments, u.selection.clone());
    let batches = crate::sql::plan::query_batches(db, caller, stmt, params).await?;
    let partition = Arc::new(PartitionKey::new(def.id, &db.partition_of(&def, caller)?)?);
    let mut out = Planned::default();
    push_updates(&def, &partition, batches, &mut out)?;
    Ok(out)
}

pub(super) async fn delete(
    db: &Arc<Database>,
    caller: &Caller,
    d: &Delete,
    params: &[ScalarValue],
) -> Result<Planned> {
    let from = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
    };
    if from.len() != 1 || !from[0].joins.is_empty() || d.using.is_some() || !d.tables.is_empty() {
        return Err(Error::Unsupported("DELETE from several tables".into()));
    }
    let (name, alias) = table_factor(&from[0].relation)?;
    let def = db.table_for(caller, name, Access::Write)?;
    let key = def.key();
    let mut projection: Vec<SelectItem> = key
        .iter()
        .map(|(_, pk)| SelectItem::UnnamedExpr(column(&pk.name)))
        .collect();
    projection.push(SelectItem::UnnamedExpr(column(SEQ_COLUMN)));
    let stmt = select(
        projection,
        crate::sql::select::from(qualified(&def, alias)),
        d.selection.clone(),
    );
    let batches = crate::sql::plan::query_batches(db, caller, stmt, params).await?;
    let partition = Arc::new(PartitionKey::new(def.id, &db.partition_of(&def, caller)?)?);
    let mut out = Planned::default();
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        let seq = seqs(&b)?;
        let Some((pk_index, pk)) = key else {
            // Rows identified by `_seq`: the versions alone say what goes.
            ops_for(
                &def,
                &partition,
                &b,
                |i| WriteMode::ReplaceVersion(seq[i]),
                true,
                &mut out,
            )?;
            continue;
        };
        let key = crate::catalog::types::cast_column(b.column(0), &pk.name, pk.ty)?;
        // ops_for reads the key at the table's pk position; build a batch that has it there.
        let mut cols: Vec<ArrayRef> = def
            .columns
            .iter()
            .map(|c| new_null_array(&c.ty.arrow(), b.num_rows()))
            .collect();
        cols[pk_index] = key;
        let schema = Arc::new(arrow::datatypes::Schema::new(
            def.columns
                .iter()
                .map(|c| arrow::datatypes::Field::new(&c.name, c.ty.arrow(), true))
                .collect::<Vec<_>>(),
        ));
        let keys_only = RecordBatch::try_new(schema, cols)?;
        ops_for(
            &def,
            &partition,
            &keys_only,
            |i| WriteMode::IfSeq(seq[i]),
            true,
            &mut out,
        )?;
    }
    Ok(out)
}
