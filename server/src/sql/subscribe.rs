//! SUBSCRIBE: `SUBSCRIBE TO [ns.]t [WHERE cond] [OPTIONS (...)]` and `SUBSCRIBE TO SELECT a, b
//! FROM [ns.]t [WHERE cond] [OPTIONS (...)]`, parsed by the one parser, checked (one table,
//! plain columns, no aggregates, subqueries, ORDER BY or LIMIT), authorized, its filter planned
//! from the AST into a physical expression with `$n` bound from the client's parameter batch;
//! then handed to the live layer.

use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::Expr as DfExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor, visit_expressions,
};
use quilldb_flight::{SubscribeRequest, Subscription};

use super::command::{SUBSCRIBE_NO_LIMIT, SUBSCRIBE_NO_ORDER};
use super::parser::{Command, normalize, parse};
use crate::authz::Access;
use crate::catalog::{TableDef, TableType};
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::live::LiveHub;
use crate::live::query::LiveQuery;
use crate::session::{Caller, Role};

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Opens the subscription `request` for `caller`.
pub fn open(
    db: &Arc<Database>,
    hub: &Arc<LiveHub>,
    caller: &Caller,
    request: SubscribeRequest,
) -> Result<Subscription> {
    let q = build(db, caller, &request.sql, request.params.as_ref())?;
    crate::live::subscribe(db, hub, caller, q)
}

/// Parses and authorizes a subscription for `caller`.
pub fn build(
    db: &Arc<Database>,
    caller: &Caller,
    sql: &str,
    params: Option<&RecordBatch>,
) -> Result<LiveQuery> {
    let Command::Subscribe { query, options } = parse(sql, &db.limits.text)? else {
        return Err(invalid(
            "a subscription reads SUBSCRIBE TO [ns.]table ... or SUBSCRIBE TO SELECT ...",
        ));
    };
    let Statement::Query(query) = *query else {
        return Err(invalid("SUBSCRIBE TO takes a table or one SELECT"));
    };
    if query.with.is_some() {
        return Err(invalid("a subscription cannot use WITH"));
    }
    if query.order_by.is_some() {
        return Err(invalid(SUBSCRIBE_NO_ORDER));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(invalid(SUBSCRIBE_NO_LIMIT));
    }
    let SetExpr::Select(s) = *query.body else {
        return Err(invalid(
            "a subscription reads one SELECT: no UNION, INTERSECT or VALUES",
        ));
    };
    if s.distinct.is_some() {
        return Err(invalid("a subscription cannot use DISTINCT"));
    }
    if !matches!(&s.group_by, GroupByExpr::Expressions(e, _) if e.is_empty()) || s.having.is_some()
    {
        return Err(invalid("a subscription cannot use GROUP BY or HAVING"));
    }
    let [from] = s.from.as_slice() else {
        return Err(invalid("a subscription reads exactly one table"));
    };
    if !from.joins.is_empty() {
        return Err(invalid(
            "a subscription cannot use JOIN: it reads one table",
        ));
    }
    let TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return Err(invalid(
            "a subscription reads a table, not a subquery or function",
        ));
    };
    let def = db.table_for(caller, name, Access::Read)?;
    if options.all_users {
        crate::authz::require(caller.role, Role::Service, "subscribe with all_users")?;
        if def.table_type == TableType::Shared {
            return Err(invalid(format!(
                "all_users is for USER and STREAM tables; {} is SHARED",
                def.qualified()
            )));
        }
    }
    let mut columns = Vec::new();
    for item in &s.projection {
        match item {
            SelectItem::Wildcard(_) => columns.extend(0..def.columns.len()),
            SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                let n = normalize(id);
                let (i, _) = def.column(&n).ok_or_else(|| {
                    Error::InvalidArgument(format!("{} has no column {n}", def.qualified()))
                })?;
                columns.push(i);
            }
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                let n = parts.last().map(normalize).unwrap_or_default();
                let (i, _) = def.column(&n).ok_or_else(|| {
                    Error::InvalidArgument(format!("{} has no column {n}", def.qualified()))
                })?;
                columns.push(i);
            }
            other => {
                return Err(invalid(format!(
                    "a subscription selects plain columns; {other} is an expression, alias or \
                     aggregate"
                )));
            }
        }
    }
    let filter = match &s.selection {
        None => None,
        Some(cond) => Some(filter_expr(db, caller, &def, cond, params)?),
    };
    Ok(LiveQuery::new(
        def,
        columns,
        filter,
        options,
        sql.to_string(),
    ))
}

/// The WHERE clause as a physical expression over the table's rows and `_seq`.
fn filter_expr(
    db: &Arc<Database>,
    caller: &Caller,
    def: &TableDef,
    cond: &Expr,
    params: Option<&RecordBatch>,
) -> Result<Arc<dyn PhysicalExpr>> {
    let mut subquery = false;
    let _ = visit_expressions(cond, |e: &Expr| {
        subquery |= matches!(
            e,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        );
        std::ops::ControlFlow::<()>::Continue(())
    });
    if subquery {
        return Err(invalid("a subscription filter cannot use subqueries"));
    }
    let schema = DFSchema::try_from(def.query_schema().as_ref().clone())?;
    let expr = db.planner.expr(caller, cond.clone(), &schema)?;
    let expr = expr.infer_placeholder_types(&schema)?.0;
    let expr = bind(expr, params)?;
    db.planner.physical_expr(expr, &schema).map_err(|e| {
        let text = e.to_string();
        if text.contains("Aggregate") || text.contains("aggregate") {
            invalid("a subscription filter cannot use aggregates")
        } else {
            e
        }
    })
}

/// Replaces `$n` with the n-th column of the one-row parameter batch.
fn bind(expr: DfExpr, params: Option<&RecordBatch>) -> Result<DfExpr> {
    let mut error = None;
    let out = expr
        .transform(|e| {
            let DfExpr::Placeholder(p) = &e else {
                return Ok(Transformed::no(e));
            };
            let value = placeholder_value(&p.id, p.field.as_ref().map(|f| f.data_type()), params);
            match value {
                Ok(v) => Ok(Transformed::yes(DfExpr::Literal(v, None))),
                Err(err) => {
                    error = Some(err);
                    Ok(Transformed::no(e))
                }
            }
        })?
        .data;
    match error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn placeholder_value(
    id: &str,
    ty: Option<&DataType>,
    params: Option<&RecordBatch>,
) -> Result<ScalarValue> {
    let n: usize = id
        .trim_start_matches('$')
        .parse()
        .map_err(|_| invalid(format!("placeholder {id}: use $1, $2, ...")))?;
    let Some(batch) = params.filter(|b| b.num_rows() > 0) else {
        return Err(invalid(format!(
            "the filter uses {id}: send the values as a one-row batch after the command"
        )));
    };
    let column = batch.columns().get(n.wrapping_sub(1)).ok_or_else(|| {
        invalid(format!(
            "the filter uses {id} but the parameter batch has {} column(s)",
            batch.num_columns()
        ))
    })?;
    let value = ScalarValue::try_from_array(column, 0)?;
    match ty {
        Some(t) if value.data_type() != *t => value.cast_to(t).map_err(|_| {
            invalid(format!(
                "{id}: a {} cannot be read as {t}",
                value.data_type()
            ))
        }),
        _ => Ok(value),
    }
}
