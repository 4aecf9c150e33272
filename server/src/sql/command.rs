//! The statements QuillDB runs, as the parser hands them on: sqlparser's AST where it has one,
//! QuillDB's own shapes for its statements (namespaces, storages, users, jobs, SUBSCRIBE).

use datafusion::sql::sqlparser::ast::{
    CreateTable, Delete, Insert, ObjectName, Query, Statement, Update,
};

use crate::catalog::TableType;
use crate::live::query::LiveOptions;

/// A parsed statement.
#[derive(Debug, Clone)]
pub enum Command {
    /// CREATE NAMESPACE
    CreateNamespace {
        /// Name.
        name: String,
        /// IF NOT EXISTS
        if_not_exists: bool,
    },
    /// DROP NAMESPACE
    DropNamespace {
        /// Name.
        name: String,
        /// IF EXISTS
        if_exists: bool,
    },
    /// SHOW NAMESPACES
    ShowNamespaces,
    /// USE ns / SET NAMESPACE ns
    Use(String),
    /// CREATE [USER|SHARED|STREAM] TABLE
    CreateTable {
        /// The kind written before TABLE, if any.
        prefix: Option<TableType>,
        /// The rest, as sqlparser parsed it.
        stmt: Box<CreateTable>,
    },
    /// DROP TABLE
    DropTable {
        /// Name.
        name: ObjectName,
        /// IF EXISTS
        if_exists: bool,
    },
    /// CREATE [OR REPLACE] VIEW name [(columns)] AS query
    CreateView {
        /// Name.
        name: ObjectName,
        /// OR REPLACE
        or_replace: bool,
        /// Column names, if given.
        columns: Vec<String>,
        /// The query.
        query: Box<Query>,
    },
    /// DROP VIEW [IF EXISTS] name
    DropView {
        /// Name.
        name: ObjectName,
        /// IF EXISTS
        if_exists: bool,
    },
    /// SHOW TABLES [IN ns]
    ShowTables(Option<String>),
    /// DESCRIBE TABLE t
    Describe(ObjectName),
    /// INSERT
    Insert(Box<Insert>),
    /// UPDATE
    Update(Box<Update>),
    /// DELETE
    Delete(Box<Delete>),
    /// A query for DataFusion.
    Query(Box<Statement>),
    /// `SUBSCRIBE TO [ns.]t [WHERE ...] [OPTIONS (...)]` or `SUBSCRIBE TO SELECT ... [OPTIONS
    /// (...)]`: the subscription's query (the table form as `SELECT * FROM t WHERE ...`).
    Subscribe {
        /// The query.
        query: Box<Statement>,
        /// `OPTIONS (...)`.
        options: LiveOptions,
    },
    /// BEGIN / START TRANSACTION
    Begin,
    /// COMMIT
    Commit,
    /// ROLLBACK
    Rollback,
    /// STORAGE FLUSH TABLE t
    FlushTable(ObjectName),
    /// STORAGE FLUSH ALL [IN ns]
    FlushAll(Option<String>),
    /// STORAGE COMPACT TABLE t
    CompactTable(ObjectName),
    /// SHOW MANIFEST t
    ShowManifest(ObjectName),
    /// KILL JOB 'id'
    KillJob(String),
    /// KILL LIVE QUERY 'id'
    KillLiveQuery(String),
    /// EXPORT USER DATA ['user']: the caller's own without a name.
    ExportUserData(Option<String>),
    /// CREATE STORAGE
    CreateStorage {
        /// Name.
        name: String,
        /// IF NOT EXISTS
        if_not_exists: bool,
        /// TYPE
        kind: String,
        /// Every other `KEY 'value'` option, keys upper-cased.
        options: Vec<(String, String)>,
    },
    /// DROP STORAGE
    DropStorage {
        /// Name.
        name: String,
        /// IF EXISTS
        if_exists: bool,
    },
    /// SHOW STORAGES
    ShowStorages,
    /// ALTER TABLE
    AlterTable(Box<datafusion::sql::sqlparser::ast::AlterTable>),
    /// CREATE USER name WITH PASSWORD '...' [ROLE r] [EMAIL '...']
    CreateUser {
        /// Name.
        name: String,
        /// IF NOT EXISTS
        if_not_exists: bool,
        /// The password.
        password: String,
        /// ROLE, if given.
        role: Option<String>,
        /// EMAIL, if given.
        email: Option<String>,
    },
    /// ALTER USER name SET PASSWORD '...' | SET ROLE r | SET EMAIL '...'
    AlterUser {
        /// Name.
        name: String,
        /// What changes.
        change: UserChange,
    },
    /// EXECUTE AS USER 'name' ( statement )
    ExecuteAs {
        /// The user to run as.
        user: String,
        /// The one statement.
        inner: Box<Command>,
    },
    /// DROP USER
    DropUser {
        /// Name.
        name: String,
        /// IF EXISTS
        if_exists: bool,
    },
    /// Recognised but served by a later version.
    Unsupported(String),
}

/// What ALTER USER changes.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// SET PASSWORD
    Password(String),
    /// SET ROLE
    Role(String),
    /// SET EMAIL
    Email(String),
}

/// Why a subscription has no ORDER BY.
pub const SUBSCRIBE_NO_ORDER: &str =
    "a subscription cannot use ORDER BY: changes come in commit order";
/// Why a subscription has no LIMIT.
pub const SUBSCRIBE_NO_LIMIT: &str = "a subscription cannot use LIMIT: use OPTIONS (last_rows = N)";
