//! The database behind the Flight SQL surface: implements `quilldb_flight::Backend`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{Expr, SetExpr, TableObject, Value, visit_expressions};
use futures::StreamExt;
use parking_lot::Mutex;
use quilldb_flight::service::rows_affected_schema;
use quilldb_flight::{
    Backend, BatchStream, IngestTarget, Outcome, PreparedInfo, ServerInfo, TableEntry,
};
use tonic::Status;

use crate::authz::{self, Access};
use crate::db::{Database, QueryPlan};
use crate::error::{Error, Result};
use crate::session::Caller;
use crate::sql::parser::{Command, name_parts, parse};

/// The Flight SQL backend.
#[derive(Debug)]
pub struct QuillBackend {
    db: Arc<Database>,
}

impl QuillBackend {
    /// A backend over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }

    fn observe<T>(&self, call: &str, started: Instant, r: Result<T>) -> Result<T, Status> {
        let status = match &r {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("{:?}", e.code()),
        };
        self.db
            .metrics
            .statements
            .with_label_values(&[call, &status])
            .inc();
        self.db
            .metrics
            .statement_seconds
            .observe(started.elapsed().as_secs_f64());
        r.map_err(Status::from)
    }

    /// Parameter types of UPDATE and DELETE, inferred by DataFusion from an equivalent query:
    /// `SELECT 1 FROM t WHERE (cond) AND col = (value) ...`, so a placeholder takes the type
    /// of what it is compared with or assigned to.
    async fn selection_parameters(&self, caller: &Caller, cmd: &Command) -> Result<Vec<Field>> {
        use datafusion::sql::sqlparser::ast::FromTable;
        let (from, mut conditions, selection) = match cmd {
            Command::Update(u) => {
                let sets = u
                    .assignments
                    .iter()
                    .map(|a| format!("{} = ({})", a.target, a.value))
                    .collect::<Vec<_>>();
                (u.table.to_string(), sets, u.selection.as_ref())
            }
            Command::Delete(d) => {
                let tables = match &d.from {
                    FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
                };
                let from = tables
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                (from, Vec::new(), d.selection.as_ref())
            }
            _ => return Ok(Vec::new()),
        };
        if let Some(sel) = selection {
            conditions.push(format!("({sel})"));
        }
        if conditions.is_empty() {
            conditions.push("true".into());
        }
        let sql = format!("SELECT 1 FROM {from} WHERE {}", conditions.join(" AND "));
        let Command::Query(stmt) = parse(&sql, &self.db.limits.text)? else {
            return Ok(Vec::new());
        };
        let plan = self.db.plan_query(caller, (*stmt).clone(), &[]).await?;
        Ok(query_parameters(&stmt, &plan))
    }

