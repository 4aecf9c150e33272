//! ALTER TABLE: ADD / DROP / RENAME COLUMN and SET (options). Each makes a new schema version
//! over stable column ids: stored rows (hot versions and Parquet segments alike) are never
//! rewritten, they are read through the current schema. Writers see the new definition from
//! the instant the catalog switches.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray};
use datafusion::sql::sqlparser::ast::{AlterTable, AlterTableOperation};

use super::ddl::{TableOption, check_options_apply, column_def, table_option};
use super::parser::normalize;
use crate::catalog::types::cast_column;
use crate::catalog::{DefaultExpr, TableDef, TableType};
use crate::engine::{CatalogEvent, Database};
use crate::error::{Error, Result};
use crate::session::Caller;

/// Runs ALTER TABLE; answers the id of the move job that SET (STORAGE_ID = ...) starts.
pub async fn alter_table(
    db: &Arc<Database>,
    caller: &Caller,
    stmt: &AlterTable,
) -> Result<Option<String>> {
    let (ns, table) = db.resolve_table_name(caller, &stmt.name)?;
    if !db.catalog.has_namespace(&ns) {
        return Err(Error::NotFound(format!("namespace {ns} does not exist")));
    }
    let Some(current) = db.catalog.table(&ns, &table) else {
        return if stmt.if_exists {
            Ok(None)
        } else {
            Err(Error::NotFound(format!(
                "table {ns}.{table} does not exist"
            )))
        };
    };
    // STORAGE_ID is not a schema change: it moves the files, as a job.
    let mut stmt = stmt.clone();
    let mut move_to = None;
    for op in &mut stmt.operations {
        if let AlterTableOperation::SetOptionsParens { options } = op {
            let mut kept = Vec::new();
            for o in options.drain(..) {
                match table_option(&o)? {
                    TableOption::Storage(s) => move_to = Some(s),
                    _ => kept.push(o),
                }
            }
            *options = kept;
        }
    }
    stmt.operations.retain(
        |op| !matches!(op, AlterTableOperation::SetOptionsParens { options } if options.is_empty()),
    );
    // Checked before anything changes: a refused move leaves the schema as it was.
    if let Some(to) = &move_to {
        check_move(db, caller, &current, to)?;
    }
    if !stmt.operations.is_empty() {
        alter_schema(db, &ns, &table, &stmt).await?;
    }
    let Some(to) = move_to else {
        return Ok(None);
    };
    if current.table_type == TableType::Stream {
        // Never flushed: nothing to copy.
        db.catalog.set_storage(current.id, &to).await?;
        return Ok(None);
    }
    let job = db
        .jobs
        .submit_move(&current, to.clone(), current.storage_id.clone(), None)
        .await?;
    tracing::info!(table = %current.qualified(), from = %current.storage_id, to, job = %job, "move queued");
    Ok(Some(job))
}

/// Whether `caller` may move `def` to storage `to`: dba and up (storages are theirs), to
/// another place than where it is.
fn check_move(db: &Database, caller: &Caller, def: &TableDef, to: &str) -> Result<()> {
    if caller.role < crate::session::Role::Dba {
        return Err(Error::PermissionDenied(
            "moving a table to another storage needs the dba or system role".into(),
        ));
    }
    let target = db.storages.get(to)?;
    let source = db.storages.get(&def.storage_id)?;
    if def.storage_id == to {
        return Err(Error::InvalidArgument(format!(
            "{} is on storage {to} already",
            def.qualified()
        )));
    }
    let (a, b) = (&source.def, &target.def);
    if (&a.kind, &a.path, &a.bucket, &a.endpoint) == (&b.kind, &b.path, &b.bucket, &b.endpoint) {
        return Err(Error::InvalidArgument(format!(
            "storages {} and {} are the same place: nothing would move",
            a.id, b.id
        )));
    }
    Ok(())
}

/// The schema part of ALTER TABLE: a new schema version, subscriptions closed.
async fn alter_schema(db: &Arc<Database>, ns: &str, table: &str, stmt: &AlterTable) -> Result<()> {
    // Versions written before an added column existed read its default up to this `_seq`.
    let fill_before = db.hot.seq().last();
    let def = db
        .catalog
        .alter_table(ns, table, |current| {
            let mut def = current.clone();
            for op in &stmt.operations {
                apply(&mut def, op, fill_before)?;
            }
            Ok(def)
        })
        .await?;
    tracing::info!(table = %def.qualified(), schema_version = def.schema_version, "table altered");
    db.events
        .publish(CatalogEvent::TableChanged {
            table_id: def.id,
            code: "schema_changed",
            message: format!(
                "{} was altered (schema version {}): subscribe again",
                def.qualified(),
                def.schema_version
            ),
        })
        .await;
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
                        return Err(Error::Internal(
                            "STORAGE_ID is handled as a move, before the schema".into(),
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
