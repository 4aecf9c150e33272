use std::net::SocketAddr;
use std::pin::Pin;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::Stream;
use tonic::Status;

/// A stream of result batches.
pub type BatchStream = Pin<Box<dyn Stream<Item = Result<RecordBatch, Status>> + Send>>;

/// Who is calling, as far as the protocol layer needs to know.
pub trait CallerInfo: Clone + Send + Sync + 'static {
    /// A stable name of the caller: tickets and prepared statements are bound to it.
    fn principal(&self) -> &str;
}

/// What running a statement produced.
#[derive(Debug)]
pub enum Outcome<P> {
    /// A query, planned but not run: its result schema and the plan to run at DoGet.
    Query {
        /// The result schema (before [`crate::encode::result_schema`]).
        schema: SchemaRef,
        /// The plan.
        plan: P,
    },
    /// A statement that ran and changed this many rows (DDL counts 0).
    Affected(i64),
    /// A statement that ran and answers with rows (a job id, say).
    Rows(RecordBatch),
}

/// The two schemas of a prepared statement.
#[derive(Debug, Clone)]
pub struct PreparedInfo {
    /// The result schema (a DML answers `rows_affected`).
    pub dataset_schema: SchemaRef,
    /// One field per parameter, `$1` first.
    pub parameter_schema: SchemaRef,
}

/// A table as the metadata calls list it.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// The namespace (Flight SQL db_schema).
    pub schema_name: String,
    /// The table name.
    pub table_name: String,
    /// `BASE TABLE`, `VIEW` or `SYSTEM TABLE`.
    pub table_type: String,
    /// The database's own kind of table, for people (`SHARED`, `USER`, `STREAM`, `VIEW`,
    /// `SYSTEM`): the browser API's catalog shows it.
    pub kind: String,
    /// The columns, with their metadata.
    pub schema: SchemaRef,
    /// The primary-key column, if any.
    pub primary_key: Option<String>,
}

/// A bulk ingest call (CommandStatementIngest).
#[derive(Debug, Clone)]
pub struct IngestTarget {
    /// The namespace, if the client named one.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

/// What GetSqlInfo reports about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Server name.
    pub name: String,
    /// Server version.
    pub version: String,
}

/// The database behind the Flight SQL surface.
#[tonic::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The caller's session, resolved once per call.
    type Caller: CallerInfo;
    /// A planned query, kept between GetFlightInfo and DoGet.
    type Plan: Send + Sync + 'static;
    /// A prepared statement: parsed and planned once.
    type Prepared: Send + Sync + 'static;

    /// Checks a user name and password; answers the caller and a fresh bearer token.
    async fn login(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> Result<(Self::Caller, String), Status>;

    /// Resolves a bearer token.
    async fn resume(&self, token: &str) -> Result<Self::Caller, Status>;

    /// The caller of a call without credentials.
    fn anonymous(&self) -> Self::Caller;

    /// Parses and runs (or, for a query, plans) one statement. `params` holds one row per
    /// execution for a prepared statement.
    async fn run(
        &self,
        caller: &Self::Caller,
        sql: &str,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<Self::Plan>, Status>;

    /// Parses and plans a statement once, for many executions.
    async fn prepare(
        &self,
        caller: &Self::Caller,
        sql: &str,
    ) -> Result<(PreparedInfo, Self::Prepared), Status>;

    /// Runs a prepared statement; `params` holds one row per execution.
    async fn run_prepared(
        &self,
        caller: &Self::Caller,
        prepared: &Self::Prepared,
        params: Option<RecordBatch>,
    ) -> Result<Outcome<Self::Plan>, Status>;

    /// Appends the batches of `data` to an existing table, all or nothing.
    async fn ingest(
        &self,
        caller: &Self::Caller,
        target: IngestTarget,
        data: BatchStream,
    ) -> Result<i64, Status>;

    /// The caller, with its statements routed into the open transaction `id`.
    fn in_transaction(&self, caller: &Self::Caller, id: &[u8]) -> Result<Self::Caller, Status>;

    /// Begins a transaction; answers its id.
    async fn begin_transaction(&self, caller: &Self::Caller) -> Result<Vec<u8>, Status>;

    /// Commits (`commit`) or rolls back the transaction `id`.
    async fn end_transaction(
        &self,
        caller: &Self::Caller,
        id: &[u8],
        commit: bool,
    ) -> Result<(), Status>;

    /// Sets a session option (`catalog` or `schema`); `None` resets it.
    fn set_session_option(
        &self,
        caller: &Self::Caller,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), Status>;

    /// The session options and their values.
    fn session_options(&self, caller: &Self::Caller) -> Vec<(String, String)>;

    /// Ends the caller's session: its token stops working and its transaction rolls back.
    fn close_session(&self, caller: &Self::Caller) -> Result<(), Status>;

    /// Runs a planned query.
    async fn execute(
        &self,
        caller: &Self::Caller,
        plan: &Self::Plan,
    ) -> Result<BatchStream, Status>;

    /// The namespaces the caller may see.
    async fn namespaces(&self, caller: &Self::Caller) -> Result<Vec<String>, Status>;

    /// The tables the caller may see.
    async fn tables(&self, caller: &Self::Caller) -> Result<Vec<TableEntry>, Status>;

    /// Opens a live query (`SUBSCRIBE TO ...` over DoExchange).
    async fn subscribe(
        &self,
        caller: &Self::Caller,
        request: crate::live::SubscribeRequest,
    ) -> Result<crate::live::Subscription, Status>;

    /// How long `caller`'s statements may run; `None`: the service-wide limit.
    fn query_timeout(&self, _caller: &Self::Caller) -> Option<std::time::Duration> {
        None
    }

    /// Name and version for GetSqlInfo.
    fn server_info(&self) -> ServerInfo;

    /// One entry per SQL type, for GetXdbcTypeInfo.
    fn type_info(&self) -> Vec<arrow_flight::sql::metadata::XdbcTypeInfo>;
}
