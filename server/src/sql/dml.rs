//! INSERT, UPDATE and DELETE. Each statement is planned into row ops that the hot store's
//! writer applies atomically; row selection and expressions are DataFusion's.

/// UPDATE and DELETE.
mod change;
/// INSERT ... ON CONFLICT DO UPDATE.
mod upsert;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringArray, new_null_array};
use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr, Insert, OnConflictAction, OnInsert, SetExpr, TableObject, UnaryOperator, Value,
};
use quilldb_storage::codec::encode_rows;
use quilldb_storage::hot::{RowOp, WriteMode};
use quilldb_storage::keys::PartitionKey;

use crate::authz::Access;
use crate::catalog::types::SqlType;
use crate::catalog::{DefaultExpr, TableDef};
use crate::engine::Database;
use crate::engine::keys::{display_key, encode_pk_array};
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::sql::parser::{Command, normalize};

/// Row ops of one statement execution, with what the duplicate-key error needs.
#[derive(Default)]
pub struct Planned {
    /// The ops.
    pub ops: Vec<RowOp>,
    /// For each op: `table`, `column = value` of its key.
    pub keys: Vec<(String, String)>,
}

fn no_system_column(name: &str) -> Result<()> {
    if name.starts_with('_') {
        return Err(Error::InvalidArgument(format!(
            "{name} is a system column and cannot be written"
        )));
    }
    Ok(())
}

/// The zero-based index of a placeholder such as `$2` (the parser turns `?` into `$n`).
pub fn placeholder_index(p: &str) -> Result<usize> {
    p.strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(|| Error::InvalidArgument(format!("bad placeholder {p}: use $1, $2, ...")))
}

/// The value of a placeholder such as `$2`.
fn placeholder(p: &str, params: &[ScalarValue]) -> Result<ScalarValue> {
    params.get(placeholder_index(p)?).cloned().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "placeholder {p} has no value: {} parameter(s) were bound",
            params.len()
        ))
    })
}

/// A VALUES item that needs no planning: a constant or a parameter.
fn simple_value(e: &Expr, params: &[ScalarValue]) -> Result<Option<ScalarValue>> {
    Ok(match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(ScalarValue::Utf8(Some(n.clone()))),
            Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            Value::Null => Some(ScalarValue::Null),
            Value::Placeholder(p) => Some(placeholder(p, params)?),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some(ScalarValue::Utf8(Some(format!("-{n}")))),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

fn cast_scalar(v: ScalarValue, column: &str, ty: SqlType) -> Result<ScalarValue> {
    let target = ty.arrow();
    if v.is_null() {
        return Ok(ScalarValue::try_from(&target)?);
    }
    v.cast_to(&target).map_err(|_| {
        Error::InvalidArgument(format!("column {column}: value {v} does not fit {ty}"))
    })
}

/// One column of VALUES items. Literals arrive as text (typed by their column, as PostgreSQL
/// types unknown literals): a column of text and NULLs is cast as one array, which is what makes
/// many-row statements cheap; columns with typed parameters are cast value by value.
fn literal_column(vals: Vec<ScalarValue>, name: &str, ty: SqlType) -> Result<ArrayRef> {
    if vals.is_empty() {
        return Ok(arrow::array::new_empty_array(&ty.arrow()));
    }
    let all_text = vals
        .iter()
        .all(|v| matches!(v, ScalarValue::Utf8(_) | ScalarValue::Null));
    if all_text {
        let text: StringArray = vals
            .iter()
            .map(|v| match v {
                ScalarValue::Utf8(s) => s.as_deref(),
                _ => None,
            })
            .collect();
        return crate::catalog::types::cast_column(&(Arc::new(text) as ArrayRef), name, ty);
    }
    let cast = vals
        .into_iter()
        .map(|v| cast_scalar(v, name, ty))
        .collect::<Result<Vec<_>>>()?;
    Ok(ScalarValue::iter_to_array(cast)?)
}

/// The INSERT's source rows, one array per target column, cast to the column types.
async fn source_columns(
    db: &Arc<Database>,
    caller: &Caller,
    ins: &Insert,
    targets: &[(String, SqlType)],
    params: &[ScalarValue],
) -> Result<Vec<ArrayRef>> {
    let source = ins
        .source
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("INSERT needs VALUES or a SELECT".into()))?;
    if let SetExpr::Values(values) = source.body.as_ref()
        && source.order_by.is_none()
        && source.limit_clause.is_none()
    {
        let mut columns: Vec<Vec<ScalarValue>> =
            vec![Vec::with_capacity(values.rows.len()); targets.len()];
        let mut simple = true;
        'rows: for row in &values.rows {
            if row.len() != targets.len() {
                return Err(Error::InvalidArgument(format!(
                    "INSERT has {} target columns but a VALUES row has {} values",
                    targets.len(),
                    row.len()
                )));
            }
            for (i, e) in row.iter().enumerate() {
                match simple_value(e, params)? {
                    Some(v) => columns[i].push(v),
                    None => {
                        simple = false;
                        break 'rows;
                    }
                }
            }
        }
        if simple {
            return columns
                .into_iter()
                .zip(targets)
                .map(|(vals, (name, ty))| literal_column(vals, name, *ty))
                .collect();
        }
    }
    let stmt = datafusion::sql::sqlparser::ast::Statement::Query(source.clone());
    let batches = super::plan::query_batches(db, caller, stmt, params).await?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            return Ok(targets
                .iter()
                .map(|(_, t)| arrow::array::new_empty_array(&t.arrow()))
                .collect());
        }
    };
    let batch = concat_batches(&schema, &batches)?;
    if batch.num_columns() != targets.len() {
        return Err(Error::InvalidArgument(format!(
            "INSERT has {} target columns but its source has {}",
            targets.len(),
            batch.num_columns()
        )));
    }
    batch
        .columns()
        .iter()
        .zip(targets)
        .map(|(a, (name, ty))| crate::catalog::types::cast_column(a, name, *ty))
        .collect()
}

