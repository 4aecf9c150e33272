//! Primary-key point reads without DataFusion: `SELECT * | col, ... FROM t WHERE pk = value`,
//! the value a literal or a parameter. Most of an app's reads are this one shape, and planning
//! it costs many times the read.
//!
//! The fast path answers only what it is sure the full path answers the same way: the table is
//! found through the same catalog (the same rights, the same partition, a transaction's own
//! changes), the columns through the same schema, and the key value must have the key's type
//! (or be an integer literal that fits it). Anything else, and every error, goes the full way,
//! so errors are always the full path's own.

use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, SelectItem, SetExpr, Statement, TableFactor, Value,
};

use super::select;
use crate::engine::{Database, Tables};
use crate::provider::table::PartitionTable;
use crate::session::Caller;

/// Where the key's value comes from.
#[derive(Debug, Clone)]
enum KeyValue {
    /// A literal in the statement.
    Literal(ScalarValue),
    /// The parameter at this position (`$1` is 0).
    Param(usize),
}

/// A statement of the point-read shape.
#[derive(Debug, Clone)]
pub struct PointQuery {
    table: Vec<Ident>,
    /// `None`: `*`.
    columns: Option<Vec<Ident>>,
    key_column: Ident,
    key: KeyValue,
}

/// The point read `stmt` is, if it is exactly one: nothing else in it (no alias, join, order,
/// limit, distinct, grouping or other clause) than the projection, the table and `pk = value`.
pub fn shape(stmt: &Statement) -> Option<PointQuery> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    // Rebuilt from its three parts, the statement must come out the same: every other clause
    // is absent.
    let rebuilt = select::select(s.projection.clone(), s.from.clone(), s.selection.clone());
    if rebuilt != *stmt {
        return None;
    }
    let [from] = s.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table { name, .. } = &from.relation else {
        return None;
    };
    if select::table_named(name.clone()) != from.relation {
        return None;
    }
    let table = plain_parts(name)?;
    let columns = match s.projection.as_slice() {
        [SelectItem::Wildcard(opts)] if *opts == Default::default() => None,
        items => Some(
            items
                .iter()
                .map(|i| match i {
                    SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(id.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    let Some(Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    }) = &s.selection
    else {
        return None;
    };
    let (key_column, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Identifier(c), Expr::Value(v)) | (Expr::Value(v), Expr::Identifier(c)) => {
            (c.clone(), &v.value)
        }
        _ => return None,
    };
    let key = match value {
        Value::Placeholder(p) => KeyValue::Param(super::dml::placeholder_index(p).ok()?),
        Value::Number(n, false) => KeyValue::Literal(ScalarValue::Int64(Some(n.parse().ok()?))),
        Value::SingleQuotedString(s) => KeyValue::Literal(ScalarValue::Utf8(Some(s.clone()))),
        _ => return None,
    };
    Some(PointQuery {
        table,
        columns,
        key_column,
        key,
    })
}

/// The parts of a table name, each a plain identifier.
fn plain_parts(name: &ObjectName) -> Option<Vec<Ident>> {
    name.0
        .iter()
        .map(|p| p.as_ident().cloned())
        .collect::<Option<Vec<_>>>()
}

/// An identifier as DataFusion resolves it: unquoted names fold to lower case.
fn normalized(id: &Ident) -> Option<String> {
    match id.quote_style {
        Some('"') => Some(id.value.clone()),
        Some(_) => None,
        // Folding is only certain to agree for ASCII names.
        None if id.value.is_ascii() => Some(id.value.to_ascii_lowercase()),
        None => None,
    }
}

/// The key value as the key column's type, when the full path would compare them without a
/// cast that could fail: a parameter of exactly that type, an integer literal that fits an
/// integer key, a string literal for a text key.
fn key_value(key: &KeyValue, params: &[ScalarValue], ty: &DataType) -> Option<ScalarValue> {
    match key {
        KeyValue::Param(i) => {
            let v = params.get(*i)?;
            (v.data_type() == *ty && !v.is_null()).then(|| v.clone())
        }
        KeyValue::Literal(v @ ScalarValue::Int64(_)) if ty.is_integer() => {
            let cast = v.cast_to(ty).ok()?;
            // A value that does not fit would not be cut to fit by the full path.
            (cast.cast_to(&DataType::Int64).ok()? == *v).then_some(cast)
        }
        KeyValue::Literal(v @ ScalarValue::Utf8(_)) if *ty == DataType::Utf8 => Some(v.clone()),
        KeyValue::Literal(_) => None,
    }
}

/// Reads `q` for `caller` with `params` bound; `None` when the full path must answer (the
/// table is not a plain table the caller may read, a name does not resolve, the value needs a
/// cast, or anything failed).
pub async fn read(
    db: &Arc<Database>,
    caller: &Caller,
    q: &PointQuery,
    params: &[ScalarValue],
) -> Option<RecordBatch> {
    let Tables::Catalog {
        catalog,
        default_schema,
    } = super::plan::tables(db, caller)
    else {
        return None;
    };
    let parts: Vec<String> = q.table.iter().map(normalized).collect::<Option<_>>()?;
    let (namespace, table) = match parts.as_slice() {
        [t] => (default_schema, t.clone()),
        [ns, t] => (ns.clone(), t.clone()),
        [c, ns, t] if c == quilldb_flight::CATALOG => (ns.clone(), t.clone()),
        _ => return None,
    };
    let provider = catalog.schema(&namespace)?.table(&table).await.ok()??;
    let table = provider.downcast_ref::<PartitionTable>()?;
    let (_, pk) = table.definition().key()?;
    if normalized(&q.key_column)? != pk.name {
        return None;
    }
    let key = key_value(&q.key, params, &pk.ty.arrow())?;
    let schema = provider.schema();
    let projection: Vec<usize> = match &q.columns {
        None => (0..schema.fields().len()).collect(),
        Some(cols) => {
            let mut out = Vec::with_capacity(cols.len());
            for c in cols {
                let i = schema.index_of(&normalized(c)?).ok()?;
                // The full path refuses a column named twice.
                if out.contains(&i) {
                    return None;
                }
                out.push(i);
            }
            out
        }
    };
    table.point(&projection, &key).await.ok()
}
