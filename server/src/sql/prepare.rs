//! Prepared statements: the text is checked, parsed and authorized once; a query is planned
//! once per catalog generation and bound per execution; DML parameters take the types of what
//! they are compared with or written to.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{Expr, SetExpr, TableObject, Value, visit_expressions};
use parking_lot::Mutex;
use quilldb_flight::service::rows_affected_schema;
use quilldb_flight::{Outcome, PreparedInfo};

use super::parser::{Command, name_parts, parse};
use super::{point, select};
use crate::authz::Access;
use crate::engine::{Database, QueryPlan};
use crate::error::Result;
use crate::provider::table::PartitionTable;
use crate::session::Caller;

/// A prepared statement: parsed once; a query also planned once per catalog generation.
pub struct PreparedStatement {
    command: Command,
    plan: Mutex<Option<(u64, Arc<QueryPlan>)>>,
    /// The statement as a point read, when it is one.
    point: Option<point::PointQuery>,
}

/// Who a prepared statement was made for, and its text: what its parse, rights, plan and
/// parameter types depend on (with the catalog generation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    user: String,
    role: String,
    namespace: Option<String>,
    sql: String,
}

/// A made prepared statement and the catalog generation it was made under.
type Made = (u64, PreparedInfo, Arc<PreparedStatement>);

/// Prepared statements by caller and text: a client that creates the same statement for every
/// execution (the ADBC driver's pattern) parses, authorizes and plans it once per catalog
/// generation. Bounded: two generations of at most `capacity` entries each; a hit in the older
/// one moves to the newer, and when the newer fills, the older is dropped (least recently used
/// entries go first).
pub struct PreparedCache {
    capacity: usize,
    maps: Mutex<[HashMap<CacheKey, Made>; 2]>,
}

impl std::fmt::Debug for PreparedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl PreparedCache {
    /// A cache of about `capacity` to `2 * capacity` statements.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            maps: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    /// The prepared statement `sql` of `caller`: made once, then shared while the catalog
    /// does not change. A caller inside a transaction always makes its own (its plan must see
    /// the transaction's pending rows).
    pub async fn prepare(
        &self,
        db: &Arc<Database>,
        caller: &Caller,
        sql: &str,
    ) -> Result<(PreparedInfo, Arc<PreparedStatement>)> {
        if caller.transaction().is_some() {
            let (info, statement) = prepare(db, caller, sql).await?;
            return Ok((info, Arc::new(statement)));
        }
        let key = CacheKey {
            user: caller.user.clone(),
            role: caller.role.to_string(),
            namespace: caller.namespace(),
            sql: sql.to_string(),
        };
        let generation = db.catalog.generation();
        if let Some((info, statement)) = self.get(&key, generation) {
            return Ok((info, statement));
        }
        let (info, statement) = prepare(db, caller, sql).await?;
        let statement = Arc::new(statement);
        self.put(key, (generation, info.clone(), statement.clone()));
        Ok((info, statement))
    }

    fn get(
        &self,
        key: &CacheKey,
        generation: u64,
    ) -> Option<(PreparedInfo, Arc<PreparedStatement>)> {
        let mut maps = self.maps.lock();
        let [new, old] = &mut *maps;
        let made = match new.get(key) {
            Some(m) => m.clone(),
            None => {
                let m = old.remove(key)?;
                new.insert(key.clone(), m.clone());
                m
            }
        };
        let (g, info, statement) = made;
        (g == generation).then_some((info, statement))
    }

    fn put(&self, key: CacheKey, made: Made) {
        let mut maps = self.maps.lock();
        if maps[0].len() >= self.capacity {
            maps[1] = std::mem::take(&mut maps[0]);
        }
        maps[0].insert(key, made);
    }
}

/// Whether a plan may serve later executions: it reads only QuillDB tables, which read their
/// rows when the plan runs. System tables and `information_schema` hold the rows of the moment
/// they were planned.
fn reusable(plan: &QueryPlan) -> bool {
    plan.scans_only(|p| p.downcast_ref::<PartitionTable>().is_some())
}