/// The default values of a column for `rows` new rows.
pub(crate) fn default_column(
    db: &Database,
    caller: &Caller,
    def: &TableDef,
    i: usize,
    rows: usize,
    now_us: i64,
) -> Result<ArrayRef> {
    let col = &def.columns[i];
    let target = col.ty.arrow();
    let a: ArrayRef = match &col.default {
        None | Some(DefaultExpr::Literal(None)) => new_null_array(&target, rows),
        Some(DefaultExpr::SnowflakeId) => {
            let seq = db.hot.seq();
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|_| seq.next_id() as i64),
            ))
        }
        Some(DefaultExpr::UuidV7) => Arc::new(StringArray::from_iter_values(
            (0..rows).map(|_| uuid::Uuid::now_v7().to_string()),
        )),
        Some(DefaultExpr::Now) => Arc::new(
            arrow::array::TimestampMicrosecondArray::from(vec![now_us; rows]).with_timezone("UTC"),
        ),
        Some(DefaultExpr::CurrentUser) => {
            Arc::new(StringArray::from(vec![caller.user.clone(); rows]))
        }
        Some(DefaultExpr::Literal(Some(v))) => Arc::new(StringArray::from(vec![v.clone(); rows])),
    };
    if matches!(col.default, Some(DefaultExpr::Now)) && col.ty == SqlType::Timestamp {
        // NOW() is an instant; a TIMESTAMP column keeps it as UTC wall time.
        return Ok(Arc::new(arrow::array::TimestampMicrosecondArray::from(
            vec![now_us; rows],
        )));
    }
    crate::catalog::types::cast_column(&a, &col.name, col.ty)
}

/// Checks NOT NULL, JSON and UUID columns; UUIDs are rewritten in canonical form.
pub(crate) fn validate_rows(def: &TableDef, mut cols: Vec<ArrayRef>) -> Result<RecordBatch> {
    for (i, c) in def.columns.iter().enumerate() {
        let a = &cols[i];
        if !c.nullable && a.null_count() > 0 {
            return Err(Error::InvalidArgument(format!(
                "column {} of {} cannot be NULL",
                c.name,
                def.qualified()
            )));
        }
        match c.ty {
            SqlType::Json => {
                for v in a.as_string::<i32>().iter().flatten() {
                    serde_json::from_str::<serde::de::IgnoredAny>(v).map_err(|e| {
                        Error::InvalidArgument(format!("column {}: invalid JSON: {e}", c.name))
                    })?;
                }
            }
            SqlType::Uuid => {
                let canonical: StringArray = a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| {
                        v.map(|s| {
                            uuid::Uuid::parse_str(s)
                                .map(|u| u.hyphenated().to_string())
                                .map_err(|_| {
                                    Error::InvalidArgument(format!(
                                        "column {}: {s:?} is not a UUID",
                                        c.name
                                    ))
                                })
                        })
                        .transpose()
                    })
                    .collect::<Result<_>>()?;
                cols[i] = Arc::new(canonical);
            }
            _ => {}
        }
    }
    Ok(RecordBatch::try_new(def.data_schema(), cols)?)
}

