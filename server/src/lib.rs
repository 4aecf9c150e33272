//! The QuillDB server: catalog, SQL, table providers, authentication, sessions, configuration
//! and lifecycle, and the `quilldb` binary.
//!
//! ```text
//!  Flight SQL call ─► quilldb_flight (auth layer, commands, tickets)
//!                         │ Backend trait
//!                         ▼
//!  backend::QuillBackend ─► sql (one parser; authorize, prepare, plan; DDL, DML, SUBSCRIBE)
//!                             │                 │                      │
//!                             ▼                 ▼                      ▼
//!                     provider (DataFusion   live (hub, task,     DDL ─► catalog
//!                      tables, system)        snapshot)             └─► CatalogEvent ─► live
//!                             │                 │
//!                             ▼                 ▼
//!  engine: Database (stores, catalog, auth, limits, planner, events)
//!          TableRead ─► storage::merge::MergedRead (cold + hot) ─► Fills ─► batches
//! ```

/// Authentication: credentials, sessions, tokens.
pub mod auth;
/// Authorization: the permission matrix.
pub mod authz;
/// The Flight backend.
pub mod backend;
/// Namespaces and tables.
pub mod catalog;
/// Configuration.
pub mod config;
/// The engine: the database's stores and catalog, the one way to read a table, the planner.
pub mod engine;
/// Errors and their gRPC codes.
pub mod error;
/// The query runtime.
pub mod exec;
/// HTTP health and metrics.
pub mod http;
/// Background jobs: flush, compaction, eviction, clean-up.
pub mod jobs;
/// Start and stop.
pub mod lifecycle;
/// Live queries over DoExchange.
pub mod live;
/// Prometheus metrics.
pub mod metrics;
/// DataFusion providers.
pub mod provider;
/// Sessions and roles.
pub mod session;
/// The SQL dialect.
pub mod sql;
/// TLS for both ports.
pub mod tls;
/// Transactions.
pub mod txn;

/// The server version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from.
pub const GIT_COMMIT: &str = env!("QUILLDB_GIT_COMMIT");
/// When the binary was built.
pub const BUILD_DATE: &str = env!("QUILLDB_BUILD_DATE");

/// `quilldb <version> (commit <c>, built <d>)`.
pub fn version_line() -> String {
    format!("quilldb {VERSION} (commit {GIT_COMMIT}, built {BUILD_DATE})")
}
