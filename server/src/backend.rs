//! The database behind the Flight SQL surface: implements `quilldb_flight::Backend`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use quilldb_flight::{
    Backend, BatchStream, IngestTarget, Outcome, PreparedInfo, ServerInfo, TableEntry,
};
use tonic::Status;

use crate::authz::{self};
use crate::engine::{Database, QueryPlan};
use crate::error::{Error, Result};
use crate::live::LiveHub;
use crate::session::Caller;
use crate::sql::prepare::{PreparedCache, PreparedStatement};

/// Prepared statements kept for reuse by text (per caller), in each of the cache's two
/// generations.
const PREPARED_CACHE_ENTRIES: usize = 1024;

/// The Flight SQL backend.
#[derive(Debug)]
pub struct QuillBackend {
    db: Arc<Database>,
    live: Arc<LiveHub>,
    prepared: PreparedCache,
}

impl QuillBackend {
    /// A backend over `db`, its subscriptions served by `live`.
    pub fn new(db: Arc<Database>, live: Arc<LiveHub>) -> Self {
        Self {
            db,
            live,
            prepared: PreparedCache::new(PREPARED_CACHE_ENTRIES),
        }
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

    async fn tables_of(&self, caller: &Caller) -> Vec<TableEntry> {
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
                kind: t.table_type.to_string(),
                primary_key: t.key().map(|(_, c)| c.name.clone()),
                schema: t.query_schema(),
            })
            .collect();
        // A view is listed with its columns as the caller would read them; one the caller
        // cannot read (a table under it is refused or gone) only to roles that manage views.
        for view in self.db.catalog.views(None) {
            let schema =
                match crate::provider::catalog::view_table(&self.db, caller, &view, 0).await {
                    Ok(t) => t.schema(),
                    Err(_) if caller.role >= crate::session::Role::Service => {
                        Arc::new(arrow::datatypes::Schema::empty())
                    }
                    Err(_) => continue,
                };
            out.push(TableEntry {
                schema_name: view.namespace.clone(),
                table_name: view.name.clone(),
                table_type: "VIEW".into(),
                kind: "VIEW".into(),
                primary_key: None,
                schema,
            });
        }
        let system = crate::provider::system::SystemSchema::new(self.db.clone(), caller.clone());
        for (name, schema) in system.listing() {
            out.push(TableEntry {
                schema_name: crate::provider::system::SYSTEM_SCHEMA.into(),
                table_name: name,
                table_type: "SYSTEM TABLE".into(),
                kind: "SYSTEM".into(),
                primary_key: None,
                schema,
            });
        }
        out
    }
}

#[tonic::async_trait]
impl Backend for QuillBackend {
    type Caller = Caller;
    type Plan = QueryPlan;
    type Prepared = Arc<PreparedStatement>;

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
    ) -> Result<(PreparedInfo, Arc<PreparedStatement>), Status> {
        let started = Instant::now();
        let r = self.prepared.prepare(&self.db, caller, sql).await;
        self.observe("prepare", started, r)
    }

    async fn run_prepared(
        &self,
        caller: &Caller,
        prepared: &Arc<PreparedStatement>,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<QueryPlan>, Status> {
        let started = Instant::now();
        let r = crate::sql::prepare::run(&self.db, caller, prepared, params).await;
        self.observe("prepared", started, r)
    }

    async fn subscribe(
        &self,
        caller: &Caller,
        request: quilldb_flight::SubscribeRequest,
    ) -> Result<quilldb_flight::Subscription, Status> {
        let started = Instant::now();
        let r = crate::sql::subscribe::open(&self.db, &self.live, caller, request);
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
        let stream = self.db.planner.execute(plan).await.map_err(Status::from)?;
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
        Ok(self.tables_of(caller).await)
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

/// The statement cut at the first word that may introduce a secret (a password, or S3
/// credentials someone wrote into CREATE STORAGE, which refuses them), for logs.
pub fn redact(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    let cut = ["PASSWORD", "SECRET", "ACCESS_KEY", "SESSION_TOKEN"]
        .iter()
        .filter_map(|w| upper.find(w).map(|i| (i, *w)))
        .min();
    match cut {
        Some((i, w)) => format!("{}{w} '***'", &sql[..i]),
        None => sql.to_string(),
    }
}
