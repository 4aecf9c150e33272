//! QuillDB's SQL: parsing, DDL, DML, and the dispatch of one statement.

/// ALTER TABLE.
pub mod alter;
/// Which role may run which statement.
pub mod authorize;
/// The statements, as parsed.
pub mod command;
/// Namespaces and tables.
pub mod ddl;
/// The nesting limit, counted on tokens.
pub mod depth;
/// QuillDB's SQL dialect.
pub mod dialect;
/// INSERT, UPDATE, DELETE.
pub mod dml;
/// Bulk ingest.
pub mod ingest;
/// The statement parser.
pub mod parser;
/// Planning a statement's query for a caller.
pub mod plan;
/// Primary-key point reads without DataFusion.
pub mod point;
/// Prepared statements: parse, authorize, type the parameters, cache the plan.
pub mod prepare;
/// SELECT statements built from AST parts.
pub mod select;
/// Storage statements and jobs.
pub mod storage;
/// SUBSCRIBE: a subscription built from its statement.
pub mod subscribe;
/// Users.
pub mod users;
/// CREATE VIEW, DROP VIEW.
pub mod views;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use quilldb_flight::Outcome;
use quilldb_storage::hot::WriteRequest;

use crate::authz;
use crate::engine::{Database, QueryPlan};
use crate::error::{Error, Result};
use crate::session::Caller;
use parser::Command;

/// How often a statement is replanned when a concurrent write changed its rows.
const MAX_RETRIES: usize = 16;

/// The parameter rows of a call: one execution per row (none: one execution, no values).
pub fn param_rows(params: Option<&RecordBatch>) -> Result<Vec<Vec<ScalarValue>>> {
    let Some(b) = params else {
        return Ok(vec![Vec::new()]);
    };
    if b.num_rows() == 0 {
        return Ok(vec![Vec::new()]);
    }
    (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .map(|c| Ok(ScalarValue::try_from_array(c, r)?))
                .collect()
        })
        .collect()
}