fn column_ids(def: &TableDef) -> Vec<u32> {
    def.columns.iter().map(|c| c.id).collect()
}

pub(crate) fn ops_for(
    def: &TableDef,
    partition: &Arc<PartitionKey>,
    batch: &RecordBatch,
    modes: impl Fn(usize) -> WriteMode,
    delete: bool,
    out: &mut Planned,
) -> Result<()> {
    let live_from = def.live_from();
    let rows = if delete {
        Vec::new()
    } else {
        encode_rows(batch, &column_ids(def))?
    };
    let mut rows = rows.into_iter();
    let Some((pk_index, pk)) = def.key() else {
        // Rows identified by `_seq`: an insert appends, a change names the version.
        // No labels: only a duplicate key names its row, and these rows have none.
        for i in 0..batch.num_rows() {
            let mode = match modes(i) {
                WriteMode::IfSeq(seq) | WriteMode::ReplaceVersion(seq) => {
                    WriteMode::ReplaceVersion(seq)
                }
                WriteMode::InsertNew | WriteMode::InsertIgnore | WriteMode::Append => {
                    WriteMode::Append
                }
                WriteMode::Upsert => {
                    return Err(Error::InvalidArgument(format!(
                        "{} has no primary key to upsert by",
                        def.qualified()
                    )));
                }
            };
            out.ops.push(RowOp {
                partition: partition.clone(),
                pk: Vec::new(),
                row: if delete { None } else { rows.next() },
                mode,
                live_from,
            });
        }
        return Ok(());
    };
    let pk_col = batch.column(pk_index);
    let keys = encode_pk_array(pk_col)?;
    for (i, key) in keys.into_iter().enumerate() {
        out.ops.push(RowOp {
            partition: partition.clone(),
            pk: key,
            row: if delete { None } else { rows.next() },
            mode: modes(i),
            live_from,
        });
        out.keys.push((
            def.qualified(),
            format!("{} = {}", pk.name, display_key(pk_col, i)),
        ));
    }
    Ok(())
}

fn seqs(batch: &RecordBatch) -> Result<Vec<u64>> {
    let a = batch
        .column(batch.num_columns() - 1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| Error::Internal("_seq column missing from a DML scan".into()))?;
    Ok(a.values().iter().map(|v| *v as u64).collect())
}

/// Plans one execution of a DML command with one row of parameters.
pub async fn plan(
    db: &Arc<Database>,
    caller: &Caller,
    cmd: &Command,
    params: &[ScalarValue],
) -> Result<Planned> {
    match cmd {
        Command::Insert(ins) => insert(db, caller, ins, Source::Row(params)).await,
        Command::Update(u) => change::update(db, caller, u, params).await,
        Command::Delete(d) => change::delete(db, caller, d, params).await,
        _ => Err(Error::Internal("not a DML statement".into())),
    }
}

/// Where an INSERT's parameter values come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// One execution's values.
    Row(&'a [ScalarValue]),
    /// Every execution at once: a one-row VALUES template of constants and placeholders,
    /// filled from each row of the batch.
    Template(&'a RecordBatch),
}

/// Plans every execution of a one-row `INSERT ... VALUES ($1, $2, ...)` at once, straight from
/// the bound Arrow parameters. `None` when the statement is not such a template.
pub async fn insert_batch(
    db: &Arc<Database>,
    caller: &Caller,
    cmd: &Command,
    params: &RecordBatch,
) -> Result<Option<Planned>> {
    let Command::Insert(ins) = cmd else {
        return Ok(None);
    };
    if template_row(ins).is_none() {
        return Ok(None);
    }
    insert(db, caller, ins, Source::Template(params))
        .await
        .map(Some)
}

/// The single VALUES row of a template insert, if every item is a constant or a placeholder.
fn template_row(ins: &Insert) -> Option<&Vec<Expr>> {
    let source = ins.source.as_ref()?;
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let [row] = values.rows.as_slice() else {
        return None;
    };
    let simple = row.iter().all(|e| match e {
        Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => true,
        other => matches!(simple_value(other, &[]), Ok(Some(_))),
    });
    simple.then_some(row)
}

/// The columns of a template insert: placeholders take their parameter column, constants repeat.
fn template_columns(
    row: &[Expr],
    params: &RecordBatch,
    targets: &[(String, SqlType)],
) -> Result<Vec<ArrayRef>> {
    if row.len() != targets.len() {
        return Err(Error::InvalidArgument(format!(
            "INSERT has {} target columns but its VALUES row has {} values",
            targets.len(),
            row.len()
        )));
    }
    row.iter()
        .zip(targets)
        .map(|(e, (name, ty))| {
            if let Expr::Value(v) = e
                && let Value::Placeholder(p) = &v.value
            {
                let index = placeholder_index(p)?;
                let col = params.columns().get(index).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "placeholder {p} has no value: {} parameter(s) were bound",
                        params.num_columns()
                    ))
                })?;
                return crate::catalog::types::cast_column(col, name, *ty);
            }
            let v = simple_value(e, &[])?
                .ok_or_else(|| Error::Internal("template value is not a constant".into()))?;
            Ok(cast_scalar(v, name, *ty)?.to_array_of_size(params.num_rows())?)
        })
        .collect()
}

