//! `SUBSCRIBE TO [ns.]t [WHERE cond] [OPTIONS (...)]` and `SUBSCRIBE TO SELECT a, b FROM [ns.]t
//! [WHERE cond] [OPTIONS (...)]`: one table, plain columns, a filter turned into a DataFusion
//! physical expression over the table's rows, `$n` bound from the client's parameter batch.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::Expr as DfExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, SelectItem, SetExpr, Statement, TableFactor,
};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::authz::Access;
use crate::catalog::{TableDef, TableType};
use crate::db::Database;
use crate::error::{Error, Result};
use crate::session::{Caller, Role};
use crate::sql::parser::{Command, normalize};

/// Rows per message unless `batch_size` says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// `OPTIONS (...)`.
#[derive(Debug, Clone, Default)]
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

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

impl LiveQuery {
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

/// Splits off a trailing `OPTIONS (k = v, ...)` and parses it.
fn split_options(text: &str) -> Result<(String, LiveOptions)> {
    let tokens = Tokenizer::new(&crate::sql::dialect::QuillDialect::default(), text)
        .tokenize_with_location()
        .map_err(|e| invalid(format!("SUBSCRIBE: {e}")))?;
    let mut depth = 0i32;
    let mut at = None;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.value.eq_ignore_ascii_case("OPTIONS") => at = Some(i),
            _ => {}
        }
    }
    let mut options = LiveOptions {
        batch_size: DEFAULT_BATCH_SIZE,
        ..Default::default()
    };
    let Some(at) = at else {
        return Ok((text.to_string(), options));
    };
    let loc = &tokens[at].span.start;
    // Byte offset of the OPTIONS keyword (line and column are 1-based, in characters).
    let offset = text
        .split_inclusive('\n')
        .take(loc.line.saturating_sub(1) as usize)
        .map(str::len)
        .sum::<usize>()
        + text
            .lines()
            .nth(loc.line.saturating_sub(1) as usize)
            .unwrap_or_default()
            .chars()
            .take(loc.column.saturating_sub(1) as usize)
            .map(char::len_utf8)
            .sum::<usize>();
    let rest: Vec<&Token> = tokens[at + 1..]
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    if rest.first() != Some(&&Token::LParen) || rest.last() != Some(&&Token::RParen) {
        return Err(invalid(
            "OPTIONS takes a list in parentheses: OPTIONS (last_rows = 50)",
        ));
    }
    for pair in rest[1..rest.len() - 1].split(|t| **t == Token::Comma) {
        let (key, value) = match pair {
            [Token::Word(k), Token::Eq, v] => (k.value.to_ascii_lowercase(), *v),
            _ => return Err(invalid("each option is key = value, e.g. batch_size = 100")),
        };
        let number = || match value {
            Token::Number(n, _) => n
                .parse::<u64>()
                .map_err(|_| invalid(format!("{key} takes a whole number, not {n}"))),
            other => Err(invalid(format!("{key} takes a whole number, not {other}"))),
        };
        match key.as_str() {
            "last_rows" => options.last_rows = Some(number()? as usize),
            "batch_size" => match number()? {
                0 => return Err(invalid("batch_size must be at least 1")),
                n => options.batch_size = n as usize,
            },
            "from" => options.from = Some(number()?),
            "all_users" => {
                options.all_users = match value {
                    Token::Word(w) if w.value.eq_ignore_ascii_case("true") => true,
                    Token::Word(w) if w.value.eq_ignore_ascii_case("false") => false,
                    other => {
                        return Err(invalid(format!(
                            "all_users takes true or false, not {other}"
                        )));
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "unknown option {other}: expected last_rows, batch_size, from or all_users"
                )));
            }
        }
    }
    Ok((text[..offset].to_string(), options))
}

/// Parses and authorizes a subscription for `caller`.
pub async fn parse(
    db: &Arc<Database>,
    caller: &Caller,
    sql: &str,
    params: Option<&RecordBatch>,
) -> Result<LiveQuery> {
    db.limits.text.check_size(sql)?;
    let trimmed = sql.trim().trim_end_matches(';');
    let body = trimmed
        .get(9..)
        .map(str::trim_start)
        .filter(|_| trimmed[..9].eq_ignore_ascii_case("SUBSCRIBE"))
        .and_then(|r| {
            r.get(..2)
                .filter(|to| to.eq_ignore_ascii_case("TO"))
                .map(|_| &r[2..])
        })
        .ok_or_else(|| {
            invalid("a subscription reads SUBSCRIBE TO [ns.]table ... or SUBSCRIBE TO SELECT ...")
        })?;
    let (body, options) = split_options(body)?;
    let body = body.trim();
    let select = if body
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"))
    {
        body.to_string()
    } else {
        format!("SELECT * FROM {body}")
    };
    let Command::Query(stmt) = crate::sql::parser::parse(&select, &db.limits.text)? else {
        return Err(invalid("SUBSCRIBE TO takes a table or one SELECT"));
    };
    let Statement::Query(query) = *stmt else {
        return Err(invalid("SUBSCRIBE TO takes a table or one SELECT"));
    };
    if query.with.is_some() {
        return Err(invalid("a subscription cannot use WITH"));
    }
    if query.order_by.is_some() {
        return Err(invalid(
            "a subscription cannot use ORDER BY: changes come in commit order",
        ));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(invalid(
            "a subscription cannot use LIMIT: use OPTIONS (last_rows = N)",
        ));
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
        Some(cond) => Some(filter_expr(db, caller, &def, &cond.to_string(), params)?),
    };
    let (rows, out) = schemas(&def, &columns, options.all_users);
    Ok(LiveQuery {
        def,
        columns,
        filter,
        options,
        text: sql.to_string(),
        rows,
        out,
    })
}

/// The WHERE clause as a physical expression over the table's rows and `_seq`.
fn filter_expr(
    db: &Arc<Database>,
    caller: &Caller,
    def: &TableDef,
    cond: &str,
    params: Option<&RecordBatch>,
) -> Result<Arc<dyn PhysicalExpr>> {
    let upper = cond.to_ascii_uppercase();
    if upper.contains("SELECT ") {
        return Err(invalid("a subscription filter cannot use subqueries"));
    }
    let ctx = db.context(caller);
    let schema = DFSchema::try_from(def.query_schema().as_ref().clone())?;
    let expr = ctx.parse_sql_expr(cond, &schema)?;
    let expr = expr.infer_placeholder_types(&schema)?.0;
    let expr = bind(expr, params)?;
    ctx.create_physical_expr(expr, &schema).map_err(|e| {
        let text = e.to_string();
        if text.contains("Aggregate") || text.contains("aggregate") {
            invalid("a subscription filter cannot use aggregates")
        } else {
            Error::from(e)
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