    /// Parameter types of INSERT ... VALUES: each placeholder takes its target column's type.
    fn insert_parameters(&self, caller: &Caller, cmd: &Command) -> Result<Vec<Field>> {
        let Command::Insert(ins) = cmd else {
            return Ok(Vec::new());
        };
        let TableObject::TableName(name) = &ins.table else {
            return Ok(Vec::new());
        };
        let def = self.db.table_for(caller, name, Access::Write)?;
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
                            fields
                                .push((index, Field::new(format!("${index}"), c.ty.arrow(), true)));
                        }
                    }
                }
            }
        }
        fields.sort_by_key(|(n, _)| *n);
        Ok(fields.into_iter().map(|(_, f)| f).collect())
    }

    async fn prepare_inner(
        &self,
        caller: &Caller,
        sql: &str,
    ) -> Result<(PreparedInfo, PreparedStatement)> {
        let cmd = parse(sql, &self.db.limits.text)?;
        authz::statement(caller, &cmd)?;
        match &cmd {
            Command::Query(stmt) => {
                let generation = self.db.catalog.generation();
                let plan = self.db.plan_query(caller, (**stmt).clone(), &[]).await?;
                let parameter_schema = Arc::new(Schema::new(query_parameters(stmt, &plan)));
                let info = PreparedInfo {
                    dataset_schema: plan.schema(),
                    parameter_schema,
                };
                let statement = PreparedStatement {
                    command: cmd,
                    plan: Mutex::new(Some((generation, Arc::new(plan)))),
                };
                Ok((info, statement))
            }
            _ => {
                // DML answers a row count; its parameters take the types of what they are
                // compared with or written to.
                let parameters = match &cmd {
                    Command::Update(_) | Command::Delete(_) => {
                        self.selection_parameters(caller, &cmd).await?
                    }
                    other => self.insert_parameters(caller, other)?,
                };
                let info = PreparedInfo {
                    dataset_schema: rows_affected_schema(),
                    parameter_schema: Arc::new(Schema::new(parameters)),
                };
                let statement = PreparedStatement {
                    command: cmd,
                    plan: Mutex::new(None),
                };
                Ok((info, statement))
            }
        }
    }

    /// One execution of a prepared statement: a query binds its plan (replanned only after
    /// DDL, or inside a transaction whose pending rows the plan must see).
    async fn run_prepared_inner(
        &self,
        caller: &Caller,
        prepared: &PreparedStatement,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<QueryPlan>> {
        let Command::Query(stmt) = &prepared.command else {
            return crate::sql::run_command(&self.db, caller, prepared.command.clone(), params)
                .await;
        };
        let first = crate::sql::first_param_row(params.as_ref())?;
        let generation = self.db.catalog.generation();
        let cached = prepared
            .plan
            .lock()
            .clone()
            .filter(|(g, _)| *g == generation && caller.transaction().is_none());
        let template = match cached {
            Some((_, plan)) => plan,
            None => {
                let plan = Arc::new(self.db.plan_query(caller, (**stmt).clone(), &[]).await?);
                if caller.transaction().is_none() {
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

    fn tables_of(&self, caller: &Caller) -> Vec<TableEntry> {
        let mut out: Vec<TableEntry> = self
            .db
            .catalog
            .tables(None)
            .into_iter()
            .filter(|t| authz::can_read(caller.role, t))
            .map(|t| TableEntry {
                schema_name: t.namespace.clone(),
                table_name: t.name.clone(),
                table_type: "BASE TABLE".into(),
                primary_key: t.pk().ok().map(|(_, c)| c.name.clone()),
                schema: t.query_schema(),
            })
            .collect();
        let system = crate::provider::system::SystemSchema::new(self.db.clone(), caller.clone());
        for (name, schema) in system.listing() {
            out.push(TableEntry {
                schema_name: crate::provider::system::SYSTEM_SCHEMA.into(),
                table_name: name,
                table_type: "SYSTEM TABLE".into(),
                primary_key: None,
                schema,
            });
        }
        out
    }
}

/// A prepared statement: parsed once; a query also planned once per catalog generation.
pub struct PreparedStatement {
    command: Command,
    plan: Mutex<Option<(u64, Arc<QueryPlan>)>>,
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

#[tonic::async_trait]
impl Backend for QuillBackend {
    type Caller = Caller;
    type Plan = QueryPlan;
    type Prepared = PreparedStatement;

    async fn login(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<(Caller, String), Status> {
        let r = self.db.auth.login(user, password, peer).await;
        if r.is_ok() {
            self.db.metrics.active_sessions.inc();
        }
        tracing::info!(user, ok = r.is_ok(), "login");
        r.map_err(Status::from)
    }

    async fn resume(&self, token: &str) -> Result<Caller, Status> {
        self.db.auth.resume(token).map_err(Status::from)
    }

    fn anonymous(&self) -> Caller {
        self.db.auth.anonymous()
    }

    async fn run(
        &self,
        caller: &Caller,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<QueryPlan>, Status> {
        let started = Instant::now();
        tracing::debug!(user = %caller.user, sql = %redact(sql), "statement");
        let r = crate::sql::run(&self.db, caller, sql, params).await;
        self.observe("statement", started, r)
    }

    async fn prepare(
        &self,
        caller: &Caller,
        sql: &str,
    ) -> Result<(PreparedInfo, PreparedStatement), Status> {
        let started = Instant::now();
        let r = self.prepare_inner(caller, sql).await;
        self.observe("prepare", started, r)
    }

    async fn run_prepared(
        &self,
        caller: &Caller,
        prepared: &PreparedStatement,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<QueryPlan>, Status> {
        let started = Instant::now();
        let r = self.run_prepared_inner(caller, prepared, params).await;
        self.observe("prepared", started, r)
    }

    async fn subscribe(
        &self,
        caller: &Caller,
        request: quilldb_flight::SubscribeRequest,
    ) -> Result<quilldb_flight::Subscription, Status> {
        let started = Instant::now();
        let r = crate::live::subscribe(&self.db, caller, request).await;
        self.observe("subscribe", started, r)
    }

    async fn ingest(
        &self,
        caller: &Caller,
        target: IngestTarget,
        data: BatchStream,
    ) -> Result<i64, Status> {
        let started = Instant::now();
        let r = crate::sql::ingest::ingest(&self.db, caller, &target, data).await;
        self.observe("ingest", started, r)
    }

    fn in_transaction(&self, caller: &Caller, id: &[u8]) -> Result<Caller, Status> {
        let t = self.db.transactions.get(&caller.user, id)?;
        Ok(caller.in_transaction(t))
    }

    async fn begin_transaction(&self, caller: &Caller) -> Result<Vec<u8>, Status> {
        let t = crate::sql::open_transaction(&self.db, caller)?;
        Ok(t.id.clone())
    }

    async fn end_transaction(
        &self,
        caller: &Caller,
        id: &[u8],
        commit: bool,
    ) -> Result<(), Status> {
        let started = Instant::now();
        let r = async {
            let t = self.db.transactions.get(&caller.user, id)?;
            if commit {
                let n = self.db.transactions.commit(&self.db.hot, &t).await?;
                self.db.metrics.rows_written.inc_by(n);
            } else {
                self.db.transactions.rollback(&t);
            }
            Ok(())
        }
        .await;
        self.observe(if commit { "commit" } else { "rollback" }, started, r)
    }

    fn set_session_option(
        &self,
        caller: &Caller,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), Status> {
        let r = match name {
            "catalog" => match value {
                None | Some(quilldb_flight::CATALOG) => Ok(()),
                Some(other) => Err(Error::InvalidArgument(format!(
                    "catalog {other} does not exist: the one catalog is {}",
                    quilldb_flight::CATALOG
                ))),
            },
            "schema" => match value {
                None => {
                    caller.set_namespace(None);
                    Ok(())
                }
                Some(ns) => crate::sql::ddl::use_namespace(&self.db, caller, ns),
            },
            other => Err(Error::NotFound(format!(
                "unknown session option {other}: the options are catalog and schema"
            ))),
        };
        r.map_err(Status::from)
    }

    fn session_options(&self, caller: &Caller) -> Vec<(String, String)> {
        let mut out = vec![("catalog".to_string(), quilldb_flight::CATALOG.to_string())];
        if let Some(ns) = caller.namespace() {
            out.push(("schema".to_string(), ns));
        }
        out
    }

    fn close_session(&self, caller: &Caller) -> Result<(), Status> {
        if let Some(t) = caller.session().sql_transaction() {
            caller.session().set_sql_transaction(None);
            self.db.transactions.rollback(&t);
        }
        self.db.auth.close(caller.session());
        Ok(())
    }

    async fn execute(&self, _caller: &Caller, plan: &QueryPlan) -> Result<BatchStream, Status> {
        let stream = self.db.execute(plan).await.map_err(Status::from)?;
        let metrics = self.db.metrics.clone();
        Ok(stream
            .map(move |r| match r {
                Ok(b) => {
                    metrics.rows_streamed.inc_by(b.num_rows() as u64);
                    metrics
                        .bytes_streamed
                        .inc_by(b.get_array_memory_size() as u64);
                    Ok(b)
                }
                Err(e) => Err(Status::from(Error::from(e))),
            })
            .boxed())
    }

    async fn namespaces(&self, caller: &Caller) -> Result<Vec<String>, Status> {
        // DataFusion serves information_schema in every catalog; list it as it would.
        let mut names = self.db.schema_names(caller);
        names.push("information_schema".into());
        Ok(names)
    }

    async fn tables(&self, caller: &Caller) -> Result<Vec<TableEntry>, Status> {
        Ok(self.tables_of(caller))
    }

    fn type_info(&self) -> Vec<arrow_flight::sql::metadata::XdbcTypeInfo> {
        crate::catalog::xdbc::type_info()
    }

    fn query_timeout(&self, caller: &Caller) -> Option<std::time::Duration> {
        Some(self.db.limits.query_timeout(caller.role))
    }

    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            name: "QuillDB".into(),
            version: crate::VERSION.into(),
        }
    }
}

/// The statement with every literal after PASSWORD replaced, for logs.
pub fn redact(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    match upper.find("PASSWORD") {
        Some(i) => format!("{}PASSWORD '***'", &sql[..i]),
        None => sql.to_string(),
    }
}