async fn insert(
    db: &Arc<Database>,
    caller: &Caller,
    ins: &Insert,
    source: Source<'_>,
) -> Result<Planned> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(Error::InvalidArgument(
            "INSERT INTO a table function is not supported".into(),
        ));
    };
    let def = db.table_for(caller, name, Access::Write)?;
    if ins.returning.is_some() {
        return Err(Error::Unsupported("INSERT ... RETURNING".into()));
    }
    let targets: Vec<(String, SqlType)> = if ins.columns.is_empty() {
        def.columns.iter().map(|c| (c.name.clone(), c.ty)).collect()
    } else {
        let mut t: Vec<(String, SqlType)> = Vec::with_capacity(ins.columns.len());
        for c in &ins.columns {
            let parts = crate::sql::parser::name_parts(c)?;
            let n = parts.last().cloned().unwrap_or_default();
            no_system_column(&n)?;
            let (_, col) = def.column(&n).ok_or_else(|| {
                Error::NotFound(format!("column {n} does not exist in {}", def.qualified()))
            })?;
            if t.iter().any(|(x, _)| *x == n) {
                return Err(Error::InvalidArgument(format!("column {n} is given twice")));
            }
            t.push((n, col.ty));
        }
        t
    };
    let (source, params): (Vec<ArrayRef>, &[ScalarValue]) = match source {
        Source::Row(params) => (
            source_columns(db, caller, ins, &targets, params).await?,
            params,
        ),
        Source::Template(batch) => {
            let row =
                template_row(ins).ok_or_else(|| Error::Internal("not a template insert".into()))?;
            (template_columns(row, batch, &targets)?, &[])
        }
    };
    let rows = source.first().map(|a| a.len()).unwrap_or(0);
    if rows > db.limits.max_rows_per_insert {
        return Err(Error::ResourceExhausted(format!(
            "{rows} rows in one INSERT; the limit is {}",
            db.limits.max_rows_per_insert
        )));
    }
    let mut out = Planned::default();
    if rows == 0 {
        return Ok(out);
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut cols = Vec::with_capacity(def.columns.len());
    for (i, c) in def.columns.iter().enumerate() {
        match targets.iter().position(|(n, _)| *n == c.name) {
            Some(j) => cols.push(source[j].clone()),
            None => cols.push(default_column(db, caller, &def, i, rows, now_us)?),
        }
    }
    let batch = validate_rows(&def, cols)?;
    let partition = Arc::new(PartitionKey::new(def.id, &db.partition_of(&def, caller)?)?);
    match &ins.on {
        None => ops_for(
            &def,
            &partition,
            &batch,
            |_| WriteMode::InsertNew,
            false,
            &mut out,
        )?,
        Some(OnInsert::OnConflict(oc)) => {
            if let Some(datafusion::sql::sqlparser::ast::ConflictTarget::Columns(cols)) =
                &oc.conflict_target
            {
                let (_, pk) = def.pk()?;
                if cols.len() != 1 || normalize(&cols[0]) != pk.name {
                    return Err(Error::InvalidArgument(format!(
                        "ON CONFLICT must name the primary key ({})",
                        pk.name
                    )));
                }
            }
            match &oc.action {
                OnConflictAction::DoNothing => ops_for(
                    &def,
                    &partition,
                    &batch,
                    |_| WriteMode::InsertIgnore,
                    false,
                    &mut out,
                )?,
                OnConflictAction::DoUpdate(du) => {
                    upsert::upsert(db, caller, &def, &partition, batch, du, params, &mut out)
                        .await?
                }
            }
        }
        Some(other) => return Err(Error::InvalidArgument(format!("unsupported {other}"))),
    }
    Ok(out)
}
