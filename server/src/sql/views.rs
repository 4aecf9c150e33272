//! CREATE [OR REPLACE] VIEW and DROP VIEW. A view stores its query's text; every read plans it
//! again for the reader (`provider::view`), so it follows later changes of its tables and
//! never lends its creator's rights.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{ObjectName, Query, Statement};

use crate::catalog::ViewDef;
use crate::catalog::names::{NameKind, validate};
use crate::engine::Database;
use crate::error::{Error, Result};
use crate::provider::catalog::{MAX_VIEW_NESTING, view_table};
use crate::session::Caller;
use crate::sql::parser::{self, Command};

/// CREATE [OR REPLACE] VIEW: the query must plan for its creator now (its tables exist and the
/// creator may read them), give as many columns as names are given, and not reach the view
/// itself through other views.
pub async fn create_view(
    db: &Arc<Database>,
    caller: &Caller,
    name: &ObjectName,
    or_replace: bool,
    columns: Vec<String>,
    query: Query,
) -> Result<()> {
    let (namespace, view) = db.resolve_table_name(caller, name)?;
    validate(NameKind::Table, &view)?;
    for c in &columns {
        validate(NameKind::Column, c)?;
    }
    if let Some(dup) = columns
        .iter()
        .enumerate()
        .find(|(i, c)| columns[..*i].contains(c))
    {
        return Err(Error::InvalidArgument(format!(
            "column {} is named twice in view {namespace}.{view}",
            dup.1
        )));
    }
    if !db.catalog.has_namespace(&namespace) {
        return Err(Error::NotFound(format!(
            "namespace {namespace} does not exist"
        )));
    }
    let def = ViewDef {
        namespace,
        name: view,
        query: query.to_string(),
        default_namespace: caller.namespace().unwrap_or_else(|| "public".into()),
        columns,
        owner: caller.user.clone(),
        created_at: 0,
    };
    refuse_loops(db, &def)?;
    view_table(db, caller, &def, 0).await?;
    db.catalog.create_view(def, or_replace).await
}

/// Refuses a view whose query reaches the view itself, directly or through other views.
fn refuse_loops(db: &Database, def: &ViewDef) -> Result<()> {
    let me = (def.namespace.clone(), def.name.clone());
    let mut seen = HashSet::new();
    let mut todo = vec![(def.query.clone(), def.default_namespace.clone(), 0)];
    while let Some((query, default_ns, depth)) = todo.pop() {
        if depth > MAX_VIEW_NESTING {
            return Err(Error::InvalidArgument(format!(
                "view {} would reach more than {MAX_VIEW_NESTING} views deep",
                def.qualified()
            )));
        }
        for name in db
            .planner
            .table_references(&query_statement(db, &query)?, &default_ns)?
        {
            if name == me {
                return Err(Error::InvalidArgument(format!(
                    "view {} cannot read itself, directly or through other views",
                    def.qualified()
                )));
            }
            if seen.insert(name.clone())
                && let Some(v) = db.catalog.view(&name.0, &name.1)
            {
                todo.push((v.query.clone(), v.default_namespace.clone(), depth + 1));
            }
        }
    }
    Ok(())
}

fn query_statement(db: &Database, text: &str) -> Result<Statement> {
    match parser::parse(text, &db.limits.text)? {
        Command::Query(stmt) => Ok(*stmt),
        _ => Err(Error::Internal(format!("a view holds no query: {text}"))),
    }
}

/// DROP VIEW [IF EXISTS].
pub async fn drop_view(
    db: &Database,
    caller: &Caller,
    name: &ObjectName,
    if_exists: bool,
) -> Result<()> {
    let (namespace, view) = db.resolve_table_name(caller, name)?;
    db.catalog.drop_view(&namespace, &view, if_exists).await?;
    Ok(())
}