/// The values of the first parameter row (a query runs once, with the first row's values).
pub fn first_param_row(params: Option<&RecordBatch>) -> Result<Vec<ScalarValue>> {
    match params {
        Some(b) if b.num_rows() > 0 => b
            .columns()
            .iter()
            .map(|c| Ok(ScalarValue::try_from_array(c, 0)?))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// Runs (or plans, for a query) one statement.
pub async fn run(
    db: &Arc<Database>,
    caller: &Caller,
    sql: &str,
    params: Option<RecordBatch>,
) -> Result<Outcome<QueryPlan>> {
    let cmd = parser::parse(sql, &db.limits.text)?;
    run_command(db, caller, cmd, params).await
}

/// Runs (or plans, for a query) one parsed statement.
pub async fn run_command(
    db: &Arc<Database>,
    caller: &Caller,
    cmd: Command,
    params: Option<RecordBatch>,
) -> Result<Outcome<QueryPlan>> {
    authorize::authorize(caller, &cmd)?;
    match cmd {
        Command::CreateNamespace {
            name,
            if_not_exists,
        } => {
            ddl::create_namespace(db, &name, if_not_exists).await?;
            Ok(Outcome::Affected(0))
        }
        Command::DropNamespace { name, if_exists } => {
            ddl::drop_namespace(db, caller, &name, if_exists).await?;
            Ok(Outcome::Affected(0))
        }
        Command::Use(ns) => {
            ddl::use_namespace(db, caller, &ns)?;
            Ok(Outcome::Affected(0))
        }
        Command::ShowNamespaces => Ok(Outcome::Rows(ddl::show_namespaces(db, caller)?)),
        Command::ShowTables(ns) => Ok(Outcome::Rows(ddl::show_tables(db, caller, ns.as_deref())?)),
        Command::Describe(name) => Ok(Outcome::Rows(ddl::describe(db, caller, &name).await?)),
        Command::FlushTable(name) => Ok(Outcome::Rows(
            storage::flush_table(db, caller, &name).await?,
        )),
        Command::FlushAll(ns) => Ok(Outcome::Rows(storage::flush_all(db, ns.as_deref()).await?)),
        Command::CompactTable(name) => Ok(Outcome::Rows(
            storage::compact_table(db, caller, &name).await?,
        )),
        Command::ShowManifest(name) => Ok(Outcome::Rows(
            storage::show_manifest(db, caller, &name).await?,
        )),
        Command::ExportUserData(user) => {
            let user = user.unwrap_or_else(|| caller.user.clone());
            if user != caller.user && caller.role < crate::session::Role::Dba {
                return Err(Error::PermissionDenied(format!(
                    "{} may export only their own data (dba and system export anyone's)",
                    caller.user
                )));
            }
            if db.auth.user(&user).is_none() {
                return Err(Error::NotFound(format!("user {user} does not exist")));
            }
            let id = db.jobs.submit_export(&user).await?;
            Ok(Outcome::Rows(storage::job_ids(vec![id])?))
        }
        Command::KillLiveQuery(id) => {
            db.kill_live_query(caller, &id)?;
            Ok(Outcome::Affected(0))
        }
        Command::KillJob(id) => {
            storage::kill_job(db, &id).await?;
            Ok(Outcome::Affected(0))
        }
        Command::CreateStorage {
            name,
            if_not_exists,
            kind,
            options,
        } => {
            storage::create_storage(db, &name, if_not_exists, &kind, &options).await?;
            Ok(Outcome::Affected(0))
        }
        Command::DropStorage { name, if_exists } => {
            storage::drop_storage(db, &name, if_exists).await?;
            Ok(Outcome::Affected(0))
        }
        Command::CreateUser {
            name,
            if_not_exists,
            password,
            role,
            email,
        } => {
            users::create_user(
                db,
                caller,
                &name,
                if_not_exists,
                password,
                role.as_deref(),
                email,
            )
            .await?;
            Ok(Outcome::Affected(0))
        }
        Command::AlterUser { name, change } => {
            users::alter_user(db, caller, &name, change).await?;
            Ok(Outcome::Affected(0))
        }
        Command::ExecuteAs { user, inner } => {
            let target = users::impersonate(db, caller, &user)?;
            Box::pin(run_command(db, &target, *inner, params)).await
        }
        Command::DropUser { name, if_exists } => {
            users::drop_user(db, caller, &name, if_exists).await?;
            Ok(Outcome::Affected(0))
        }
        Command::AlterTable(stmt) => match alter::alter_table(db, caller, &stmt).await? {
            // SET (STORAGE_ID = ...) answers its move job, as STORAGE FLUSH does.
            Some(job) => Ok(Outcome::Rows(storage::job_ids(vec![job])?)),
            None => Ok(Outcome::Affected(0)),
        },
        Command::ShowStorages => Ok(Outcome::Rows(
            crate::provider::system::batches::storages_batch(db)?,
        )),
        Command::CreateTable { prefix, stmt } => {
            ddl::create_table(db, caller, prefix, &stmt).await?;
            Ok(Outcome::Affected(0))
        }
        Command::DropTable { name, if_exists } => {
            ddl::drop_table(db, caller, &name, if_exists).await?;
            Ok(Outcome::Affected(0))
        }
        Command::CreateView {
            name,
            or_replace,
            columns,
            query,
        } => {
            views::create_view(db, caller, &name, or_replace, columns, *query).await?;
            Ok(Outcome::Affected(0))
        }
        Command::DropView { name, if_exists } => {
            views::drop_view(db, caller, &name, if_exists).await?;
            Ok(Outcome::Affected(0))
        }
        Command::Insert(_) | Command::Update(_) | Command::Delete(_) => {
            let n = write(db, caller, &cmd, params.as_ref()).await?;
            db.metrics.rows_written.inc_by(n as u64);
            Ok(Outcome::Affected(n))
        }
        Command::Subscribe { .. } => Err(Error::InvalidArgument(
            "SUBSCRIBE runs only over DoExchange: open a DoExchange stream with this statement \
             as its command"
                .into(),
        )),
        Command::Query(stmt) => {
            let first = first_param_row(params.as_ref())?;
            if let Some(q) = point::shape(&stmt)
                && let Some(rows) = point::read(db, caller, &q, &first).await
            {
                return Ok(Outcome::Rows(rows));
            }
            let plan = plan::plan_query(db, caller, *stmt, &first).await?;
            Ok(Outcome::Query {
                schema: plan.schema(),
                plan,
            })
        }
        Command::Begin => {
            begin(db, caller)?;
            Ok(Outcome::Affected(0))
        }
        Command::Commit => {
            let n = match sql_transaction(caller) {
                Some(t) => {
                    caller.session().set_sql_transaction(None);
                    db.transactions.commit(&db.hot, &t).await? as i64
                }
                None => 0,
            };
            db.metrics.rows_written.inc_by(n as u64);
            Ok(Outcome::Affected(n))
        }
        Command::Rollback => {
            if let Some(t) = sql_transaction(caller) {
                caller.session().set_sql_transaction(None);
                db.transactions.rollback(&t);
            }
            Ok(Outcome::Affected(0))
        }
        Command::Unsupported(what) => Err(Error::Unsupported(what)),
    }
}

/// The transaction SQL `BEGIN` opened in the caller's session.
fn sql_transaction(caller: &Caller) -> Option<Arc<crate::txn::Transaction>> {
    caller.session().sql_transaction()
}

fn begin(db: &Arc<Database>, caller: &Caller) -> Result<()> {
    if caller.transaction().is_some_and(|t| t.is_open()) {
        return Err(Error::FailedPrecondition(
            "a transaction is already open: COMMIT or ROLLBACK it first".into(),
        ));
    }
    let t = open_transaction(db, caller)?;
    caller.session().set_sql_transaction(Some(t));
    Ok(())
}

/// Begins a transaction for a signed-in caller (SQL BEGIN and Flight SQL BeginTransaction).
pub fn open_transaction(db: &Database, caller: &Caller) -> Result<Arc<crate::txn::Transaction>> {
    authz::require(
        caller.role,
        crate::session::Role::User,
        "open transactions: they need a signed-in session",
    )?;
    db.transactions.begin(&db.hot, &caller.user)
}

/// Applies planned row ops: staged in the caller's transaction, or written atomically now.
pub async fn apply(
    db: &Database,
    caller: &Caller,
    ops: Vec<quilldb_storage::hot::RowOp>,
    keys: &[(String, String)],
) -> Result<i64> {
    if let Some(t) = caller.transaction() {
        return t.stage(&db.hot, ops, keys);
    }
    match db
        .hot
        .write(WriteRequest {
            rows: ops,
            ..Default::default()
        })
        .await
    {
        Ok(outcome) => Ok(outcome.applied as i64),
        Err(quilldb_storage::Error::DuplicateKey { op }) => {
            let (table, key) = keys.get(op).cloned().unwrap_or_default();
            Err(Error::AlreadyExists(format!(
                "duplicate primary key {key} in {table}"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies a DML statement once per parameter row, all executions in one atomic write.
async fn write(
    db: &Arc<Database>,
    caller: &Caller,
    cmd: &Command,
    batch: Option<&RecordBatch>,
) -> Result<i64> {
    // Statements of one transaction run one at a time, so each sees the last one's changes.
    let txn = caller.transaction();
    let _turn = match &txn {
        Some(t) => Some(t.statement_lock.lock().await),
        None => None,
    };
    // Scalar rows are only made when the batch cannot be used whole (not a template insert).
    let mut rows: Option<Vec<Vec<ScalarValue>>> = None;
    for _ in 0..MAX_RETRIES {
        let mut ops = Vec::new();
        let mut keys = Vec::new();
        let template = match batch.filter(|b| b.num_rows() > 1) {
            Some(b) => dml::insert_batch(db, caller, cmd, b).await?,
            None => None,
        };
        if let Some(planned) = template {
            ops = planned.ops;
            keys = planned.keys;
        } else {
            if rows.is_none() {
                rows = Some(param_rows(batch)?);
            }
            for params in rows.iter().flatten() {
                let planned = dml::plan(db, caller, cmd, params).await?;
                ops.extend(planned.ops);
                keys.extend(planned.keys);
            }
        }
        if ops.is_empty() {
            return Ok(0);
        }
        match apply(db, caller, ops, &keys).await {
            Err(Error::Storage(quilldb_storage::Error::Conflict)) => continue,
            other => return other,
        }
    }
    Err(Error::FailedPrecondition(
        "the rows kept changing under concurrent writes; retry the statement".into(),
    ))
}
