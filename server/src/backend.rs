//! The database behind the Flight SQL surface: implements `quilldb_flight::Backend`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{Expr, SetExpr, TableObject, Value, visit_expressions};
use futures::StreamExt;
use quilldb_flight::service::rows_affected_schema;
use quilldb_flight::{Backend, BatchStream, Outcome, PreparedInfo, ServerInfo, TableEntry};
use tonic::Status;

use crate::authz;
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
            .requests
            .with_label_values(&[call, &status])
            .inc();
        self.db
            .metrics
            .statement_seconds
            .observe(started.elapsed().as_secs_f64());
        r.map_err(Status::from)
    }

    /// Parameter types of INSERT ... VALUES: each placeholder takes its target column's type.
    fn insert_parameters(&self, caller: &Caller, cmd: &Command) -> Result<Vec<Field>> {
        let Command::Insert(ins) = cmd else {
            return Ok(Vec::new());
        };
        let TableObject::TableName(name) = &ins.table else {
            return Ok(Vec::new());
        };
        let def = self.db.table_for(caller, name)?;
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

    async fn prepare_inner(&self, caller: &Caller, sql: &str) -> Result<PreparedInfo> {
        let cmd = parse(sql)?;
        match cmd {
            Command::Query(stmt) => {
                let plan = self.db.plan_query(caller, (*stmt).clone(), &[]).await?;
                let mut params: Vec<(usize, Field)> = Vec::new();
                let _ = visit_expressions(&*stmt, |e: &Expr| {
                    if let Expr::Value(v) = e
                        && let Value::Placeholder(p) = &v.value
                    {
                        let n = crate::sql::dml::placeholder_index(p).map_or(0, |i| i + 1);
                        if !params.iter().any(|(i, _)| *i == n) {
                            params.push((n, Field::new(format!("${n}"), DataType::Null, true)));
                        }
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                });
                let types = plan_param_types(&plan);
                params.sort_by_key(|(n, _)| *n);
                let fields: Vec<Field> = params
                    .into_iter()
                    .map(|(n, f)| match types.get(&format!("${n}")) {
                        Some(Some(t)) => Field::new(format!("${n}"), t.clone(), true),
                        _ => f,
                    })
                    .collect();
                Ok(PreparedInfo {
                    dataset_schema: plan.schema(),
                    parameter_schema: Arc::new(Schema::new(fields)),
                })
            }
            other => Ok(PreparedInfo {
                dataset_schema: rows_affected_schema(),
                parameter_schema: Arc::new(Schema::new(self.insert_parameters(caller, &other)?)),
            }),
        }
    }
}

fn plan_param_types(plan: &QueryPlan) -> std::collections::HashMap<String, Option<DataType>> {
    plan.parameter_types()
}

#[tonic::async_trait]
impl Backend for QuillBackend {
    type Caller = Caller;
    type Plan = QueryPlan;

    async fn login(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<(Caller, String), Status> {
        let r = self.db.auth.login(user, password, peer);
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

    async fn prepare(&self, caller: &Caller, sql: &str) -> Result<PreparedInfo, Status> {
        let started = Instant::now();
        let r = self.prepare_inner(caller, sql).await;
        self.observe("prepare", started, r)
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

    async fn namespaces(&self, _caller: &Caller) -> Result<Vec<String>, Status> {
        Ok(self.db.schema_names())
    }

    async fn tables(&self, caller: &Caller) -> Result<Vec<TableEntry>, Status> {
        Ok(self
            .db
            .catalog
            .tables(None)
            .into_iter()
            .filter(|t| authz::can_read(caller.role, t))
            .map(|t| {
                let schema = t.query_schema();
                TableEntry {
                    schema_name: t.namespace.clone(),
                    table_name: t.name.clone(),
                    table_type: "BASE TABLE".into(),
                    primary_key: t.pk().ok().map(|(_, c)| c.name.clone()),
                    schema,
                }
            })
            .collect())
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