/// The parameters of a query, typed where DataFusion could infer them from their use.
fn query_parameters(
    stmt: &datafusion::sql::sqlparser::ast::Statement,
    plan: &QueryPlan,
) -> Vec<Field> {
    let mut params: Vec<usize> = Vec::new();
    let _ = visit_expressions(stmt, |e: &Expr| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
        {
            let n = crate::sql::dml::placeholder_index(p).map_or(0, |i| i + 1);
            if !params.contains(&n) {
                params.push(n);
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    params.sort_unstable();
    let types = plan.parameter_types();
    params
        .into_iter()
        .map(|n| {
            let name = format!("${n}");
            let ty = types
                .get(&name)
                .cloned()
                .flatten()
                .unwrap_or(DataType::Null);
            Field::new(name, ty, true)
        })
        .collect()
}

/// Parameter types of UPDATE and DELETE, inferred by DataFusion from an equivalent query:
/// `SELECT 1 FROM t WHERE (cond) AND col = (value) ...`, so a placeholder takes the type
/// of what it is compared with or assigned to.
async fn selection_parameters(
    db: &Arc<Database>,
    caller: &Caller,
    cmd: &Command,
) -> Result<Vec<Field>> {
    use datafusion::sql::sqlparser::ast::{AssignmentTarget, FromTable};
    let (from, mut conditions, selection) = match cmd {
        Command::Update(u) => {
            let sets = u
                .assignments
                .iter()
                .filter_map(|a| match &a.target {
                    AssignmentTarget::ColumnName(n) => {
                        let mut parts: Vec<_> =
                            n.0.iter().filter_map(|p| p.as_ident().cloned()).collect();
                        let column = match parts.len() {
                            1 => Expr::Identifier(parts.remove(0)),
                            _ => Expr::CompoundIdentifier(parts),
                        };
                        Some(select::eq(column, a.value.clone()))
                    }
                    AssignmentTarget::Tuple(_) => None,
                })
                .collect::<Vec<_>>();
            (vec![u.table.clone()], sets, u.selection.as_ref())
        }
        Command::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            (tables.clone(), Vec::new(), d.selection.as_ref())
        }
        _ => return Ok(Vec::new()),
    };
    conditions.extend(selection.cloned());
    let condition = conditions
        .into_iter()
        .reduce(select::and)
        .unwrap_or_else(select::truth);
    let one = Expr::Value(Value::Number("1".into(), false).with_empty_span());
    let stmt = select::select(
        vec![datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(
            one,
        )],
        from,
        Some(condition),
    );
    let plan = super::plan::plan_query(db, caller, stmt.clone(), &[]).await?;
    Ok(query_parameters(&stmt, &plan))
}

/// Parameter types of INSERT ... VALUES: each placeholder takes its target column's type.
fn insert_parameters(db: &Database, caller: &Caller, cmd: &Command) -> Result<Vec<Field>> {
    let Command::Insert(ins) = cmd else {
        return Ok(Vec::new());
    };
    let TableObject::TableName(name) = &ins.table else {
        return Ok(Vec::new());
    };
    let def = db.table_for(caller, name, Access::Write)?;
    let targets: Vec<_> = if ins.columns.is_empty() {
        def.columns.iter().collect()
    } else {
        ins.columns
            .iter()
            .filter_map(|c| {
                name_parts(c)
                    .ok()?
                    .last()
                    .and_then(|n| def.column(n))
                    .map(|(_, c)| c)
            })
            .collect()
    };
    let mut fields: Vec<(usize, Field)> = Vec::new();
    if let Some(source) = &ins.source
        && let SetExpr::Values(values) = source.body.as_ref()
    {
        for row in &values.rows {
            for (i, e) in row.iter().enumerate() {
                if let Expr::Value(v) = e
                    && let Value::Placeholder(p) = &v.value
                {
                    let index = crate::sql::dml::placeholder_index(p).map_or(0, |i| i + 1);
                    if let Some(c) = targets.get(i)
                        && !fields.iter().any(|(n, _)| *n == index)
                    {
                        fields.push((index, Field::new(format!("${index}"), c.ty.arrow(), true)));
                    }
                }
            }
        }
    }
    fields.sort_by_key(|(n, _)| *n);
    Ok(fields.into_iter().map(|(_, f)| f).collect())
}

pub async fn prepare(
    db: &Arc<Database>,
    caller: &Caller,
    sql: &str,
) -> Result<(PreparedInfo, PreparedStatement)> {
    let cmd = parse(sql, &db.limits.text)?;
    super::authorize::authorize(caller, &cmd)?;
    match &cmd {
        Command::Query(stmt) => {
            let generation = db.catalog.generation();
            let plan = super::plan::plan_query(db, caller, (**stmt).clone(), &[]).await?;
            let parameter_schema = Arc::new(Schema::new(query_parameters(stmt, &plan)));
            let info = PreparedInfo {
                dataset_schema: plan.schema(),
                parameter_schema,
            };
            let kept = reusable(&plan).then(|| (generation, Arc::new(plan)));
            let statement = PreparedStatement {
                point: point::shape(stmt),
                command: cmd,
                plan: Mutex::new(kept),
            };
            Ok((info, statement))
        }
        _ => {
            // DML answers a row count; its parameters take the types of what they are
            // compared with or written to.
            let parameters = match &cmd {
                Command::Update(_) | Command::Delete(_) => {
                    selection_parameters(db, caller, &cmd).await?
                }
                other => insert_parameters(db, caller, other)?,
            };
            let info = PreparedInfo {
                dataset_schema: rows_affected_schema(),
                parameter_schema: Arc::new(Schema::new(parameters)),
            };
            let statement = PreparedStatement {
                command: cmd,
                plan: Mutex::new(None),
                point: None,
            };
            Ok((info, statement))
        }
    }
}

/// One execution of a prepared statement: a query binds its plan (replanned only after
/// DDL, or inside a transaction whose pending rows the plan must see).
pub async fn run(
    db: &Arc<Database>,
    caller: &Caller,
    prepared: &PreparedStatement,
    params: Option<RecordBatch>,
) -> Result<Outcome<QueryPlan>> {
    let Command::Query(stmt) = &prepared.command else {
        return super::run_command(db, caller, prepared.command.clone(), params).await;
    };
    let first = crate::sql::first_param_row(params.as_ref())?;
    if let Some(q) = &prepared.point
        && let Some(rows) = point::read(db, caller, q, &first).await
    {
        return Ok(Outcome::Rows(rows));
    }
    let generation = db.catalog.generation();
    let cached = prepared
        .plan
        .lock()
        .clone()
        .filter(|(g, _)| *g == generation && caller.transaction().is_none());
    let template = match cached {
        Some((_, plan)) => plan,
        None => {
            let plan = Arc::new(super::plan::plan_query(db, caller, (**stmt).clone(), &[]).await?);
            if caller.transaction().is_none() && reusable(&plan) {
                *prepared.plan.lock() = Some((generation, plan.clone()));
            }
            plan
        }
    };
    let plan = template.bind(&first)?;
    Ok(Outcome::Query {
        schema: plan.schema(),
        plan,
    })
}
