//! The engine: what every statement, table provider and subscription stands on. It owns the
//! stores, the catalog and the DataFusion session setup, and knows no SQL statement, provider
//! or subscription: those layers use it, and it tells them about catalog changes by events.
//!
//! ```text
//!   sql (statements) ──┬──► provider (DataFusion tables) ──┐
//!                      └──► live (subscriptions) ──────────┤
//!                                                          ▼
//!   engine:  Database { hot, catalog, storages, jobs, auth, limits, planner, events }
//!               │ TableRead: the one way to read a partition
//!               ▼
//!   quilldb_storage: MergedRead (cold segments + hot versions) ─► Fills (added columns)
//! ```

/// Function results held to the query memory limit.
pub mod bounded;
/// The database: stores, catalog, authentication, limits.
pub mod database;
/// Catalog events for the live hub, and what the engine asks of it.
pub mod events;
/// Columns added after rows were written.
pub mod fills;
/// QuillDB's scalar functions.
pub mod functions;
/// Primary-key encoding of values.
pub mod keys;
/// Statement limits.
pub mod limits;
/// `_seq` order for plain one-table queries.
pub mod order;
/// DataFusion's session setup and query execution.
pub mod planner;
/// The one way to read a table's partition.
pub mod read;

pub use database::Database;
pub use events::{CatalogEvent, LiveQueries, LiveQueryInfo};
pub use limits::{Limits, TextLimits};
pub use planner::{Planner, QueryPlan, Tables};
pub use read::{SCAN_BATCH_ROWS, TableRead};
